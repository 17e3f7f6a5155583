using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// A per-device <c>struct dma_map_ops</c> of the kind architectures without dma-direct or dma-iommu still
/// carry: a fixed bus-offset mapper with CPU cache maintenance for non-coherent devices. Which callbacks
/// exist is the point: 6.18 ops have <c>map_page</c> and maybe <c>map_resource</c>; 6.19 ops have <c>map_phys</c>.
/// </summary>
internal sealed class DmaOps : IDmaBackend
{
    private readonly DmaApi _api;
    private readonly Machine _m;

    internal DmaOps(DmaApi api, DeviceOpsKind kind)
    {
        _api = api;
        _m = api.Machine;
        Kind = kind;
    }

    public DeviceOpsKind Kind { get; }
    public bool HasMapPage => Kind is DeviceOpsKind.Legacy or DeviceOpsKind.LegacyNoResource;
    public bool HasMapResource => Kind == DeviceOpsKind.Legacy;
    public bool HasMapPhys => Kind is DeviceOpsKind.Phys or DeviceOpsKind.PhysNoMmio;

    /// <summary>Whether the ops can map MMIO at all (<c>map_resource</c>, or a <c>map_phys</c> that takes <c>DMA_ATTR_MMIO</c>).</summary>
    public bool CanMapMmio => Kind is DeviceOpsKind.Legacy or DeviceOpsKind.Phys;

    /// <summary>All kinds have the single sync callbacks.</summary>
    public bool HasSync => true;

    private void Recorded()
    {
        if (_api.Recorder is { } rec)
        {
            rec.Path = DmaPath.Ops;
        }
    }

    /// <summary><c>ops->map_page</c>: the page's physical address plus the bus offset.</summary>
    public DmaAddr MapPage(Device dev, Page page, ulong offset, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var phys = page.ToPhys(_m.PageShift) + offset;
        return MapRam(dev, phys, size, dir, attrs);
    }

    /// <summary><c>ops->map_resource</c>: MMIO gets its physical address, no cache work.</summary>
    public DmaAddr MapResource(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var a = new DmaAddr(phys.Value);
        if (!_api.Direct.DmaCapable(dev, a, size, isRam: false))
        {
            return DmaAddr.MappingError;
        }
        Recorded();
        return a;
    }

    /// <summary>
    /// <c>ops->map_phys</c> (6.19): one callback, MMIO decided by the attribute; ops converted from ones
    /// without <c>map_resource</c> refuse MMIO.
    /// </summary>
    public DmaAddr MapPhys(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs) =>
        (attrs & DmaAttrs.Mmio) == 0 ? MapRam(dev, phys, size, dir, attrs)
        : CanMapMmio ? MapResource(dev, phys, size, dir, attrs)
        : DmaAddr.MappingError;

    private DmaAddr MapRam(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var a = _api.Direct.PhysToDma(dev, phys);
        if (!_api.Direct.DmaCapable(dev, a, size, isRam: true))
        {
            return DmaAddr.MappingError;
        }
        if (!dev.Coherent && (attrs & DmaAttrs.SkipCpuSync) == 0)
        {
            _m.ArchCache.SyncForDevice(phys, size, dir);
        }
        Recorded();
        return a;
    }

    public void UnmapPage(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if ((attrs & DmaAttrs.SkipCpuSync) == 0)
        {
            SyncSingleForCpu(dev, addr, size, dir);
        }
    }

    public void UnmapResource(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
    }

    public void UnmapPhys(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if ((attrs & DmaAttrs.Mmio) == 0)
        {
            UnmapPage(dev, addr, size, dir, attrs);
        }
    }

    public void SyncSingleForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (!dev.Coherent)
        {
            _m.ArchCache.SyncForCpu(_api.Direct.DmaToPhys(dev, addr), size, dir);
        }
    }

    public void SyncSingleForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (!dev.Coherent)
        {
            _m.ArchCache.SyncForDevice(_api.Direct.DmaToPhys(dev, addr), size, dir);
        }
    }

    /// <summary><c>ops->map_sg</c>: every entry mapped on its own (no merging).</summary>
    public int MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs) =>
        ((IDmaBackend)this).MapSgEntryByEntry(dev, sgl, nents, dir, attrs);

    public void UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        for (var i = 0; i < nents; i++)
        {
            UnmapPhys(dev, sgl[i].DmaAddress, sgl[i].DmaLength, dir, attrs);
        }
    }

    public void SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, bool forCpu)
    {
        for (var i = 0; i < nents; i++)
        {
            ((IDmaBackend)this).SyncSingle(dev, sgl[i].DmaAddress, sgl[i].Length, dir, forCpu);
        }
    }
}
