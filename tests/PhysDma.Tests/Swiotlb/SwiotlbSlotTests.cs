using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Swiotlb.SwiotlbMachines;

namespace PhysDma.Tests.Swiotlb;

/// <summary>Slot choice (swiotlb_search_pool_area), release (swiotlb_release_slots), min_align_mask and alloc_align, segments, free lists and the max mapping size, with exact addresses.</summary>
public class SwiotlbSlotTests
{
    private static (Machine M, DmaApi Api, Device Dev, IoTlbPool Pool) X86Nic(
        ulong minAlignMask = 0, ulong segBoundary = 0xffffffff, SwiotlbConfig? swiotlb = null)
    {
        var (m, api) = Build(X86(swiotlb, 0, Dev("nic0", minAlignMask: minAlignMask, segBoundary: segBoundary)));
        var dev = m.Device("nic0");
        return (m, api, dev, api.Swiotlb.DefaultMem.DefPool!);
    }

    private static PhysAddr Orig(ulong offset) => new(FourGiB + 0x100000 + offset);

    [Fact]
    public void Default_pool_is_the_top_64MiB_of_RAM_below_4GiB_in_two_areas()
    {
        var (_, api, dev, pool) = X86Nic();
        Assert.Equal(new PhysAddr(X86PoolStart), pool.Start);
        Assert.Equal(new PhysAddr(3 * Sizes.GiB), pool.End);
        Assert.Equal(32768, pool.NSlabs);
        Assert.Equal(2, pool.NAreas);
        Assert.Equal(16384, pool.AreaNSlabs);
        Assert.Equal(128, pool.Slot(0).List);
        Assert.Equal(1, pool.Slot(127).List);
        Assert.Equal(128, pool.Slot(128).List);
        Assert.True(pool.Slot(5).OrigAddr.IsInvalid);
        Assert.True(api.Swiotlb.IsActive(dev));
        Assert.False(api.Swiotlb.IsForceBounce(dev));
        Assert.Same(api.Swiotlb.DefaultMem, api.Swiotlb.Mem(dev));
        Assert.Contains(api.Log.Lines, l => l.Message == "software IO TLB: mapped [mem 0x00000000bc000000-0x00000000bfffffff] (64MB)");
    }

    [Fact]
    public void Invariant11_min_align_mask_bits_of_orig_are_kept()
    {
        var (_, api, dev, pool) = X86Nic(minAlignMask: 0xfff);
        var orig = Orig(0x123);
        var tlb = api.Swiotlb.TblMapSingle(dev, orig, 16, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart + 0x123), tlb);
        Assert.Equal(0x123UL, tlb.Value & 0xfff);
        Assert.Equal(orig, pool.Slot(0).OrigAddr);
        Assert.Equal(16UL, pool.Slot(0).AllocSize);

        // Bit 11 of 0x923 is set: slot 0's neighbour (0x800) is the first whose bit 11 matches.
        var orig2 = Orig(0x10923);
        var tlb2 = api.Swiotlb.TblMapSingle(dev, orig2, 16, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart + 0x923), tlb2);
        Assert.Equal(orig2.Value & 0xfff, tlb2.Value & 0xfff);
    }

    [Fact]
    public void Min_align_offset_past_a_slot_takes_padding_slots_which_release_returns()
    {
        var (_, api, dev, pool) = X86Nic(minAlignMask: 0xfff);
        var orig = Orig(0x923);
        // As dma-iommu calls it for a 4 KiB granule: the allocation starts page aligned, data at +0x923.
        var tlb = api.Swiotlb.TblMapSingle(dev, orig, 100, 0xfff, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart + 0x923), tlb);
        Assert.True(pool.Slot(0).OrigAddr.IsInvalid);
        Assert.Equal(0, pool.Slot(0).List);
        Assert.Equal(orig, pool.Slot(1).OrigAddr);
        Assert.Equal(1, pool.Slot(1).PadSlots);
        Assert.Equal(0x1000UL - 0x123 - 0x800, pool.Slot(1).AllocSize);
        Assert.Equal(2L, api.Swiotlb.SlotsUsed);

        api.Swiotlb.TblUnmapSingle(dev, tlb, 100, DmaDirection.ToDevice, 0);
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Equal(128, pool.Slot(0).List);
        Assert.Equal(127, pool.Slot(1).List);
        Assert.Equal(0, pool.Slot(1).PadSlots);
    }

    [Fact]
    public void Invariant12_alloc_align_mask_and_legacy_page_alignment()
    {
        var (_, api, dev, _) = X86Nic();
        // One slot at 0: the area's next search starts at slot 1 (0x800).
        var small = api.Swiotlb.TblMapSingle(dev, Orig(0), 100, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart), small);

        // A page or more with no other constraint stays page aligned: slot 1 is skipped.
        var page = api.Swiotlb.TblMapSingle(dev, Orig(0x10000), 4096, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart + 0x1000), page);

        // An explicit 16 KiB alignment (a 16 KiB IOMMU granule).
        var aligned = api.Swiotlb.TblMapSingle(dev, Orig(0x20000), 100, 0x3fff, DmaDirection.ToDevice, 0);
        Assert.Equal(0UL, aligned.Value & (0x3fff | 2047));
        Assert.Equal(new PhysAddr(X86PoolStart + 0x4000), aligned);

        // Below a page, slot alignment is all there is.
        var tiny = api.Swiotlb.TblMapSingle(dev, Orig(0x30000), 2048, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart + 0x8000), tiny);
    }

    [Fact]
    public void Invariant13_an_allocation_never_crosses_a_128_slot_segment()
    {
        var (_, api, dev, pool) = X86Nic();
        var a = api.Swiotlb.TblMapSingle(dev, Orig(0), 100 * 2048, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart), a);
        Assert.Equal(28, pool.Slot(100).List);

        // 50 slots do not fit in the 28 left in segment 0: the next segment's first slot.
        var b = api.Swiotlb.TblMapSingle(dev, Orig(0x100000), 50 * 2048, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(pool.SlotAddr(128), b);
        Assert.Equal(28, pool.Slot(100).List);
        Assert.Equal(78, pool.Slot(178).List);
    }

    [Fact]
    public void Invariant13_an_allocation_never_crosses_the_device_segment_boundary()
    {
        var (_, api, dev, _) = X86Nic(segBoundary: 0xffff);
        var a = api.Swiotlb.TblMapSingle(dev, Orig(0), 20 * 2048, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart), a);
        // Slots 20..39 would straddle the 64 KiB boundary at slot 32.
        var b = api.Swiotlb.TblMapSingle(dev, Orig(0x100000), 20 * 2048, 0, DmaDirection.ToDevice, 0);
        Assert.Equal(new PhysAddr(X86PoolStart + 0x10000), b);
        Assert.Equal(b.Value & ~0xffffUL, (b.Value + (20 * 2048) - 1) & ~0xffffUL);
    }

    [Fact]
    public void Invariant14_free_list_renumbering_on_map_and_release()
    {
        var (_, api, dev, pool) = X86Nic();
        var s = api.Swiotlb;
        var a = s.TblMapSingle(dev, Orig(0), 100, 0, DmaDirection.ToDevice, 0);
        var b = s.TblMapSingle(dev, Orig(0x1000), 100, 0, DmaDirection.ToDevice, 0);
        var c = s.TblMapSingle(dev, Orig(0x2000), 100, 0, DmaDirection.ToDevice, 0);
        Assert.Equal([pool.SlotAddr(0), pool.SlotAddr(1), pool.SlotAddr(2)], new[] { a, b, c });
        Assert.Equal([0, 0, 0, 125], Enumerable.Range(0, 4).Select(i => pool.Slot(i).List));

        s.TblUnmapSingle(dev, b, 100, DmaDirection.ToDevice, 0);
        Assert.Equal([0, 1, 0, 125], Enumerable.Range(0, 4).Select(i => pool.Slot(i).List));
        s.TblUnmapSingle(dev, a, 100, DmaDirection.ToDevice, 0);
        Assert.Equal([2, 1, 0, 125], Enumerable.Range(0, 4).Select(i => pool.Slot(i).List));
        s.TblUnmapSingle(dev, c, 100, DmaDirection.ToDevice, 0);
        Assert.Equal([128, 127, 126, 125], Enumerable.Range(0, 4).Select(i => pool.Slot(i).List));
        Assert.Equal(0L, pool.Used);

        // An aligned allocation at slot 4 leaves slots 0..3 free before it: they now count up to it.
        var d = s.TblMapSingle(dev, Orig(0x3000), 100, 0x1fff, DmaDirection.ToDevice, 0);
        Assert.Equal(pool.SlotAddr(4), d);
        Assert.Equal([4, 3, 2, 1, 0, 0, 0, 0, 120], Enumerable.Range(0, 9).Select(i => pool.Slot(i).List));
        Assert.Equal(4L, pool.AreaUsed(0));
        Assert.Equal(4L, s.SlotsUsed);
        var used = new bool[pool.NSlabs];
        for (var i = 4; i < 8; i++)
        {
            used[i] = true;
        }
        Assert.Null(CheckFreeList(pool, used));
    }

    [Fact]
    public void Area_index_wraps_to_the_area_start()
    {
        var (_, api, dev, pool) = X86Nic(swiotlb: new SwiotlbConfig(Sizes.MiB, 2, false, false, null));
        Assert.Equal(256, pool.AreaNSlabs);
        var s = api.Swiotlb;
        var a = s.TblMapSingle(dev, Orig(0), 128 * 2048, 0, DmaDirection.ToDevice, 0);
        var b = s.TblMapSingle(dev, Orig(0x100000), 127 * 2048, 0, DmaDirection.ToDevice, 0);
        var c = s.TblMapSingle(dev, Orig(0x200000), 100, 0, DmaDirection.ToDevice, 0);
        Assert.Equal([pool.SlotAddr(0), pool.SlotAddr(128), pool.SlotAddr(255)], new[] { a, b, c });
        Assert.Equal(0, pool.AreaIndex(0));
        s.TblUnmapSingle(dev, a, 128 * 2048, DmaDirection.ToDevice, 0);
        Assert.Equal(pool.SlotAddr(0), s.TblMapSingle(dev, Orig(0x300000), 100, 0, DmaDirection.ToDevice, 0));
    }

    [Fact]
    public void Search_starts_in_the_calling_cpus_area_and_round_robins()
    {
        var (m, api, dev, pool) = X86Nic(swiotlb: new SwiotlbConfig(Sizes.MiB, 2, false, false, null));
        var s = api.Swiotlb;
        using (m.OnCpu(3))
        {
            // CPU 3 & (2 areas - 1) = area 1, which starts at slot 256.
            Assert.Equal(pool.SlotAddr(256), s.TblMapSingle(dev, Orig(0), 128 * 2048, 0, DmaDirection.ToDevice, 0));
            Assert.Equal(pool.SlotAddr(384), s.TblMapSingle(dev, Orig(0x100000), 128 * 2048, 0, DmaDirection.ToDevice, 0));
            // Area 1 is full: the next area (0) is tried.
            Assert.Equal(pool.SlotAddr(0), s.TblMapSingle(dev, Orig(0x200000), 100, 0, DmaDirection.ToDevice, 0));
        }
        Assert.Equal(256L, pool.AreaUsed(1));
        Assert.Equal(1L, pool.AreaUsed(0));
    }

    [Fact]
    public void Invariant16_257KiB_fails_as_too_large_and_256KiB_fits()
    {
        var (_, api, dev, _) = X86Nic();
        var s = api.Swiotlb;
        Assert.Equal(256 * Sizes.KiB, s.MaxMappingSize(dev));
        Assert.True(s.TblMapSingle(dev, Orig(0), 257 * Sizes.KiB, 0, DmaDirection.ToDevice, 0).IsInvalid);
        Assert.Contains(api.Log.Lines, l => l.Message == "nic0 nic0: swiotlb buffer is full (sz: 263168 bytes), total 32768 (slots), used 0 (slots)");
        Assert.Equal(0L, s.SlotsUsed);

        var (m2, api2) = Build(X86(null, 0, Dev("nic0")));
        var big = SwiotlbMachines.Buffer(m2, 257 * Sizes.KiB);
        Assert.Equal(DmaAddr.MappingError, api2.MapPhys(m2.Device("nic0"), big.Phys, 257 * Sizes.KiB, DmaDirection.ToDevice, 0));
        Assert.False(api2.MapPhys(m2.Device("nic0"), big.Phys, 256 * Sizes.KiB, DmaDirection.ToDevice, 0).IsError);
        Assert.Equal(128L, api2.Swiotlb.SlotsUsed);
    }

    [Fact]
    public void Invariant16_min_align_mask_lowers_the_max_mapping_size()
    {
        var (_, api, dev, _) = X86Nic(minAlignMask: 0xfff);
        Assert.Equal(258048UL, api.Swiotlb.MaxMappingSize(dev));
        Assert.Equal(258048UL, api.MaxMappingSize(dev));
        // An unaligned orig needs its 0x123 bytes of padding too: one byte more than fits in a segment.
        Assert.True(api.Swiotlb.TblMapSingle(dev, Orig(0x123), (128 * 2048) - 0x123 + 1, 0, DmaDirection.ToDevice, 0).IsInvalid);
        Assert.False(api.Swiotlb.TblMapSingle(dev, Orig(0x123), 258048, 0, DmaDirection.ToDevice, 0).IsInvalid);
    }

    [Fact]
    public void Max_mapping_size_is_what_always_fits_not_a_hard_limit()
    {
        // With min_align_mask set, the limit reserves room for the worst-case in-slot offset. An orig with
        // no such offset can still map more: "larger than swiotlb_max_mapping_size always fails" holds strictly only for mask 0.
        var (_, api, dev, pool) = X86Nic(minAlignMask: 0xfff);
        Assert.Equal(pool.Start, api.Swiotlb.TblMapSingle(dev, Orig(0), 260000, 0, DmaDirection.ToDevice, 0));
    }

    [Fact]
    public void Invariant16_a_full_pool_fails_without_eviction_and_recovers_after_unmap()
    {
        var (_, api, dev, pool) = X86Nic(swiotlb: new SwiotlbConfig(Sizes.MiB, 1, false, false, null));
        var s = api.Swiotlb;
        var maps = new List<PhysAddr>();
        for (var i = 0; i < 4; i++)
        {
            maps.Add(s.TblMapSingle(dev, Orig((ulong)i << 20), 128 * 2048, 0, DmaDirection.ToDevice, 0));
        }
        Assert.Equal(pool.SlotAddr(384), maps[3]);
        Assert.True(s.TblMapSingle(dev, Orig(0x800000), 100, 0, DmaDirection.ToDevice, 0).IsInvalid);
        Assert.Contains(api.Log.Lines, l => l.Message == "nic0 nic0: swiotlb buffer is full (sz: 100 bytes), total 512 (slots), used 512 (slots)");
        Assert.Equal(512L, s.SlotsUsed);

        var lines = api.Log.Count;
        Assert.True(s.TblMapSingle(dev, Orig(0x800000), 100, 0, DmaDirection.ToDevice, DmaAttrs.NoWarn).IsInvalid);
        Assert.Equal(lines, api.Log.Count);

        s.TblUnmapSingle(dev, maps[1], 128 * 2048, DmaDirection.ToDevice, 0);
        Assert.Equal(pool.SlotAddr(128), s.TblMapSingle(dev, Orig(0x800000), 100, 0, DmaDirection.ToDevice, 0));
    }

    [Fact]
    public void Configuration_rounds_sizes_and_areas_like_the_kernel()
    {
        // 48 MiB is not a power of two of slots: rounded up to 64 MiB.
        var (_, api) = Build(X86(new SwiotlbConfig(48 * Sizes.MiB, 2, false, false, null)));
        Assert.Equal(32768, api.Swiotlb.DefaultMem.DefPool!.NSlabs);
        Assert.Contains(api.Log.Lines, l => l.Message == "software IO TLB: SWIOTLB bounce buffer size roundup to 64MB");

        // 3 areas become 4; 256 KiB (128 slots) is less than 128 slots per area, so the pool grows to 512 slots.
        (_, api) = Build(X86(new SwiotlbConfig(256 * Sizes.KiB, 3, false, false, null)));
        Assert.Equal(4, api.Swiotlb.DefaultNAreas);
        Assert.Equal(512, api.Swiotlb.DefaultMem.DefPool!.NSlabs);
        Assert.Equal(4, api.Swiotlb.DefaultMem.DefPool!.NAreas);

        // Areas not given: one per CPU (4 on this machine).
        (_, api) = Build(X86(new SwiotlbConfig(64 * Sizes.MiB, 0, false, false, null)));
        Assert.Equal(4, api.Swiotlb.DefaultMem.DefPool!.NAreas);

        // A size that is no whole number of segments is aligned up first: 1 MiB + 2 KiB -> 640 slots -> 1024.
        (_, api) = Build(X86(new SwiotlbConfig(Sizes.MiB + 2048, 1, false, false, null)));
        Assert.Equal(1024, api.Swiotlb.DefaultMem.DefPool!.NSlabs);
    }

    [Fact]
    public void Pool_at_a_given_base_and_halving_when_ram_below_4GiB_is_short()
    {
        var (m, api) = Build(X86(new SwiotlbConfig(4 * Sizes.MiB, 2, false, false, 0x10000000)));
        Assert.Equal(new PhysAddr(0x10000000), api.Swiotlb.DefaultMem.DefPool!.Start);
        Assert.False(m.Allocator.IsFree(new PhysAddr(0x10000000), 4096));

        var small = X86(new SwiotlbConfig(64 * Sizes.MiB, 2, false, false, null)) with
        {
            Ram = [new AddrRange(0, 40 * Sizes.MiB), new AddrRange(FourGiB, 4 * Sizes.GiB)],
        };
        (_, api) = Build(small);
        var pool = api.Swiotlb.DefaultMem.DefPool!;
        Assert.Equal(16384, pool.NSlabs);
        Assert.Equal(new PhysAddr(8 * Sizes.MiB), pool.Start);
        Assert.Contains(api.Log.Lines, l => l.Message == "software IO TLB: SWIOTLB bounce buffer size adjusted 32768 -> 16384 slabs");
    }

    [Fact]
    public void No_pool_when_swiotlb_is_off_or_no_low_ram_exists()
    {
        var off = X86() with { Swiotlb = null };
        var (m, api) = Build(off);
        var dev = m.Device("nic0");
        Assert.False(api.Swiotlb.IsActive(dev));
        Assert.Equal(0L, api.Swiotlb.DefaultMem.NSlabs);
        Assert.True(api.Swiotlb.TblMapSingle(dev, Orig(0), 100, 0, DmaDirection.ToDevice, 0).IsInvalid);
        Assert.Contains(api.Log.Lines, l => l.Message.EndsWith("Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer", StringComparison.Ordinal));

        var high = X86() with { Ram = [new AddrRange(FourGiB, 4 * Sizes.GiB)] };
        (_, api) = Build(high);
        Assert.Null(api.Swiotlb.DefaultMem.DefPool);
        Assert.False(api.Swiotlb.IsActive(api.Machine.Device("nic0")));
    }

    [Fact]
    public void Concurrent_maps_on_four_cpus_leave_a_consistent_pool()
    {
        var (m, api, dev, pool) = X86Nic(swiotlb: new SwiotlbConfig(4 * Sizes.MiB, 4, false, false, null));
        Parallel.For(0, 4, cpu =>
        {
            using var bind = m.OnCpu(cpu);
            var live = new Queue<(PhysAddr Tlb, ulong Size)>();
            for (var i = 0; i < 400; i++)
            {
                var size = (ulong)(((i * 7919) + (cpu * 104729)) % 20000) + 1;
                var tlb = api.Swiotlb.TblMapSingle(dev, Orig(((ulong)cpu << 24) + ((ulong)i << 12)), size, 0, DmaDirection.Bidirectional, DmaAttrs.NoWarn);
                if (!tlb.IsInvalid)
                {
                    live.Enqueue((tlb, size));
                }
                if (live.Count > 8)
                {
                    var (t, s) = live.Dequeue();
                    api.Swiotlb.TblUnmapSingle(dev, t, s, DmaDirection.Bidirectional, 0);
                }
            }
            while (live.Count > 0)
            {
                var (t, s) = live.Dequeue();
                api.Swiotlb.TblUnmapSingle(dev, t, s, DmaDirection.Bidirectional, 0);
            }
        });
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Null(CheckFreeList(pool, new bool[pool.NSlabs]));
        Assert.True(api.Swiotlb.DefaultMem.UsedHiwater > 0);
    }
}
