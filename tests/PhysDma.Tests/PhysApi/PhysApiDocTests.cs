using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.PhysApi;

/// <summary>
/// docs/phys-api.md stays true: every scenario in examples/phys-api holds its exact expectations on the
/// machine it names (the file's suffix), every one is linked from the document and every link resolves,
/// the counts of question (a) are what the scenarios report, and the runs the document describes without a
/// file of their own (a mistake that ends like an oops, a scenario on a machine it does not fit, the
/// pre-series quirk, the trace of refused MMIO maps on legacy ops) give exactly what it says.
/// examples/phys-api is a subfolder on purpose: ExampleTests and MisuseCatalogueTests enumerate only the
/// top level of examples/ (the abuse scenarios report dma-debug findings by design); this class runs them.
/// </summary>
public partial class PhysApiDocTests
{
    private static string Dir => Path.Combine(RepoRoot, "examples", "phys-api");

    private static string Doc => Path.Combine(RepoRoot, "docs", "phys-api.md");

    /// <summary>PhysDma's own checks (docs/checks.md); every other check name is the kernel's dma-debug.</summary>
    private static readonly HashSet<string> OwnChecks = new(StringComparer.Ordinal)
    {
        "mmio_without_attr", "ram_with_mmio_attr", "cache_op_on_mmio", "iova_mixed_mmio_ram",
        "cpu_read_while_device_owns", "cpu_write_while_device_owns", "stale_iotlb_access",
    };

    /// <summary>File suffix: the built-in machine, or the machine the file's own mapping describes.</summary>
    private static readonly Dictionary<string, string> Machines = new(StringComparer.Ordinal)
    {
        ["noiommu"] = "x86-noiommu",
        ["iommu-lazy"] = "x86-iommu-lazy",
        ["iommu-strict"] = "x86-iommu-strict",
        ["coco"] = "coco",
        ["arm64"] = "arm64-noncoherent",
        ["default"] = "default",
        ["pre-series"] = "pre-series",
        ["refused"] = "default+",
        ["legacy"] = "x86-noiommu+",
        ["legacy-no-resource"] = "x86-noiommu+",
        ["phys"] = "x86-noiommu+",
        ["phys-no-mmio"] = "x86-noiommu+",
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

    private static string Suffix(string name) => name.Split('.')[^2];

    private static string Slug(string name) => name.Split('.')[0];

    private static List<string> Checks(RunResult r) => [.. r.Json["debug"]!.AsArray().Select(d => Str(d!["check"]))];

    [Theory]
    [MemberData(nameof(Files))]
    public void Scenario_holds_its_expectations_on_the_machine_it_names(string name)
    {
        var (exit, stdout, stderr) = CliArgs("run", Path.Combine(Dir, name));
        Assert.True(exit == 0, $"{name}: exit {exit}\n{stdout}\n{stderr}");
        Assert.EndsWith("OK\n", stdout);

        var r = ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(Dir, name)));
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal(Machines[Suffix(name)], Str(r.Json["machine"]));
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Scenario_states_exact_expectations(string name)
    {
        var scenario = ScenarioParser.ParseFile(Path.Combine(Dir, name));
        Assert.StartsWith("# Question (", File.ReadAllText(Path.Combine(Dir, name)), StringComparison.Ordinal);
        // Every mapping step carries the result it must give, and the run ends with the exact debug reports,
        // faults and leftovers.
        var text = File.ReadAllLines(Path.Combine(Dir, name));
        foreach (var (line, i) in text.Select((l, i) => (l, i)))
        {
            if (Regex.IsMatch(line, @"op: (map|p2p_map|iova_link), id:"))
            {
                var next = i + 1 < text.Length ? text[i + 1].TrimStart() : "";
                Assert.True(next.StartsWith("expect: { error: ", StringComparison.Ordinal) || next.StartsWith("expect: { ret: ", StringComparison.Ordinal),
                    $"{name}:{i + 1}: a mapping step without its expected result");
            }
        }
        var final = scenario.FinalExpect.Select(e => e.Field).ToList();
        Assert.Equal(["debug", "faults", "live_mappings", "swiotlb_slots_used"], final);
    }

    [Fact]
    public void Document_links_every_scenario_and_every_link_resolves()
    {
        var doc = File.ReadAllText(Doc);
        var links = LinkRegex().Matches(doc).Select(m => m.Groups[1].Value).ToHashSet(StringComparer.Ordinal);
        Assert.NotEmpty(links);
        foreach (var link in links)
        {
            var path = Path.GetFullPath(Path.Combine(RepoRoot, "docs", link.Split('#')[0]));
            Assert.True(File.Exists(path), $"docs/phys-api.md links {link}, which does not exist");
        }
        var linked = links.Select(l => Path.GetFullPath(Path.Combine(RepoRoot, "docs", l.Split('#')[0]))).ToHashSet(StringComparer.Ordinal);
        foreach (var f in Directory.GetFiles(Dir, "*.yaml", SearchOption.AllDirectories))
        {
            Assert.True(linked.Contains(Path.GetFullPath(f)), $"{Path.GetRelativePath(RepoRoot, f)} is not linked from docs/phys-api.md");
        }
    }

    [Fact]
    public void Document_counts_are_what_the_abuse_scenarios_report()
    {
        var bySlug = new Dictionary<string, (bool Kernel, bool Own)>(StringComparer.Ordinal);
        foreach (var f in Directory.GetFiles(Dir, "abuse-*.yaml"))
        {
            var r = ScenarioRunner.Run(ScenarioParser.ParseFile(f));
            var checks = Checks(r);
            var slug = Slug(Path.GetFileName(f));
            var (k, m) = bySlug.GetValueOrDefault(slug);
            bySlug[slug] = (k || checks.Any(c => !OwnChecks.Contains(c)), m || checks.Any(OwnChecks.Contains));
        }
        var n = bySlug.Count;
        var kernel = bySlug.Count(p => p.Value.Kernel);
        var own = bySlug.Count(p => p.Value.Own);
        var silent = bySlug.Where(p => !p.Value.Kernel && !p.Value.Own).Select(p => p.Key).Order(StringComparer.Ordinal).ToList();
        Assert.Equal((11, 1, 6), (n, kernel, own));
        Assert.Equal(["abuse-freed-page", "abuse-ram-into-mmio", "abuse-unmap-with-other-attrs", "abuse-vmalloc-as-contiguous"], silent);

        var doc = File.ReadAllText(Doc);
        Assert.Contains($"**n = {n}** mistakes, **k = {kernel}** reported by Linux 6.18's dma-debug, **m = {own}** by PhysDma's own checks, **{silent.Count}** silent everywhere", doc, StringComparison.Ordinal);
        var silentSection = doc[doc.IndexOf("### Silent everywhere", StringComparison.Ordinal)..];
        foreach (var s in silent)
        {
            Assert.Contains($"../examples/phys-api/{s}.", silentSection, StringComparison.Ordinal);
        }
    }

    [GeneratedRegex(@"\]\((\.\./examples/phys-api/[^)]+)\)")]
    private static partial Regex LinkRegex();

    /// <summary>Mistakes whose run stops like an oops on a machine: the DMA layer dereferences a linear-map address of non-RAM.</summary>
    public static TheoryData<string, string, int, string> Oopses() => new()
    {
        { "abuse-mmio-without-attr.noiommu.yaml", "coco", 2, "phys_to_virt(0xfed00000): not RAM, there is no linear mapping of device memory" },
        { "abuse-hole.noiommu.yaml", "coco", 1, "phys_to_virt(0x800000000): not RAM, there is no linear mapping of device memory" },
        { "abuse-hole.noiommu.yaml", "arm64-noncoherent", 1, "phys_to_virt(0x800000000): not RAM, there is no linear mapping of device memory" },
        { "abuse-ram-into-mmio.noiommu.yaml", "coco", 4, "CPU access at 0xffff888240000000: no linear mapping there (phys 0x240000000 is not lowmem RAM)" },
        { "abuse-p2p-page-as-ram.iommu-lazy.yaml", "coco", 2, "phys_to_virt(0x3800000000): not RAM, there is no linear mapping of device memory" },
    };

    [Theory]
    [MemberData(nameof(Oopses))]
    public void Mistake_ends_like_an_oops_on_the_machine_the_document_names(string file, string machine, int step, string violation)
    {
        var text = File.ReadAllText(Path.Combine(Dir, file));
        if (machine == "coco")
        {
            // coco's high RAM ends at 9 GiB (0x240000000), not 17 GiB: the same last page of RAM, the same register block after it.
            text = text.Replace("0x43ffff000", "0x23ffff000", StringComparison.Ordinal).Replace("0x440000000", "0x240000000", StringComparison.Ordinal);
        }
        var r = ScenarioRunner.Run(ScenarioParser.Parse(text, Path.Combine(Dir, file), machine));
        Assert.False(r.Ok);
        // A model violation is the kernel's oops: the run ends with it as the bug.
        Assert.Equal($"Oops: unable to handle kernel paging request: {violation}", Str(r.Json["bug"]));
        var steps = r.Json["steps"]!.AsArray();
        Assert.Equal(step + 1, steps.Count);
        Assert.Equal("oops", Str(steps[step]!["error"]));
        Assert.Empty(r.Json["debug"]!.AsArray());
    }

    [Theory]
    [InlineData("abuse-iova-mixes-mmio-and-ram.iommu-lazy.yaml", "x86-noiommu", "has no IOVA on this machine")]
    [InlineData("abuse-iova-mixes-mmio-and-ram.iommu-lazy.yaml", "coco", "has no IOVA on this machine")]
    [InlineData("abuse-iova-mixes-mmio-and-ram.iommu-lazy.yaml", "arm64-noncoherent", "has no IOVA on this machine")]
    public void Mistake_cannot_be_written_on_a_machine_without_what_it_needs(string file, string machine, string reason)
    {
        var text = File.ReadAllText(Path.Combine(Dir, file));
        if (machine == "arm64-noncoherent")
        {
            // The register block the x86 files use is RAM on the SoC; its MMIO lies below DRAM.
            text = text.Replace("0xfed00000", "0x40000000", StringComparison.Ordinal);
        }
        var e = Assert.ThrowsAny<ScenarioError>(() => ScenarioRunner.Run(ScenarioParser.Parse(text, Path.Combine(Dir, file), machine)));
        Assert.Contains(reason, e.Message, StringComparison.Ordinal);
    }

    private static JsonObject HostBridgeMap(string? machine)
    {
        var r = ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(Dir, "entry-p2p-host-bridge.default.yaml"), machine));
        return Step(r, "vram-to-nic");
    }

    [Fact]
    public void Pre_series_quirk_gives_host_bridge_p2p_iommu_cache_in_the_same_scenario()
    {
        var now = ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(Dir, "entry-p2p-host-bridge.default.yaml")));
        var before = ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(Dir, "entry-p2p-host-bridge.default.yaml"),
            Path.Combine(Dir, "machines", "pre-series.yaml")));

        Assert.True(now.Ok, now.ToJson());
        Assert.Equal("[\"READ\",\"WRITE\",\"MMIO\"]", HostBridgeMap(null)["iommu_prot"]!.ToJsonString());
        Assert.Empty(Checks(now));

        // The same steps on the pre-series machine: only the prot differs (the expectation of the 6.18 file
        // fails on it), the address and the bytes are the same, and PhysDma's check sees the missing attribute.
        Assert.False(before.Ok);
        var pre = HostBridgeMap(Path.Combine(Dir, "machines", "pre-series.yaml"));
        Assert.Equal("[\"READ\",\"WRITE\",\"CACHE\"]", pre["iommu_prot"]!.ToJsonString());
        Assert.Equal("0xbffff000", Str(pre["dma_addr"]));
        Assert.Equal("thru_host_bridge", Str(pre["p2p"]));
        Assert.Equal("55 66 77 88", Str(Step(before, "gpu-memory-holds")["data"]));
        Assert.Equal(["mmio_without_attr"], Checks(before));
        var failures = before.Json["failures"]!.AsArray().Select(f => Str(f!["field"])).ToList();
        Assert.Equal(["iommu_prot", "debug"], failures);
    }

    [Theory]
    [InlineData("entry-ops.legacy.yaml", 2, 2)]
    [InlineData("entry-ops.legacy-no-resource.yaml", 0, 0)]
    [InlineData("entry-ops.phys.yaml", 2, 2)]
    [InlineData("entry-ops.phys-no-mmio.yaml", 2, 0)]
    public void Mmio_maps_on_dma_map_ops_reach_the_trace_only_when_a_callback_ran(string file, int mmioMapEvents, int mmioUnmapEvents)
    {
        var trace = Path.Combine(Path.GetTempPath(), $"physdma-ops-{Guid.NewGuid():N}.txt");
        try
        {
            var (exit, stdout, stderr) = CliArgs("run", Path.Combine(Dir, file), "--trace", trace);
            Assert.True(exit == 0, $"{stdout}\n{stderr}");
            var lines = File.ReadAllLines(trace);
            // The two RAM maps are traced everywhere; MMIO maps only where the kernel reached a callback
            // (6.18 without map_resource returns before the hooks; 6.19's map_phys refuses after being called).
            Assert.Equal(2, lines.Count(l => l.Contains(": dma_map_phys: ", StringComparison.Ordinal) && l.EndsWith("attrs=", StringComparison.Ordinal)));
            Assert.Equal(mmioMapEvents, lines.Count(l => l.Contains(": dma_map_phys: ", StringComparison.Ordinal) && l.EndsWith("attrs=MMIO", StringComparison.Ordinal)));
            Assert.Equal(mmioUnmapEvents, lines.Count(l => l.Contains(": dma_unmap_phys: ", StringComparison.Ordinal) && l.EndsWith("attrs=MMIO", StringComparison.Ordinal)));
        }
        finally
        {
            File.Delete(trace);
        }
    }
}
