using PhysDma.Dma;
using PhysDma.Platform;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Pci;

/// <summary>
/// pci_name of the bridges on a P2P path: the addresses depth-first enumeration gives root ports and switch
/// ports, and the list calc_map_type_and_dist prints for pci=disable_acs_redir=.
/// </summary>
public class BridgeAddressTests
{
    /// <summary>hb0 - rp0 - sw0 (ACS redirect on its downstream ports) - { gpu0 on bus 03, nvme0 on bus 04 }; hb0 - rp1 - nic0.</summary>
    private const string Topology = """
        base: x86-noiommu
        pci:
          - { name: hb0, type: host_bridge, vendor: 0x1234, device: 0x0001, p2p_allowed: false, windows: [{ base: 0xc0000000, size: 1GiB }] }
          - { name: rp0, type: root_port, parent: hb0 }
          - { name: rp1, type: root_port, parent: hb0 }
          - { name: sw0, type: switch, parent: rp0, acs_redirect: true }
        devices:
          - name: gpu0
            parent: sw0
            bdf: "0000:03:00.0"
            bars: [{ bar: 1, base: 0x3800000000, size: 1GiB }]
            p2pmem: { bar: 1, offset: 0, size: 256MiB }
            dma_mask: 64
          - { name: nvme0, parent: sw0, bdf: "0000:04:00.0", dma_mask: 64 }
          - { name: nic0, parent: rp1, bdf: "0000:05:00.0", dma_mask: 64 }
        """;

    private static (Machine M, DmaApi Api) Build()
    {
        var m = new Machine(MachineParser.Parse(YNode.Load(Topology, "topology.yaml"), "."));
        return (m, new DmaApi(m));
    }

    [Fact]
    public void Ports_get_the_addresses_depth_first_enumeration_gives_them()
    {
        var (_, api) = Build();
        var gpu = api.P2P.Topology.Endpoint("gpu0")!;
        var nvme = api.P2P.Topology.Endpoint("nvme0")!;
        var nic = api.P2P.Topology.Endpoint("nic0")!;
        Assert.Equal("0000:03:00.0", gpu.Address);
        // gpu0's downstream port on the switch's internal bus 02, the upstream port on rp0's secondary bus 01.
        Assert.Equal("0000:02:00.0", gpu.Upstream!.Address);
        Assert.Equal("0000:02:01.0", nvme.Upstream!.Address);
        Assert.Equal("0000:01:00.0", gpu.Upstream.Upstream!.Address);
        Assert.Equal("0000:00:01.0", gpu.Upstream.Upstream.Upstream!.Address);
        Assert.Equal("0000:00:02.0", nic.Upstream!.Address);
    }

    [Fact]
    public void Acs_redirect_hint_names_the_bridges_by_pci_address()
    {
        var (m, api) = Build();
        api.P2P.MapType(api.P2P.Provider("gpu0", 1)!, m.Device("nvme0"));
        Assert.Equal(
        [
            "nvme0 0000:04:00.0: ACS redirect is set between the client and provider (0000:03:00.0)",
            "nvme0 0000:04:00.0: to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir=0000:02:00.0;0000:02:01.0",
            "nvme0 0000:04:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:03:00.0) do not share an upstream bridge or whitelisted host bridge",
        ], m.Log.Lines.Select(l => l.Message).Where(l => l.StartsWith("nvme0", StringComparison.Ordinal)));
    }
}
