using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>The scatter-gather side of the front door (mapping.c, spec §1.5).</summary>
public sealed partial class DmaApi
{
    private DirectSg? _directSg;

    private DirectSg DirectSg => _directSg ??= new DirectSg(this);

    /// <summary>
    /// The iommu backend for scatter-gather (<c>iommu_dma_map_sg</c> and friends); set by the dma-iommu layer.
    /// </summary>
    internal ISgBackend? IommuSg { get; set; }

    /// <summary>The backend dma-iommu devices use: an override when set, else dma-iommu's own.</summary>
    private ISgBackend IommuSgBackend => IommuSg ?? Iommu ?? throw new InvalidOperationException("dma-iommu scatter-gather backend missing");

    /// <summary><c>__dma_map_sg_attrs</c>: the segment count, or a negative errno of the expected set (others become -EIO).</summary>
    private int MapSgInternal(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        var ops = GetOps(dev);
        CheckDirection(dir);
        if (!dev.HasDmaMask)
        {
            WarnDev("__dma_map_sg_attrs:dma_mask", dev, "__dma_map_sg_attrs: dev->dma_mask is NULL");
            return 0;
        }
        int ents;
        if (GoDirect(dev, ops))
        {
            ents = DirectSg.MapSg(dev, sgl, nents, dir, attrs);
        }
        else if (dev.DmaIommu)
        {
            ents = IommuSgBackend.MapSg(dev, sgl, nents, dir, attrs);
        }
        else
        {
            ents = ops!.MapSg(dev, sgl, nents, dir, attrs);
        }
        if (ents > 0)
        {
            Trace.MapSg(dev, sgl, nents, ents, dir, attrs);
            // dma-debug hook: debug_dma_map_sg().
            SgMapped?.Invoke(dev, sgl, nents, ents, dir, attrs);
        }
        else if (ents != -(int)Errno.EINVAL && ents != -(int)Errno.ENOMEM && ents != -(int)Errno.EIO && ents != -(int)Errno.EREMOTEIO)
        {
            WarnDev("__dma_map_sg_attrs:errno", dev, $"__dma_map_sg_attrs: unexpected error {ents}");
            Trace.MapSgErr(dev, sgl, nents, ents, dir, attrs);
            return -(int)Errno.EIO;
        }
        return ents;
    }

    /// <summary>Called after a successful scatter-gather map (dma-debug's hook point).</summary>
    internal Action<Device, IReadOnlyList<ScatterEntry>, int, int, DmaDirection, DmaAttrs>? SgMapped { get; set; }

    /// <summary>Called before a scatter-gather unmap (dma-debug's hook point).</summary>
    internal Action<Device, IReadOnlyList<ScatterEntry>, int, DmaDirection>? SgUnmapping { get; set; }

    /// <summary>
    /// Called after a scatter-gather sync (dma-debug's hook point): device, list, nents, dir, for-cpu, and the
    /// count of cache operations on non-RAM before the backend ran.
    /// </summary>
    internal Action<Device, IReadOnlyList<ScatterEntry>, int, DmaDirection, bool, long>? SgSynced { get; set; }

    /// <summary><c>dma_map_sg_attrs</c>: the segment count, 0 on any failure.</summary>
    public int MapSgAttrs(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        var ents = MapSgInternal(dev, sgl, nents, dir, attrs);
        return ents < 0 ? 0 : ents;
    }

    /// <summary><c>dma_map_sgtable</c>: 0 and <c>sgt.Nents</c> set, or the negative errno.</summary>
    public int MapSgtable(Device dev, SgTable sgt, DmaDirection dir, DmaAttrs attrs)
    {
        var nents = MapSgInternal(dev, sgt.Sgl, sgt.OrigNents, dir, attrs);
        if (nents < 0)
        {
            return nents;
        }
        sgt.Nents = nents;
        return 0;
    }

    /// <summary><c>dma_unmap_sg_attrs</c>: trace and debug first, then the backend.</summary>
    public void UnmapSgAttrs(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        var ops = GetOps(dev);
        CheckDirection(dir);
        Trace.UnmapSg(dev, sgl, nents, dir, attrs);
        // dma-debug hook: debug_dma_unmap_sg(), before the backend changes the list.
        SgUnmapping?.Invoke(dev, sgl, nents, dir);
        if (GoDirect(dev, ops))
        {
            DirectSg.UnmapSg(dev, sgl, nents, dir, attrs);
        }
        else if (dev.DmaIommu)
        {
            IommuSgBackend.UnmapSg(dev, sgl, nents, dir, attrs);
        }
        else
        {
            ops!.UnmapSg(dev, sgl, nents, dir, attrs);
        }
    }

    /// <summary><c>dma_unmap_sgtable</c>: unmaps with <c>orig_nents</c>.</summary>
    public void UnmapSgtable(Device dev, SgTable sgt, DmaDirection dir, DmaAttrs attrs) =>
        UnmapSgAttrs(dev, sgt.Sgl, sgt.OrigNents, dir, attrs);

    /// <summary><c>dma_sync_sg_for_cpu</c> (callers pass <c>orig_nents</c>).</summary>
    public void SyncSgForCpu(Device dev, IReadOnlyList<ScatterEntry> sgl, int nelems, DmaDirection dir) => SyncSg(dev, sgl, nelems, dir, forCpu: true);

    /// <summary><c>dma_sync_sg_for_device</c>.</summary>
    public void SyncSgForDevice(Device dev, IReadOnlyList<ScatterEntry> sgl, int nelems, DmaDirection dir) => SyncSg(dev, sgl, nelems, dir, forCpu: false);

    private void SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nelems, DmaDirection dir, bool forCpu)
    {
        if (!DevNeedSync(dev))
        {
            return;
        }
        var ops = GetOps(dev);
        CheckDirection(dir);
        // dma-debug (PhysDma's cache_op_on_mmio) compares the non-RAM cache-op count across the backend.
        var opsOnNonRamBefore = SgSynced is null ? 0 : ArchCacheHooks.OpsOnNonRamByThisThread;
        if (GoDirect(dev, ops))
        {
            if (forCpu)
            {
                DirectSg.SyncSgForCpu(dev, sgl, nelems, dir);
            }
            else
            {
                DirectSg.SyncSgForDevice(dev, sgl, nelems, dir);
            }
        }
        else if (dev.DmaIommu)
        {
            IommuSgBackend.SyncSg(dev, sgl, nelems, dir, forCpu);
        }
        else
        {
            ops!.SyncSg(dev, sgl, nelems, dir, forCpu);
        }
        Trace.SyncSg(forCpu, dev, sgl, nelems, dir);
        // dma-debug hook: debug_dma_sync_sg_for_{cpu,device}().
        SgSynced?.Invoke(dev, sgl, nelems, dir, forCpu, opsOnNonRamBefore);
    }
}

/// <summary>A backend's scatter-gather entry points (dma-iommu implements it).</summary>
internal interface ISgBackend
{
    int MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs);
    void UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs);
    void SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, bool forCpu);
}
