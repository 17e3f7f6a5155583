using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Swiotlb.SwiotlbMachines;

namespace PhysDma.Tests.Swiotlb;

/// <summary>Dynamic swiotlb (spec §3.5, last paragraph) and restricted pools (§3.8).</summary>
public class SwiotlbPoolTests
{
    private static PhysAddr Orig(ulong offset) => new(FourGiB + 0x100000 + offset);

    private static (Machine M, DmaApi Api, Device Dev) Dynamic(ulong size = Sizes.MiB, int areas = 2, params DeviceConfig[] devs)
    {
        var (m, api) = Build(X86(new SwiotlbConfig(size, areas, false, true, null), 0, devs.Length > 0 ? devs : [Dev("nic0")]));
        return (m, api, m.Devices.First());
    }

    [Fact]
    public void Dynamic_lookups_see_a_device_pool_only_after_it_bounced()
    {
        var (m, api, dev) = Dynamic();
        var pool = api.Swiotlb.DefaultMem.DefPool!;
        Assert.True(api.Swiotlb.DefaultMem.CanGrow);
        Assert.False(api.Swiotlb.IsSwiotlbBuffer(dev, pool.Start));
        var tlb = api.Swiotlb.TblMapSingle(dev, Orig(0), 64, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(pool.Start, tlb);
        Assert.True(dev.DmaUsesIoTlb);
        Assert.True(api.Swiotlb.IsSwiotlbBuffer(dev, pool.Start));
        Assert.Equal(0, m.Clock.PendingTimers);

        // A static build answers by address range alone.
        var (m2, api2) = Build(X86(new SwiotlbConfig(Sizes.MiB, 2, false, false, null)));
        var dev2 = m2.Device("nic0");
        Assert.True(api2.Swiotlb.IsSwiotlbBuffer(dev2, api2.Swiotlb.DefaultMem.DefPool!.Start));
    }

    [Fact]
    public void Dynamic_rejects_more_than_a_segment_up_front_without_growing()
    {
        var (m, api, dev) = Dynamic();
        Assert.True(api.Swiotlb.TblMapSingle(dev, Orig(0), 257 * Sizes.KiB, 0, DmaDirection.ToDevice, 0).IsInvalid);
        Assert.Equal(0, m.Clock.PendingTimers);
        Assert.Empty(api.Swiotlb.TransientPools(dev));
    }

    [Fact]
    public void Full_dynamic_pool_makes_a_transient_pool_now_and_grows_on_the_next_tick()
    {
        var (m, api, dev) = Dynamic();
        var s = api.Swiotlb;
        var mem = s.DefaultMem;
        var maps = new List<PhysAddr>();
        for (var i = 0; i < 4; i++)
        {
            maps.Add(s.TblMapSingle(dev, Orig((ulong)i << 20), 128 * 2048, 0, DmaDirection.ToDevice, 0));
        }
        Assert.All(maps, t => Assert.NotNull(s.FindPool(dev, t)));
        Assert.Equal(512L, mem.TotalUsed);

        var data = Seq(3000, 5);
        m.Cpu.Write(m.Kmap.PhysToVirt(Orig(0x500000)), data);
        var freeBefore = m.Allocator.FreeBytes;
        var t = s.TblMapSingle(dev, Orig(0x500000), 3000, 0, DmaDirection.ToDevice, 0);
        Assert.False(t.IsInvalid);

        var transient = Assert.Single(s.TransientPools(dev));
        Assert.True(transient.Transient);
        Assert.Equal(2, transient.NSlabs);
        Assert.Equal(1, transient.NAreas);
        Assert.Equal(transient.Start, t);
        Assert.True(t.Value + 3000 <= FourGiB);
        Assert.Same(transient, s.FindPool(dev, t));
        Assert.Equal(2L, mem.TransientNSlabs);
        Assert.Equal(514L, s.SlotsUsed);
        Assert.Equal(512L, mem.NSlabs);
        Assert.Equal(freeBefore - 4096, m.Allocator.FreeBytes);
        Assert.Equal(data, DevRead(m, dev, new DmaAddr(t.Value), 3000));
        Assert.Equal(1, m.Clock.PendingTimers);

        // Another miss before the worker ran does not queue it twice.
        var t2 = s.TblMapSingle(dev, Orig(0x600000), 100, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(2, s.TransientPools(dev).Count);
        Assert.Equal(1, m.Clock.PendingTimers);

        s.TblUnmapSingle(dev, t, 3000, DmaDirection.ToDevice, 0);
        s.TblUnmapSingle(dev, t2, 100, DmaDirection.ToDevice, 0);
        Assert.Empty(s.TransientPools(dev));
        Assert.Equal(0L, mem.TransientNSlabs);
        Assert.Equal(512L, s.SlotsUsed);
        Assert.Equal(freeBefore, m.Allocator.FreeBytes);
        Assert.True(m.Allocator.IsFree(transient.Start, 4096));

        // The background pool arrives on the next tick and is searched first.
        m.Clock.Advance(1_000_000);
        Assert.Equal(2, mem.Pools.Count);
        var grown = mem.Pools[0];
        Assert.NotSame(mem.DefPool, grown);
        Assert.Equal(512, grown.NSlabs);
        Assert.Equal(2, grown.NAreas);
        Assert.True(grown.LateAlloc);
        Assert.Equal(0UL, grown.Start.Value % Sizes.MiB);
        Assert.True(grown.End.Value <= FourGiB);
        Assert.Equal(1024L, mem.NSlabs);
        Assert.Equal(grown.Start, s.TblMapSingle(dev, Orig(0x700000), 100, 0, DmaDirection.ToDevice, 0));
    }

    [Fact]
    public void Dynamic_search_tries_one_area_offset_in_every_pool_before_the_next()
    {
        var (m, api, dev) = Dynamic();
        var s = api.Swiotlb;
        var mem = s.DefaultMem;
        // Fill the default pool's area 0, then grow.
        s.TblMapSingle(dev, Orig(0), 128 * 2048, 0, DmaDirection.ToDevice, 0);
        s.TblMapSingle(dev, Orig(0x100000), 128 * 2048, 0, DmaDirection.ToDevice, 0);
        s.TblMapSingle(dev, Orig(0x200000), 128 * 2048, 0, DmaDirection.ToDevice, 0);
        s.TblMapSingle(dev, Orig(0x300000), 128 * 2048, 0, DmaDirection.ToDevice, 0);
        var spill = s.TblMapSingle(dev, Orig(0x400000), 100, 0, DmaDirection.ToDevice, 0);
        m.Clock.Advance(0);
        var grown = mem.Pools[0];
        s.TblUnmapSingle(dev, spill, 100, DmaDirection.ToDevice, 0);
        // Free area 1 of the default pool: CPU 1 still lands in the new pool's area 1 first (offset 0).
        var def = mem.DefPool!;
        s.TblUnmapSingle(dev, def.SlotAddr(256), 128 * 2048, DmaDirection.ToDevice, 0);
        using (m.OnCpu(1))
        {
            Assert.Equal(grown.SlotAddr(256), s.TblMapSingle(dev, Orig(0x500000), 100, 0, DmaDirection.ToDevice, 0));
        }
    }

    [Fact]
    public void Transient_pool_stays_below_the_device_limit()
    {
        var (m, api, dev) = Dynamic(Sizes.MiB, 1, Dev("isa0", maskBits: 31));
        var s = api.Swiotlb;
        for (var i = 0; i < 4; i++)
        {
            s.TblMapSingle(dev, Orig((ulong)i << 20), 128 * 2048, 0, DmaDirection.ToDevice, 0);
        }
        var t = s.TblMapSingle(dev, Orig(0x500000), 128 * 2048, 0, DmaDirection.ToDevice, 0);
        var pool = Assert.Single(s.TransientPools(dev));
        Assert.Equal(pool.Start, t);
        Assert.Equal(0UL, pool.Start.Value % (256 * Sizes.KiB));
        Assert.True(pool.End.Value <= 2 * Sizes.GiB);
        s.TblUnmapSingle(dev, t, 128 * 2048, DmaDirection.ToDevice, 0);

        // With no RAM left below 2 GiB, the transient pool cannot be made, however much is free above.
        for (var size = Sizes.GiB; size >= 4096; size /= 2)
        {
            while (m.Allocator.Alloc(size, 4096, 0, 2 * Sizes.GiB) is not null)
            {
            }
        }
        Assert.True(s.TblMapSingle(dev, Orig(0x500000), 128 * 2048, 0, DmaDirection.ToDevice, DmaAttrs.NoWarn).IsInvalid);
        Assert.Empty(s.TransientPools(dev));
        Assert.Equal(512L, s.SlotsUsed);
    }

    [Fact]
    public void Restricted_pool_forces_bouncing_into_its_own_region_shared_by_its_devices()
    {
        var region = new AddrRange(0x20000000, 4 * Sizes.MiB);
        var cfg = X86(null, 0,
            Dev("wifi0", maskBits: 64, restricted: region),
            Dev("bt0", maskBits: 64, restricted: region),
            Dev("nic0", maskBits: 64));
        var (m, api) = Build(cfg);
        var wifi = m.Device("wifi0");
        var bt = m.Device("bt0");
        var mem = api.Swiotlb.Mem(wifi)!;
        Assert.Same(mem, api.Swiotlb.Mem(bt));
        Assert.NotSame(api.Swiotlb.DefaultMem, mem);
        Assert.True(mem.ForceBounce);
        Assert.True(mem.ForAlloc);
        Assert.False(mem.CanGrow);
        Assert.Equal(1, mem.DefPool!.NAreas);
        Assert.Equal(2048, mem.DefPool.NSlabs);
        Assert.False(api.Swiotlb.IsForceBounce(m.Device("nic0")));
        Assert.False(m.Allocator.IsFree(new PhysAddr(region.Base), 4096));
        Assert.Contains(api.Log.Lines, l => l.Message == "Reserved memory: created restricted DMA pool at 0x0000000020000000, size 4 MiB");

        var (p, va) = SwiotlbMachines.Buffer(m, 4096, lo: 0x1000000);
        m.Cpu.Write(va, Seq(128, 2));
        var a = api.MapPhys(wifi, p, 128, DmaDirection.ToDevice, 0);
        var b = api.MapPhys(bt, p, 128, DmaDirection.ToDevice, 0);
        Assert.Equal(region.Base, a.Value);
        Assert.Equal(region.Base + 2048, b.Value);
        Assert.Equal(Seq(128, 2), DevRead(m, wifi, a, 128));
        Assert.Equal(2L, mem.TotalUsed);
        Assert.Equal(2L, api.Swiotlb.SlotsUsed);
        api.UnmapPhys(wifi, a, 128, DmaDirection.ToDevice, 0);
        api.UnmapPhys(bt, b, 128, DmaDirection.ToDevice, 0);
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
    }

    [Fact]
    public void Restricted_pool_serves_coherent_allocations_aligned_to_their_order()
    {
        var region = new AddrRange(0x20000000, Sizes.MiB);
        var (m, api) = Build(X86(null, 0, Dev("wifi0", maskBits: 64, restricted: region)));
        var dev = m.Device("wifi0");
        var s = api.Swiotlb;
        Assert.True(s.IsForAlloc(dev));
        var one = s.Alloc(dev, 100);
        Assert.Equal(new PhysAddr(region.Base), one);
        // 3 pages round up to an order-2 block: 16 KiB aligned.
        var three = s.Alloc(dev, 3 * 4096);
        Assert.Equal(new PhysAddr(region.Base + 0x4000), three);
        var pool = s.Mem(dev)!.DefPool!;
        Assert.Equal(0, pool.Slot(0).List);
        Assert.Equal(6, pool.Slot(2).List);
        Assert.True(pool.Slot(0).OrigAddr.IsInvalid);
        Assert.Equal(1L + 6, s.SlotsUsed);

        Assert.True(s.Free(dev, three, 3 * 4096));
        Assert.True(s.Free(dev, one, 100));
        Assert.False(s.Free(dev, new PhysAddr(0x30000000), 4096));
        Assert.Equal(0L, s.SlotsUsed);
        Assert.Null(CheckFreeList(pool, new bool[pool.NSlabs]));
        // More than a segment never fits.
        Assert.True(s.Alloc(dev, 2 * Sizes.MiB).IsInvalid);
    }

    [Fact]
    public void Restricted_pool_must_be_free_ram()
    {
        var cfg = X86(null, 0, Dev("wifi0", restricted: new AddrRange(3 * Sizes.GiB + 0x100000, Sizes.MiB)));
        var e = Assert.Throws<MachineConfigException>(() => Build(cfg));
        Assert.Equal("Devices[0].RestrictedPool", e.Property.Path);
    }

    [Fact]
    public void Restricted_pool_in_highmem_is_refused_and_the_device_keeps_the_default()
    {
        var cfg = X86(null, 0, Dev("wifi0", restricted: new AddrRange(5 * Sizes.GiB, Sizes.MiB))) with { HighmemAbove = FourGiB };
        var (m, api) = Build(cfg);
        Assert.Same(api.Swiotlb.DefaultMem, api.Swiotlb.Mem(m.Device("wifi0")));
        Assert.Contains(api.Log.Lines, l => l.Message == "wifi0: Restricted DMA pool must be accessible within the linear mapping.");
    }
}
