using System.Runtime.CompilerServices;
using PhysDma.Core;

namespace PhysDma.Dma;

// Cacheline overlap tracking: the kernel's dma_active_cacheline radix tree.
internal sealed partial class DmaDebug
{
    /// <summary>ACTIVE_CACHELINE_MAX_OVERLAP: the overlap count lives in three radix-tree tag bits.</summary>
    public const int ActiveCachelineMaxOverlap = 7;

    private readonly int _clPerPageShift;
    private readonly int _l1Shift;
    private readonly KernelSpinLock _radixLock = new();

    // Present key = cacheline has a mapping; value = how many more mappings overlap it (0..7).
    private readonly Dictionary<ulong, int> _activeCachelines = [];

    /// <summary>Cachelines in the tree (0 after every mapping has been unmapped: <c>active_cacheline_remove</c> drops each one).</summary>
    public int ActiveCachelines
    {
        get
        {
            using (_radixLock.Enter())
            {
                return _activeCachelines.Count;
            }
        }
    }

    /// <summary>The overlap count stored for a cacheline, or null when it is not in the tree.</summary>
    public int? CachelineOverlap(PhysAddr paddr)
    {
        using (_radixLock.Enter())
        {
            return _activeCachelines.TryGetValue(CachelineNumber(paddr), out var n) ? n : null;
        }
    }

    /// <summary><c>to_cacheline_number</c>: the mapping's first cacheline, from the machine's page size and L1 line.</summary>
    public ulong CachelineNumber(PhysAddr paddr) =>
        ((paddr.Value >> _m.PageShift) << _clPerPageShift) + (paddr.OffsetInPage(_m.PageSize) >> _l1Shift);

    /// <summary>
    /// <c>active_cacheline_insert</c>: true when the first cacheline was already tracked (EEXIST), in which
    /// case its overlap count went up. Mappings the device only reads are not tracked: stale CPU data
    /// cannot come from them.
    /// </summary>
    private bool ActiveCachelineInsert(DebugEntry entry)
    {
        if (entry.Direction == DmaDirection.ToDevice)
        {
            return false;
        }
        var cln = CachelineNumber(entry.Paddr);
        using (_radixLock.Enter())
        {
            if (_activeCachelines.TryAdd(cln, 0))
            {
                return false;
            }
            var overlap = _activeCachelines[cln] + 1;
            if (overlap > ActiveCachelineMaxOverlap)
            {
                // The tag bits cannot hold it: the count stays at 7, and unmaps will drop the line early.
                WarnOverlapOverflow(cln);
            }
            else
            {
                _activeCachelines[cln] = overlap;
            }
            return true;
        }
    }

    /// <summary>
    /// The overflow WARN_ONCE. Out of line because a lambda capturing <c>cln</c> in the insert path would
    /// allocate its closure on every insert, warning or not.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnOverlapOverflow(ulong cln) =>
        _log.WarnOnce("dma-debug:active_cacheline_inc_overlap", () =>
            $"DMA-API: exceeded {ActiveCachelineMaxOverlap} overlapping mappings of cacheline {Pa(cln)}");

    /// <summary><c>active_cacheline_remove</c>: one overlap fewer, or out of the tree when none is left.</summary>
    private void ActiveCachelineRemove(DebugEntry entry)
    {
        if (entry.Direction == DmaDirection.ToDevice)
        {
            return;
        }
        var cln = CachelineNumber(entry.Paddr);
        using (_radixLock.Enter())
        {
            if (!_activeCachelines.TryGetValue(cln, out var overlap))
            {
                return;
            }
            if (overlap == 0)
            {
                _activeCachelines.Remove(cln);
            }
            else
            {
                _activeCachelines[cln] = overlap - 1;
            }
        }
    }

    /// <summary>
    /// The overlap report is not made for SKIP_CPU_SYNC mappings (the driver manages the cache itself) nor
    /// when unaligned kmalloc buffers are bounced and the device's swiotlb is active (the small buffers that
    /// share lines are bounced, so the CPU cache never sees the device's writes).
    /// </summary>
    private bool CachelineOverlapExempt(DebugEntry entry, DmaAttrs attrs) =>
        (attrs & DmaAttrs.SkipCpuSync) != 0
        || (_m.Config.BounceUnalignedKmalloc && _api.Swiotlb.IsActive(entry.Dev));
}
