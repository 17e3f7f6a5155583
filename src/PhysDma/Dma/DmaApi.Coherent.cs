using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>Coherent allocations (<c>dma_alloc_attrs</c> / <c>dma_free_attrs</c>, kernel/dma/mapping.c).</summary>
internal sealed partial class DmaApi
{
    private DirectCoherent? _directCoherent;

    internal DirectCoherent DirectCoherent => _directCoherent ??= new DirectCoherent(this);

    /// <summary><c>force_dma_unencrypted</c>: coherent buffers of this device are shared in the clear.</summary>
    public bool ForceDmaUnencrypted(Device dev) => DirectCoherent.ForceDmaUnencrypted(dev);

    /// <summary>Whether the page at <paramref name="p"/> was decrypted for a coherent buffer (<c>set_memory_decrypted</c>).</summary>
    public bool IsDecrypted(PhysAddr p) => DirectCoherent.IsDecrypted(p);

    /// <summary>
    /// <c>dma_alloc_attrs</c> (GFP_KERNEL): a zeroed buffer both the CPU (through the returned kernel virtual
    /// address) and the device (at <paramref name="dmaHandle"/>) use without syncs. Null, with
    /// <paramref name="dmaHandle"/> = <see cref="DmaAddr.MappingError"/>, when nothing suitable is free.
    /// </summary>
    public KernelVirt? AllocAttrs(Device dev, ulong size, out DmaAddr dmaHandle, DmaAttrs attrs)
    {
        if (dev.CoherentDmaMask == 0)
        {
            WarnDev("dma_alloc_attrs:mask", dev, "dma_alloc_attrs: WARN_ON_ONCE(!dev->coherent_dma_mask)");
        }
        KernelVirt? cpuAddr;
        var pageAligned = Sizes.AlignUp(size, Machine.PageSize);
        if (pageAligned < size || pageAligned > Machine.Allocator.FreeBytes || Machine.Inject.Fail(FaultPoint.CoherentAlloc))
        {
            // No allocator can give more than the free RAM (or a size that wraps when page-aligned): the
            // page allocator fails and dma_alloc_attrs returns NULL, at once rather than page by page.
            dmaHandle = DmaAddr.MappingError;
            return null;
        }
        if (GoDirect(dev, GetOps(dev)))
        {
            cpuAddr = DirectCoherent.Alloc(dev, size, out dmaHandle);
        }
        else if (dev.DmaIommu)
        {
            cpuAddr = Iommu!.Alloc(dev, size, out dmaHandle, attrs);
        }
        else
        {
            // Legacy ops without an alloc callback.
            dmaHandle = DmaAddr.MappingError;
            if (Trace.DmaEnabled)
            {
                Trace.Alloc(dev, null, new DmaAddr(0), size, "GFP_KERNEL", attrs);
            }
            return null;
        }
        if (Trace.DmaEnabled)
        {
            Trace.Alloc(dev, cpuAddr, dmaHandle, size, "GFP_KERNEL", attrs);
        }
        // dma-debug hook: debug_dma_alloc_coherent().
        Debug?.AllocCoherent(dev, size, dmaHandle, cpuAddr, attrs);
        return cpuAddr;
    }

    /// <summary><c>dma_free_attrs</c>.</summary>
    public void FreeAttrs(Device dev, ulong size, KernelVirt cpuAddr, DmaAddr dmaHandle, DmaAttrs attrs)
    {
        if (Trace.DmaEnabled)
        {
            Trace.Free(dev, cpuAddr, dmaHandle, size, attrs);
        }
        // dma-debug hook: debug_dma_free_coherent() (before the memory goes).
        Debug?.FreeCoherent(dev, size, cpuAddr, dmaHandle);
        if (GoDirect(dev, GetOps(dev)))
        {
            DirectCoherent.Free(dev, size, cpuAddr, dmaHandle);
        }
        else if (dev.DmaIommu)
        {
            Iommu!.Free(dev, size, cpuAddr, dmaHandle);
        }
    }

    /// <summary><c>dma_alloc_coherent</c>.</summary>
    public KernelVirt? AllocCoherent(Device dev, ulong size, out DmaAddr dmaHandle) => AllocAttrs(dev, size, out dmaHandle, DmaAttrs.None);

    /// <summary><c>dma_free_coherent</c>.</summary>
    public void FreeCoherent(Device dev, ulong size, KernelVirt cpuAddr, DmaAddr dmaHandle) => FreeAttrs(dev, size, cpuAddr, dmaHandle, DmaAttrs.None);
}
