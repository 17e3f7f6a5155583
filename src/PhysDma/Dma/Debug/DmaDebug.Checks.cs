using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

// The kernel's checks: the debug_dma_* entry points the DMA API calls.
internal sealed partial class DmaDebug
{
    /// <summary>
    /// <c>debug_dma_map_phys</c>: tracks a successful mapping as a <c>phy</c> entry whose map error is not yet
    /// checked. RAM buffers are checked for stack and kernel-image memory; MMIO skips those. PhysDma's own
    /// attribute checks run even for a failed mapping, since the mistake was made either way. Nothing runs
    /// once dma-debug is disabled.
    /// </summary>
    public void MapPhys(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAddr addr, DmaAttrs attrs)
    {
        if (_globalDisable)
        {
            return;
        }
        // The kernel asks dma_mapping_error() here, and that marks an earlier unchecked mapping of the same
        // address as checked: a second map of an address hides the first one's missing check.
        MappingError(dev, addr);
        if (!addr.IsError && EntryAlloc() is { } entry)
        {
            entry.Set(dev, DebugEntryType.Phy, phys, addr, size, dir, attrs);
            entry.MapErrType = MapErrType.NotChecked;
            entry.OwnPhys = phys;
            entry.OwnLen = size;
            if ((attrs & DmaAttrs.Mmio) == 0)
            {
                CheckForStack(dev, phys);
                if (!PhysHighMem(phys))
                {
                    CheckForIllegalArea(dev, phys, size);
                }
            }
            AddDmaEntry(entry, attrs);
        }
        CheckMmioAttr(dev, phys, size, attrs);
    }

    /// <summary><c>debug_dma_unmap_phys</c>.</summary>
    public void UnmapPhys(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (_globalDisable)
        {
            return;
        }
        CheckUnmap(new DebugRef(dev, addr, size, DebugEntryType.Phy, dir, 0, default));
    }

    /// <summary>
    /// <c>debug_dma_mapping_error</c>: the driver checked this address, so the first unchecked mapping of it
    /// in its bucket is marked checked (several mappings may share an address without an IOMMU).
    /// </summary>
    public void MappingError(Device dev, DmaAddr addr)
    {
        if (_globalDisable)
        {
            return;
        }
        var b = HashFn(addr);
        using (BucketLock(b).Enter())
        {
            for (var e = _head[b]; e is not null; e = e.Next)
            {
                if (e.Dev == dev && e.DevAddr == addr && e.MapErrType == MapErrType.NotChecked)
                {
                    e.MapErrType = MapErrType.Checked;
                    break;
                }
            }
        }
    }

    /// <summary>
    /// <c>debug_dma_map_single</c>: the pointer must be a valid linear-map address, and not vmalloc.
    /// (<c>dma_map_single_attrs</c> refuses vmalloc before calling this, so only direct callers see that report.)
    /// </summary>
    public void MapSingle(Device dev, KernelVirt ptr, ulong len)
    {
        if (_globalDisable)
        {
            return;
        }
        if (!_m.Kmap.VirtAddrValid(ptr))
        {
            ErrPrintk("map_invalid_area", dev, null,
                $"device driver maps memory from invalid area [addr={Ptr(ptr.Value)}] [len={U(len)}]");
        }
        if (_m.Kmap.IsVmallocAddr(ptr))
        {
            ErrPrintk("map_vmalloc", dev, null,
                $"device driver maps memory from vmalloc area [addr={Ptr(ptr.Value)}] [len={U(len)}]");
        }
    }

    /// <summary><c>debug_dma_sync_single_for_cpu</c>.</summary>
    public void SyncSingleForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir) =>
        SyncSingle(dev, addr, size, dir, toCpu: true);

    /// <summary><c>debug_dma_sync_single_for_device</c>.</summary>
    public void SyncSingleForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir) =>
        SyncSingle(dev, addr, size, dir, toCpu: false);

    /// <summary>
    /// The single-buffer sync hook as <see cref="DmaApi"/> calls it: the kernel's check, plus ours on cache
    /// maintenance the sync did on memory that is not RAM (<paramref name="opsOnNonRamBefore"/> is
    /// <see cref="ArchCacheHooks.OpsOnNonRamByThisThread"/> read before the backend ran: per call, whatever other CPUs do).
    /// </summary>
    internal void SyncSingle(Device dev, DmaAddr addr, ulong size, DmaDirection dir, bool toCpu, long opsOnNonRamBefore)
    {
        SyncSingle(dev, addr, size, dir, toCpu);
        CheckCacheOpOnMmio(dev, addr, size, toCpu, opsOnNonRamBefore);
    }

    private void SyncSingle(Device dev, DmaAddr addr, ulong size, DmaDirection dir, bool toCpu)
    {
        if (_globalDisable)
        {
            return;
        }
        CheckSync(dev, new DebugRef(dev, addr, size, DebugEntryType.Single, dir, 0, default), toCpu);
    }

    /// <summary>
    /// <c>debug_dma_alloc_coherent</c>: tracks a coherent buffer as a bidirectional entry keyed by the CPU
    /// buffer's physical address. Nothing is tracked for a failed allocation or a pointer that is neither
    /// vmalloc nor a valid linear-map address.
    /// </summary>
    public void AllocCoherent(Device dev, ulong size, DmaAddr dmaAddr, KernelVirt? virt, DmaAttrs attrs)
    {
        if (_globalDisable || virt is not { } va)
        {
            return;
        }
        if (!_m.Kmap.IsVmallocAddr(va) && !_m.Kmap.VirtAddrValid(va))
        {
            return;
        }
        if (EntryAlloc() is not { } entry)
        {
            return;
        }
        entry.Set(dev, DebugEntryType.Coherent, VirtToPaddr(va), dmaAddr, size, DmaDirection.Bidirectional, attrs);
        AddDmaEntry(entry, attrs);
    }

    /// <summary><c>debug_dma_free_coherent</c>: checked like an unmap, including the CPU address.</summary>
    public void FreeCoherent(Device dev, ulong size, KernelVirt virt, DmaAddr dmaAddr)
    {
        if (!_m.Kmap.IsVmallocAddr(virt) && !_m.Kmap.VirtAddrValid(virt))
        {
            return;
        }
        var paddr = VirtToPaddr(virt);
        if (_globalDisable)
        {
            return;
        }
        CheckUnmap(new DebugRef(dev, dmaAddr, size, DebugEntryType.Coherent, DmaDirection.Bidirectional, 0, paddr));
    }

    /// <summary><c>virt_to_paddr</c>: the page behind a linear or vmalloc address, plus the offset.</summary>
    private PhysAddr VirtToPaddr(KernelVirt va)
    {
        try
        {
            return _m.Kmap.VirtToPhys(va);
        }
        catch (ModelViolation)
        {
            // vmalloc_to_page() of an unmapped address is NULL; page_to_phys(NULL) is 0.
            return new PhysAddr(va.Value & (_m.PageSize - 1));
        }
    }

    /// <summary><c>add_dma_entry</c>: into the hash, then the cacheline tree (reporting an overlap unless exempt).</summary>
    private void AddDmaEntry(DebugEntry entry, DmaAttrs attrs)
    {
        HashAdd(entry);
        OwnershipTrack(entry);
        if (ActiveCachelineInsert(entry) && !CachelineOverlapExempt(entry, attrs))
        {
            ErrPrintk("cacheline_overlap", entry.Dev, entry, "cacheline tracking EEXIST, overlapping mappings aren't supported");
        }
    }

    /// <summary><c>get_nr_mapped_entries</c>: the mapped count stored with the sg list's first entry.</summary>
    private int NrMappedEntries(in DebugRef r)
    {
        var b = HashFn(r.DevAddr);
        using (BucketLock(b).Enter())
        {
            return BucketFindLocked(b, r, containing: false)?.SgMappedEnts ?? 0;
        }
    }

    /// <summary>
    /// <c>check_unmap</c>: finds the mapping by exact address and best fit, reports every way the unmap
    /// differs from the map (size, function, CPU address, sg count, direction, unchecked map error), then
    /// forgets the mapping.
    /// </summary>
    private void CheckUnmap(DebugRef r)
    {
        var b = HashFn(r.DevAddr);
        DebugEntry? entry;
        var l = BucketLock(b);
        l.Take();
        var held = true;
        try
        {
            entry = BucketFindLocked(b, r, containing: false);
            if (entry is null)
            {
                l.Release();
                held = false;
                // The kernel asks dma_mapping_error() here, which also marks a same-address mapping checked.
                MappingError(r.Dev, r.DevAddr);
                if (r.DevAddr.IsError)
                {
                    ErrPrintk("free_invalid_address", r.Dev, null, "device driver tries to free an invalid DMA memory address");
                }
                else
                {
                    ErrPrintk("free_not_allocated", r.Dev, null,
                        $"device driver tries to free DMA memory it has not allocated [device address={X16(r.DevAddr.Value)}] [size={U(r.Size)} bytes]");
                }
                return;
            }

            if (r.Size != entry.Size)
            {
                ErrPrintk("free_size_mismatch", r.Dev, entry,
                    $"device driver frees DMA memory with different size [device address={X16(r.DevAddr.Value)}] [map size={U(entry.Size)} bytes] [unmap size={U(r.Size)} bytes]");
            }
            if (r.Type != entry.Type)
            {
                ErrPrintk("free_type_mismatch", r.Dev, entry,
                    $"device driver frees DMA memory with wrong function [device address={X16(r.DevAddr.Value)}] [size={U(r.Size)} bytes] [mapped as {TypeName(entry.Type)}] [unmapped as {TypeName(r.Type)}]");
            }
            else if (entry.Type == DebugEntryType.Coherent && r.Paddr != entry.Paddr)
            {
                // The kernel's format puts "0x" before %pa, which prints its own "0x": both are kept.
                ErrPrintk("free_cpu_address_mismatch", r.Dev, entry,
                    $"device driver frees DMA memory with different CPU address [device address={X16(r.DevAddr.Value)}] [size={U(r.Size)} bytes] [cpu alloc address=0x{Pa(entry.Paddr.Value)}] [cpu free address=0x{Pa(r.Paddr.Value)}]");
            }
            if (r.SgCallEnts != 0 && r.Type == DebugEntryType.ScatterGather && r.SgCallEnts != entry.SgCallEnts)
            {
                ErrPrintk("free_sg_count_mismatch", r.Dev, entry,
                    $"device driver frees DMA sg list with different entry count [map count={D(entry.SgCallEnts)}] [unmap count={D(r.SgCallEnts)}]");
            }
            if (r.Direction != entry.Direction)
            {
                ErrPrintk("free_direction_mismatch", r.Dev, entry,
                    $"device driver frees DMA memory with different direction [device address={X16(r.DevAddr.Value)}] [size={U(r.Size)} bytes] [mapped with {entry.Direction.KernelName()}] [unmapped with {r.Direction.KernelName()}]");
            }
            if (entry.MapErrType == MapErrType.NotChecked)
            {
                ErrPrintk("map_error_not_checked", r.Dev, entry,
                    $"device driver failed to check map error[device address={X16(r.DevAddr.Value)}] [size={U(r.Size)} bytes] [mapped as {TypeName(entry.Type)}]");
            }
            HashDelLocked(b, entry);
        }
        finally
        {
            if (held)
            {
                l.Release();
            }
        }
        // Outside the bucket lock, as the kernel frees it, so bucket and cacheline locks never nest.
        EntryFree(entry);
    }

    /// <summary>
    /// <c>check_sync</c>: finds the mapping containing the synced range and checks the direction against
    /// the map's. PhysDma also moves the buffer's ownership to the CPU or the device here.
    /// </summary>
    private void CheckSync(Device dev, DebugRef r, bool toCpu)
    {
        var entry = FindContainLocking(r, out var b);
        if (entry is null)
        {
            ErrPrintk("sync_not_allocated", dev, null,
                $"device driver tries to sync DMA memory it has not allocated [device address={X16(r.DevAddr.Value)}] [size={U(r.Size)} bytes]");
            return;
        }
        try
        {
            OwnershipSet(entry, deviceOwns: !toCpu);
            // Unreachable unless the range arithmetic wraps: a containing match is never larger.
            if (r.Size > entry.Size)
            {
                ErrPrintk("sync_out_of_range", dev, entry,
                    $"device driver syncs DMA memory outside allocated range [device address={X16(entry.DevAddr.Value)}] [allocation size={U(entry.Size)} bytes] [sync offset+size={U(r.Size)}]");
            }
            if (entry.Direction == DmaDirection.Bidirectional)
            {
                return;
            }
            if (r.Direction != entry.Direction)
            {
                ErrPrintk("sync_direction_mismatch", dev, entry,
                    $"device driver syncs DMA memory with different direction [device address={X16(r.DevAddr.Value)}] [size={U(entry.Size)} bytes] [mapped with {entry.Direction.KernelName()}] [synced with {r.Direction.KernelName()}]");
            }
            if (toCpu && entry.Direction != DmaDirection.FromDevice && r.Direction != DmaDirection.ToDevice)
            {
                ErrPrintk("sync_readonly_for_cpu", dev, entry,
                    $"device driver syncs device read-only DMA memory for cpu [device address={X16(r.DevAddr.Value)}] [size={U(entry.Size)} bytes] [mapped with {entry.Direction.KernelName()}] [synced with {r.Direction.KernelName()}]");
            }
            if (!toCpu && entry.Direction != DmaDirection.ToDevice && r.Direction != DmaDirection.FromDevice)
            {
                ErrPrintk("sync_writeonly_for_device", dev, entry,
                    $"device driver syncs device write-only DMA memory to device [device address={X16(r.DevAddr.Value)}] [size={U(entry.Size)} bytes] [mapped with {entry.Direction.KernelName()}] [synced with {r.Direction.KernelName()}]");
            }
            if (r.SgCallEnts != 0 && r.Type == DebugEntryType.ScatterGather && r.SgCallEnts != entry.SgCallEnts)
            {
                ErrPrintk("sync_sg_count_mismatch", r.Dev, entry,
                    $"device driver syncs DMA sg list with different entry count [map count={D(entry.SgCallEnts)}] [sync count={D(r.SgCallEnts)}]");
            }
        }
        finally
        {
            BucketLock(b).Release();
        }
    }

    /// <summary>
    /// <c>check_for_stack</c> with vmapped stacks: a frame match against the task's stack pages; the address
    /// printed is where the task sees that byte.
    /// </summary>
    private void CheckForStack(Device dev, PhysAddr phys)
    {
        if (_m.Stacks.TryGetPage(phys, out var pageVa))
        {
            ErrPrintk("map_from_stack", dev, null,
                $"device driver maps memory from stack [probable addr={Ptr(pageVa.Value + phys.OffsetInPage(_m.PageSize))}]");
        }
    }

    /// <summary>
    /// <c>check_for_illegal_area</c>: does the buffer overlap the kernel image's text or rodata? The kernel
    /// compares the buffer's linear-map address with the image's addresses, which on x86_64 and arm64 live
    /// in a separate mapping, so there it can only match on architectures whose image sits in the linear
    /// map. The model compares physical ranges, which is what the check means to catch.
    /// </summary>
    private void CheckForIllegalArea(Device dev, PhysAddr phys, ulong len)
    {
        if (_m.Config.KernelText is not { } kt || len == 0)
        {
            return;
        }
        if (phys.Value < kt.Base + kt.Size && kt.Base < phys.Value + len)
        {
            ErrPrintk("map_from_kernel_text", dev, null,
                $"device driver maps memory from kernel text or rodata [addr={Ptr(_m.Kmap.LinearAddressOf(phys).Value)}] [len={U(len)}]");
        }
    }

    /// <summary><c>check_sg_segment</c>: a segment longer than the device's max or crossing its boundary.</summary>
    private void CheckSgSegment(Device dev, in DebugSg s)
    {
        var maxSeg = dev.MaxSegSize;
        var boundary = dev.SegBoundaryMask;
        if (s.Length > maxSeg)
        {
            ErrPrintk("sg_segment_too_long", dev, null,
                $"mapping sg segment longer than device claims to support [len={U((uint)s.Length)}] [max={U((uint)maxSeg)}]");
        }
        var start = s.DmaAddress.Value;
        var end = start + s.DmaLength - 1;
        if (((start ^ end) & ~boundary) != 0)
        {
            ErrPrintk("sg_segment_crosses_boundary", dev, null,
                $"mapping sg segment across boundary [start={X16(start)}] [end={X16(end)}] [boundary={X16(boundary)}]");
        }
    }

    /// <summary><c>PhysHighMem</c>: above the linear map's end.</summary>
    private bool PhysHighMem(PhysAddr p) => _m.Config.HighmemAbove is { } h && p.Value >= h;
}
