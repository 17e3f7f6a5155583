using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Pci;

/// <summary>
/// <c>faults: remove_p2p_provider</c>: a device's BAR stops being a P2PDMA provider after a step. The teardown
/// waits for referenced p2pmem pages (memunmap_pages), new allocations fail at once, and once the BAR no
/// longer decodes peers read all-ones, their writes are dropped, and new page-less maps fail.
/// </summary>
public class P2PProviderRemovalTests
{
    private static List<(int Step, string Fault, int Nth, string Ret)> Injected(RunResult r) =>
        [.. r.Json["injected"]!.AsArray().Select(n => n!.AsObject()).Select(o =>
            (o["step"]!.GetValue<int>(), Str(o["fault"]), o["nth"]!.GetValue<int>(), Str(o["ret"])))];

    private static string? Field(RunResult r, int step, string field) => Step(r, step)[field]?.GetValue<string>();

    [Fact]
    public void Removal_blocks_until_the_last_p2pmem_page_is_freed_then_the_bar_reads_all_ones()
    {
        var r = ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(RepoRoot, "examples", "faults", "remove-p2p-provider.yaml")));
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(9, "remove_p2p_provider", 1, "blocked"), (13, "remove_p2p_provider", 1, "0")], Injected(r));
        // While blocked: the pool refuses, the BAR still answers.
        Assert.Equal("ENOMEM", Field(r, 10, "error"));
        Assert.Equal("a0 a1 a2 a3", Field(r, 11, "data"));
        Assert.Null(Field(r, 11, "error"));
        // After: all-ones, a dropped write, a revoked dma-buf, and the stale unmap still works.
        Assert.Equal("ff ff ff ff ff ff ff ff", Field(r, 14, "data"));
        Assert.Equal("fault", Field(r, 14, "error"));
        Assert.Equal("fault", Field(r, 15, "error"));
        Assert.Equal("ENODEV", Field(r, 16, "error"));
        Assert.Equal("0xffffffffffffffff", Field(r, 16, "dma_addr"));
        Assert.Null(Field(r, 17, "error"));
        Assert.Equal(
            [new FaultResult(14, "nic0", new HexAddr(0xbffff000), "read", "bar_removed"), new FaultResult(15, "nic0", new HexAddr(0xbffff000), "write", "bar_removed")],
            r.Faults);
        Assert.Equal(0, r.Final.LiveMappings);
        Assert.Equal(0L, r.Final.IovaPagesInUse);
    }

    private const string BusAddrPeer = """
        machine: default
        faults: { remove_p2p_provider: { dev: gpu0, bar: 1, after: 3 } }
        steps:
          - { op: alloc, name: win, size: 4KiB, kind: bar, from: gpu0, bar: 1, offset: 0x1000 }
          - { op: cpu_write, buf: win, data: "5a 5a 5a 5a" }
          - { op: p2p_map, dev: nvme0, buf: win, dir: bidirectional, as: h }
          - { op: dev_read, dev: nvme0, handle: h, len: 4 }
          - { op: dev_write, dev: nvme0, handle: h, offset: 2, data: "01 02 03 04" }
          - { op: dev_read, dev: nvme0, handle: h, len: 4 }
          - { op: cpu_read, buf: win, len: 4 }
          - { op: cpu_write, buf: win, data: "77" }
          - { op: unmap, handle: h }
          - { op: alloc, name: pool, size: 4KiB, kind: p2pmem, from: gpu0 }
        """;

    [Fact]
    public void Without_referenced_pages_the_provider_goes_at_once_and_bus_address_peers_hit_a_dead_bar()
    {
        var r = Run(BusAddrPeer);
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(3, "remove_p2p_provider", 1, "0")], Injected(r));
        Assert.Equal("bus_addr", Field(r, 2, "p2p"));
        Assert.Equal("0x800001000", Field(r, 2, "dma_addr"));
        Assert.Equal("5a 5a 5a 5a", Field(r, 3, "data"));
        // The first access after step 3: the write to the bus address is dropped, the read is all-ones.
        Assert.Equal("fault", Field(r, 4, "error"));
        Assert.Equal("ff ff ff ff", Field(r, 5, "data"));
        Assert.Equal("ff ff ff ff", Field(r, 6, "data"));
        Assert.Null(Field(r, 7, "error"));
        Assert.Null(Field(r, 8, "error"));
        // pdev->p2pdma is gone: pci_alloc_p2pmem returns NULL.
        Assert.Equal("ENOMEM", Field(r, 9, "error"));
        Assert.Equal(
            [new FaultResult(4, "nvme0", new HexAddr(0x800001002), "write", "bar_removed"), new FaultResult(5, "nvme0", new HexAddr(0x800001000), "read", "bar_removed")],
            r.Faults);
    }

    [Fact]
    public void Pages_freed_while_blocked_complete_the_removal_at_that_step()
    {
        var r = Run("""
            machine: default
            faults: { remove_p2p_provider: [{ dev: gpu0, bar: 1, after: 1 }] }
            steps:
              - { op: alloc, name: a, size: 8KiB, kind: p2pmem, from: gpu0 }
              - { op: alloc, name: b, size: 4KiB, kind: p2pmem, from: gpu0 }
              - { op: free, name: a }
              - { op: cpu_read, buf: b, len: 2 }
              - { op: free, name: b }
              - { op: tick, ms: 1 }
            """);
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(1, "remove_p2p_provider", 1, "blocked"), (4, "remove_p2p_provider", 1, "0")], Injected(r));
        Assert.Equal("00 00", Field(r, 3, "data"));
    }

    [Theory]
    [InlineData("{ dev: gpu9, bar: 1, after: 0 }", ":2: faults.remove_p2p_provider.dev: no device 'gpu9' on machine 'default'")]
    [InlineData("{ dev: gpu0, bar: 0, after: 0 }", ":2: faults.remove_p2p_provider.bar: device 'gpu0' has no BAR 0 (BARs: 1)")]
    [InlineData("{ dev: gpu0, bar: 1, after: 1 }", ":2: faults.remove_p2p_provider.after: step 1 does not exist: the scenario has 1 steps")]
    [InlineData("{ dev: gpu0, bar: 1 }", ":2: faults.remove_p2p_provider: missing field 'after'")]
    [InlineData("[3]", ":2: faults.remove_p2p_provider[0]: a provider removal is a mapping")]
    public void Bad_removal_is_bad_input_naming_the_field(string removal, string message)
    {
        var (exit, _, stderr, _) = RunCli($"machine: default\nfaults: {{ remove_p2p_provider: {removal} }}\nsteps:\n  - {{ op: tick, ms: 1 }}\n");
        Assert.Equal(2, exit);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void Importer_that_keeps_a_removed_bar_reads_all_ones_and_leaks_its_mapping_at_unbind()
    {
        var r = ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "Misuse", "leak_on_unbind.default.importer-keeps-removed-p2p-bar.yaml")));
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(4, "remove_p2p_provider", 1, "0")], Injected(r));
        Assert.Equal("de ad be ef", Field(r, 4, "data"));
        Assert.Equal("ff ff ff ff", Field(r, 5, "data"));
        Assert.Equal("ff ff ff ff", Field(r, 7, "data"));
        var leak = Assert.Single(r.Debug!);
        Assert.Equal(8, leak.Step);
        Assert.Equal(
            "DMA-API: nic0 0000:02:00.0: device driver has pending DMA allocations while released from device [count=1]\n" +
            "One of leaked entries details: [device address=0x00000000bfffc000] [size=16384 bytes] [mapped with DMA_BIDIRECTIONAL] [mapped as phy]",
            leak.Message);
        Assert.Equal(3, r.Faults.Count(f => f.Reason == "bar_removed" && f.Dev == "nic0"));
    }

    [Fact]
    public void Library_removal_makes_a_mapped_bar_read_all_ones()
    {
        var model = DmaModel.Create("default");
        var nic = model.Device("nic0");
        var bar = new DmaBuffer(new PhysDma.Core.PhysAddr(0x3840000000), 4096);
        model.Machine.Memory.Write(bar.Phys, [0x12, 0x34]);
        var addr = model.Map(nic, bar, 0, 4096, PhysDma.Core.DmaDirection.ToDevice, PhysDma.Core.DmaAttrs.Mmio);
        Assert.Equal(0xbffff000UL, addr.Value);
        Assert.False(model.MappingError(nic, addr));
        Assert.Equal([0x12, 0x34], model.DeviceRead(nic, addr, 2, out var before));
        Assert.Null(before);
        Assert.True(model.RemoveP2PProvider("gpu0", 1));
        Assert.Equal([0xff, 0xff], model.DeviceRead(nic, addr, 2, out var after));
        Assert.Equal(new PhysDma.Platform.DmaFault("nic0", addr, PhysDma.Platform.DmaAccess.Read, PhysDma.Platform.FaultReason.BarRemoved), after);
        Assert.Throws<ArgumentException>(() => model.RemoveP2PProvider("gpu0", 0));
        model.Unmap(nic, addr, 4096, PhysDma.Core.DmaDirection.ToDevice, PhysDma.Core.DmaAttrs.Mmio);
        Assert.Empty(model.DebugReports);
    }
}
