using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// swiotlb (kernel/dma/swiotlb.c): bounce buffers for devices that cannot reach a buffer or must not
/// touch it directly. This is the seam dma-direct and dma-iommu call; the pools themselves are not built
/// yet, so every device behaves as on a kernel that has swiotlb compiled in but no pool allocated.
/// </summary>
public sealed class Swiotlb
{
    private readonly DmaApi _api;

    internal Swiotlb(DmaApi api)
    {
        _api = api;
    }

    private KernelLog Log => _api.Log;

    /// <summary><c>is_swiotlb_force_bounce</c>: the device's pool forces bouncing.</summary>
    public bool IsForceBounce(Device dev) => dev.Config.ForceBounce || _api.Machine.Config.Swiotlb is { Force: true };

    /// <summary><c>is_swiotlb_active</c>: the device has a pool with slots.</summary>
    public bool IsActive(Device dev) => false;

    /// <summary><c>is_swiotlb_buffer</c> / <c>swiotlb_find_pool != NULL</c>.</summary>
    public bool IsSwiotlbBuffer(Device dev, PhysAddr p) => false;

    /// <summary>Slots in use over every pool (results' <c>swiotlb_slots_used</c>).</summary>
    public long SlotsUsed => 0;

    /// <summary><c>swiotlb_max_mapping_size</c>.</summary>
    public ulong MaxMappingSize(Device dev) =>
        2048UL * 128 - (dev.MinAlignMask != 0 ? Sizes.AlignUp(dev.MinAlignMask, 2048) : 0);

    /// <summary><c>swiotlb_tbl_map_single</c>: returns the bounce address, or <see cref="PhysAddr.Invalid"/>.</summary>
    public PhysAddr TblMapSingle(Device dev, PhysAddr orig, ulong mappingSize, ulong allocAlignMask, DmaDirection dir, DmaAttrs attrs)
    {
        Log.Ratelimited("swiotlb_tbl_map_single:nopool", LogLevel.Warn,
            () => $"{dev.Name}: Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer");
        return PhysAddr.Invalid;
    }

    /// <summary><c>swiotlb_map</c>: the dma-direct bounce path.</summary>
    public DmaAddr Map(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        _api.Trace.SwiotlbBounced(dev, _api.Direct.PhysToDma(dev, phys).Value, size, IsForceBounce(dev));
        var tlb = TblMapSingle(dev, phys, size, 0, dir, attrs);
        return tlb.IsInvalid ? DmaAddr.MappingError : _api.Direct.PhysToDmaUnencrypted(dev, tlb);
    }

    /// <summary><c>swiotlb_tbl_unmap_single</c> (the inline wrapper: nothing unless <paramref name="tlb"/> is a bounce buffer).</summary>
    public void TblUnmapSingle(Device dev, PhysAddr tlb, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (!IsSwiotlbBuffer(dev, tlb))
        {
            return;
        }
    }

    /// <summary><c>swiotlb_sync_single_for_device</c>.</summary>
    public void SyncSingleForDevice(Device dev, PhysAddr tlb, ulong size, DmaDirection dir)
    {
        if (!IsSwiotlbBuffer(dev, tlb))
        {
            return;
        }
    }

    /// <summary><c>swiotlb_sync_single_for_cpu</c>.</summary>
    public void SyncSingleForCpu(Device dev, PhysAddr tlb, ulong size, DmaDirection dir)
    {
        if (!IsSwiotlbBuffer(dev, tlb))
        {
            return;
        }
    }
}
