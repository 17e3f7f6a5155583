using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Platform;

public sealed class KernelMappingsTests
{
    [Fact]
    public void Linear_map_x86_from_zero_arm64_from_dram_start()
    {
        var x86 = new Machine(X86Config());
        Assert.Equal(new KernelVirt(0xffff_8880_0000_1000), x86.Kmap.PhysToVirt(new PhysAddr(0x1000)));
        Assert.Equal(new KernelVirt(0xffff_8884_3fff_ffff), x86.Kmap.PhysToVirt(new PhysAddr(0x4_3fff_ffff)));
        var arm = new Machine(Arm64Config());
        Assert.Equal(new KernelVirt(0xffff_0000_1000_0040), arm.Kmap.PhysToVirt(new PhysAddr(0x9000_0040)));
        Assert.Equal(new PhysAddr(0x9000_0040), arm.Kmap.VirtToPhys(new KernelVirt(0xffff_0000_1000_0040)));
    }

    [Theory]
    [InlineData(0xd000_0000UL)] // BAR
    [InlineData(0xc000_0000UL)] // hole
    [InlineData(0x10_0000_0000UL)] // BAR above RAM
    public void Phys_to_virt_of_non_ram_is_a_model_violation_and_counted(ulong p)
    {
        var m = new Machine(X86Config());
        var before = m.Counters.Snapshot();
        var e = Assert.Throws<ModelViolation>(() => m.Kmap.PhysToVirt(new PhysAddr(p)));
        Assert.Equal($"phys_to_virt({Hex.Format(p)}): not RAM, there is no linear mapping of device memory", e.Message);
        Assert.Throws<ModelViolation>(() => m.Kmap.KmapLocalPfn(new PhysAddr(p).Pfn(m.PageShift)));
        Assert.Equal(new CounterSnapshot(0, 0, 0, 1, 1), m.Counters.Snapshot() - before);
    }

    [Fact]
    public void Highmem_has_no_linear_map_but_kmap_local_works()
    {
        var m = new Machine(X86Config() with { HighmemAbove = 8 * GiB });
        var high = new PhysAddr((8 * GiB) + 0x1234);
        Assert.Contains("highmem", Assert.Throws<ModelViolation>(() => m.Kmap.PhysToVirt(high)).Message, StringComparison.Ordinal);
        var va = m.Kmap.KmapLocalPfn(high.Pfn(m.PageShift));
        Assert.Equal(new KernelVirt(m.Kmap.KmapStart), va);
        m.Cpu.Write(va + 0x234, [1, 2, 3]);
        m.Cache.Flush(high, 3);
        var buf = new byte[3];
        m.Memory.Read(high, buf);
        Assert.Equal([1, 2, 3], buf);
        m.Kmap.KunmapLocal(va);
        Assert.Throws<ModelViolation>(() => m.Cpu.Read(va, buf));
        // Lowmem kmap is the linear address.
        Assert.Equal(m.Kmap.PhysToVirt(new PhysAddr(0x5000)), m.Kmap.KmapLocalPfn(new Pfn(5)));
    }

    [Fact]
    public void Ioremap_is_uncached_vmalloc_cpu_stores_reach_the_bar_at_once()
    {
        var m = new Machine(X86Config());
        var va = m.Kmap.Ioremap(X86Bar + 0x10, 8);
        Assert.True(m.Kmap.IsVmallocAddr(va));
        Assert.Equal(m.Kmap.VmallocStart + 0x10, va.Value);
        m.Cpu.Write(va, [0xde, 0xad]);
        Assert.Equal(0, m.Cache.LineCount);
        var buf = new byte[2];
        m.Memory.Read(X86Bar + 0x10, buf);
        Assert.Equal([0xde, 0xad], buf);
        Assert.Equal(X86Bar + 0x10, m.Kmap.VirtToPhys(va));
    }

    [Fact]
    public void Vmap_scattered_pages_consecutive_virtual_guard_page_between_areas()
    {
        var m = new Machine(X86Config());
        var va = m.Kmap.Vmap([new PhysAddr(0x7000), new PhysAddr(0x3000)], cached: true);
        Assert.Equal(new PhysAddr(0x7ff0), m.Kmap.VirtToPhys(va + 0xff0));
        Assert.Equal(new PhysAddr(0x3010), m.Kmap.VirtToPhys(va + 0x1010));
        var next = m.Kmap.Vmap([new PhysAddr(0x9000)], cached: true);
        Assert.Equal(va.Value + 0x3000, next.Value);
        Assert.Throws<ModelViolation>(() => m.Kmap.VirtToPhys(va + 0x2000));
        // The CPU writes across the page boundary land in the two scattered frames.
        m.Cpu.Write(va + 0xffe, [1, 2, 3, 4]);
        var lo = new byte[2];
        var hi = new byte[2];
        m.Cpu.Read(m.Kmap.PhysToVirt(new PhysAddr(0x7ffe)), lo);
        m.Cpu.Read(m.Kmap.PhysToVirt(new PhysAddr(0x3000)), hi);
        Assert.Equal([1, 2], lo);
        Assert.Equal([3, 4], hi);
        m.Kmap.Unmap(va, 0x2000);
        Assert.Throws<ModelViolation>(() => m.Kmap.VirtToPhys(va));
    }

    [Fact]
    public void Mem_map_counts_every_lookup()
    {
        var m = new Machine(X86Config());
        var before = m.Counters.Snapshot();
        Assert.True(m.MemMap.PfnValid(new Pfn(1)));
        Assert.False(m.MemMap.PfnValid(X86Bar.Pfn(12)));
        var page = m.MemMap.PhysToPage(new PhysAddr(0x1234));
        Assert.Equal(new Pfn(1), page.Pfn);
        Assert.Equal(Zone.Dma, m.MemMap.Read(page).Zone);
        Assert.Equal(Zone.Dma32, m.MemMap.Read(new Page(new Pfn(0x3000))).Zone);
        Assert.Equal(Zone.Normal, m.MemMap.Read(new Page(new Pfn(0x14_0000))).Zone);
        Assert.Throws<ModelViolation>(() => m.MemMap.Read(new Page(X86Bar.Pfn(12))));
        Assert.Equal(new CounterSnapshot(4, 1, 2, 0, 0), m.Counters.Snapshot() - before);

        m.MemMap.AddDevicePages(X86Bar, MiB, "p2p");
        var d = m.MemMap.Read(new Page(X86Bar.Pfn(12)));
        Assert.True(d.IsZoneDevice);
        Assert.True(d.IsP2PDma);
        Assert.True(m.MemMap.PfnValid(X86Bar.Pfn(12)));
    }
}
