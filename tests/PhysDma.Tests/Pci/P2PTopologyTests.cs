using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Pci;
using PhysDma.Platform;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Pci;

/// <summary>pci_p2pdma_map_type / calc_map_type_and_dist over the topologies the kernel distinguishes.</summary>
public class P2PTopologyTests
{
    /// <summary>
    /// hb0 (not allowlisted) - rp0 - sw0 - { swa: gpu0 (fn 0 and 1), nvme0 ; swb: nic1 }
    ///                       - rp1 - nic0
    ///                       - rp3 - swacs (ACS redirect) - { acc0, acc1 }
    /// hb1 (allowlisted)     - rp2 - fpga0
    /// </summary>
    public const string Topology = """
        base: x86-noiommu
        pci:
          - { name: hb0, type: host_bridge, vendor: 0x1234, device: 0x0001, p2p_allowed: false, windows: [{ base: 0xc0000000, size: 1GiB }] }
          - { name: hb1, type: host_bridge, vendor: 0x1234, device: 0x0002, p2p_allowed: true, windows: [] }
          - { name: rp0, type: root_port, parent: hb0 }
          - { name: rp1, type: root_port, parent: hb0 }
          - { name: rp2, type: root_port, parent: hb1 }
          - { name: rp3, type: root_port, parent: hb0 }
          - { name: sw0, type: switch, parent: rp0 }
          - { name: swa, type: switch, parent: sw0 }
          - { name: swb, type: switch, parent: sw0 }
          - { name: swacs, type: switch, parent: rp3, acs_redirect: true }
        devices:
          - { name: nic0, parent: rp1, bdf: "0000:01:00.0" }
          - name: gpu0
            parent: swa
            bdf: "0000:05:00.0"
            bars: [{ bar: 1, base: 0x3800000000, size: 1GiB, bus_base: 0x800000000 }]
            p2pmem: { bar: 1, offset: 0, size: 256MiB }
            dma_mask: 64
          - { name: gpu0fn1, parent: swa, bdf: "0000:05:00.1", dma_mask: 64 }
          - { name: nvme0, parent: swa, bdf: "0000:06:00.0", dma_mask: 64, min_align_mask: 0xfff }
          - { name: nic1, parent: swb, bdf: "0000:08:00.0", dma_mask: 64 }
          - { name: fpga0, parent: rp2, bdf: "0001:01:00.0", dma_mask: 64 }
          - name: acc0
            parent: swacs
            bdf: "0000:0b:00.0"
            bars: [{ bar: 0, base: 0x3c00000000, size: 1MiB, bus_base: 0x3c00000000 }]
            dma_mask: 64
          - { name: acc1, parent: swacs, bdf: "0000:0c:00.0", dma_mask: 64 }
        """;

    internal static MachineConfig Config(string yaml = Topology) => MachineParser.Parse(YNode.Load(yaml, "topology.yaml"), ".");

    private static (Machine M, DmaApi Api) Build(string yaml = Topology)
    {
        var m = new Machine(Config(yaml));
        return (m, new DmaApi(m));
    }

    [Theory]
    [InlineData("gpu0", "gpu0", P2PMapType.BusAddr, 0)]            // provider and client are one function
    [InlineData("gpu0", "gpu0fn1", P2PMapType.BusAddr, 2)]         // two functions of one device
    [InlineData("gpu0", "nvme0", P2PMapType.BusAddr, 4)]           // two devices under one switch
    [InlineData("gpu0", "nic1", P2PMapType.BusAddr, 8)]            // sibling switches under one root port
    [InlineData("gpu0", "nic0", P2PMapType.NotSupported, 8)]       // different root ports, host bridge not allowed
    [InlineData("gpu0", "fpga0", P2PMapType.NotSupported, 8)]      // different host bridges, one not allowed
    [InlineData("acc0", "acc1", P2PMapType.NotSupported, 4)]       // ACS redirect: host-bridge path, not allowed
    public void Map_type_and_distance(string provider, string client, object typeArg, int dist)
    {
        var type = (P2PMapType)typeArg; // xunit theories are public; the type is internal to PhysDma
        var (_, api) = Build();
        Assert.Equal((type, dist), api.P2P.Distance(provider, client));
    }

    [Fact]
    public void Allowed_host_bridge_turns_the_host_bridge_paths_into_thru_host_bridge()
    {
        var (_, api) = Build(Topology.Replace("p2p_allowed: false", "p2p_allowed: true", StringComparison.Ordinal));
        Assert.Equal((P2PMapType.ThruHostBridge, 8), api.P2P.Distance("gpu0", "nic0"));
        Assert.Equal((P2PMapType.ThruHostBridge, 8), api.P2P.Distance("gpu0", "fpga0"));
        Assert.Equal((P2PMapType.ThruHostBridge, 4), api.P2P.Distance("acc0", "acc1"));
        // A common switch without ACS stays a bus-address path whatever the host bridge allows.
        Assert.Equal((P2PMapType.BusAddr, 4), api.P2P.Distance("gpu0", "nvme0"));
    }

    [Fact]
    public void Allowlisted_intel_host_bridge_needs_no_P2P_allowed_flag()
    {
        var yaml = Topology.Replace("vendor: 0x1234, device: 0x0001, p2p_allowed: false", "vendor: 0x8086, device: 0x2020, p2p_allowed: false", StringComparison.Ordinal);
        var (_, api) = Build(yaml);
        Assert.Equal(P2PMapType.ThruHostBridge, api.P2P.Distance("gpu0", "nic0").Type);
    }

    [Fact]
    public void Map_type_is_computed_once_then_served_from_the_provider_cache()
    {
        var (m, api) = Build();
        var provider = api.P2P.Provider("gpu0", 1)!;
        var nic0 = m.Device("nic0");
        Assert.Equal(P2PMapType.NotSupported, api.P2P.MapType(provider, nic0));
        Assert.Equal(1, api.P2P.Computations);
        var warnings = m.Log.Count;
        Assert.Equal(P2PMapType.NotSupported, api.P2P.MapType(provider, nic0));
        Assert.Equal(1, api.P2P.Computations);
        Assert.Equal(warnings, m.Log.Count);
        Assert.Equal(P2PMapType.BusAddr, api.P2P.MapType(provider, m.Device("nvme0")));
        Assert.Equal(2, api.P2P.Computations);
    }

    [Fact]
    public void Refusal_and_acs_warnings_use_the_kernel_text()
    {
        var (m, api) = Build();
        api.P2P.MapType(api.P2P.Provider("gpu0", 1)!, m.Device("nic0"));
        Assert.Contains(m.Log.Lines, l => l.Message ==
            "nic0 0000:01:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:05:00.0) do not share an upstream bridge or whitelisted host bridge");
        api.P2P.MapType(api.P2P.Provider("acc0", 0)!, m.Device("acc1"));
        Assert.Contains(m.Log.Lines, l => l.Message == "acc1 0000:0c:00.0: ACS redirect is set between the client and provider (0000:0b:00.0)");
        Assert.Contains(m.Log.Lines, l => l.Message ==
            "acc1 0000:0c:00.0: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=0000:0a:00.0;0000:0a:01.0");
    }

    [Fact]
    public void Non_pci_client_is_not_supported()
    {
        var yaml = Topology + "\n  - { name: dsp0, dma_mask: 32 }\n";
        var (m, api) = Build(yaml.Replace("devices:\n", "devices:\n", StringComparison.Ordinal));
        Assert.Equal(P2PMapType.NotSupported, api.P2P.MapType(api.P2P.Provider("gpu0", 1)!, m.Device("dsp0")));
    }

    [Fact]
    public void P2P_mem_pages_are_zone_device_with_a_P2P_pgmap_and_bars_have_no_struct_page()
    {
        var (m, api) = Build();
        var pool = api.P2P.AllocP2PMem("gpu0", 8192)!.Value;
        Assert.Equal(new PhysAddr(0x3800000000), pool);
        Assert.Equal(new PhysAddr(0x3800002000), api.P2P.AllocP2PMem("gpu0", 4096));
        var desc = m.MemMap.Read(m.MemMap.PhysToPage(pool));
        Assert.True(desc.IsZoneDevice);
        Assert.True(desc.IsP2PDma);
        Assert.Equal("p2pdma:gpu0:bar1", desc.Pgmap);
        // Outside the pool the BAR is page-less.
        Assert.False(m.MemMap.PfnValid(new PhysAddr(0x3800000000 + 512 * Sizes.MiB).Pfn(12)));
        Assert.Throws<ModelViolation>(() => m.MemMap.PhysToPage(new PhysAddr(0x3c00000000)));
        Assert.Equal(new DmaAddr(0x800001000), P2PDma.BusAddrMap(api.P2P.Provider("gpu0", 1)!, new PhysAddr(0x3800001000)));
    }

    [Fact]
    public void Bad_topologies_are_refused_with_the_field()
    {
        var e = Assert.Throws<MachineConfigException>(() => Build(Topology.Replace("- { name: rp1, type: root_port, parent: hb0 }", "- { name: rp1, type: root_port, parent: sw0 }", StringComparison.Ordinal)));
        Assert.Equal("Pci[2].Parent", e.Property.Path);
        var e2 = Assert.Throws<MachineConfigException>(() => Build(Topology.Replace("p2pmem: { bar: 1, offset: 0, size: 256MiB }", "p2pmem: { bar: 2, offset: 0, size: 256MiB }", StringComparison.Ordinal)));
        Assert.Equal("Devices[2].P2PMem.Bar", e2.Property.Path);
    }
}
