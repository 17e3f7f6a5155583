using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// The two-step IOVA API (<c>dma_iova_try_alloc</c>, <c>dma_iova_link</c>, <c>dma_iova_sync</c>, <c>dma_iova_unlink</c>, <c>dma_iova_destroy</c>): reserve one IOVA range, link buffers (RAM or, with
/// <see cref="DmaAttrs.Mmio"/>, device memory) into it at chosen offsets, sync once, and later unlink and
/// free or destroy. Only devices behind dma-iommu get an IOVA; for the others <see cref="IovaTryAlloc"/>
/// returns false and the driver falls back to <see cref="MapPhys"/>.
/// </summary>
internal sealed partial class DmaApi
{
    /// <summary>
    /// <c>dma_iova_try_alloc</c>: zeroes <paramref name="state"/>, then reserves an IOVA range for
    /// <paramref name="size"/> bytes whose first byte has <paramref name="phys"/>'s in-granule offset (pass 0
    /// for page-aligned buffers). False when the device does not use dma-iommu or no IOVA is free.
    /// </summary>
    public bool IovaTryAlloc(Device dev, DmaIovaState state, PhysAddr phys, ulong size)
    {
        state.Reset();
        if (!dev.DmaIommu)
        {
            return false;
        }
        return Iommu!.IovaTryAlloc(dev, state, phys, size);
    }

    /// <summary>
    /// The link/sync/unlink/free calls are only valid on a state <see cref="IovaTryAlloc"/> filled; in the kernel
    /// anything else dereferences a device without an IOVA domain.
    /// </summary>
    private DmaIommu IovaBackend(Device dev, DmaIovaState state, string call)
    {
        if (!dev.DmaIommu || Iommu is null || !state.UseIova)
        {
            ThrowNoIova(dev, call);
        }
        return Iommu!;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowNoIova(Device dev, string call) =>
        throw new ModelViolation($"{dev.Name}: {call} without an IOVA (dma_use_iova() is false: the driver must map with dma_map_phys)");

    /// <summary><c>dma_use_iova</c>.</summary>
    public static bool UseIova(DmaIovaState state) => state.UseIova;

    /// <summary><c>dma_iova_size</c>.</summary>
    public static ulong IovaSize(DmaIovaState state) => state.Size;

    /// <summary>
    /// <c>dma_iova_link</c>: maps [<paramref name="phys"/>, +<paramref name="size"/>) at IOVA offset
    /// <paramref name="offset"/> of the state's range, without an IOTLB sync (call <see cref="IovaSync"/>
    /// before the device uses it). Returns <see cref="Errno.None"/>, EIO (an unaligned buffer after the first
    /// link), EPERM (MMIO that would need a bounce), ENOMEM (no bounce slot) or EINVAL (page-table failure).
    /// </summary>
    public Errno IovaLink(Device dev, DmaIovaState state, PhysAddr phys, ulong offset, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        CheckDirection(dir);
        var err = IovaBackend(dev, state, "dma_iova_link").IovaLink(dev, state, phys, offset, size, dir, attrs);
        // dma-debug hook (PhysDma's own checks: the MMIO attribute must match the memory map, failed links
        // included, and one state must be all MMIO or all RAM).
        Debug?.IovaLink(dev, state, phys, offset, size, attrs, linked: err == Errno.None);
        return err;
    }

    /// <summary><c>dma_iova_sync</c>: makes [offset, offset+size) of the range visible to the device (<c>iommu_sync_map</c>).</summary>
    public Errno IovaSync(Device dev, DmaIovaState state, ulong offset, ulong size) =>
        IovaBackend(dev, state, "dma_iova_sync").IovaSync(dev, state, offset, size);

    /// <summary>
    /// <c>dma_iova_unlink</c>: unmaps a linked range (the exact range a link made), syncing the IOTLB at once
    /// and copying bounced bytes back; the IOVA stays reserved.
    /// </summary>
    public void IovaUnlink(Device dev, DmaIovaState state, ulong offset, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        CheckDirection(dir);
        var iommu = IovaBackend(dev, state, "dma_iova_unlink");
        Debug?.IovaUnlink(dev, state, offset, size, attrs);
        iommu.IovaUnlink(dev, state, offset, size, dir, attrs, freeIova: false);
    }

    /// <summary><c>dma_iova_free</c>: returns the whole IOVA range (everything must be unlinked), never through the flush queue.</summary>
    public void IovaFree(Device dev, DmaIovaState state) => IovaBackend(dev, state, "dma_iova_free").IovaFree(dev, state);

    /// <summary>
    /// <c>dma_iova_destroy</c>: unlinks [0, <paramref name="mappedLen"/>) and frees the IOVA, lazily through
    /// the flush queue when the domain has one; <paramref name="mappedLen"/> 0 is <see cref="IovaFree"/>.
    /// </summary>
    public void IovaDestroy(Device dev, DmaIovaState state, ulong mappedLen, DmaDirection dir, DmaAttrs attrs)
    {
        if (mappedLen == 0)
        {
            IovaFree(dev, state);
            return;
        }
        CheckDirection(dir);
        var iommu = IovaBackend(dev, state, "dma_iova_destroy");
        Debug?.IovaUnlink(dev, state, 0, mappedLen, attrs);
        iommu.IovaUnlink(dev, state, 0, mappedLen, dir, attrs, freeIova: true);
    }
}
