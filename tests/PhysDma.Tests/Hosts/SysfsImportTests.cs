using System.Buffers.Binary;
using PhysDma.Hosts;
using PhysDma.Platform;
using PhysDma.Tests.Scenarios;
using static PhysDma.Tests.Hosts.HostKit;

namespace PhysDma.Tests.Hosts;

/// <summary>
/// <c>machines import --root DIR</c> on a host copy built here: the hierarchy from the sysfs paths, port types
/// and ACS from config space, removable devices, IOMMU groups' types and reserved regions, the VT-d address
/// width, swiotlb from debugfs, an arm64 device tree's dma-ranges.
/// </summary>
public class SysfsImportTests
{
    private static byte[] Config(int headerType, int? portType = null, bool surprise = false, ushort? acsCtl = null, int secondary = 0, int subordinate = 0)
    {
        var c = new byte[4096];
        c[0x0e] = (byte)headerType;
        c[0x19] = (byte)secondary;
        c[0x1a] = (byte)subordinate;
        if (portType is { } t)
        {
            c[0x06] = 0x10;
            c[0x34] = 0x40;
            c[0x40] = 0x10;
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(0x42), (ushort)((t << 4) | (surprise ? 0x100 : 0)));
            if (surprise)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(0x54), 0x60);
            }
        }
        if (acsCtl is { } ctl)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(0x100), 0x0001000d);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(0x104), 0x7f);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(0x106), ctl);
        }
        return c;
    }

    private static void Function(string root, string path, string cls, byte[] config, string resource = "", int? mask = null, bool removable = false, int? group = null, string? driver = null)
    {
        var dir = Path.Combine(root, "sys/devices", path);
        Directory.CreateDirectory(dir);
        var bdf = Path.GetFileName(path);
        File.WriteAllText(Path.Combine(dir, "vendor"), "0x8086\n");
        File.WriteAllText(Path.Combine(dir, "device"), "0x1234\n");
        File.WriteAllText(Path.Combine(dir, "class"), cls + "\n");
        File.WriteAllBytes(Path.Combine(dir, "config"), config);
        File.WriteAllText(Path.Combine(dir, "resource"), resource);
        if (mask is { } m)
        {
            File.WriteAllText(Path.Combine(dir, "dma_mask_bits"), $"{m}\n");
            File.WriteAllText(Path.Combine(dir, "consistent_dma_mask_bits"), $"{m}\n");
        }
        File.WriteAllText(Path.Combine(dir, "removable"), removable ? "removable\n" : "unknown\n");
        if (group is { } g)
        {
            File.CreateSymbolicLink(Path.Combine(dir, "iommu_group"), string.Concat(Enumerable.Repeat("../", path.Count(ch => ch == '/') + 2)) + $"kernel/iommu_groups/{g}");
        }
        if (driver is not null)
        {
            File.CreateSymbolicLink(Path.Combine(dir, "driver"), $"../../../bus/pci/drivers/{driver}");
        }
        Directory.CreateDirectory(Path.Combine(root, "sys/bus/pci/devices"));
        File.CreateSymbolicLink(Path.Combine(root, "sys/bus/pci/devices", bdf), "../../../devices/" + path);
    }

    private static string Host()
    {
        var root = TempDir();
        Directory.CreateDirectory(Path.Combine(root, "proc"));
        File.WriteAllText(Path.Combine(root, "proc/iomem"), """
            00000000-00000fff : Reserved
            00001000-0009fbff : System RAM
            00100000-bfffffff : System RAM
              01000000-01ffffff : Kernel code
              02000000-027fffff : Kernel rodata
            c0000000-dfffffff : PCI Bus 0000:00
            100000000-23fffffff : System RAM
            """ + "\n");
        File.WriteAllText(Path.Combine(root, "proc/cpuinfo"), "processor\t: 0\nvendor_id\t: GenuineIntel\nprocessor\t: 1\nprocessor\t: 2\nprocessor\t: 3\n");
        var tbr = "pci0000:00/0000:00:1c.0";
        Function(root, tbr, "0x060400", Config(1, 4, surprise: true, acsCtl: 0x0d, secondary: 1, subordinate: 3), group: 3, driver: "pcieport");
        Function(root, tbr + "/0000:01:00.0", "0x060400", Config(1, 5, secondary: 2, subordinate: 3), removable: true, group: 4);
        Function(root, tbr + "/0000:01:00.0/0000:02:00.0", "0x060400", Config(1, 6, acsCtl: 0x01, secondary: 3, subordinate: 3), removable: true, group: 5);
        Function(root, tbr + "/0000:01:00.0/0000:02:00.0/0000:03:00.0", "0x010802", Config(0, 0),
            "0x00000000c0000000 0x00000000c0003fff 0x0000000000140204\n" + string.Concat(Enumerable.Repeat("0x0000000000000000 0x0000000000000000 0x0000000000000000\n", 12)),
            mask: 64, removable: true, group: 6, driver: "nvme");
        Function(root, "pci0000:00/0000:00:02.0", "0x030000", Config(0, 9), "0x00000000d0000000 0x00000000d0ffffff 0x0000000000040200\n", mask: 39, group: 1, driver: "i915");
        foreach (var (g, type) in new[] { (1, "DMA-FQ"), (3, "DMA-FQ"), (4, "DMA-FQ"), (5, "DMA-FQ"), (6, "DMA") })
        {
            var gd = Path.Combine(root, "sys/kernel/iommu_groups", $"{g}");
            Directory.CreateDirectory(gd);
            File.WriteAllText(Path.Combine(gd, "type"), type + "\n");
            File.WriteAllText(Path.Combine(gd, "reserved_regions"), "0x00000000fee00000 0x00000000feefffff msi\n" + (g == 1 ? "0x000000007c000000 0x000000007fffffff direct\n" : ""));
        }
        var unit = Path.Combine(root, "sys/devices/virtual/iommu/dmar0/intel-iommu");
        Directory.CreateDirectory(unit);
        File.WriteAllText(Path.Combine(unit, "cap"), "d2008c40660462\n");
        Directory.CreateDirectory(Path.Combine(root, "sys/class/iommu"));
        File.CreateSymbolicLink(Path.Combine(root, "sys/class/iommu/dmar0"), "../../devices/virtual/iommu/dmar0");
        Directory.CreateDirectory(Path.Combine(root, "sys/kernel/debug/swiotlb"));
        File.WriteAllText(Path.Combine(root, "sys/kernel/debug/swiotlb/io_tlb_nslabs"), "65536\n");
        return root;
    }

    [Fact]
    public void The_hierarchy_ports_acs_and_removable_devices_come_from_sysfs_and_config_space()
    {
        var m = HostImport.FromRoot(Host(), "synthetic");
        var c = Load(m.Yaml);
        var rp = Node(c, "0000:00:1c.0");
        Assert.Equal(PciNodeType.RootPort, rp.Type);
        Assert.True(rp.AcsRedirect);      // ACSCtl SV RR CR
        Assert.True(rp.ExternalFacing);   // not removable itself, its children are
        var sw = Node(c, "0000:01:00.0");
        Assert.Equal((PciNodeType.Switch, rp.Name), (sw.Type, sw.Parent));
        Assert.False(sw.AcsRedirect);     // its downstream port's ACSCtl has SrcValid only
        Assert.Contains(m.DownstreamPorts, p => p.StartsWith("downstream port 0000:02:00.0", StringComparison.Ordinal) && p.Contains("ACSCtl SrcValid+ TransBlk- ReqRedir-", StringComparison.Ordinal));
        var nvme = Dev(c, "0000:03:00.0");
        Assert.Equal(("nvme0", sw.Name, true, 64), (nvme.Name, nvme.Parent, nvme.Untrusted, nvme.DmaMaskBits));
        Assert.Equal(new BarConfig(0, 0xc0000000, 0x4000, 0xc0000000), nvme.Bars.Single());
        var gpu = Dev(c, "0000:00:02.0");
        Assert.Equal(("gpu0", "hb0", false, 39), (gpu.Name, gpu.Parent, gpu.Untrusted, gpu.DmaMaskBits));
        // Four groups of DMA-FQ against one DMA: lazy. VT-d cap MGAW 39. Reserved regions as listed.
        Assert.Equal(IommuMode.Lazy, c.Iommu!.Mode);
        Assert.Equal(39, c.Iommu.ApertureBits);
        Assert.Equal([new AddrRange(0x7c000000, 0x4000000), new AddrRange(0xfee00000, 0x100000)], c.Iommu.Reserved);
        Assert.Equal(128 * Core.Sizes.MiB, c.Swiotlb!.Size); // 65536 slabs of 2 KiB
        Assert.Equal(4, c.Cpus);
        Assert.Equal(new AddrRange(0x1000000, 0x1800000), c.KernelText);
        Assert.DoesNotContain(m.Assumed, a => a.Contains("swiotlb size", StringComparison.Ordinal) || a.Contains("iommu mode", StringComparison.Ordinal) || a.Contains("aperture", StringComparison.Ordinal));
        Build(c);
    }

    [Fact]
    public void Capture_of_a_host_copy_imports_to_the_same_bytes()
    {
        var root = Host();
        File.WriteAllText(Path.Combine(root, "sys/devices/pci0000:00/0000:00:02.0/irq"), "16\n");
        var tar = Path.Combine(TempDir(), "h.tar.gz");
        Assert.Equal(0, ScenarioTestKit.CliArgs("machines", "capture", tar, "--root", root).Exit);
        var unpacked = TempDir();
        System.Formats.Tar.TarFile.ExtractToDirectory(new System.IO.Compression.GZipStream(File.OpenRead(tar), System.IO.Compression.CompressionMode.Decompress), unpacked, false);
        Assert.Equal(HostImport.FromRoot(root, "h").Yaml, HostImport.FromRoot(unpacked, "h").Yaml);
        Assert.True(File.Exists(Path.Combine(unpacked, "sys/devices/pci0000:00/0000:00:1c.0/config")));
        Assert.True(File.Exists(Path.Combine(unpacked, "sys/kernel/debug/swiotlb/io_tlb_nslabs")));
        Assert.True(File.Exists(Path.Combine(unpacked, "sys/devices/virtual/iommu/dmar0/intel-iommu/cap")));
        // Only what import reads: a file it never opens stays behind.
        Assert.False(File.Exists(Path.Combine(unpacked, "sys/devices/pci0000:00/0000:00:02.0/irq")));
    }

    [Fact]
    public void Arm64_device_tree_dma_ranges_and_coherence_reach_the_devices()
    {
        var root = TempDir();
        Directory.CreateDirectory(Path.Combine(root, "proc"));
        File.WriteAllText(Path.Combine(root, "proc/iomem"), "80000000-bfffffff : System RAM\n  80200000-811fffff : Kernel code\n");
        File.WriteAllText(Path.Combine(root, "proc/cpuinfo"), "processor\t: 0\nFeatures\t: fp asimd\nCPU architecture: 8\n");
        Function(root, "pci0000:00/0000:00:00.0", "0x060400", Config(1, 4, secondary: 1, subordinate: 1));
        Function(root, "pci0000:00/0000:00:00.0/0000:01:00.0", "0x020000", Config(0, 0), "0x0000000600000000 0x0000000600003fff 0x0000000000140204\n", mask: 64);
        var dt = Path.Combine(root, "sys/firmware/devicetree/base");
        var pcie = Path.Combine(dt, "pcie@7d500000");
        Directory.CreateDirectory(pcie);
        static byte[] Cells(params uint[] v)
        {
            var b = new byte[v.Length * 4];
            for (var i = 0; i < v.Length; i++)
            {
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(i * 4), v[i]);
            }
            return b;
        }
        File.WriteAllBytes(Path.Combine(dt, "#address-cells"), Cells(2));
        File.WriteAllText(Path.Combine(pcie, "device_type"), "pci\0");
        File.WriteAllBytes(Path.Combine(pcie, "#size-cells"), Cells(2));
        // dma-ranges: bus 0x4_0000_0000 <- CPU 0x0, 3 GiB; ranges: bus 0xc000_0000 <- CPU 0x6_0000_0000, 1 GiB.
        File.WriteAllBytes(Path.Combine(pcie, "dma-ranges"), Cells(0x02000000, 0x4, 0x0, 0x0, 0x0, 0x0, 0xc0000000));
        File.WriteAllBytes(Path.Combine(pcie, "ranges"), Cells(0x02000000, 0x0, 0xc0000000, 0x6, 0x0, 0x0, 0x40000000));
        File.WriteAllBytes(Path.Combine(pcie, "dma-coherent"), []);
        var c = Load(HostImport.FromRoot(root, "arm").Yaml);
        Assert.Equal(Core.Arch.Arm64, c.Arch);
        var nic = Dev(c, "0000:01:00.0");
        Assert.Equal([new DmaRangeConfig(0, 0x400000000, 0xc0000000)], nic.DmaRanges);
        Assert.Equal(new BarConfig(0, 0x600000000, 0x4000, 0xc0000000), nic.Bars.Single());
        Assert.True(nic.Coherent);
    }
}
