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
    int MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs);

    void UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs);

    void SyncSingleForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir);

    void SyncSingleForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir);

    void SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, bool forCpu);

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
