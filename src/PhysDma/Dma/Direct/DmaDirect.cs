using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// dma-direct (kernel/dma/direct.{c,h}, include/linux/dma-direct.h): devices that reach memory through a
/// fixed bus translation. RAM gets the bus offset and, when needed, cache maintenance or a bounce; MMIO
/// gets its physical address verbatim and nothing else.
/// </summary>
internal sealed class DmaDirect : IDmaBackend
{
    private readonly DmaApi _api;
    private readonly Machine _m;

    internal DmaDirect(DmaApi api)
    {
        _api = api;
        _m = api.Machine;
    }

    private Swiotlb Swiotlb => _api.Swiotlb;

    /// <summary><c>__phys_to_dma</c>: the range map applied, no encryption bit; ERROR outside every range.</summary>
    public DmaAddr PhysToDmaUnencrypted(Device dev, PhysAddr p)
    {
        var map = dev.DmaRanges;
        if (map is null)
        {
            return new DmaAddr(p.Value);
        }
        foreach (ref readonly var r in map.AsSpan())
        {
            if (p >= r.CpuStart && p.Value - r.CpuStart.Value < r.Size)
            {
                return r.DmaStart + (p.Value - r.CpuStart.Value);
            }
        }
        return DmaAddr.MappingError;
    }

    /// <summary><c>phys_to_dma</c>: with the memory-encryption bit (<c>dma_addr_encrypted</c>).</summary>
    public DmaAddr PhysToDma(Device dev, PhysAddr p)
    {
        var a = PhysToDmaUnencrypted(dev, p);
        return a.IsError ? a : new DmaAddr(a.Value | _m.Config.MemEncryptBit);
    }

    /// <summary><c>dma_to_phys</c>: strips the encryption bit, reverses the range map; <c>(phys_addr_t)-1</c> if unmapped.</summary>
    public PhysAddr DmaToPhys(Device dev, DmaAddr a)
    {
        var v = a.Value & ~_m.Config.MemEncryptBit;
        var map = dev.DmaRanges;
        if (map is null)
        {
            return new PhysAddr(v);
        }
        foreach (ref readonly var r in map.AsSpan())
        {
            if (v >= r.DmaStart.Value && v - r.DmaStart.Value < r.Size)
            {
                return r.CpuStart + (v - r.DmaStart.Value);
            }
        }
        return PhysAddr.Invalid;
    }

    /// <summary>
    /// <c>dma_capable</c>: does [a, a+size) fit under the device's mask and bus limit? The low-memory test for
    /// RAM applies only to 32-bit <c>dma_addr_t</c>, which this model does not have.
    /// </summary>
    public bool DmaCapable(Device dev, DmaAddr a, ulong size, bool isRam)
    {
        if (a.IsError)
        {
            return false;
        }
        var end = a.Value + size - 1;
        return end <= Sizes.MinNotZero(dev.DmaMask, dev.BusDmaLimit);
    }

    /// <summary><c>dma_kmalloc_needs_bounce</c>: a small, cacheline-unaligned buffer for a non-coherent device.</summary>
    public bool KmallocNeedsBounce(Device dev, ulong size, DmaDirection dir)
    {
        if (!_m.Config.BounceUnalignedKmalloc || dev.Coherent || dir == DmaDirection.ToDevice)
        {
            return false;
        }
        var minAlign = _m.DmaMinAlign;
        if (size >= 2 * minAlign)
        {
            return false;
        }
        var rounded = Slab.KmallocSizeRoundup(size, _api.KmallocMinAlign, _m.PageSize);
        return !Sizes.IsAligned(rounded, _api.CacheAlignment);
    }

    /// <summary><c>dma_direct_map_phys</c> (6.18): bounce when forced or not <c>dma_capable</c> (MMIO fails instead), else the bus address, with arch sync for a non-coherent device.</summary>
    public DmaAddr MapPhys(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        DmaAddr dmaAddr = default;
        if (Swiotlb.IsForceBounce(dev))
        {
            if (_api.Recorder?.Why is { } fb)
            {
                DmaWhy.ForceBounce(fb, _m, dev, (attrs & DmaAttrs.Mmio) != 0);
            }
            if ((attrs & DmaAttrs.Mmio) != 0)
            {
                return Overflow(dev, dmaAddr, size);
            }
            return Swiotlb.Map(dev, phys, size, dir, attrs);
        }

        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            dmaAddr = new DmaAddr(phys.Value);
            if (!DmaCapable(dev, dmaAddr, size, isRam: false))
            {
                return Overflow(dev, dmaAddr, size);
            }
        }
        else
        {
            dmaAddr = PhysToDma(dev, phys);
            if (_api.Recorder?.Why is { } why)
            {
                DmaWhy.Capable(why, dev, dmaAddr, size, KmallocNeedsBounce(dev, size, dir), Swiotlb.IsActive(dev));
            }
            if (!DmaCapable(dev, dmaAddr, size, isRam: true) || KmallocNeedsBounce(dev, size, dir))
            {
                if (Swiotlb.IsActive(dev))
                {
                    return Swiotlb.Map(dev, phys, size, dir, attrs);
                }
                return Overflow(dev, dmaAddr, size);
            }
        }

        if (!dev.Coherent && (attrs & (DmaAttrs.SkipCpuSync | DmaAttrs.Mmio)) == 0)
        {
            _m.ArchCache.SyncForDevice(phys, size, dir);
        }
        if (_api.Recorder is { } rec)
        {
            rec.Path = DmaPath.Direct;
        }
        return dmaAddr;
    }

    private DmaAddr Overflow(Device dev, DmaAddr dmaAddr, ulong size)
    {
        _api.Log.WarnOnce("dma_direct_map_phys:overflow", () =>
            $"{dev.PrintkPrefix}: DMA addr {Hex.Padded16(dmaAddr.Value)}+{size} overflow (mask {Hex.Llx(dev.DmaMask)}, bus limit {Hex.Llx(dev.BusDmaLimit)}).");
        return DmaAddr.MappingError;
    }

    /// <summary><c>dma_direct_unmap_phys</c>.</summary>
    public void UnmapPhys(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            // MMIO was never cached nor bounced: nothing to undo.
            return;
        }
        var phys = DmaToPhys(dev, addr);
        if ((attrs & DmaAttrs.SkipCpuSync) == 0)
        {
            SyncSingleForCpu(dev, addr, size, dir);
        }
        Swiotlb.TblUnmapSingle(dev, phys, size, dir, attrs | DmaAttrs.SkipCpuSync);
    }

    /// <summary><c>dma_direct_sync_single_for_device</c>: copy into the bounce buffer first, then clean.</summary>
    public void SyncSingleForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        var paddr = DmaToPhys(dev, addr);
        Swiotlb.SyncSingleForDevice(dev, paddr, size, dir);
        if (!dev.Coherent)
        {
            _m.ArchCache.SyncForDevice(paddr, size, dir);
        }
    }

    /// <summary><c>dma_direct_sync_single_for_cpu</c>: invalidate first, then copy out of the bounce buffer.</summary>
    public void SyncSingleForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        var paddr = DmaToPhys(dev, addr);
        if (!dev.Coherent)
        {
            _m.ArchCache.SyncForCpu(paddr, size, dir);
            _m.ArchCache.SyncForCpuAll();
        }
        Swiotlb.SyncSingleForCpu(dev, paddr, size, dir);
        // arch_dma_mark_clean() for FROM_DEVICE exists only on ia64: nothing here.
    }

    int IDmaBackend.MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs) =>
        _api.DirectSg.MapSg(dev, sgl, nents, dir, attrs);

    void IDmaBackend.UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs) =>
        _api.DirectSg.UnmapSg(dev, sgl, nents, dir, attrs);

    void IDmaBackend.SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, bool forCpu) =>
        _api.DirectSg.SyncSg(dev, sgl, nents, dir, forCpu);

    /// <summary><c>dma_direct_need_sync</c>.</summary>
    public bool NeedSync(Device dev, DmaAddr addr) =>
        !dev.Coherent || Swiotlb.IsSwiotlbBuffer(dev, DmaToPhys(dev, addr));

    /// <summary><c>dma_direct_get_required_mask</c>: a mask covering the highest RAM address.</summary>
    public ulong GetRequiredMask(Device dev)
    {
        var maxDma = PhysToDmaUnencrypted(dev, new PhysAddr(_m.Map.RamEnd.Value - 1)).Value;
        return ((1UL << (Sizes.Fls64(maxDma) - 1)) * 2) - 1;
    }

    /// <summary><c>dma_direct_all_ram_mapped</c>: every RAM range is capable for the device.</summary>
    public bool AllRamMapped(Device dev)
    {
        foreach (var r in _m.Map.Ram)
        {
            if (!DmaCapable(dev, PhysToDma(dev, r.Base), r.Size, isRam: true))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary><c>dma_direct_max_mapping_size</c>.</summary>
    public ulong MaxMappingSize(Device dev)
    {
        if (Swiotlb.IsActive(dev) && (_api.AddressingLimited(dev) || Swiotlb.IsForceBounce(dev)))
        {
            return Swiotlb.MaxMappingSize(dev);
        }
        return ulong.MaxValue;
    }

    /// <summary><c>dma_direct_supported</c>: 32-bit masks always; smaller ones must reach ZONE_DMA.</summary>
    public bool Supported(Device dev, ulong mask)
    {
        if (mask >= Sizes.DmaBitMask(32))
        {
            return true;
        }
        var (_, dmaHi) = _m.ZoneBounds(Zone.Dma);
        var minMask = Math.Min(_m.Map.RamEnd.Value - _m.PageSize, dmaHi - 1);
        return mask >= PhysToDmaUnencrypted(dev, new PhysAddr(minMask)).Value;
    }
}
