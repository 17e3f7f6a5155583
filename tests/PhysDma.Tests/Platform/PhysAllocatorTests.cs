using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Platform;

public sealed class PhysAllocatorTests
{
    private static PhysAllocator New(params (ulong Base, ulong Size)[] ram) =>
        new(ram.Select(r => new MemRegion(new PhysAddr(r.Base), r.Size, MemKind.Ram, "ram")));

    [Fact]
    public void Lowest_fit_respects_alignment_and_bounds()
    {
        var a = New((0x1000, 0x3000), (0x10_0000, 0x10_0000));
        Assert.Equal(new PhysAddr(0x1000), a.Alloc(0x1000, 0x1000));
        // 0x2000 alignment skips to 0x2000, fits in [0x2000, 0x4000).
        Assert.Equal(new PhysAddr(0x2000), a.Alloc(0x2000, 0x2000));
        // Nothing left in the first range: the next comes from the second.
        Assert.Equal(new PhysAddr(0x10_0000), a.Alloc(0x100, 0x100));
        Assert.Equal(new PhysAddr(0x18_0000), a.Alloc(0x1000, 0x1000, lo: 0x18_0000));
        Assert.Null(a.Alloc(0x1000, 0x1000, lo: 0x1f_f800, hi: 0x20_0000));
        Assert.Null(a.Alloc(0x20_0000, 0x1000));
    }

    [Fact]
    public void Top_down_takes_the_highest_fit()
    {
        var a = New((0, 0x10_0000), (0x100_0000, 0x10_0000));
        Assert.Equal(new PhysAddr(0x10f_f000), a.AllocTopDown(0x1000, 0x1000, ulong.MaxValue));
        Assert.Equal(new PhysAddr(0xf_0000), a.AllocTopDown(0x1_0000, 0x1_0000, 0x100_0000));
        Assert.Null(a.AllocTopDown(0x20_0000, 0x1000, ulong.MaxValue));
    }

    [Fact]
    public void Free_merges_both_neighbours()
    {
        var a = New((0, 0x4000));
        var p1 = a.Alloc(0x1000, 0x1000)!.Value;
        var p2 = a.Alloc(0x1000, 0x1000)!.Value;
        var p3 = a.Alloc(0x1000, 0x1000)!.Value;
        Assert.Equal(0x1000UL, a.FreeBytes);
        a.Free(p1, 0x1000);
        a.Free(p3, 0x1000);
        Assert.Null(a.Alloc(0x3000, 0x1000)); // free: [0, 0x1000) and [0x2000, 0x4000), none 12 KiB
        a.Free(p2, 0x1000); // joins [0,0x1000) + [0x1000,0x2000) + [0x2000,0x4000)
        Assert.Equal(0x4000UL, a.FreeBytes);
        Assert.Equal(new PhysAddr(0), a.Alloc(0x4000, 0x1000));
    }

    [Fact]
    public void Reserve_takes_exactly_or_refuses()
    {
        var a = New((0, 0x10000));
        Assert.True(a.Reserve(new PhysAddr(0x3000), 0x2000));
        Assert.False(a.IsFree(new PhysAddr(0x3000), 0x1000));
        Assert.True(a.IsFree(new PhysAddr(0x5000), 0xb000));
        Assert.False(a.Reserve(new PhysAddr(0x4000), 0x2000));
        Assert.False(a.Reserve(new PhysAddr(0xf000), 0x2000));
        Assert.Equal(new PhysAddr(0), a.Alloc(0x3000, 0x1000));
        Assert.Equal(new PhysAddr(0x5000), a.Alloc(0x1000, 0x1000));
    }

    [Fact]
    public void X86_machine_page_zero_and_kernel_text_are_not_free()
    {
        var m = new Machine(X86Config());
        Assert.Equal(new PhysAddr(0x1000), m.Allocator.Alloc(0x1000, 0x1000));
        // 16 MiB aligned, 16 MiB: [16 MiB, 48 MiB) is kernel text, so the first fit is at 48 MiB.
        Assert.Equal(new PhysAddr(48 * MiB), m.Allocator.Alloc(16 * MiB, 16 * MiB));
        Assert.Equal((16 * GiB) - (32 * MiB) - 0x2000 - (16 * MiB), m.Allocator.FreeBytes);
    }
}
