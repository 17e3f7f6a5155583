using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// The kernel's virtual address space as the DMA layers see it: the linear map (<c>phys_to_virt</c>),
/// <c>kmap_local_pfn</c> for highmem, and page-table mappings (vmalloc, vmapped stacks, <c>ioremap</c>).
/// Asking for a linear or kmap address of something that is not RAM is what crashes a real kernel, so
/// it raises <see cref="ModelViolation"/>.
/// </summary>
internal sealed class KernelMappings
{
    private readonly MemoryMap _map;
    private readonly ModelCounters _counters;
    private readonly int _pageShift;
    private readonly ulong _pageSize;
    private readonly ulong _linearBase;
    private readonly ulong _linearPhysStart;
    private readonly ulong? _highmemAbove;
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, (PhysAddr Phys, bool Cached)> _ptes = [];
    private ulong _vmallocNext;
    private ulong _kmapNext;

    public KernelMappings(Arch arch, MemoryMap map, ModelCounters counters, int pageShift, ulong? highmemAbove)
    {
        _map = map;
        _counters = counters;
        _pageShift = pageShift;
        _pageSize = 1UL << pageShift;
        _highmemAbove = highmemAbove;
        (_linearBase, VmallocStart, KmapStart) = arch switch
        {
            Arch.Arm64 => (0xffff000000000000UL, 0xffff800080000000UL, 0xfffffbfffe000000UL),
            _ => (0xffff888000000000UL, 0xffffc90000000000UL, 0xffffffffff000000UL),
        };
        // arm64 linear-maps RAM from the start of DRAM (memstart_addr); x86_64 from physical 0.
        _linearPhysStart = arch == Arch.Arm64 ? Sizes.AlignDown(map.RamStart.Value, Sizes.GiB) : 0;
        _vmallocNext = VmallocStart;
        _kmapNext = KmapStart;
    }

    public ulong VmallocStart { get; }
    public ulong KmapStart { get; }

    private bool InLinearMap(PhysAddr p) =>
        _map.IsRam(p) && p.Value >= _linearPhysStart && (_highmemAbove is not { } h || p.Value < h);

    /// <summary><c>phys_to_virt</c> / <c>__va</c> on memory the caller will dereference.</summary>
    public KernelVirt PhysToVirt(PhysAddr p)
    {
        _counters.CountPhysToVirt();
        if (!InLinearMap(p))
        {
            throw new ModelViolation(_map.IsRam(p)
                ? $"phys_to_virt({p}): highmem has no linear mapping (kmap_local_pfn needed)"
                : $"phys_to_virt({p}): not RAM, there is no linear mapping of device memory");
        }
        return new KernelVirt(_linearBase + (p.Value - _linearPhysStart));
    }

    /// <summary>
    /// <c>phys_to_virt</c> as arm64's <c>arch_sync_dma_for_device</c>, <c>arch_sync_dma_for_cpu</c> and
    /// <c>arch_dma_prep_coherent</c> use it: the linear-map address of the range, handed to <c>dcache_clean_poc</c>
    /// and friends. arm64 has no highmem and so no kmap: every RAM page is in the linear map, the address is
    /// arithmetic and makes no mapping, so it is not counted as a kernel mapping. It does not fault by itself;
    /// the damage, if any, is the cache operation.
    /// </summary>
    public KernelVirt PhysToVirtForCacheOp(PhysAddr p) => new(_linearBase + (p.Value - _linearPhysStart));

    /// <summary>
    /// <c>__va</c> as pure arithmetic for a caller that only compares or prints the address (dma-debug):
    /// nothing is dereferenced, so it is neither counted nor refused for non-RAM.
    /// </summary>
    public KernelVirt LinearAddressOf(PhysAddr p) => new(_linearBase + (p.Value - _linearPhysStart));

    /// <summary><c>virt_addr_valid</c>: a linear-map address backed by lowmem RAM.</summary>
    public bool VirtAddrValid(KernelVirt va) =>
        va.Value >= _linearBase && va.Value < VmallocStart && InLinearMap(new PhysAddr(va.Value - _linearBase + _linearPhysStart));

    /// <summary><c>kmap_local_pfn</c>: a temporary mapping of a RAM frame (the linear address for lowmem).</summary>
    public KernelVirt KmapLocalPfn(Pfn pfn)
    {
        _counters.CountKmapLocal();
        var p = pfn.ToPhys(_pageShift);
        if (!_map.IsRam(p))
        {
            throw new ModelViolation($"kmap_local_pfn({pfn}): frame {p} is not RAM");
        }
        if (InLinearMap(p))
        {
            return new KernelVirt(_linearBase + (p.Value - _linearPhysStart));
        }
        lock (_lock)
        {
            var va = _kmapNext;
            _kmapNext += _pageSize;
            _ptes[va >> _pageShift] = (p, true);
            return new KernelVirt(va);
        }
    }

    public void KunmapLocal(KernelVirt va)
    {
        if (va.Value >= KmapStart)
        {
            lock (_lock)
            {
                _ptes.Remove(va.Value >> _pageShift);
            }
        }
    }

    /// <summary><c>vmap</c>: maps pages (possibly scattered) at consecutive virtual pages in the vmalloc area.</summary>
    public KernelVirt Vmap(IReadOnlyList<PhysAddr> pages, bool cached)
    {
        lock (_lock)
        {
            var va = _vmallocNext;
            for (var i = 0; i < pages.Count; i++)
            {
                _ptes[(va >> _pageShift) + (ulong)i] = (pages[i], cached);
            }
            // One guard page between areas, as vmalloc leaves.
            _vmallocNext += ((ulong)pages.Count + 1) * _pageSize;
            return new KernelVirt(va);
        }
    }

    /// <summary><c>ioremap</c>: an uncached mapping of device memory.</summary>
    public KernelVirt Ioremap(PhysAddr p, ulong size)
    {
        var first = Sizes.AlignDown(p.Value, _pageSize);
        var n = (int)(Sizes.AlignUp(p.Value + size, _pageSize) - first >> _pageShift);
        var pages = new PhysAddr[n];
        for (var i = 0; i < n; i++)
        {
            pages[i] = new PhysAddr(first + ((ulong)i << _pageShift));
        }
        return Vmap(pages, cached: false) + (p.Value - first);
    }

    public void Unmap(KernelVirt va, ulong size)
    {
        lock (_lock)
        {
            var first = va.Value >> _pageShift;
            var last = (va.Value + size - 1) >> _pageShift;
            for (var v = first; v <= last; v++)
            {
                _ptes.Remove(v);
            }
        }
    }

    /// <summary><c>is_vmalloc_addr</c>.</summary>
    public bool IsVmallocAddr(KernelVirt va) => va.Value >= VmallocStart && va.Value < KmapStart;

    /// <summary>Translates a kernel virtual address for a CPU access; an unmapped address is a kernel oops.</summary>
    public (PhysAddr Phys, bool Cached) Translate(KernelVirt va)
    {
        if (va.Value >= _linearBase && va.Value < VmallocStart)
        {
            var p = new PhysAddr(va.Value - _linearBase + _linearPhysStart);
            if (!InLinearMap(p))
            {
                throw new ModelViolation($"CPU access at {va}: no linear mapping there (phys {p} is not lowmem RAM)");
            }
            return (p, true);
        }
        lock (_lock)
        {
            if (_ptes.TryGetValue(va.Value >> _pageShift, out var pte))
            {
                return (pte.Phys + (va.Value & (_pageSize - 1)), pte.Cached);
            }
        }
        throw new ModelViolation($"CPU access at {va}: unable to handle kernel paging request (not mapped)");
    }

    /// <summary><c>virt_to_phys</c> for any mapped kernel address (no counter: it is not a DMA-layer call).</summary>
    public PhysAddr VirtToPhys(KernelVirt va) => Translate(va).Phys;
}
