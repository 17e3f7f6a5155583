using System.Runtime.CompilerServices;
using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

// Slot search, map, bounce, sync and release. Warnings live in their own non-inlined methods so the
// hot path never builds a message or a closure.
internal sealed partial class Swiotlb
{
    /// <summary><c>dma_get_min_align_mask</c> (an unsigned int in the kernel).</summary>
    private static uint MinAlignMask(Device dev) => (uint)dev.MinAlignMask;

    /// <summary><c>dma_get_seg_boundary</c>: no boundary set means none at all.</summary>
    private static ulong SegBoundary(Device dev) => dev.SegBoundaryMask == 0 ? ulong.MaxValue : dev.SegBoundaryMask;

    /// <summary>
    /// <c>swiotlb_align_offset</c>: the bytes of <paramref name="addr"/> below the device's min_align_mask
    /// that the bounce address must repeat, limited to the allocation's own alignment.
    /// </summary>
    private static ulong AlignOffset(Device dev, uint alignMask, ulong addr) =>
        addr & MinAlignMask(dev) & (alignMask | (uint)(IoTlb.Size - 1));

    /// <summary><c>iommu_is_span_boundary</c>: would <paramref name="nr"/> slots from here cross a boundary?</summary>
    private static bool IsSpanBoundary(ulong index, ulong nr, ulong shift, ulong boundarySize)
    {
        shift = (shift + index) & (boundarySize - 1);
        return shift + nr > boundarySize;
    }

    /// <summary><c>wrap_area_index</c>: past the area's end means back to its start (any overshoot is dropped).</summary>
    private static int WrapAreaIndex(IoTlbPool pool, int index) => index >= pool.AreaNSlabs ? 0 : index;

    /// <summary>
    /// <c>swiotlb_search_pool_area</c>: first fit in one area from where the last search stopped, under
    /// the area's lock. Returns the first slot's index in the pool, or -1.
    /// </summary>
    private int SearchPoolArea(Device dev, IoTlbMem mem, IoTlbPool pool, int areaIndex, ulong orig, ulong allocSize, uint allocAlignMask)
    {
        var area = pool.Areas[areaIndex];
        var boundary = SegBoundary(dev);
        var tblDmaAddr = _api.Direct.PhysToDmaUnencrypted(dev, pool.Start).Value & boundary;
        var maxSlots = (boundary >> IoTlb.Shift) + 1;
        var iotlbAlignMask = MinAlignMask(dev);
        var nslots = (int)IoTlb.NrSlots(allocSize);
        var offset = AlignOffset(dev, 0, orig);
        if (nslots == 0)
        {
            throw new KernelBug("kernel BUG at kernel/dma/swiotlb.c: swiotlb_search_pool_area with a zero-sized allocation");
        }

        // Streaming maps of a page or more stay page aligned unless someone asked for another alignment.
        if (allocAlignMask == 0 && iotlbAlignMask == 0 && allocSize >= _pageSize)
        {
            allocAlignMask = (uint)(_pageSize - 1);
        }
        allocAlignMask |= (uint)(IoTlb.Size - 1);
        iotlbAlignMask &= ~allocAlignMask;
        var stride = (int)((Math.Max(allocAlignMask, iotlbAlignMask) >> IoTlb.Shift) + 1);
        var tblSlotShift = IoTlb.NrSlots(tblDmaAddr);

        int slotIndex;
        using (area.Lock.Enter())
        {
            if (nslots > pool.AreaNSlabs - area.Used)
            {
                return -1;
            }
            var slotBase = areaIndex * pool.AreaNSlabs;
            var index = area.Index;
            var found = false;
            slotIndex = -1;
            for (var checkedSlots = 0; checkedSlots < pool.AreaNSlabs;)
            {
                slotIndex = slotBase + index;
                var tlbAddr = tblDmaAddr + ((ulong)slotIndex << IoTlb.Shift);
                if ((tlbAddr & allocAlignMask) != 0
                    || (orig != 0 && (tlbAddr & iotlbAlignMask) != (orig & iotlbAlignMask)))
                {
                    index = WrapAreaIndex(pool, index + 1);
                    checkedSlots++;
                    continue;
                }
                if (!IsSpanBoundary((ulong)slotIndex, (ulong)nslots, tblSlotShift, maxSlots)
                    && pool.Slots[slotIndex].List >= nslots)
                {
                    found = true;
                    break;
                }
                index = WrapAreaIndex(pool, index + stride);
                checkedSlots += stride;
            }
            if (!found)
            {
                return -1;
            }

            var slots = pool.Slots;
            for (var i = slotIndex; i < slotIndex + nslots; i++)
            {
                slots[i].List = 0;
                slots[i].AllocSize = allocSize - (offset + ((ulong)(i - slotIndex) << IoTlb.Shift));
            }
            // Free slots just before the run now end where it starts: renumber them 1, 2, ...
            var count = 0;
            for (var i = slotIndex - 1; IoTlb.SegOffset(i) != IoTlb.SegSize - 1 && slots[i].List != 0; i--)
            {
                slots[i].List = ++count;
            }
            area.Index = WrapAreaIndex(pool, index + nslots);
            area.Used += nslots;
        }
        mem.IncUsed(nslots);
        return slotIndex;
    }

    /// <summary>
    /// <c>swiotlb_find_slots</c>. Static: the pool's areas round-robin from the calling CPU's. Dynamic:
    /// each area offset is tried in every pool (newest first) before the next, then the allocator grows.
    /// </summary>
    private int FindSlots(Device dev, IoTlbMem mem, ulong orig, ulong allocSize, uint allocAlignMask, out IoTlbPool? pool)
    {
        if (_m.Inject.Fail(FaultPoint.SwiotlbSlotSearch))
        {
            // Injected: the search finds no free slots, as in a full pool.
            pool = null;
            return -1;
        }
        var cpu = Machine.CurrentCpu;
        if (!Dynamic)
        {
            pool = mem.DefPool;
            if (pool is null)
            {
                return -1;
            }
            var start = cpu & (pool.NAreas - 1);
            var i = start;
            do
            {
                var index = SearchPoolArea(dev, mem, pool, i, orig, allocSize, allocAlignMask);
                if (index >= 0)
                {
                    return index;
                }
                if (++i >= pool.NAreas)
                {
                    i = 0;
                }
            }
            while (i != start);
            return -1;
        }

        // A transient pool could be made bigger than a segment; nothing else could hold it either.
        if (allocSize > IoTlb.SegSize * IoTlb.Size)
        {
            pool = null;
            return -1;
        }
        var pools = mem.PoolArray;
        for (var offset = 0; offset < DefaultNAreas; offset++)
        {
            foreach (var p in pools)
            {
                if (offset >= p.NAreas)
                {
                    continue;
                }
                var index = SearchPoolArea(dev, mem, p, (cpu + offset) & (p.NAreas - 1), orig, allocSize, allocAlignMask);
                if (index >= 0)
                {
                    pool = p;
                    dev.DmaUsesIoTlb = true;
                    return index;
                }
            }
        }
        if (!mem.CanGrow)
        {
            pool = null;
            return -1;
        }
        ScheduleDynAlloc(mem);
        var tIndex = AllocTransient(dev, mem, orig, allocSize, allocAlignMask, out pool);
        if (tIndex >= 0)
        {
            dev.DmaUsesIoTlb = true;
        }
        return tIndex;
    }

    /// <summary>
    /// <c>swiotlb_tbl_map_single</c>: find slots for <paramref name="mappingSize"/> bytes of
    /// <paramref name="orig"/> (plus alignment padding) and copy the original in, whatever the direction,
    /// so bytes a device leaves unwritten come back unchanged. Returns the bounce address or
    /// <see cref="PhysAddr.Invalid"/>; never evicts and never waits.
    /// </summary>
    public PhysAddr TblMapSingle(Device dev, PhysAddr orig, ulong mappingSize, ulong allocAlignMask, DmaDirection dir, DmaAttrs attrs)
    {
        var mem = Mem(dev);
        if (mem is null || mem.NSlabs == 0)
        {
            WarnNoPool(dev);
            return PhysAddr.Invalid;
        }
        if (_memEncrypt && Volatile.Read(ref _memEncryptWarned) == 0)
        {
            WarnMemEncrypt();
        }
        var alignMask = (uint)allocAlignMask;
        if (alignMask > _pageSize - 1)
        {
            WarnAllocAlign(dev);
        }

        var offset = AlignOffset(dev, alignMask, orig.Value);
        var size = Sizes.AlignUp(mappingSize + offset, (ulong)alignMask + 1);
        var index = FindSlots(dev, mem, orig.Value, size, alignMask, out var pool);
        if (index < 0 || pool is null)
        {
            if ((attrs & DmaAttrs.NoWarn) == 0)
            {
                WarnFull(dev, mem, size);
            }
            return PhysAddr.Invalid;
        }

        _api.ResetNeedSync(dev);

        var padSlots = (int)(offset >> IoTlb.Shift);
        offset &= IoTlb.Size - 1;
        index += padSlots;
        var slots = pool.Slots;
        slots[index].PadSlots = padSlots;
        var dataSlots = (int)IoTlb.NrSlots(size) - padSlots;
        for (var i = 0; i < dataSlots; i++)
        {
            slots[index + i].OrigAddr = orig.Value + ((ulong)i << IoTlb.Shift);
        }
        var tlb = pool.SlotAddr(index) + offset;
        Bounce(dev, tlb, mappingSize, DmaDirection.ToDevice, pool);
        return tlb;
    }

    /// <summary>
    /// <c>swiotlb_map</c>: the dma-direct bounce path. The bounce address is re-checked against the
    /// device's limits and, for a non-coherent device, cleaned so the device reads what the CPU copied.
    /// </summary>
    public DmaAddr Map(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (_api.Trace.SwiotlbEnabled)
        {
            _api.Trace.SwiotlbBounced(dev, _api.Direct.PhysToDma(dev, phys).Value, size, IsForceBounce(dev));
        }
        var tlb = TblMapSingle(dev, phys, size, 0, dir, attrs);
        if (tlb.IsInvalid)
        {
            return DmaAddr.MappingError;
        }

        // Bounce buffers are shared with the device, so never encrypted.
        var dma = _api.Direct.PhysToDmaUnencrypted(dev, tlb);
        if (!_api.Direct.DmaCapable(dev, dma, size, isRam: true))
        {
            if (FindPool(dev, tlb) is { } pool)
            {
                UnmapFromPool(dev, tlb, size, dir, attrs | DmaAttrs.SkipCpuSync, pool);
            }
            WarnAddrOverflow(dev, dma, size);
            return DmaAddr.MappingError;
        }
        if (!dev.Coherent && (attrs & DmaAttrs.SkipCpuSync) == 0)
        {
            _m.ArchCache.SyncForDevice(tlb, size, dir);
        }
        if (_api.Recorder is { } rec)
        {
            rec.Path = DmaPath.Swiotlb;
            rec.Bounce = tlb;
            if (rec.Why is { } why)
            {
                DmaWhy.Slot(why, phys, tlb, size);
            }
        }
        return dma;
    }

    /// <summary><c>swiotlb_tbl_unmap_single</c> (the inline wrapper: nothing unless <paramref name="tlb"/> is a bounce buffer).</summary>
    public void TblUnmapSingle(Device dev, PhysAddr tlb, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (FindPool(dev, tlb) is { } pool)
        {
            UnmapFromPool(dev, tlb, size, dir, attrs, pool);
        }
    }

    /// <summary><c>__swiotlb_tbl_unmap_single</c>: copy back unless told not to, then free the slots (or the transient pool).</summary>
    private void UnmapFromPool(Device dev, PhysAddr tlb, ulong size, DmaDirection dir, DmaAttrs attrs, IoTlbPool pool)
    {
        if ((attrs & DmaAttrs.SkipCpuSync) == 0 && dir is DmaDirection.FromDevice or DmaDirection.Bidirectional)
        {
            Bounce(dev, tlb, size, DmaDirection.FromDevice, pool);
        }
        var mem = Mem(dev)!;
        if (pool.Transient)
        {
            DelTransient(dev, mem, pool);
            return;
        }
        ReleaseSlots(dev, mem, tlb, pool);
    }

    /// <summary><c>swiotlb_sync_single_for_device</c>: refresh the bounce buffer from the original.</summary>
    public void SyncSingleForDevice(Device dev, PhysAddr tlb, ulong size, DmaDirection dir) => SyncSingle(dev, tlb, size, dir, forCpu: false);

    /// <summary><c>swiotlb_sync_single_for_cpu</c>: copy what the device wrote back to the original.</summary>
    public void SyncSingleForCpu(Device dev, PhysAddr tlb, ulong size, DmaDirection dir) => SyncSingle(dev, tlb, size, dir, forCpu: true);

    /// <summary>
    /// Both syncs: bounce in the direction ownership moves when the mapping's direction carries data that
    /// way; the other valid direction does nothing; anything else is the kernel's BUG().
    /// </summary>
    private void SyncSingle(Device dev, PhysAddr tlb, ulong size, DmaDirection dir, bool forCpu)
    {
        if (FindPool(dev, tlb) is not { } pool)
        {
            return;
        }
        var toward = forCpu ? DmaDirection.FromDevice : DmaDirection.ToDevice;
        if (dir == toward || dir == DmaDirection.Bidirectional)
        {
            Bounce(dev, tlb, size, toward, pool);
        }
        else if (dir != (forCpu ? DmaDirection.ToDevice : DmaDirection.FromDevice))
        {
            throw new KernelBug($"kernel BUG at kernel/dma/swiotlb.c: swiotlb_sync_single_for_{(forCpu ? "cpu" : "device")} with direction {(int)dir}");
        }
    }

    /// <summary>
    /// <c>swiotlb_bounce</c>: a CPU memcpy between the original buffer and the bounce slot, through the
    /// cache. <paramref name="tlb"/> may point anywhere inside the mapping (partial syncs); the copy is
    /// clamped to the allocation, with a one-time warning, as the kernel does.
    /// </summary>
    private void Bounce(Device dev, PhysAddr tlb, ulong size, DmaDirection dir, IoTlbPool pool)
    {
        var index = (int)((tlb.Value - pool.Start.Value) >> IoTlb.Shift);
        var orig = pool.Slots[index].OrigAddr;
        var allocSize = pool.Slots[index].AllocSize;
        if (orig == PhysAddr.Invalid.Value)
        {
            return;
        }
        var pfn = orig >> _m.PageShift;

        // Negative when tlb points into a later slot's leading min_align bytes: wrap-around arithmetic is intended.
        var tlbOffset = (long)(tlb.Value & (IoTlb.Size - 1)) - (long)AlignOffset(dev, 0, orig);
        orig += (ulong)tlbOffset;
        allocSize -= (ulong)tlbOffset;
        if (size > allocSize)
        {
            WarnBufferOverflow(dev, allocSize, size);
            size = allocSize;
        }

        var vaddr = pool.VAddr + (tlb.Value - pool.Start.Value);
        if (_highmem && _m.MemMap.Read(new Page(new Pfn(pfn))).IsHighMem)
        {
            BounceHighmem(vaddr, orig, pfn, size, dir);
        }
        else if (dir == DmaDirection.ToDevice)
        {
            _m.Cpu.Memcpy(vaddr, _m.Kmap.PhysToVirt(new PhysAddr(orig)), size);
        }
        else
        {
            _m.Cpu.Memcpy(_m.Kmap.PhysToVirt(new PhysAddr(orig)), vaddr, size);
        }
    }

    /// <summary>
    /// Highmem originals have no linear address: one <c>kmap_local_pfn</c> per page. As in the kernel, the
    /// first frame is the slot's original frame, taken before the in-slot offset was applied.
    /// </summary>
    private void BounceHighmem(KernelVirt vaddr, ulong orig, ulong pfn, ulong size, DmaDirection dir)
    {
        var offset = orig & (_pageSize - 1);
        while (size > 0)
        {
            var sz = Math.Min(_pageSize - offset, size);
            var page = _m.Kmap.KmapLocalPfn(new Pfn(pfn));
            if (dir == DmaDirection.ToDevice)
            {
                _m.Cpu.Memcpy(vaddr, page + offset, sz);
            }
            else
            {
                _m.Cpu.Memcpy(page + offset, vaddr, sz);
            }
            _m.Kmap.KunmapLocal(page);
            size -= sz;
            pfn++;
            vaddr += sz;
            offset = 0;
        }
    }

    /// <summary>
    /// <c>swiotlb_release_slots</c>: give the allocation's slots back and re-count the free run through
    /// them, merging with free slots after and before it inside the segment.
    /// </summary>
    private void ReleaseSlots(Device dev, IoTlbMem mem, PhysAddr tlb, IoTlbPool pool)
    {
        var offset = AlignOffset(dev, 0, tlb.Value);
        var slots = pool.Slots;
        var index = (int)((tlb.Value - offset - pool.Start.Value) >> IoTlb.Shift);
        index -= slots[index].PadSlots;
        var nslots = (int)IoTlb.NrSlots(slots[index].AllocSize + offset);
        var aindex = index / pool.AreaNSlabs;
        if (aindex >= pool.NAreas)
        {
            throw new KernelBug($"kernel BUG at kernel/dma/swiotlb.c: swiotlb_release_slots area {aindex} of {pool.NAreas}");
        }
        var area = pool.Areas[aindex];
        using (area.Lock.Enter())
        {
            var next = index + nslots;
            // The kernel reads the slot after the run while still in the segment; a pool whose size is
            // not a whole number of segments ends earlier, and past its end nothing is free.
            var count = next < (int)Sizes.AlignUp((ulong)index + 1, IoTlb.SegSize) && next < pool.NSlabs ? slots[next].List : 0;
            for (var i = next - 1; i >= index; i--)
            {
                slots[i].List = ++count;
                slots[i].OrigAddr = PhysAddr.Invalid.Value;
                slots[i].AllocSize = 0;
                slots[i].PadSlots = 0;
            }
            for (var i = index - 1; IoTlb.SegOffset(i) != IoTlb.SegSize - 1 && slots[i].List != 0; i--)
            {
                slots[i].List = ++count;
            }
            area.Used -= nslots;
        }
        mem.DecUsed(nslots);
    }

    /// <summary>
    /// <c>swiotlb_alloc</c>: pages for a coherent allocation from a restricted pool, aligned to their own
    /// power-of-two size. Returns the first page's address, or <see cref="PhysAddr.Invalid"/>.
    /// </summary>
    public PhysAddr Alloc(Device dev, ulong size)
    {
        if (Mem(dev) is not { } mem)
        {
            return PhysAddr.Invalid;
        }
        var align = (uint)((1UL << (IoTlb.GetOrder(size, _m.PageShift) + _m.PageShift)) - 1);
        var index = FindSlots(dev, mem, 0, size, align, out var pool);
        if (index < 0 || pool is null)
        {
            return PhysAddr.Invalid;
        }
        var tlb = pool.SlotAddr(index);
        if (!Sizes.IsAligned(tlb.Value, _pageSize))
        {
            WarnUnalignedAlloc(dev, tlb);
            ReleaseSlots(dev, mem, tlb, pool);
            return PhysAddr.Invalid;
        }
        return tlb;
    }

    /// <summary><c>swiotlb_free</c>: false if <paramref name="p"/> is not in one of the device's pools.</summary>
    public bool Free(Device dev, PhysAddr p, ulong size)
    {
        if (FindPool(dev, p) is not { } pool)
        {
            return false;
        }
        ReleaseSlots(dev, Mem(dev)!, p, pool);
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnNoPool(Device dev) =>
        Log.Ratelimited("swiotlb_tbl_map_single:nopool", LogLevel.Warn,
            () => $"{dev.PrintkPrefix}: Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnMemEncrypt()
    {
        if (Interlocked.Exchange(ref _memEncryptWarned, 1) == 0)
        {
            Log.Print(LogLevel.Warn, "software IO TLB: Memory encryption is active and system is using DMA bounce buffers");
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnAllocAlign(Device dev) =>
        Log.WarnOnce("swiotlb_tbl_map_single:align", () => $"{dev.PrintkPrefix}: Alloc alignment may prevent fulfilling requests with max mapping_size");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnFull(Device dev, IoTlbMem mem, ulong size) =>
        Log.Ratelimited("swiotlb_tbl_map_single:full", LogLevel.Warn,
            () => $"{dev.PrintkPrefix}: swiotlb buffer is full (sz: {size} bytes), total {mem.NSlabs} (slots), used {mem.TotalUsed} (slots)");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnAddrOverflow(Device dev, DmaAddr dma, ulong size) =>
        Log.WarnOnce("swiotlb_map:overflow", () =>
            $"{dev.PrintkPrefix}: swiotlb addr {Hex.Padded16(dma.Value)}+{size} overflow (mask {Hex.Llx(dev.DmaMask)}, bus limit {Hex.Llx(dev.BusDmaLimit)}).");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnBufferOverflow(Device dev, ulong allocSize, ulong size) =>
        Log.WarnOnce("swiotlb_bounce:overflow", () =>
            $"{dev.PrintkPrefix}: Buffer overflow detected. Allocation size: {allocSize}. Mapping size: {size}.");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnUnalignedAlloc(Device dev, PhysAddr tlb) =>
        Log.WarnOnce("swiotlb_alloc:unaligned", () =>
            $"{dev.PrintkPrefix}: Cannot allocate pages from non page-aligned swiotlb addr 0x{Hex.Padded16(tlb.Value)}.");
}
