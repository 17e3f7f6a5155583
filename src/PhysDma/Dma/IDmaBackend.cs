using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// What mapping.c dispatches to once it has chosen a path (<c>dma_go_direct</c>, <c>use_dma_iommu</c>, else
/// the device's <c>dma_map_ops</c>): the scatter-gather and sync entry points dma-direct, dma-iommu and
/// ops backends all have. <paramref name="forCpu"/> picks the <c>_for_cpu</c> or <c>_for_device</c> half.
/// </summary>
internal interface IDmaBackend
{
    DmaAddr MapPhys(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs);

    int MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs);

    void UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs);

    void SyncSingleForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir);

    void SyncSingleForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir);

    void SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, bool forCpu);

    /// <summary>
    /// A <c>map_sg</c> that maps entry by entry through <see cref="MapPhys"/> with no merging (an ops table's
    /// <c>map_sg</c>, <c>iommu_dma_map_sg_swiotlb</c>): the first failure unwinds and is -EIO.
    /// </summary>
    int MapSgEntryByEntry(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        for (var i = 0; i < nents; i++)
        {
            var sg = sgl[i];
            sg.DmaAddress = MapPhys(dev, sg.Phys, sg.Length, dir, attrs);
            if (sg.DmaAddress.IsError)
            {
                return UnwindSg(dev, sgl, i, dir, attrs, Errno.EIO);
            }
            sg.DmaLength = sg.Length;
        }
        return nents;
    }

    /// <summary>The error exit of every <c>map_sg</c>: the entries already mapped are unmapped without CPU syncs.</summary>
    int UnwindSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int mapped, DmaDirection dir, DmaAttrs attrs, Errno error)
    {
        UnmapSg(dev, sgl, mapped, dir, attrs | DmaAttrs.SkipCpuSync);
        return -(int)error;
    }

    /// <summary>The one place a sync picks its <c>_for_cpu</c> or <c>_for_device</c> half.</summary>
    void SyncSingle(Device dev, DmaAddr addr, ulong size, DmaDirection dir, bool forCpu)
    {
        if (forCpu)
        {
            SyncSingleForCpu(dev, addr, size, dir);
        }
        else
        {
            SyncSingleForDevice(dev, addr, size, dir);
        }
    }
}
