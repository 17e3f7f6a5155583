using PhysDma.Hosts;
using PhysDma.Tests.Scenarios;
using static PhysDma.Tests.Hosts.HostKit;

namespace PhysDma.Tests.Hosts;

/// <summary>Bad host input is an error naming file and line (exit 2); partial dumps import with their assumptions listed.</summary>
public class HostImportBadInputTests
{
    private static (int Exit, string Out, string Err) ImportText(params (string Name, string Text)[] files)
    {
        var dir = TempDir();
        var paths = files.Select(f =>
        {
            var p = Path.Combine(dir, f.Name);
            File.WriteAllText(p, f.Text);
            return p;
        }).ToArray();
        return ScenarioTestKit.CliArgs(["machines", "import", "--from-text", .. paths]);
    }

    [Fact]
    public void A_malformed_iomem_line_names_file_and_line()
    {
        var (exit, _, err) = ImportText(("iomem.txt", "00000000-00000fff : Reserved\n00001000-0009fbff System RAM\n"));
        Assert.Equal(2, exit);
        Assert.Matches(@"iomem\.txt:2: not a /proc/iomem line", err);
    }

    [Fact]
    public void An_iomem_range_that_ends_before_it_starts_is_bad_input()
    {
        var (exit, _, err) = ImportText(("iomem.txt", "00001000-00000fff : System RAM\n"));
        Assert.Equal(2, exit);
        Assert.Contains("iomem.txt:1: range ends (fff) before it starts (1000)", err, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_acs_flag_in_lspci_names_file_and_line()
    {
        var (exit, _, err) = ImportText(("lspci.txt", "00:1c.0 PCI bridge [0604]: Intel Corporation Root Port [8086:7a38]\n\tACSCap:\tSrcValid+ Bogus+\n"));
        Assert.Equal(2, exit);
        Assert.Contains("lspci.txt:2: ACS flag 'Bogus+'", err, StringComparison.Ordinal);
    }

    [Fact]
    public void A_region_line_without_size_names_file_and_line()
    {
        var (exit, _, err) = ImportText(("lspci.txt", "01:00.0 Ethernet controller [0200]: Intel Corporation I210 [8086:1533]\n\tRegion 0: Memory at f7c00000 (32-bit, non-prefetchable)\n"));
        Assert.Equal(2, exit);
        Assert.Contains("lspci.txt:2: Region line has no [size=...]", err, StringComparison.Ordinal);
    }

    [Fact]
    public void A_broken_lspci_tree_names_file_and_line()
    {
        var (exit, _, err) = ImportText(("tree.txt", "-[0000:00]-+-00.0  Host bridge\n           +-zz.0  Broken\n"));
        Assert.Equal(2, exit);
        Assert.Contains("tree.txt:2: expected a device entry (DD.F) at column 14", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Text_of_no_known_kind_and_missing_files_are_bad_input()
    {
        var (exit, _, err) = ImportText(("notes.txt", "hello\n"));
        Assert.Equal(2, exit);
        Assert.Contains("notes.txt:1: not /proc/iomem, lspci -tv, lspci -vvv or kernel log output", err, StringComparison.Ordinal);
        var (exit2, _, err2) = ScenarioTestKit.CliArgs("machines", "import", "--from-text", "/nonexistent/dmesg.txt");
        Assert.Equal(2, exit2);
        Assert.Contains("/nonexistent/dmesg.txt: cannot read", err2, StringComparison.Ordinal);
        var (exit3, _, err3) = ScenarioTestKit.CliArgs("machines", "import", "--root", TempDir());
        Assert.Equal(2, exit3);
        Assert.Contains("not a Linux host root", err3, StringComparison.Ordinal);
        var (exit4, _, err4) = ScenarioTestKit.CliArgs("machines", "capture", Path.Combine(TempDir(), "x.tar.gz"), "--root", TempDir());
        Assert.Equal(2, exit4);
        Assert.Contains("not a Linux host root", err4, StringComparison.Ordinal);
        var (exit5, _, err5) = ScenarioTestKit.CliArgs("machines", "capture", "/nonexistent/dir/x.tar.gz");
        Assert.Equal(2, exit5);
        Assert.Contains("cannot write /nonexistent/dir/x.tar.gz", err5, StringComparison.Ordinal);
    }

    [Fact]
    public void A_dmesg_fragment_imports_with_everything_else_assumed()
    {
        var (exit, o, err) = ImportText(("dmesg.txt", "[    0.1] pci 0000:00:1f.6: [8086:15bc] type 00 class 0x020000 PCIe Root Complex Integrated Endpoint\n[    0.1] pci 0000:00:1f.6: BAR 0 [mem 0xb1200000-0xb121ffff]\n"));
        Assert.Equal(0, exit);
        Assert.Equal("", err);
        foreach (var what in new[] { "arch: x86_64", "page_size: 4096", "ram: 16 GiB", "swiotlb size: 64 MiB", "iommu: off", "dma_mask: 32" })
        {
            Assert.Contains("#   - " + what, o, StringComparison.Ordinal);
        }
        var c = Load(o);
        Assert.Equal(new PhysDma.Platform.BarConfig(0, 0xb1200000, 0x20000, 0xb1200000), Dev(c, "0000:00:1f.6").Bars.Single());
        Build(c);
    }

    [Fact]
    public void A_log_without_timestamps_is_read_as_a_kernel_log()
    {
        var (exit, o, err) = ImportText(("dmesg-t.txt", "Linux version 6.12.0 (gcc) #1 SMP\niommu: DMA domain TLB invalidation policy: strict mode\nDMAR: dmar0: reg_base_addr fed90000 ver 4:0 cap 1c0000c40660462 ecap 29a00f0505e\n"));
        Assert.Equal(0, exit);
        Assert.Equal("", err);
        Assert.Equal(PhysDma.Platform.IommuMode.Strict, Load(o).Iommu!.Mode);
    }

    [Fact]
    public void Garbage_sysfs_files_import_without_a_crash()
    {
        var root = TempDir();
        var dev = Path.Combine(root, "sys/devices/pci0000:00/0000:00:02.0");
        Directory.CreateDirectory(dev);
        Directory.CreateDirectory(Path.Combine(root, "sys/bus/pci/devices"));
        File.CreateSymbolicLink(Path.Combine(root, "sys/bus/pci/devices/0000:00:02.0"), "../../../devices/pci0000:00/0000:00:02.0");
        File.WriteAllText(Path.Combine(dev, "class"), "zzz");
        File.WriteAllText(Path.Combine(dev, "resource"), "0x1 nonsense\n\n0xffffffffffffffff 0x0 0x200\n");
        File.WriteAllBytes(Path.Combine(dev, "config"), [0xff, 0xff, 0xff, 0xff, 0, 0, 0x10, 0, .. new byte[0x38], 0xfc, 0xfc, 0xfc]);
        File.WriteAllText(Path.Combine(dev, "dma_mask_bits"), "-");
        var m = HostImport.FromRoot(root, "junk");
        Build(Load(m.Yaml));
        Assert.Equal("0000:00:02.0", m.Devices.Single().Address.ToString());
    }
}
