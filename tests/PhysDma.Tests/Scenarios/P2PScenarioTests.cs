using PhysDma.Tests.Pci;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>p2p_map and device-to-device bytes through the PCI fabric, without an IOMMU.</summary>
public class P2PScenarioTests
{
    private static string Machine(bool hostBridgeAllowed) =>
        "machine:\n" + string.Join("\n", P2PTopologyTests.Topology.Split('\n').Select(l => "  " + l))
            .Replace("p2p_allowed: false", hostBridgeAllowed ? "p2p_allowed: true" : "p2p_allowed: false", StringComparison.Ordinal) + "\n";

    [Fact]
    public void Same_switch_uses_bus_addresses_and_bytes_move_both_ways()
    {
        var r = Run(Machine(false) + """
            steps:
              - { op: alloc, name: vram, size: 8KiB, kind: p2pmem, from: gpu0 }
              - { op: cpu_write, buf: vram, data: { seq: 1 }, len: 32 }
              - { op: p2p_map, id: m, dev: nvme0, buf: vram, offset: 0x1000, size: 4096, dir: bidirectional, as: h }
              - { op: dev_write, dev: nvme0, handle: h, data: "5a 5a 5a 5a" }
              - { op: p2p_map, id: m0, dev: nvme0, buf: vram, size: 32, dir: to_device, as: h0 }
              - { op: dev_read, id: rd, dev: nvme0, handle: h0, len: 32 }
              - { op: cpu_read, id: seen, buf: vram, offset: 0x1000, len: 4 }
              - { op: unmap, id: u, handle: h }
              - { op: unmap, handle: h0 }
            """);
        Assert.True(r.Ok, r.ToJson());
        var m = Step(r, "m");
        Assert.Equal("bus_addr", Str(m["p2p"]));
        Assert.Equal("bus_addr", Str(m["path"]));
        // Bus address = CPU address + (bus base - CPU base of BAR 1).
        Assert.Equal("0x800001000", Str(m["dma_addr"]));
        Assert.Equal("0x3800001000", Str(m["phys"]));
        Assert.Null(m["iommu_prot"]);
        Assert.Empty(m["cache_ops"]!.AsArray());
        // The block-layer importer reads the page once to find its pgmap; nothing else touches it.
        Assert.Equal(1, m["page_touches"]!.GetValue<long>());
        Assert.Equal(0, m["kernel_mappings"]!.GetValue<long>());
        Assert.Equal("01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20", Str(Step(r, "rd")["data"]));
        Assert.Equal("5a 5a 5a 5a", Str(Step(r, "seen")["data"]));
        Assert.Empty(Step(r, "u")["cache_ops"]!.AsArray());
        Assert.Equal(0, r.Json["final"]!["live_mappings"]!.GetValue<long>());
    }

    [Fact]
    public void Host_bridge_not_allowed_is_refused_and_a_forced_mapping_faults_P2P_blocked()
    {
        var r = Run(Machine(false) + """
            steps:
              - { op: alloc, name: vram, size: 4KiB, kind: p2pmem, from: gpu0 }
              - { op: p2p_map, id: refused, dev: nic0, buf: vram, dir: from_device, as: h, expect: { error: EREMOTEIO, p2p: not_supported, path: none } }
              - { op: map, id: forced, dev: nic0, buf: vram, dir: from_device, attrs: [mmio], as: f }
              - { op: dev_write, id: blocked, dev: nic0, handle: f, data: "ff", expect: { error: fault } }
            expect:
              faults: [{ step: 3, dev: nic0, addr: 0x3800000000, access: write, reason: p2p_blocked }]
            """);
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal("0x3800000000", Str(Step(r, "forced")["dma_addr"]));
        Assert.Contains(r.Json["log"]!.AsArray(), l => Str(l!["message"]).Contains("do not share an upstream bridge or whitelisted host bridge", StringComparison.Ordinal));
    }

    [Fact]
    public void Allowed_host_bridge_maps_with_mmio_and_the_peer_sees_the_write()
    {
        var r = Run(Machine(true) + """
            steps:
              - { op: alloc, name: vram, size: 4KiB, kind: p2pmem, from: gpu0 }
              - { op: p2p_map, id: m, dev: nic0, buf: vram, dir: from_device, as: h }
              - { op: dev_write, dev: nic0, handle: h, data: "c0 ff ee" }
              - { op: cpu_read, id: seen, buf: vram, len: 3 }
              - { op: unmap, id: u, handle: h }
            """);
        Assert.True(r.Ok, r.ToJson());
        var m = Step(r, "m");
        Assert.Equal("thru_host_bridge", Str(m["p2p"]));
        // dma-direct maps MMIO with dma = phys (no bus offset, no range map).
        Assert.Equal("0x3800000000", Str(m["dma_addr"]));
        Assert.Equal("direct", Str(m["path"]));
        Assert.Equal("c0 ff ee", Str(Step(r, "seen")["data"]));
        Assert.Equal(0, Step(r, "u")["page_touches"]!.GetValue<long>());
        Assert.Equal(0, Step(r, "u")["kernel_mappings"]!.GetValue<long>());
    }

    [Fact]
    public void Pageless_bar_is_mapped_through_its_provider_without_struct_page()
    {
        var r = Run(Machine(true) + """
            steps:
              - { op: alloc, name: regs, size: 4KiB, kind: bar, from: acc0, bar: 0, offset: 0x2000 }
              - { op: p2p_map, id: m, dev: acc1, buf: regs, dir: bidirectional, as: h }
              - { op: p2p_map, id: local, dev: nic0, buf: regs, dir: bidirectional, as: h2 }
            """);
        Assert.True(r.Ok, r.ToJson());
        var m = Step(r, "m");
        // ACS redirect on the switch forces the host-bridge path even between siblings.
        Assert.Equal("thru_host_bridge", Str(m["p2p"]));
        Assert.Equal("0x3c00002000", Str(m["dma_addr"]));
        Assert.Equal(0, m["page_touches"]!.GetValue<long>());
        Assert.Equal(0, m["kernel_mappings"]!.GetValue<long>());
    }

    [Fact]
    public void Ram_through_the_importer_is_a_plain_mapping()
    {
        var r = Run(Machine(false) + """
            steps:
              - { op: alloc, name: b, size: 4KiB, kind: ram }
              - { op: p2p_map, id: m, dev: nic0, buf: b, dir: to_device, as: h, expect: { p2p: none, path: direct, dma_addr: 0x1000 } }
              - { op: unmap, handle: h }
            expect: { live_mappings: 0 }
            """);
        Assert.True(r.Ok, r.ToJson());
    }
}
