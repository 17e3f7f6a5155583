using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

// PhysDma's own checks: misuse the phys-based API allows and the kernel's dma-debug cannot see.
public sealed partial class DmaDebug
{
    private readonly Lock _ownLock = new();
    private DebugEntry? _ownHead;

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
    /// </summary>
    private void CheckCacheOpOnMmio(Device dev, DmaAddr addr, ulong size, bool toCpu, long opsOnNonRamBefore)
    {
        var after = _m.ArchCache.OpsOnNonRam;
        if (after == opsOnNonRamBefore)
        {
            return;
        }
        var entry = FindContaining(dev, addr, size);
        var how = entry is null ? "an unknown mapping"
            : (entry.Attrs & DmaAttrs.Mmio) != 0 ? "a mapping made with DMA_ATTR_MMIO" : "a mapping made without DMA_ATTR_MMIO";
        OwnReport("cache_op_on_mmio", dev, entry?.MappedAt,
            $"sync for {(toCpu ? "cpu" : "device")} of [device address={Hex.Padded16(addr.Value)}] [size={U(size)} bytes] did " +
            $"{after - opsOnNonRamBefore} CPU cache maintenance operation(s) on memory that is not RAM ({how}): syncs carry no attributes");
    }

    /// <summary>
    /// <c>cpu_read_while_device_owns</c>: the scenario layer calls this for every CPU read of
    /// [<paramref name="phys"/>, +<paramref name="len"/>). A read overlapping a live DMA_FROM_DEVICE mapping
    /// that the device still owns (mapped or synced for the device, not yet synced for the CPU) may see
    /// stale cache contents or data the device has not finished writing. One report per such mapping.
    /// </summary>
    public void CpuRead(PhysAddr phys, ulong len)
    {
        if (len == 0 || Volatile.Read(ref _ownHead) is null)
        {
            return;
        }
        List<DebugEntryInfo>? hits = null;
        lock (_ownLock)
        {
            for (var e = _ownHead; e is not null; e = e.OwnNext)
            {
                if (e.DeviceOwns && phys.Value < e.OwnPhys.Value + e.OwnLen && e.OwnPhys.Value < phys.Value + len)
                {
                    (hits ??= []).Add(e.Info());
                }
            }
        }
        if (hits is null)
        {
            return;
        }
        foreach (var h in hits)
        {
            var dev = _m.Device(h.Device);
            OwnReport("cpu_read_while_device_owns", dev, h.MappedAt,
                $"CPU reads [phys={Hex.Padded16(phys.Value)}] [len={U(len)}] while the device owns it: " +
                $"[device address={Hex.Padded16(h.DevAddr.Value)}] [size={U(h.Size)} bytes] is mapped {h.Direction.KernelName()} " +
                "and was not synced for the cpu or unmapped first");
        }
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
    /// <c>stale_iotlb_access</c>: the IOMMU model calls this when a device access was translated by an IOTLB
    /// entry whose mapping is already gone (the lazy-mode window before the flush queue drains).
    /// </summary>
    public void ReportStaleIotlb(Device dev, DmaAddr addr, DmaAccess access = DmaAccess.Read)
    {
        OwnReport("stale_iotlb_access", dev, CurrentSite,
            $"device {(access == DmaAccess.Write ? "wrote" : "read")} [device address={Hex.Padded16(addr.Value)}] through a stale IOTLB entry: " +
            "the range was unmapped but the IOTLB was not yet flushed, so the device still reached the old memory");
    }

    /// <summary>Starts ownership tracking for a mapping the device may write; the device owns it from the map on.</summary>
    private void OwnershipTrack(DebugEntry entry)
    {
        if (entry.Direction != DmaDirection.FromDevice || entry.Type == DebugEntryType.Coherent || entry.OwnLen == 0)
        {
            return;
        }
        entry.DeviceOwns = true;
        lock (_ownLock)
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
    }

    private void OwnershipUntrack(DebugEntry entry)
    {
        if (!entry.OwnTracked)
        {
            return;
        }
        lock (_ownLock)
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
}
