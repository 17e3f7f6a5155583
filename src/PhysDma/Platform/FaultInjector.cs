using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>A kernel call whose Nth invocation a scenario can make fail (<c>faults:</c>).</summary>
internal enum FaultPoint
{
    /// <summary><c>alloc_iova_fast</c> returns 0 (no IOVA space).</summary>
    AllocIovaFast,

    /// <summary>swiotlb's slot search (<c>swiotlb_find_slots</c>) finds nothing: the pool looks full.</summary>
    SwiotlbSlotSearch,

    /// <summary><c>iommu_map</c> fails to allocate an IO page-table page: -ENOMEM.</summary>
    IommuMap,

    /// <summary>The page allocation behind <c>dma_alloc_attrs</c> fails: NULL.</summary>
    CoherentAlloc,

    /// <summary>dma-debug's entry pool, limited by <c>dma_debug_entries</c>, is exhausted: <c>dma_entry_alloc</c> returns NULL.</summary>
    DmaDebugEntries,
}

/// <summary>An injected failure: which point, which call of it, and the modelled CPU it happened on.</summary>
internal sealed record InjectedFault(FaultPoint Point, int Nth);

/// <summary>
/// Deterministic fault injection: for each <see cref="FaultPoint"/>, the call numbers (1-based, counted over
/// the whole run) that fail. The layers ask <see cref="Fail"/> at the point where the kernel's allocation
/// would fail and take the kernel's error path; every failure made is recorded, in order.
/// </summary>
internal sealed class FaultInjector
{
    private readonly Dictionary<FaultPoint, HashSet<int>> _failAt = [];
    private readonly Dictionary<FaultPoint, int> _calls = [];
    private readonly AppendLog<InjectedFault> _injected = new();
    private readonly Lock _lock = new();

    /// <summary>Whether any fault is configured (the layers skip the bookkeeping otherwise).</summary>
    public bool Armed { get; private set; }

    public void FailAt(FaultPoint point, int nth)
    {
        lock (_lock)
        {
            if (!_failAt.TryGetValue(point, out var set))
            {
                _failAt[point] = set = [];
            }
            set.Add(nth);
            Armed = true;
        }
    }

    /// <summary>Counts a call of <paramref name="point"/>; true when this call is one that must fail.</summary>
    public bool Fail(FaultPoint point)
    {
        if (!Armed)
        {
            return false;
        }
        lock (_lock)
        {
            var n = _calls[point] = _calls.GetValueOrDefault(point) + 1;
            if (_failAt.TryGetValue(point, out var set) && set.Contains(n))
            {
                _injected.Add(new InjectedFault(point, n));
                return true;
            }
            return false;
        }
    }

    /// <summary>Records a failure that a limit set up front (not a call count) caused.</summary>
    public void Record(FaultPoint point)
    {
        lock (_lock)
        {
            var n = _calls[point] = _calls.GetValueOrDefault(point) + 1;
            _injected.Add(new InjectedFault(point, n));
        }
    }

    public int InjectedCount => _injected.Count;

    public IReadOnlyList<InjectedFault> InjectedSince(int index) => _injected.Since(index);
}
