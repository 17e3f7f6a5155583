using System.Text.Json.Nodes;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary><c>physdma matrix</c>, <c>physdma merge</c>, <c>--strict</c> and <c>expect_on</c>.</summary>
public class MatrixTests
{
    private static string Temp(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), "physdma-matrix-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    private static string Write(string yaml)
    {
        var f = Temp("s.yaml");
        File.WriteAllText(f, yaml);
        return f;
    }

    private static readonly string[] Examples = [.. new[] { "bounce-32bit.yaml", "quickstart.yaml", "missed-sync.yaml" }.Select(Example)];

    private const string DoubleUnmap = """
        machine: x86-noiommu
        steps:
          - { op: alloc, name: b, size: 4KiB, kind: ram }
          - { op: map, dev: nic0, buf: b, size: 64, dir: to_device, as: h }
          - { op: mapping_error, handle: h }
          - { op: unmap, handle: h }
          - { op: unmap, handle: h }
        """;

    [Fact]
    public void Shards_merged_equal_the_unsharded_result()
    {
        var (exit, whole, err) = CliArgs(["matrix", .. Examples, "--machines", "x86-noiommu,default,x86-iommu-strict", "--json"]);
        Assert.True(exit is 0 or 1, err);
        var pieces = new List<string>();
        for (var i = 1; i <= 3; i++)
        {
            var (e, text, _) = CliArgs(["matrix", .. Examples, "--machines", "x86-noiommu,default,x86-iommu-strict", "--json", "--shard", $"{i}/3"]);
            Assert.True(e is 0 or 1);
            // Each shard holds only its own third of the 9 cells.
            Assert.Equal(3, JsonNode.Parse(text)!["cells"]!.AsArray().Count);
            var f = Temp($"piece{i}.json");
            File.WriteAllText(f, text);
            pieces.Add(f);
        }
        pieces.Reverse();
        var (mexit, merged, merr) = CliArgs(["merge", .. pieces]);
        Assert.Equal("", merr);
        Assert.Equal(exit, mexit);
        Assert.Equal(whole, merged);
        Assert.Equal(9, JsonNode.Parse(merged)!["cells"]!.AsArray().Count);
    }

    [Fact]
    public void Merge_refuses_pieces_that_do_not_cover_the_matrix()
    {
        var (_, text, _) = CliArgs(["matrix", .. Examples, "--machines", "x86-noiommu,default", "--json", "--shard", "1/2"]);
        var f = Temp("one.json");
        File.WriteAllText(f, text);
        var (exit, o, err) = CliArgs(["merge", f]);
        Assert.Equal(2, exit);
        Assert.Equal("", o);
        Assert.Contains("the pieces cover 3 of 6 cells", err);
    }

    [Theory]
    [InlineData("0/3")]
    [InlineData("4/3")]
    [InlineData("two/3")]
    [InlineData("1-3")]
    public void Bad_shard_is_bad_input(string shard)
    {
        var (exit, o, err) = CliArgs("matrix", Examples[0], "--shard", shard);
        Assert.Equal(2, exit);
        Assert.Equal("", o);
        Assert.Equal($"physdma: --shard: bad shard '{shard}': write i/n with 1 <= i <= n (e.g. 2/3)\n", err);
    }

    [Fact]
    public void Unknown_machine_in_machines_is_bad_input()
    {
        var (exit, o, err) = CliArgs("matrix", Examples[0], "--machines", "coco,vax780");
        Assert.Equal(2, exit);
        Assert.Equal("", o);
        Assert.StartsWith("physdma: --machines: unknown machine 'vax780'", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void Unwritable_html_is_bad_input_on_matrix_and_run()
    {
        var path = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid().ToString("N"), "r.html");
        var (exit, o, err) = CliArgs("matrix", Examples[0], "--html", path);
        Assert.Equal(2, exit);
        Assert.Equal("", o);
        Assert.Contains($"--html: cannot write '{path}': the directory", err);
        (exit, o, err) = CliArgs("run", Examples[0], "--html", path);
        Assert.Equal(2, exit);
        Assert.Contains($"cannot write '{path}'", err);
    }

    [Fact]
    public void Strict_fails_a_double_unmap_that_passes_without_it()
    {
        var (exit, _, _, file) = RunCli(DoubleUnmap);
        Assert.Equal(0, exit);
        var (sexit, _, err) = CliArgs("run", file, "--strict");
        Assert.Equal(1, sexit);
        Assert.Contains("physdma: --strict: step 4: dma-debug free_not_allocated: DMA-API: nic0 0000:01:00.0: device driver tries to free DMA memory it has not allocated", err);
        // The report is the only thing strict objects to (its printed WARN lines are that report).
        Assert.Single(err.TrimEnd('\n').Split('\n'));
        var (mexit, mout, _) = CliArgs("matrix", file, "--machines", "x86-noiommu", "--strict", "--json");
        Assert.Equal(1, mexit);
        Assert.Equal("failed", (string?)JsonNode.Parse(mout)!["cells"]![0]!["status"]);
    }

    [Fact]
    public void Strict_passes_a_report_the_step_expects()
    {
        var yaml = DoubleUnmap.Replace("  - { op: unmap, handle: h }\n  - { op: unmap, handle: h }",
            "  - { op: unmap, handle: h }\n  - { op: unmap, handle: h, expect: { debug: [free_not_allocated] } }", StringComparison.Ordinal);
        var (exit, _, err, _) = RunCli(yaml, "--strict");
        Assert.Equal("", err);
        Assert.Equal(0, exit);
    }

    private const string PerMachine = """
        machine: x86-noiommu
        steps:
          - { op: alloc, name: b, size: 4KiB, kind: ram, phys: 0x100000000 }
          - { op: map, dev: nic0, buf: b, size: 64, dir: to_device, as: h,
              expect: { path: direct, dma_addr: "0x100000000" },
              expect_on: { coco: { path: swiotlb, dma_addr: "0xbc000000" } } }
        """;

    [Fact]
    public void Expect_on_binds_on_the_machine_it_names()
    {
        var file = Write(PerMachine);
        Assert.Equal(0, CliArgs("run", file).Item1);
        Assert.Equal(0, CliArgs("run", file, "--machine", "coco").Item1);
        var (exit, o, _) = CliArgs("matrix", file, "--machines", "x86-noiommu,coco", "--json");
        Assert.Equal(0, exit);
        var cells = JsonNode.Parse(o)!["cells"]!.AsArray();
        Assert.Equal("0xbc000000", (string?)cells[1]!["result"]!["steps"]![1]!["dma_addr"]);
    }

    [Fact]
    public void Expect_on_that_does_not_hold_fails_that_machine_only()
    {
        var file = Write(PerMachine.Replace("dma_addr: \"0xbc000000\"", "dma_addr: \"0xbc001000\"", StringComparison.Ordinal));
        var (exit, o, _) = CliArgs("matrix", file, "--machines", "x86-noiommu,coco", "--json");
        Assert.Equal(1, exit);
        var cells = JsonNode.Parse(o)!["cells"]!.AsArray();
        Assert.Equal("ok", (string?)cells[0]!["status"]);
        Assert.Equal("failed", (string?)cells[1]!["status"]);
        Assert.Equal("dma_addr", (string?)cells[1]!["result"]!["failures"]![0]!["field"]);
        // --ignore-expect shows the outcomes only.
        Assert.Equal(0, CliArgs("matrix", file, "--machines", "x86-noiommu,coco", "--json", "--ignore-expect").Item1);
    }

    [Fact]
    public void Expect_on_naming_an_unknown_field_is_bad_input()
    {
        var file = Write(PerMachine.Replace("path: swiotlb", "colour: red", StringComparison.Ordinal));
        var (exit, _, err) = CliArgs("run", file);
        Assert.Equal(2, exit);
        Assert.Contains($"{file}:6: steps[1].expect_on.coco.colour: unknown field 'colour'", err);
    }

    [Fact]
    public void Table_marks_the_steps_that_differ_between_machines()
    {
        var (exit, o, _) = CliArgs("matrix", Example("bounce-32bit.yaml"), "--machines", "x86-noiommu,x86-iommu-strict");
        Assert.Equal(0, exit);
        var map = o.Split('\n').Single(l => l.Contains("map (map-tx)", StringComparison.Ordinal));
        Assert.Contains("≠", map);
        Assert.Contains("swiotlb 0xbc000000 via 0xbc000000", map);
        Assert.Contains("iommu 0xbffff000", map);
        var alloc = o.Split('\n').First(l => l.Contains(" alloc ", StringComparison.Ordinal));
        Assert.DoesNotContain("≠", alloc);
    }

    [Fact]
    public void Device_alias_names_a_machine_device_on_every_machine()
    {
        var file = Write("""
            machine: x86-noiommu
            steps:
              - { op: alloc, name: b, size: 4KiB, kind: ram }
              - { op: map, dev: eth, buf: b, size: 64, dir: to_device, as: h }
            """);
        var (exit, o, err) = CliArgs("matrix", file, "--machines", "x86-noiommu,x86-iommu-strict", "--device", "eth=nic0", "--json");
        Assert.True(exit == 0, err);
        var cells = JsonNode.Parse(o)!["cells"]!.AsArray();
        Assert.Equal("direct", (string?)cells[0]!["result"]!["steps"]![1]!["path"]);
        Assert.Equal("iommu", (string?)cells[1]!["result"]!["steps"]![1]!["path"]);
        Assert.Equal("eth", (string?)cells[1]!["result"]!["steps"]![1]!["dev"]);
        // Without the alias there is no such device: bad input in every cell.
        Assert.Equal(2, CliArgs("matrix", file, "--machines", "x86-noiommu").Item1);
        var (bexit, _, berr) = CliArgs("matrix", file, "--device", "eth");
        Assert.Equal(2, bexit);
        Assert.Equal("physdma: --device: 'eth' is not NAME=TARGET (e.g. nic0=0000:3b:00.0 or nic0=eth1)\n", berr);
    }
}
