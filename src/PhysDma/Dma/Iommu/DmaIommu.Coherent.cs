using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Dma;

// Coherent allocations behind the IOMMU (iommu_dma_alloc / iommu_dma_free, the blocking "remap" path):
// pages from anywhere in RAM, one IOVA range under the coherent mask, PTEs with the coherent prot, and a
// vmap of the pages, uncached for a non-coherent device.
internal sealed partial class DmaIommu
{
    private readonly Dictionary<ulong, PhysAddr[]> _remapped = [];
    private readonly Lock _remapLock = new();

    /// <summary>
    /// <c>__iommu_dma_alloc_pages</c>: the largest blocks the IOMMU can map with one PTE that still fit
    /// (order-0 only with ALLOC_SINGLE_PAGES), falling back to smaller ones. Returns one entry per page.
    /// </summary>
    private PhysAddr[]? AllocPagesForIommu(IommuDmaCookie cookie, int count, DmaAttrs attrs)
    {
        var pages = new PhysAddr[count];
        var shift = _m.PageShift;
        var orders = (attrs & DmaAttrs.AllocSinglePages) != 0
            ? [0]
            : cookie.Domain.Unit.PageShifts.Where(s => s >= shift).Select(s => s - shift).OrderDescending().ToArray();
        var done = 0;
        while (done < count)
        {
            PhysAddr? block = null;
            var order = 0;
            foreach (var o in orders)
            {
                if (1 << o > count - done)
                {
                    continue;
                }
                var bytes = _m.PageSize << o;
                block = _m.Allocator.Alloc(bytes, bytes);
                if (block is not null)
                {
                    order = o;
                    break;
                }
            }
            if (block is not { } b)
            {
                for (var i = 0; i < done; i++)
                {
                    _m.Allocator.Free(pages[i], _m.PageSize);
                }
                return null;
            }
            for (var i = 0; i < 1 << order; i++)
            {
                pages[done++] = b + ((ulong)i << shift);
            }
        }
        return pages;
    }

    /// <summary><c>iommu_dma_alloc</c> (blocking: <c>iommu_dma_alloc_remap</c>).</summary>
    internal KernelVirt? Alloc(Device dev, ulong size, out DmaAddr handle, DmaAttrs attrs)
    {
        handle = DmaAddr.MappingError;
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var coherent = dev.Coherent;
        var prot = InfoToProt(DmaDirection.Bidirectional, coherent, attrs);
        if (dev.MinAlignMask > iovad.Granule - 1)
        {
            WarnAlignment(dev);
            return null;
        }
        size = iovad.IovaAlign(Sizes.AlignUp(size, _m.PageSize));
        var count = (int)(size >> _m.PageShift);
        if (AllocPagesForIommu(cookie, count, attrs) is not { } pages)
        {
            return null;
        }
        var iova = AllocIova(dev, cookie, size, dev.CoherentDmaMask);
        if (iova == 0)
        {
            FreePages(pages);
            return null;
        }
        // __GFP_ZERO through the cacheable linear map, then (non-coherent) written back before the uncached use.
        foreach (var p in pages)
        {
            _m.Cpu.Memset(_m.Kmap.PhysToVirt(p), 0, _m.PageSize);
            if (!coherent)
            {
                _m.ArchCache.PrepCoherent(p, _m.PageSize);
            }
        }
        // iommu_map_sg: physically contiguous runs as one map each, one iotlb_sync_map at the end.
        var start = 0;
        for (var i = 1; i <= count; i++)
        {
            if (i < count && pages[i].Value == pages[i - 1].Value + _m.PageSize)
            {
                continue;
            }
            var off = (ulong)start << _m.PageShift;
            if (IommuMap(cookie.Domain, iova + off, pages[start], (ulong)(i - start) << _m.PageShift, prot) != Errno.None)
            {
                cookie.Domain.Unmap(iova, off);
                FreeIova(cookie, iova, size, queued: false);
                FreePages(pages);
                return null;
            }
            start = i;
        }
        cookie.Domain.SyncMap(iova, size);
        var vaddr = _m.Kmap.Vmap(pages, cached: coherent);
        lock (_remapLock)
        {
            _remapped[vaddr.Value] = pages;
        }
        if (_api.Recorder is { } rec)
        {
            rec.Path = DmaPath.Iommu;
            rec.IommuProt = prot;
        }
        handle = new DmaAddr(iova);
        return vaddr;
    }

    private void FreePages(PhysAddr[] pages)
    {
        foreach (var p in pages)
        {
            _m.Allocator.Free(p, _m.PageSize);
        }
    }

    /// <summary><c>iommu_dma_free</c>: unmap the IOVA (lazily where the domain is lazy), then drop the vmap and the pages.</summary>
    internal void Free(Device dev, ulong size, KernelVirt cpuAddr, DmaAddr handle)
    {
        var cookie = Cookie(dev);
        size = cookie.Iovad.IovaAlign(Sizes.AlignUp(size, _m.PageSize));
        UnmapIova(dev, cookie, handle, size);
        PhysAddr[]? pages;
        lock (_remapLock)
        {
            _remapped.Remove(cpuAddr.Value, out pages);
        }
        if (pages is null)
        {
            return;
        }
        _m.Kmap.Unmap(cpuAddr, size);
        FreePages(pages);
    }
}
