using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>The scatter-gather side of the front door (kernel/dma/mapping.c: <c>dma_map_sgtable</c>, <c>__dma_map_sg_attrs</c>, <c>dma_unmap_sg_attrs</c>, <c>dma_sync_sg_for_*</c>).</summary>
internal sealed partial class DmaApi
{
    private DirectSg? _directSg;

    internal DirectSg DirectSg => _directSg ??= new DirectSg(this);

    /// <summary>
    /// The one dispatch of mapping.c: dma-direct when <c>dma_go_direct</c>, dma-iommu when <c>use_dma_iommu</c>,
    /// else the device's ops.
    /// </summary>
    private IDmaBackend Backend(Device dev, DmaOps? ops) => GoDirect(dev, ops) ? Direct : dev.DmaIommu ? Iommu! : ops!;

    /// <summary>
    /// What every sync does before its backend: the backend chosen, the direction checked, and, when dma-debug
    /// is <paramref name="watched"/>, the non-RAM cache-op count it compares afterwards (PhysDma's cache_op_on_mmio).
    /// </summary>
    private IDmaBackend SyncBackend(Device dev, DmaDirection dir, bool watched, out long opsOnNonRamBefore)
    {
        var ops = GetOps(dev);
        CheckDirection(dir);
        opsOnNonRamBefore = watched ? ArchCacheHooks.OpsOnNonRamByThisThread : 0;
        return Backend(dev, ops);
    }

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
        var ents = Backend(dev, ops).MapSg(dev, sgl, nents, dir, attrs);
        if (ents > 0)
        {
            if (Trace.DmaEnabled)
            {
                Trace.MapSg(dev, sgl, nents, ents, dir, attrs);
            }
            // dma-debug hook: debug_dma_map_sg().
            SgMapped?.Invoke(dev, sgl, nents, ents, dir, attrs);
        }
        else if (ents != -(int)Errno.EINVAL && ents != -(int)Errno.ENOMEM && ents != -(int)Errno.EIO && ents != -(int)Errno.EREMOTEIO)
        {
            WarnDev("__dma_map_sg_attrs:errno", dev, $"__dma_map_sg_attrs: unexpected error {ents}");
            if (Trace.DmaEnabled)
            {
                Trace.MapSgErr(dev, sgl, nents, ents, dir, attrs);
            }
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
        if (Trace.DmaEnabled)
        {
            Trace.UnmapSg(dev, sgl, nents, dir, attrs);
        }
        // dma-debug hook: debug_dma_unmap_sg(), before the backend changes the list.
        SgUnmapping?.Invoke(dev, sgl, nents, dir);
        Backend(dev, ops).UnmapSg(dev, sgl, nents, dir, attrs);
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
        SyncBackend(dev, dir, SgSynced is not null, out var opsOnNonRamBefore).SyncSg(dev, sgl, nelems, dir, forCpu);
        if (Trace.DmaEnabled)
        {
            Trace.SyncSg(forCpu, dev, sgl, nelems, dir);
        }
        // dma-debug hook: debug_dma_sync_sg_for_{cpu,device}().
        SgSynced?.Invoke(dev, sgl, nelems, dir, forCpu, opsOnNonRamBefore);
    }
}
