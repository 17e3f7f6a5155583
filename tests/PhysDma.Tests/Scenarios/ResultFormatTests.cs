using System.Text.Json.Nodes;
using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>The result JSON of SCENARIOS.md: fields, formats, determinism, exit codes.</summary>
public class ResultFormatTests
{
    private const string RangeMapped = """
        name: ranges
        machine:
          base: x86-noiommu
          devices:
            - { name: nic0, dma_ranges: [{ cpu: 0x0, dma: 0x80000000, size: 2GiB }] }
        steps:
          - { op: alloc, name: page, size: 4KiB, kind: ram, phys: 0x1000 }
          - { op: map, id: ram, dev: nic0, buf: page, dir: bidirectional, as: r }
          - { op: alloc, name: regs, size: 4KiB, kind: bar, from: nic0, bar: 0 }
          - { op: map, id: mmio-bar, dev: nic0, buf: regs, dir: to_device, attrs: [mmio], as: m }
          - { op: alloc, name: low, size: 4KiB, kind: resource, phys: 0x100000000000 }
          - { op: map, id: resource, dev: nic0, buf: low, dir: to_device, api: resource, as: res }
        """;

    [Fact]
    public void Ram_gets_the_bus_offset_while_mmio_gets_its_physical_address()
    {
        var r = Run(RangeMapped);
        Assert.True(r.Ok, r.ToJson());
        var ram = Step(r, "ram");
        Assert.Equal("0x1000", Str(ram["phys"]));
        Assert.Equal("0x80001000", Str(ram["dma_addr"]));
        Assert.Equal("direct", Str(ram["path"]));
        var bar = Step(r, "mmio-bar");
        Assert.Equal("0xc0000000", Str(bar["dma_addr"]));
        Assert.Equal(["mmio"], bar["attrs"]!.AsArray().Select(a => Str(a)));
        var res = Step(r, "resource");
        Assert.Equal("0x100000000000", Str(res["dma_addr"]));
        // The result shows what the driver passed; dma_map_resource adds MMIO itself.
        Assert.Empty(res["attrs"]!.AsArray());
    }

    [Fact]
    public void Map_step_has_every_field_of_the_format()
    {
        var r = Run(RangeMapped);
        var s = Step(r, 1);
        string[] fields = ["index", "op", "id", "handle", "dev", "phys", "size", "dir", "attrs", "dma_addr", "error", "path", "p2p", "bounce", "iommu_prot", "cache_ops", "page_touches", "kernel_mappings", "ok"];
        foreach (var f in fields)
        {
            Assert.True(s.ContainsKey(f), $"map step lacks '{f}'");
        }
        Assert.Equal("physdma-result/1", Str(r.Json["format"]));
        Assert.Equal("ranges", Str(r.Json["scenario"]));
        Assert.Equal("bidirectional", Str(s["dir"]));
        Assert.Equal(4096, s["size"]!.GetValue<long>());
        Assert.Equal("none", Str(s["p2p"]));
        Assert.Null(s["bounce"]);
        Assert.Null(s["iommu_prot"]);
        var final = r.Json["final"]!.AsObject();
        Assert.Equal(3, final["live_mappings"]!.GetValue<long>());
        Assert.Equal(0, final["swiotlb_slots_used"]!.GetValue<long>());
    }

    [Fact]
    public void Runs_are_byte_for_byte_repeatable()
    {
        var a = Run(RangeMapped).ToJson();
        var b = Run(RangeMapped).ToJson();
        Assert.Equal(a, b);
        var (e1, j1, _) = CliArgs("run", Example("missed-sync.yaml"), "--json");
        var (e2, j2, _) = CliArgs("run", Example("missed-sync.yaml"), "--json");
        Assert.Equal(0, e1);
        Assert.Equal(0, e2);
        Assert.Equal(j1, j2);
        Assert.NotNull(JsonNode.Parse(j1));
    }

    [Fact]
    public void Failed_expectation_exits_with_1_and_names_the_line()
    {
        var yaml = "machine: x86-noiommu\nsteps:\n  - { op: alloc, name: b, size: 4KiB, kind: ram }\n  - op: map\n    dev: nic0\n    buf: b\n    dir: to_device\n    as: h\n    expect: { dma_addr: 0x2000 }\n";
        var (exit, stdout, _, _) = RunCli(yaml);
        Assert.Equal(1, exit);
        Assert.Contains("expectation failed (step 1, line 9) dma_addr: wanted 0x2000, got 0x1000", stdout);
        Assert.EndsWith("FAILED\n", stdout);
        var r = Run(yaml);
        Assert.False(r.Ok);
        Assert.False(Step(r, 1)["ok"]!.GetValue<bool>());
        var failure = Assert.Single(r.Json["failures"]!.AsArray());
        Assert.Equal(9, failure!["line"]!.GetValue<int>());
    }

    [Fact]
    public void Json_and_out_file_carry_the_same_document()
    {
        var outFile = Path.Combine(Path.GetTempPath(), $"physdma-{Guid.NewGuid():N}.json");
        var (exit, stdout, _) = CliArgs("run", Example("quickstart.yaml"), "--json", "--out", outFile);
        Assert.Equal(0, exit);
        Assert.Equal(stdout, File.ReadAllText(outFile));
        File.Delete(outFile);
    }

    [Fact]
    public void Trace_file_has_one_map_and_one_unmap_record_per_call()
    {
        var traceFile = Path.Combine(Path.GetTempPath(), $"physdma-{Guid.NewGuid():N}.trace");
        var (exit, _, _) = CliArgs("run", Example("quickstart.yaml"), "--trace", traceFile);
        Assert.Equal(0, exit);
        var lines = File.ReadAllLines(traceFile).Where(l => !l.StartsWith('#')).ToList();
        File.Delete(traceFile);
        Assert.Equal(2, lines.Count(l => l.Contains(": dma_map_phys: ", StringComparison.Ordinal)));
        Assert.Equal(2, lines.Count(l => l.Contains(": dma_unmap_phys: ", StringComparison.Ordinal)));
        Assert.Contains(lines, l => l.EndsWith("dma_map_phys: 0000:01:00.0 dir=TO_DEVICE dma_addr=1000 size=64 phys_addr=1000 attrs=", StringComparison.Ordinal));
    }

    [Fact]
    public void Dir_none_is_a_kernel_bug_that_ends_the_run()
    {
        var r = Run("machine: x86-noiommu\nsteps:\n  - { op: alloc, name: b, size: 4KiB, kind: ram }\n  - { op: map, dev: nic0, buf: b, dir: none, as: h, expect: { error: BUG } }\n  - { op: unmap, handle: h }\n");
        Assert.Equal(2, r.Json["steps"]!.AsArray().Count);
        Assert.Equal("BUG", Str(Step(r, 1)["error"]));
        Assert.Contains("invalid DMA direction 3", Str(r.Json["bug"]));
        Assert.False(r.Ok);
    }

    [Fact]
    public void Device_fault_is_reported_with_step_and_reason()
    {
        var r = Run("machine: x86-noiommu\nsteps:\n  - { op: dev_read, id: wild, dev: nic0, addr: 0x500000000000, len: 4, expect: { error: fault } }\n");
        Assert.True(r.Ok, r.ToJson());
        Assert.Null(Step(r, "wild")["data"]);
        var f = Assert.Single(r.Json["faults"]!.AsArray())!.AsObject();
        Assert.Equal(0, f["step"]!.GetValue<int>());
        Assert.Equal("nic0", Str(f["dev"]));
        Assert.Equal("0x500000000000", Str(f["addr"]));
        Assert.Equal("read", Str(f["access"]));
        Assert.Equal("out_of_range", Str(f["reason"]));
    }

    [Fact]
    public void Machines_command_lists_and_shows_profiles_that_parse_back()
    {
        var (exit, stdout, _) = CliArgs("machines");
        Assert.Equal(0, exit);
        Assert.Contains("x86-noiommu", stdout);
        Assert.Contains("arm64-noncoherent", stdout);
        foreach (var name in Profiles.Names)
        {
            var (e, yaml, _) = CliArgs("machines", "show", name);
            Assert.Equal(0, e);
            var file = Path.Combine(Path.GetTempPath(), $"physdma-{Guid.NewGuid():N}.yaml");
            File.WriteAllText(file, yaml);
            var parsed = MachineParser.LoadFile(file);
            File.Delete(file);
            Profiles.TryGet(name, out var builtIn);
            Assert.Equal(builtIn.Arch, parsed.Arch);
            Assert.Equal(builtIn.Devices.Select(d => d.Name), parsed.Devices.Select(d => d.Name));
            Assert.Equal(builtIn.Ram, parsed.Ram);
        }
    }
}
