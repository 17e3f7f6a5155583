using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Platform;

public sealed class MemoryMapTests
{
    private static MemoryMap X86Map() => new Machine(X86Config()).Map;

    [Theory]
    [InlineData(0x0UL, "System RAM")]
    [InlineData(0xff_ffffUL, "System RAM")]
    [InlineData(0x100_0000UL, "Kernel code")]
    [InlineData(0x2ff_ffffUL, "Kernel code")]
    [InlineData(0x300_0000UL, "System RAM")]
    [InlineData(0xbfff_ffffUL, "System RAM")]
    [InlineData(0xd000_0000UL, "gpu0 BAR 0")]
    [InlineData(0xd00f_ffffUL, "gpu0 BAR 0")]
    [InlineData(0x1_0000_0000UL, "System RAM")]
    [InlineData(0x4_3fff_ffffUL, "System RAM")]
    [InlineData(0x10_0000_0000UL, "gpu0 BAR 2")]
    public void Find_names_the_region(ulong p, string name) => Assert.Equal(name, X86Map().Find(new PhysAddr(p))?.Name);

    [Theory]
    [InlineData(0xc000_0000UL)]
    [InlineData(0xd010_0000UL)]
    [InlineData(0xffff_ffffUL)]
    [InlineData(0x4_4000_0000UL)]
    [InlineData(ulong.MaxValue)]
    public void Find_holes_are_null(ulong p) => Assert.Null(X86Map().Find(new PhysAddr(p)));

    [Fact]
    public void Kernel_text_splits_ram_and_is_still_ram()
    {
        var map = X86Map();
        Assert.Equal(
            [(0x0UL, 0x100_0000UL, MemKind.Ram), (0x100_0000UL, 0x200_0000UL, MemKind.KernelText), (0x300_0000UL, 0xbd00_0000UL, MemKind.Ram)],
            map.Regions.Where(r => r.Base.Value < 3 * GiB).Select(r => (r.Base.Value, r.Size, r.Kind)));
        Assert.True(map.IsRam(new PhysAddr(0xff_f000), 0x2000)); // RAM into kernel text
        Assert.Equal(new PhysAddr(0x4_4000_0000), map.RamEnd);
        Assert.Equal(new PhysAddr(0), map.RamStart);
    }

    [Fact]
    public void Is_ram_false_across_a_hole_or_into_a_bar()
    {
        var map = X86Map();
        Assert.True(map.IsRam(new PhysAddr(0xbfff_f000), 0x1000));
        Assert.False(map.IsRam(new PhysAddr(0xbfff_f000), 0x1001));
        Assert.False(map.IsRam(new PhysAddr(0xd000_0000)));
        Assert.True(map.IsDeviceMemory(new PhysAddr(0xd000_0000)));
        Assert.False(map.IsDeviceMemory(new PhysAddr(0x1000)));
    }

    [Fact]
    public void Overlap_is_refused_with_both_names()
    {
        var map = new MemoryMap();
        map.Add(new MemRegion(new PhysAddr(0x1000_0000), 0x1000_0000, MemKind.Ram, "ram"));
        var e = Assert.Throws<ArgumentException>(() =>
            map.Add(new MemRegion(new PhysAddr(0x1fff_f000), 0x2000, MemKind.DeviceMemory, "bar")));
        Assert.Equal("'bar' 0x1ffff000+0x2000 overlaps 'ram' 0x10000000+0x10000000", e.Message);
        // Touching ranges are fine.
        map.Add(new MemRegion(new PhysAddr(0x2000_0000), 0x1000, MemKind.DeviceMemory, "bar"));
        map.Add(new MemRegion(new PhysAddr(0x0fff_f000), 0x1000, MemKind.Mmio, "regs"));
        Assert.Equal(3, map.Regions.Count);
    }

    [Fact]
    public void Bad_regions_are_refused()
    {
        var map = new MemoryMap();
        map.Add(new MemRegion(new PhysAddr(0), GiB, MemKind.Ram, "ram"));
        Assert.Throws<ArgumentException>(() => map.Add(new MemRegion(new PhysAddr(0x5000), 0, MemKind.Mmio, "empty")));
        Assert.Throws<ArgumentException>(() => map.Add(new MemRegion(new PhysAddr(ulong.MaxValue - 0xfff), 0x2000, MemKind.Mmio, "wrap")));
        var e = Assert.Throws<ArgumentException>(() => map.Add(new MemRegion(new PhysAddr(GiB - 0x1000), 0x2000, MemKind.KernelText, "text")));
        Assert.Contains("not inside RAM", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Machine_reports_the_offending_field()
    {
        var overlapping = X86Config(Nic64, Gpu(new PhysAddr(0x1000_0000)));
        Assert.Equal("Devices[1].Bars[0]", Assert.Throws<MachineConfigException>(() => new Machine(overlapping)).Property.Path);
        var unaligned = X86Config() with { Ram = [new AddrRange(0, 3 * GiB), new AddrRange(4 * GiB + 1, GiB)] };
        Assert.Equal("Ram[1]", Assert.Throws<MachineConfigException>(() => new Machine(unaligned)).Property.Path);
        var coherentOnly = X86Config(Nic64 with { Coherent = false });
        Assert.Equal("Devices[0].Coherent", Assert.Throws<MachineConfigException>(() => new Machine(coherentOnly)).Property.Path);
    }
}
