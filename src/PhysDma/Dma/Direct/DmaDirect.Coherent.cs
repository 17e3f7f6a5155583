using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// Coherent allocations for dma-direct (<c>dma_direct_alloc</c>/<c>dma_direct_free</c>, kernel/dma/direct.c):
/// pages the device can reach under its coherent mask, taken from the zone that mask needs (retrying lower
/// zones when a page comes back out of reach), or from the device's restricted swiotlb pool. A non-coherent
/// device gets an uncached remap (the arm64 way: <c>DMA_DIRECT_REMAP</c>), so CPU and device see the same
/// bytes without syncs; a device that must see unencrypted memory gets decrypted pages and an address
/// without the encryption bit.
/// </summary>
internal sealed class DirectCoherent(DmaApi api)
{
    private readonly HashSet<ulong> _decrypted = [];
    private readonly Lock _lock = new();

    private Machine M => api.Machine;

    /// <summary><c>force_dma_unencrypted</c> (x86): every device of a confidential guest; on an SME host a device whose limit cannot carry the encryption bit.</summary>
    public bool ForceDmaUnencrypted(Device dev)
    {
        var bit = M.Config.MemEncryptBit;
        if (bit == 0)
        {
            return false;
        }
        if (M.Config.Swiotlb is { Force: true })
        {
            return true;
        }
        var encMask = bit | (bit - 1);
        return Sizes.MinNotZero(dev.CoherentDmaMask, dev.BusDmaLimit) < encMask;
    }

    /// <summary>Pages currently decrypted (<c>set_memory_decrypted</c>) for coherent buffers.</summary>
    public bool IsDecrypted(PhysAddr p)
    {
        lock (_lock)
        {
            return _decrypted.Contains(p.Value >> M.PageShift);
        }
    }

    /// <summary><c>phys_to_dma_direct</c>.</summary>
    private DmaAddr PhysToDmaDirect(Device dev, PhysAddr p) =>
        ForceDmaUnencrypted(dev) ? api.Direct.PhysToDmaUnencrypted(dev, p) : api.Direct.PhysToDma(dev, p);

    /// <summary><c>dma_coherent_ok</c>.</summary>
    private bool CoherentOk(Device dev, PhysAddr p, ulong size)
    {
        var a = PhysToDmaDirect(dev, p);
        return !a.IsError && a.Value + size - 1 <= Sizes.MinNotZero(dev.CoherentDmaMask, dev.BusDmaLimit);
    }

    /// <summary><c>alloc_pages</c> of one naturally aligned block, lowest free first, walking the zonelist down from <paramref name="zone"/>.</summary>
    private PhysAddr? AllocPages(Zone zone, ulong bytes)
    {
        for (var z = zone; ; z--)
        {
            var (lo, hi) = M.ZoneBounds(z);
            if (M.Allocator.Alloc(bytes, bytes, lo, hi) is { } p)
            {
                return p;
            }
            if (z == Zone.Dma)
            {
                return null;
            }
        }
    }

    /// <summary><c>__dma_direct_alloc_pages</c>.</summary>
    private PhysAddr? AllocPagesForDevice(Device dev, ulong size, ulong bytes)
    {
        if (api.Swiotlb.IsForAlloc(dev))
        {
            var tlb = api.Swiotlb.Alloc(dev, size);
            if (tlb.IsInvalid)
            {
                return null;
            }
            if (!CoherentOk(dev, tlb, size))
            {
                api.Swiotlb.Free(dev, tlb, size);
                return null;
            }
            return tlb;
        }
        // dma_direct_optimal_gfp_mask: the zone the coherent limit needs.
        var limit = Sizes.MinNotZero(dev.CoherentDmaMask, dev.BusDmaLimit);
        var physLimit = api.Direct.DmaToPhys(dev, new DmaAddr(limit)).Value;
        var zoneDmaLimit = M.ZoneBounds(Zone.Dma).Hi - 1;
        var zone = physLimit <= zoneDmaLimit ? Zone.Dma : physLimit <= Sizes.DmaBitMask(32) ? Zone.Dma32 : Zone.Normal;
        while (true)
        {
            var page = AllocPages(zone, bytes);
            if (page is null)
            {
                return null;
            }
            if (CoherentOk(dev, page.Value, size))
            {
                return page;
            }
            M.Allocator.Free(page.Value, bytes);
            if (zone == Zone.Normal && physLimit < Sizes.DmaBitMask(64))
            {
                zone = Zone.Dma32;
            }
            else if (zone != Zone.Dma)
            {
                zone = Zone.Dma;
            }
            else
            {
                return null;
            }
        }
    }

    private ulong OrderBytes(ulong size) => M.PageSize << IoTlb.GetOrder(size, M.PageShift);

    /// <summary><c>dma_direct_alloc</c>.</summary>
    public KernelVirt? Alloc(Device dev, ulong size, out DmaAddr handle)
    {
        handle = DmaAddr.MappingError;
        size = Sizes.AlignUp(size, M.PageSize);
        var fromPool = api.Swiotlb.IsForAlloc(dev);
        var bytes = fromPool ? size : OrderBytes(size);
        var remap = !dev.Coherent;
        var unencrypted = ForceDmaUnencrypted(dev);
        if (AllocPagesForDevice(dev, size, bytes) is not { } page)
        {
            return null;
        }
        if (M.ZoneOf(page) == Zone.HighMem)
        {
            remap = true;
        }
        KernelVirt ret;
        if (remap)
        {
            // Dirty lines of the cacheable alias would land on the buffer later: write them back and drop them.
            M.ArchCache.PrepCoherent(page, size);
            var n = (int)(size >> M.PageShift);
            var pages = new PhysAddr[n];
            for (var i = 0; i < n; i++)
            {
                pages[i] = page + ((ulong)i << M.PageShift);
            }
            ret = M.Kmap.Vmap(pages, cached: dev.Coherent);
        }
        else
        {
            ret = M.Kmap.PhysToVirt(page);
        }
        // dma_set_decrypted / pgprot_decrypted: shared with the device in the clear (a restricted pool already is).
        if (unencrypted && !fromPool)
        {
            SetDecrypted(page, size, true);
        }
        M.Cpu.Memset(ret, 0, size);
        handle = PhysToDmaDirect(dev, page);
        return ret;
    }

    private void SetDecrypted(PhysAddr page, ulong size, bool decrypted)
    {
        lock (_lock)
        {
            for (var off = 0UL; off < size; off += M.PageSize)
            {
                var pfn = (page.Value + off) >> M.PageShift;
                if (decrypted)
                {
                    _decrypted.Add(pfn);
                }
                else
                {
                    _decrypted.Remove(pfn);
                }
            }
        }
    }

    /// <summary><c>dma_direct_free</c>.</summary>
    public void Free(Device dev, ulong size, KernelVirt cpuAddr, DmaAddr handle)
    {
        size = Sizes.AlignUp(size, M.PageSize);
        var phys = api.Direct.DmaToPhys(dev, handle);
        if (M.Kmap.IsVmallocAddr(cpuAddr))
        {
            M.Kmap.Unmap(cpuAddr, size);
        }
        if (api.Swiotlb.Free(dev, phys, size))
        {
            return;
        }
        if (ForceDmaUnencrypted(dev))
        {
            SetDecrypted(phys, size, false);
        }
        M.Allocator.Free(phys, OrderBytes(size));
    }
}
