using System.Text.Json.Nodes;
using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Misuse;

/// <summary>
/// The misuse catalogue: every file in tests/PhysDma.Tests/Misuse is one driver mistake that must give exactly
/// the dma-debug checks its final <c>expect: { debug: [...] }</c> names, in order (a list expectation compares
/// count and order), and nothing else. Correct scenarios (the examples) must give no report on any machine.
/// </summary>
public class MisuseCatalogueTests
{
    private static string Dir => Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "Misuse");

    /// <summary>Our own checks: never counted by err_printk, never printed.</summary>
    private static readonly HashSet<string> OwnChecks = new(StringComparer.Ordinal)
    {
        "mmio_without_attr", "ram_with_mmio_attr", "cache_op_on_mmio", "iova_mixed_mmio_ram",
        "cpu_read_while_device_owns", "cpu_write_while_device_owns", "stale_iotlb_access",
    };

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Dir, "*.yaml").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(f));
        }
        return data;
    }

    private static RunResult RunFile(string name) => ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(Dir, name)));

    private static List<JsonObject> Debug(RunResult r) => [.. r.Json["debug"]!.AsArray().Select(d => d!.AsObject())];

    [Theory]
    [MemberData(nameof(Files))]
    public void Mistake_gives_exactly_its_checks(string name)
    {
        var scenario = ScenarioParser.ParseFile(Path.Combine(Dir, name));
        var expect = Assert.Single(scenario.FinalExpect, e => e.Field == "debug");
        Assert.True(expect.Value.IsSequence && expect.Value.Items().Count > 0, $"{name}: expect.debug must name the checks");
        var text = File.ReadAllText(Path.Combine(Dir, name));
        Assert.StartsWith("# ", text, StringComparison.Ordinal);

        var r = ScenarioRunner.Run(scenario);
        Assert.True(r.Ok, $"{name}:\n{r.ToJson()}");
        Assert.Null(r.Json["bug"]);
        Assert.Null(r.Json["violation"]);
        var debug = Debug(r);
        Assert.NotEmpty(debug);
        // The file name starts with the check it is about, and that check is reported.
        var main = name[..name.IndexOf('.', StringComparison.Ordinal)];
        Assert.Contains(debug, d => Str(d["check"]) == main);

        // err_printk with the defaults (num_errors=1, all_errors off, no driver filter): the first kernel
        // error is printed, every later one only counted; our own checks are never printed.
        var firstKernel = true;
        foreach (var d in debug)
        {
            var check = Str(d["check"]);
            var printed = d["printed"]!.GetValue<bool>();
            var message = Str(d["message"]);
            if (OwnChecks.Contains(check))
            {
                Assert.False(printed, $"{name}: {check}");
                Assert.StartsWith("PhysDma: ", message, StringComparison.Ordinal);
            }
            else
            {
                Assert.Equal(firstKernel, printed);
                Assert.StartsWith("DMA-API: ", message, StringComparison.Ordinal);
                firstKernel = false;
            }
        }
    }

    [Fact]
    public void Catalogue_covers_every_check_the_layers_can_trigger()
    {
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var f in Directory.GetFiles(Dir, "*.yaml"))
        {
            foreach (var d in Debug(RunFile(Path.GetFileName(f))))
            {
                var c = Str(d["check"]);
                seen[c] = seen.GetValueOrDefault(c) + 1;
            }
        }
        string[] reachable =
        [
            "free_invalid_address", "free_not_allocated", "free_size_mismatch", "free_type_mismatch",
            "free_direction_mismatch", "free_sg_count_mismatch", "map_error_not_checked", "map_from_stack",
            "map_from_kernel_text", "sync_not_allocated", "sync_out_of_range", "sync_direction_mismatch",
            "sync_readonly_for_cpu", "sync_writeonly_for_device", "sync_sg_count_mismatch", "sg_segment_too_long",
            "sg_segment_crosses_boundary", "cacheline_overlap", "leak_on_unbind", "mmio_without_attr",
            "ram_with_mmio_attr", "cache_op_on_mmio", "map_invalid_area", "free_cpu_address_mismatch",
            "iova_mixed_mmio_ram", "cpu_read_while_device_owns", "cpu_write_while_device_owns", "stale_iotlb_access",
        ];
        foreach (var c in reachable)
        {
            Assert.True(seen.ContainsKey(c), $"no catalogue scenario reports {c}");
        }
        Assert.True(Directory.GetFiles(Dir, "*.yaml").Length >= 40);
    }

    [Theory]
    [InlineData("free_invalid_address.noiommu.legacy32-unmaps-failed-map.yaml", 0,
        "DMA-API: legacy32 0000:10:00.0: device driver tries to free an invalid DMA memory address")]
    [InlineData("free_size_mismatch.noiommu.unmap-half.yaml", 0,
        "DMA-API: nic0 0000:01:00.0: device driver frees DMA memory with different size [device address=0x0000000000001000] [map size=4096 bytes] [unmap size=2048 bytes]")]
    [InlineData("map_error_not_checked.noiommu.legacy32-bounce-unchecked.yaml", 0,
        "DMA-API: legacy32 0000:10:00.0: device driver failed to check map error[device address=0x00000000bc000000] [size=512 bytes] [mapped as phy]")]
    [InlineData("sync_out_of_range.noiommu.length-underflow.yaml", 0,
        "DMA-API: nic0 0000:01:00.0: device driver syncs DMA memory outside allocated range [device address=0x0000000000001000] [allocation size=4096 bytes] [sync offset+size=18446744073709547520]")]
    [InlineData("sync_readonly_for_cpu.noiommu.tx-synced-for-cpu-bidir.yaml", 1,
        "DMA-API: nic0 0000:01:00.0: device driver syncs device read-only DMA memory for cpu [device address=0x0000000000001000] [size=2048 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_BIDIRECTIONAL]")]
    [InlineData("cacheline_overlap.noiommu.two-kmalloc-rx-in-one-line.yaml", 0,
        "DMA-API: nic0 0000:01:00.0: cacheline tracking EEXIST, overlapping mappings aren't supported")]
    public void KernelMessagesAreVerbatim(string name, int index, string message)
    {
        Assert.Equal(message, Str(Debug(RunFile(name))[index]["message"]));
    }

    public static TheoryData<string, string> ExamplesOnEveryMachine()
    {
        var data = new TheoryData<string, string>();
        foreach (var f in Directory.GetFiles(Path.Combine(RepoRoot, "examples"), "*.yaml").Order(StringComparer.Ordinal))
        {
            foreach (var m in Profiles.Names)
            {
                data.Add(Path.GetFileName(f), m);
            }
        }
        return data;
    }

    /// <summary>Known, reported: examples whose unconditional unmaps hit maps that fail on that machine (coco refuses MMIO).</summary>
    private static readonly HashSet<(string, string)> ExampleUnmapsMapsThatFailOnThisMachine =
    [
        ("four-cases-refused.yaml", "coco"),
        ("four-cases-noiommu.yaml", "coco"),
        ("four-cases.yaml", "coco"),
    ];

    /// <summary>Examples that show a misuse on purpose, with the only checks they may trigger.</summary>
    private static readonly Dictionary<string, string[]> ExamplesOfMisuse = new(StringComparer.Ordinal)
    {
        // Reads the buffer before the sync, and writes the next frame without one, to show the stale bytes.
        ["missed-sync.yaml"] = ["cpu_read_while_device_owns", "cpu_write_while_device_owns"],
        // Reads the original buffer before the sync to show it is not yet updated.
        ["bounce-32bit.yaml"] = ["cpu_read_while_device_owns"],
    };

    /// <summary>
    /// No false positives: a correct driver gives no report, on any machine that has its devices. Only a
    /// scenario naming a device the machine lacks (exit 2, "unknown device") or using the IOVA API where
    /// there is no IOMMU is not run; any other refusal fails. Other expectations of the example may fail on
    /// another machine (exit 1): only debug is asserted.
    /// </summary>
    [Theory]
    [MemberData(nameof(ExamplesOnEveryMachine))]
    public void Example_gives_no_debug_report_on_any_machine(string example, string machine)
    {
        var (exit, stdout, stderr) = CliArgs("run", Example(example), "--machine", machine, "--json");
        if (exit == 2)
        {
            // Not runnable there: a device the machine lacks, or the two-step IOVA API on a machine without an IOMMU.
            Assert.True(stderr.Contains("unknown device", StringComparison.Ordinal) || stderr.Contains("has no IOVA on this machine", StringComparison.Ordinal), stderr);
            return;
        }
        var json = JsonNode.Parse(stdout)!.AsObject();
        var debug = json["debug"]!.AsArray();
        if (ExampleUnmapsMapsThatFailOnThisMachine.Contains((example, machine)))
        {
            // Not a false positive: the example unmaps every handle unconditionally (format v1 has no "if"),
            // and on this machine some of its maps fail, so it really unmaps DMA_MAPPING_ERROR.
            Assert.NotEmpty(debug);
            Assert.All(debug, d => Assert.Equal("free_invalid_address", Str(d!["check"])));
        }
        else if (ExamplesOfMisuse.TryGetValue(example, out var checks))
        {
            Assert.NotEmpty(debug);
            Assert.All(debug, d => Assert.Contains(Str(d!["check"]), checks));
        }
        else
        {
            Assert.True(debug.Count == 0, $"{example} on {machine}: {debug.ToJsonString()}");
        }
        Assert.Null(json["bug"]);
        Assert.Null(json["violation"]);
    }

    [Fact]
    public void Examples_run_on_at_least_one_other_machine_each()
    {
        // Guards the skip above: every example must really run somewhere besides its own machine.
        foreach (var f in Directory.GetFiles(Path.Combine(RepoRoot, "examples"), "*.yaml"))
        {
            var ran = Profiles.Names.Count(m => CliArgs("run", f, "--machine", m, "--json").Exit != 2);
            Assert.True(ran >= 2, $"{Path.GetFileName(f)} runs on {ran} machine(s)");
        }
    }
    private const string CorrectDriver = """
        # A correct driver: every map checked, synced in its own direction, unmapped with what it was mapped with.
        machine: default
        steps:
          - { op: alloc, name: tx, size: 4KiB, kind: ram }
          - { op: alloc, name: rx, size: 2KiB, kind: kmalloc }
          - { op: alloc, name: a, size: 4KiB, kind: ram }
          - { op: alloc, name: b, size: 4KiB, kind: ram }
          - { op: map, dev: nic0, buf: tx, size: 1514, dir: to_device, as: t }
          - { op: mapping_error, handle: t }
          - { op: map, dev: nic0, buf: rx, dir: from_device, as: r }
          - { op: mapping_error, handle: r }
          - { op: dev_write, dev: nic0, handle: r, data: "01 02 03 04" }
          - { op: sync, handle: r, for: cpu }
          - { op: cpu_read, buf: rx, len: 4 }
          - { op: sync, handle: r, for: device }
          - { op: map_sg, dev: nic0, segments: [{ buf: a, size: 4096 }, { buf: b, size: 4096 }], dir: from_device, as: sg }
          - { op: sync_sg, handle: sg, for: cpu }
          - { op: sync_sg, handle: sg, for: device }
          - { op: unmap_sg, handle: sg }
          - { op: unmap, handle: r }
          - { op: unmap, handle: t }
          - { op: remove_device, dev: nic0 }
        """;

    public static TheoryData<string> Machines()
    {
        var data = new TheoryData<string>();
        foreach (var m in Profiles.Names)
        {
            data.Add(m);
        }
        return data;
    }

    /// <summary>The correct counterpart of the catalogue (single and scatter-gather) reports nothing on any machine.</summary>
    [Theory]
    [MemberData(nameof(Machines))]
    public void Correct_driver_gives_no_debug_report(string machine)
    {
        var r = ScenarioRunner.Run(ScenarioParser.Parse(CorrectDriver, "correct.yaml", machine));
        Assert.Null(r.Json["bug"]);
        Assert.Null(r.Json["violation"]);
        var debug = r.Json["debug"]!.AsArray();
        Assert.True(debug.Count == 0, $"{machine}: {debug.ToJsonString()}");
    }
}
