using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Dma;

// PhysDma's own checks: misuse the phys-based API allows and the kernel's dma-debug cannot see.
internal sealed partial class DmaDebug
{
    private readonly KernelSpinLock _ownLock = new();
    private DebugEntry? _ownHead;
    private DebugEntry? _shadowSpare;

    /// <summary>
    /// <c>mmio_without_attr</c> and <c>ram_with_mmio_attr</c>: the MMIO attribute must say what the memory map
    /// says. Device memory mapped as RAM gets cache maintenance, bouncing and kernel mappings it must not
    /// have; RAM mapped as MMIO loses the cache maintenance it needs.
    /// </summary>
    private void CheckMmioAttr(Device dev, PhysAddr phys, ulong size, DmaAttrs attrs)
    {
        var region = _m.Map.Find(phys);
        var mmio = (attrs & DmaAttrs.Mmio) != 0;
        if (!mmio && region is { Kind: MemKind.DeviceMemory or MemKind.Mmio })
        {
            OwnReport("mmio_without_attr", dev, CurrentSite,
                $"maps device memory as RAM: [phys={Hex.Padded16(phys.Value)}] [size={U(size)} bytes] lies in '{region.Name}' " +
                "but the mapping has no DMA_ATTR_MMIO, so the DMA layer may do cache maintenance, bounce it or take a kernel mapping of it");
        }
        else if (mmio && region is { IsRam: true })
        {
            OwnReport("ram_with_mmio_attr", dev, CurrentSite,
                $"maps RAM as MMIO: [phys={Hex.Padded16(phys.Value)}] [size={U(size)} bytes] lies in '{region.Name}' " +
                "but the mapping has DMA_ATTR_MMIO, so it gets no cache maintenance and no bounce buffer");
        }
    }

    /// <summary>
    /// <c>cache_op_on_mmio</c>: a sync did CPU cache maintenance on memory that is not RAM. Syncs carry no
    /// attributes, so the DMA layer cannot know a mapping was MMIO and cleans or invalidates device memory.
    /// A scatterlist sync (<paramref name="what"/> "sync_sg") is named by its first segment whose CPU side is
    /// not RAM: a host-bridge P2P segment is mapped as RAM by dma-direct, and every sync of the list gives it
    /// the CPU cache operations of RAM.
    /// </summary>
    private void CheckCacheOpOnMmio(Device dev, DmaAddr addr, ulong size, bool toCpu, long opsOnNonRamBefore, string what = "sync")
    {
        var after = ArchCacheHooks.OpsOnNonRamByThisThread;
        if (after == opsOnNonRamBefore || _globalDisable)
        {
            return;
        }
        var entry = FindContaining(dev, addr, size);
        var how = entry is null ? "an unknown mapping"
            : (entry.Attrs & DmaAttrs.Mmio) != 0 ? "a mapping made with DMA_ATTR_MMIO" : "a mapping made without DMA_ATTR_MMIO";
        OwnReport("cache_op_on_mmio", dev, entry?.MappedAt,
            $"{what} for {(toCpu ? "cpu" : "device")} of [device address={Hex.Padded16(addr.Value)}] [size={U(size)} bytes] did " +
            $"{after - opsOnNonRamBefore} CPU cache maintenance operation(s) on memory that is not RAM ({how}): syncs carry no attributes");
    }

    /// <summary>
    /// <c>cpu_read_while_device_owns</c> and <c>cpu_write_while_device_owns</c>: the scenario layer calls this for
    /// every CPU load or store of [<paramref name="phys"/>, +<paramref name="len"/>). Between the map (or a sync
    /// for the device) and the unmap (or a sync for the CPU) a streaming buffer belongs to the device. A read
    /// of a buffer the device may write (FROM_DEVICE, BIDIRECTIONAL) can see stale cache lines or data the
    /// device has not finished writing; a write to any device-owned buffer may never reach the device, or be
    /// lost when the sync for the CPU invalidates the line. One report per mapping the access overlaps.
    /// Returns how many reports were made.
    /// </summary>
    public int CheckCpuAccess(PhysAddr phys, ulong len, bool write)
    {
        if (len == 0 || _globalDisable || Volatile.Read(ref _ownHead) is null)
        {
            return 0;
        }
        List<DebugEntryInfo>? hits = null;
        using (_ownLock.Enter())
        {
            for (var e = _ownHead; e is not null; e = e.OwnNext)
            {
                if (e.DeviceOwns && (write || e.Direction != DmaDirection.ToDevice)
                    && phys.Value < e.OwnPhys.Value + e.OwnLen && e.OwnPhys.Value < phys.Value + len)
                {
                    (hits ??= []).Add(e.Info());
                }
            }
        }
        if (hits is null)
        {
            return 0;
        }
        foreach (var h in hits)
        {
            var dev = _m.Device(h.Device);
            OwnReport(write ? "cpu_write_while_device_owns" : "cpu_read_while_device_owns", dev, h.MappedAt,
                $"CPU {(write ? "writes" : "reads")} [phys={Hex.Padded16(phys.Value)}] [len={U(len)}] while the device owns it: " +
                $"[device address={Hex.Padded16(h.DevAddr.Value)}] [size={U(h.Size)} bytes] is mapped {h.Direction.KernelName()} as {TypeName(h.Type)} " +
                "and was not synced for the cpu or unmapped first");
        }
        return hits.Count;
    }

    /// <summary>
    /// <c>iova_mixed_mmio_ram</c>: the IOVA layer calls this when one <c>dma_iova_*</c> state gets both MMIO and
    /// RAM links. One IOVA range is mapped with one set of IOMMU prot bits and synced as a whole, so it must
    /// be all MMIO or all RAM.
    /// </summary>
    public void ReportIovaMixed(Device dev, DmaAddr iova, PhysAddr phys, ulong size, bool linkIsMmio)
    {
        OwnReport("iova_mixed_mmio_ram", dev, CurrentSite,
            $"links {(linkIsMmio ? "MMIO" : "RAM")} [phys={Hex.Padded16(phys.Value)}] [size={U(size)} bytes] into the IOVA range at " +
            $"[device address={Hex.Padded16(iova.Value)}] that already holds {(linkIsMmio ? "RAM" : "MMIO")}: one IOVA range must be all MMIO or all RAM");
    }

    /// <summary>
    /// <c>stale_iotlb_access</c>: a device access was translated by an IOTLB entry whose mapping is already
    /// gone (the lazy-mode window before the flush queue drains). The IOMMU model raises
    /// <see cref="IommuUnit.StaleAccess"/>; <see cref="WatchIommu"/> connects it here.
    /// </summary>
    public void ReportStaleIotlb(Device dev, DmaAddr addr, PhysAddr phys, DmaAccess access = DmaAccess.Read)
    {
        OwnReport("stale_iotlb_access", dev, CurrentSite,
            $"device {(access == DmaAccess.Write ? "wrote" : "read")} [device address={Hex.Padded16(addr.Value)}] through a stale IOTLB entry " +
            $"to [phys={Hex.Padded16(phys.Value)}]: the range was unmapped but the IOTLB was not yet flushed, so the device still reached the old memory");
    }

    /// <summary>Reports every stale-IOTLB access <paramref name="unit"/> sees from now on.</summary>
    public void WatchIommu(IommuUnit unit) => unit.StaleAccess += OnStaleAccess;

    private void OnStaleAccess(Device dev, StaleIotlbAccess a)
    {
        if (!_globalDisable)
        {
            ReportStaleIotlb(dev, a.Iova, a.Phys, a.Access);
        }
    }

    /// <summary>Starts ownership tracking for a streaming mapping: the device owns it from the map on.</summary>
    private void OwnershipTrack(DebugEntry entry)
    {
        // Coherent buffers are shared by design; MMIO has no CPU cache to go stale and no sync to hand it back.
        if (entry.Type == DebugEntryType.Coherent || (entry.Attrs & DmaAttrs.Mmio) != 0 || entry.OwnLen == 0)
        {
            return;
        }
        entry.DeviceOwns = true;
        using (_ownLock.Enter())
        {
            OwnLink(entry);
        }
    }

    /// <summary>
    /// Tracks a CPU segment of a scatterlist that has no entry of its own: dma-debug pairs CPU segment i with
    /// DMA segment i, so when the IOMMU merged segments, those past the mapped count would go unwatched. The
    /// segment rides on the list's <paramref name="first"/> entry: synced and unmapped with it, as
    /// <c>dma_sync_sg_*</c> and <c>dma_unmap_sg</c> handle the whole list. Shadows come from their own
    /// spare list, so a steady state allocates nothing.
    /// </summary>
    private void OwnershipTrackSegment(DebugEntry first, PhysAddr phys, ulong len)
    {
        if (!first.OwnTracked || len == 0)
        {
            return;
        }
        using (_ownLock.Enter())
        {
            var s = _shadowSpare ?? new DebugEntry();
            _shadowSpare = s.OwnExtra;
            s.Reset();
            s.Dev = first.Dev;
            s.Type = first.Type;
            s.DevAddr = first.DevAddr;
            s.Size = first.Size;
            s.Direction = first.Direction;
            s.SgCallEnts = first.SgCallEnts;
            s.SgMappedEnts = first.SgMappedEnts;
            s.Paddr = phys;
            s.Attrs = first.Attrs;
            s.MappedAt = first.MappedAt;
            s.OwnPhys = phys;
            s.OwnLen = len;
            s.DeviceOwns = first.DeviceOwns;
            s.OwnExtra = first.OwnExtra;
            first.OwnExtra = s;
            OwnLink(s);
        }
    }

    /// <summary>A sync hands the mapping, and the segments riding on it, to the device or the CPU.</summary>
    private static void OwnershipSet(DebugEntry entry, bool deviceOwns)
    {
        for (var e = entry; e is not null; e = e.OwnExtra)
        {
            e.DeviceOwns = deviceOwns;
        }
    }

    private void OwnershipUntrack(DebugEntry entry)
    {
        if (!entry.OwnTracked)
        {
            return;
        }
        using (_ownLock.Enter())
        {
            OwnUnlink(entry);
            while (entry.OwnExtra is { } s)
            {
                entry.OwnExtra = s.OwnExtra;
                OwnUnlink(s);
                s.Dev = null!;
                s.OwnExtra = _shadowSpare;
                _shadowSpare = s;
            }
        }
    }

    private void OwnLink(DebugEntry entry)
    {
        entry.OwnPrev = null;
        entry.OwnNext = _ownHead;
        if (_ownHead is { } h)
        {
            h.OwnPrev = entry;
        }
        _ownHead = entry;
        entry.OwnTracked = true;
    }

    private void OwnUnlink(DebugEntry entry)
    {
        if (entry.OwnPrev is { } p)
        {
            p.OwnNext = entry.OwnNext;
        }
        else
        {
            _ownHead = entry.OwnNext;
        }
        if (entry.OwnNext is { } n)
        {
            n.OwnPrev = entry.OwnPrev;
        }
        entry.OwnNext = entry.OwnPrev = null;
        entry.OwnTracked = false;
    }
}
