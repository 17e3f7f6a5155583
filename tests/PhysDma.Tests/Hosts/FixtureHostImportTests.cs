using PhysDma.Hosts;
using PhysDma.Pci;
using PhysDma.Platform;
using PhysDma.Tests.Scenarios;
using static PhysDma.Tests.Hosts.HostKit;

namespace PhysDma.Tests.Hosts;

/// <summary>
/// <c>machines import --from-text</c> on the eight real hosts in TestData/hosts (each folder's SOURCE.md says
/// where the dump is from): what each dump says ends up in the machine file, what it does not say is listed
/// as assumed, and the file runs.
/// </summary>
public class FixtureHostImportTests
{
    public static TheoryData<string> Hosts => ["01", "02", "03", "04", "05", "06", "07", "08"];

    [Theory]
    [MemberData(nameof(Hosts))]
    public void Every_host_imports_byte_identically_and_runs_the_quickstart(string host)
    {
        var a = HostImport.FromText(Files(host), "test");
        var b = HostImport.FromText(Files(host), "test");
        Assert.Equal(a.Yaml, b.Yaml);
        Assert.Contains("# Assumed (the input does not say", a.Yaml, StringComparison.Ordinal);
        var file = Write(a.Yaml);
        var first = Load(a.Yaml).Devices[0].Bdf!;
        var (exit, _, err) = ScenarioTestKit.CliArgs("run", ScenarioTestKit.Example("quickstart.yaml"), "--machine", file, "--device", $"nic0={first}");
        Assert.True(exit is 0 or 1, err);
        Assert.Equal("", err);
    }

    [Fact]
    public void Intel_server_iomem_gives_two_root_buses_pmem_split_ram_and_kernel_image()
    {
        var (m, c) = Import("01");
        // System RAM of the dump; Persistent Memory (legacy) is not RAM.
        Assert.Equal(
            [(0x1000UL, 0x93000UL), (0x100000UL, 0x5a6a1000UL), (0x5b5e1000UL, 0x1db1e000UL), (0x7b7ff000UL, 0x1000UL), (0x155e00000UL, 0x3a2c000UL), (0x200000000UL, 0x680000000UL)],
            c.Ram.Select(r => (r.Base, r.Size)).ToList());
        Assert.Equal(29993988096UL, c.Ram.Aggregate(0UL, (s, r) => s + r.Size));
        Assert.Contains("0x100000000+0x55e00000 Persistent Memory (legacy), 0x15982c000+0xa67d4000 Persistent Memory (legacy)", m.Yaml, StringComparison.Ordinal);
        Assert.Equal(new AddrRange(0x155e00000, 0xc01000), c.KernelText);
        var hbs = c.Pci.Where(p => p.Type == PciNodeType.HostBridge).ToList();
        Assert.Equal(["0000:00:00.0", "0000:80:00.0"], hbs.Select(h => h.Bdf));
        Assert.Contains(new AddrRange(0x38000000000, 0x2000000000), hbs[0].Windows);
        Assert.Contains(new AddrRange(0x3a000000000, 0x2000000000), hbs[1].Windows);
        // dmar0/dmar1: VT-d present; its mode is not in iomem, so it is the kernel default and listed.
        Assert.Equal(IommuMode.Lazy, c.Iommu!.Mode);
        Assert.Contains(m.Assumed, a => a.StartsWith("iommu mode: lazy", StringComparison.Ordinal));
        // igb (two functions, three ranges each) and hpsa, behind bridges seen only by their bus windows.
        var igb = Dev(c, "0000:02:00.0");
        Assert.StartsWith("nic", igb.Name, StringComparison.Ordinal);
        Assert.Equal([(0x92c00000UL, 0x100000UL), (0x92d04000UL, 0x4000UL), (0x92d80000UL, 0x80000UL)], igb.Bars.Select(b => (b.Base, b.Size)).ToList());
        Assert.Equal(32, igb.DmaMaskBits);
        Assert.StartsWith("raid", Dev(c, "0000:03:00.0").Name, StringComparison.Ordinal);
        Assert.Equal(PciNodeType.RootPort, c.Pci.Single(p => p.Name == igb.Parent).Type);
        Assert.Equal(28, c.Devices.Count);
    }

    [Fact]
    public void Amd_usb4_laptop_is_lazy_with_its_swiotlb_and_external_usb4_ports()
    {
        var (m, c) = Import("02");
        Assert.Equal(IommuMode.Lazy, c.Iommu!.Mode);
        Assert.DoesNotContain(m.Assumed, a => a.StartsWith("iommu mode", StringComparison.Ordinal));
        Assert.Equal(new SwiotlbConfig(64 * Core.Sizes.MiB, 16, false, false, 0x74000000), c.Swiotlb);
        // The two USB4 hot-plug root ports are external-facing; the NHIs themselves are integrated and trusted.
        Assert.True(Node(c, "0000:00:01.1").ExternalFacing);
        Assert.True(Node(c, "0000:00:01.2").ExternalFacing);
        Assert.False(Node(c, "0000:00:08.3").ExternalFacing);
        Assert.Equal(["tbt0", "tbt1"], new[] { Dev(c, "0000:c5:00.5").Name, Dev(c, "0000:c5:00.6").Name });
        Assert.False(Dev(c, "0000:c5:00.5").Untrusted);
        var gpu = Dev(c, "0000:c3:00.0");
        Assert.Equal("gpu0", gpu.Name);
        Assert.Equal([(0, 0x5000000000UL, 0x20000000UL), (2, 0xb4000000UL, 0x200000UL), (5, 0xb4500000UL, 0x80000UL)], gpu.Bars.Select(b => (b.Bar, b.Base, b.Size)).ToList());
        Assert.Equal([(0, 0xb4f00000UL, 0x4000UL)], Dev(c, "0000:c1:00.0").Bars.Select(b => (b.Bar, b.Base, b.Size)).ToList());
        Assert.Equal("nvme0", Dev(c, "0000:c1:00.0").Name);
        // "node 0" memory ranges of the boot log: 0x1000..0x85e27ffff minus the holes.
        Assert.Equal(8, c.Ram.Count);
        Assert.Equal(new AddrRange(0x100000000, 0x75e280000), c.Ram[^1]);
        var hb = c.Pci.Single(p => p.Type == PciNodeType.HostBridge);
        Assert.Equal((0x1022u, 0x1122u), (hb.Vendor, hb.DeviceId));
        Assert.Contains(new AddrRange(0x8a0200000, 0x813fffffff - 0x8a0200000 + 1), hb.Windows);
    }

    [Fact]
    public void Pericom_switch_ports_keep_their_acs_settings()
    {
        var (m, c) = Import("03");
        var sw = Node(c, "0000:08:00.0");
        Assert.Equal(PciNodeType.Switch, sw.Type);
        Assert.True(sw.AcsRedirect); // ACSCtl ReqRedir+ CmpltRedir+ on every downstream port
        Assert.Equal(3, m.DownstreamPorts.Count);
        foreach (var port in new[] { "0000:09:01.0", "0000:09:02.0", "0000:09:03.0" })
        {
            var line = m.DownstreamPorts.Single(p => p.Contains(port, StringComparison.Ordinal));
            Assert.Contains("ACSCap SrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl+ DirectTrans+", line, StringComparison.Ordinal);
            Assert.Contains("ACSCtl SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-", line, StringComparison.Ordinal);
            Assert.Contains(line, m.Yaml, StringComparison.Ordinal);
        }
        // Root port 00:1c.0 has no ACS capability; 1c.1..1c.3 redirect.
        Assert.False(Node(c, "0000:00:1c.0").AcsRedirect);
        Assert.True(Node(c, "0000:00:1c.3").AcsRedirect);
        Assert.Equal(sw.Name, Dev(c, "0000:0a:00.0").Parent);
        Assert.Equal(sw.Name, Dev(c, "0000:0c:00.0").Parent);
        Assert.Equal("nic0", Dev(c, "0000:07:00.0").Name);
        // Two endpoints behind one switch: the two ports between them redirect, so P2P goes through the host bridge.
        var api = Build(c);
        Assert.NotEqual(P2PMapType.BusAddr, api.P2P.Distance(Dev(c, "0000:0a:00.0").Name, Dev(c, "0000:0c:00.0").Name).Type);
        Assert.Contains(m.Assumed, a => a.StartsWith("ram: 16 GiB", StringComparison.Ordinal));
    }

    [Fact]
    public void Zen2_gpus_nic_and_nvme_share_the_switchtec_switch()
    {
        var (_, c) = Import("04");
        Assert.True(Node(c, "0000:40:01.1").AcsRedirect);
        var top = Node(c, "0000:43:00.0");
        Assert.Equal(PciNodeType.Switch, top.Type);
        Assert.Equal(top.Name, Dev(c, "0000:45:00.0").Parent); // ConnectX-6
        Assert.Equal(top.Name, Dev(c, "0000:52:00.0").Parent); // SK hynix
        // GPU 4a:00.0: three switch levels below the root port (43 -> 46 -> 48).
        var gpu = Dev(c, "0000:4a:00.0");
        Assert.Equal("gpu0", gpu.Name);
        Assert.Equal(Node(c, "0000:48:00.0").Name, gpu.Parent);
        Assert.Equal(Node(c, "0000:46:00.0").Name, Node(c, "0000:48:00.0").Parent);
        Assert.Equal(top.Name, Node(c, "0000:46:00.0").Parent);
        var api = Build(c);
        var (type, dist) = api.P2P.Distance("gpu0", "nic0");
        Assert.Equal(P2PMapType.BusAddr, type);
        Assert.Equal(8, dist);
        // The Switchtec management function 46:00.1 shares the downstream port of its slot (44:01.0) with
        // the next switch level (46:00.0): 1 hop up to that port, 5 from the GPU (the kernel's distance).
        Assert.Equal((P2PMapType.BusAddr, 6), api.P2P.Distance(Dev(c, "0000:46:00.1").Name, "gpu0"));
    }

    [Fact]
    public void Thunderbolt_laptop_makes_the_devices_below_its_tunnel_root_port_untrusted()
    {
        var (m, c) = Import("05");
        Assert.True(Node(c, "0000:00:1d.0").ExternalFacing);
        Assert.True(Dev(c, "0000:06:00.0").Untrusted); // Barlow Ridge NHI
        Assert.True(Dev(c, "0000:2d:00.0").Untrusted); // its xHCI
        Assert.False(Dev(c, "0000:02:00.0").Untrusted); // the dGPU
        Assert.Equal(IommuMode.Lazy, c.Iommu!.Mode);
        Assert.Equal(39, c.Iommu.ApertureBits); // DMAR: Host address width 39
        Assert.Contains(new AddrRange(0x3c000000, 0x4800000), c.Iommu.Reserved); // RMRR
        Assert.Equal(0x210ee000UL, c.Swiotlb!.Base);
        Assert.Equal(32, c.Swiotlb.Areas);
        Assert.Equal([(1, 0x6000000000UL, 0x400000000UL), (3, 0x6400000000UL, 0x2000000UL), (0, 0x4e000000UL, 0x1000000UL)],
            Dev(c, "0000:02:00.0").Bars.Select(b => (b.Bar, b.Base, b.Size)).OrderBy(b => b.Item2 < 0x100000000 ? 1 : 0).ThenBy(b => b.Item1).ToList());
        // VMD's domain is a second host bridge; its NVMe BARs sit inside the VMD BAR and are left out, with a note.
        Assert.Equal("10000:e0:00.0", c.Pci.Single(p => p.Type == PciNodeType.HostBridge && p.Name == "hb1").Bdf);
        Assert.Empty(Dev(c, "10000:e1:00.0").Bars);
        Assert.Contains("10000:e1:00.0 BAR 0 0x4c000000+0x4000 overlaps", m.Yaml, StringComparison.Ordinal);
    }

    [Fact]
    public void Titan_ridge_imac_untrusts_its_thunderbolt_functions_and_keeps_acs()
    {
        var (_, c) = Import("06");
        Assert.True(Node(c, "0000:00:1c.4").ExternalFacing);
        Assert.True(Dev(c, "0000:09:00.0").Untrusted);
        Assert.True(Dev(c, "0000:0a:00.0").Untrusted);
        Assert.Equal(c.Devices.Count - 2, c.Devices.Count(d => !d.Untrusted));
        Assert.False(Node(c, "0000:07:00.0").AcsRedirect); // Titan Ridge ports: ReqRedir- CmpltRedir-
        Assert.True(Node(c, "0000:01:00.0").AcsRedirect); // Navi switch downstream port: ReqRedir+
        Assert.True(Node(c, "0000:00:1b.0").AcsRedirect);
        Assert.Equal("nvme0", Dev(c, "0000:04:00.0").Name);
        Assert.Equal([(0, 0xa0000000UL, 0x10000000UL), (2, 0xb0000000UL, 0x200000UL), (5, 0x81600000UL, 0x80000UL)],
            Dev(c, "0000:03:00.0").Bars.Select(b => (b.Bar, b.Base, b.Size)).ToList());
        Assert.Equal(IommuMode.Lazy, c.Iommu!.Mode);
    }

    [Fact]
    public void Raspberry_pi_inbound_window_becomes_the_dma_ranges_offset()
    {
        var (_, c) = Import("07");
        Assert.Equal(Core.Arch.Arm64, c.Arch);
        Assert.Null(c.Iommu);
        var xhci = Dev(c, "0000:01:00.0");
        Assert.Equal([new DmaRangeConfig(0, 0x400000000, 0xc0000000)], xhci.DmaRanges);
        Assert.Equal(0x4bfffffffUL, xhci.BusDmaLimit);
        Assert.Equal(64, xhci.DmaMaskBits); // xhci hcc params 0x002841eb: AC64
        Assert.Equal(new BarConfig(0, 0x600000000, 0x1000, 0xc0000000), xhci.Bars.Single());
        Assert.Equal(new SwiotlbConfig(64 * Core.Sizes.MiB, 4, false, false, 0x37400000), c.Swiotlb);
        Assert.Equal([new AddrRange(0, 0x3b400000), new AddrRange(0x40000000, 0x40000000), new AddrRange(0x80000000, 0x7c000000)], c.Ram);

        // A buffer the xHCI maps is seen by it 16 GiB up: the inbound window's offset.
        var file = Write(Import("07").Imported.Yaml);
        var r = ScenarioTestKit.Run($$"""
            machine: {{file}}
            steps:
              - { op: alloc, name: b, size: 4KiB, kind: ram, phys: 0x10000000 }
              - { op: map, dev: usb0, buf: b, dir: to_device, as: h, expect: { dma_addr: 0x410000000, path: direct } }
            """);
        Assert.True(r.Ok, r.ToJson());
    }

    [Fact]
    public void Qemu_q35_guest_has_its_vtd_and_emulated_devices()
    {
        var (m, c) = Import("08");
        Assert.Equal([new AddrRange(0x1000, 0x9e000), new AddrRange(0x100000, 0x7fedf000), new AddrRange(0x100000000, 0x180000000)], c.Ram);
        Assert.Contains("8589401088 bytes from /proc/iomem System RAM; 8589398016 bytes in whole pages", m.Yaml, StringComparison.Ordinal);
        Assert.Equal(new AddrRange(0x186a00000, 0xe01000), c.KernelText);
        Assert.NotNull(c.Iommu);
        var nic = Dev(c, "0000:00:02.0");
        Assert.Equal("nic0", nic.Name);
        Assert.Equal([0xfeb40000UL, 0xfeb80000UL, 0xfeba0000UL, 0xfebd0000UL], nic.Bars.Select(b => b.Base));
        Assert.Equal("sata0", Dev(c, "0000:00:1f.2").Name);
        Assert.Equal("hb0", nic.Parent);
        Assert.Contains(m.Assumed, a => a.StartsWith("BAR numbers of 4 device(s)", StringComparison.Ordinal));
    }
}
