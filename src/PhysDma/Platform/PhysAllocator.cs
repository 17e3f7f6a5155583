using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// Free RAM, as memblock and the page allocator see it together: boot reservations (kernel image, the
/// swiotlb pool) and run-time allocations. Placement is deterministic: the lowest free address that fits,
/// or the highest for boot allocations made top-down.
/// </summary>
internal sealed class PhysAllocator
{
    private readonly List<(ulong Base, ulong End)> _free = [];
    private readonly Lock _lock = new();

    public PhysAllocator(IEnumerable<MemRegion> freeRam)
    {
        foreach (var r in freeRam.OrderBy(r => r.Base))
        {
            _free.Add((r.Base.Value, r.End.Value));
        }
    }

    public ulong FreeBytes
    {
        get
        {
            lock (_lock)
            {
                return _free.Aggregate(0UL, (s, r) => s + (r.End - r.Base));
            }
        }
    }

    /// <summary>Lowest free, aligned range of <paramref name="size"/> bytes inside [lo, hi); null if none.</summary>
    public PhysAddr? Alloc(ulong size, ulong align, ulong lo = 0, ulong hi = ulong.MaxValue)
    {
        lock (_lock)
        {
            foreach (var (b, e) in _free)
            {
                var start = Sizes.AlignUp(Math.Max(b, lo), align);
                if (start < b || start + size < start)
                {
                    continue;
                }
                var end = start + size;
                if (end <= e && end <= hi)
                {
                    TakeLocked(start, size);
                    return new PhysAddr(start);
                }
            }
            return null;
        }
    }

    /// <summary>Highest free, aligned range of <paramref name="size"/> bytes ending at or below <paramref name="hi"/>.</summary>
    public PhysAddr? AllocTopDown(ulong size, ulong align, ulong hi)
    {
        lock (_lock)
        {
            for (var i = _free.Count - 1; i >= 0; i--)
            {
                var (b, e) = _free[i];
                var top = Math.Min(e, hi);
                if (top < b + size || top < size)
                {
                    continue;
                }
                var start = Sizes.AlignDown(top - size, align);
                if (start >= b)
                {
                    TakeLocked(start, size);
                    return new PhysAddr(start);
                }
            }
            return null;
        }
    }

    /// <summary>Takes exactly [p, p+size); false if any byte of it is not free RAM.</summary>
    public bool Reserve(PhysAddr p, ulong size)
    {
        lock (_lock)
        {
            foreach (var (b, e) in _free)
            {
                if (p.Value >= b && p.Value + size <= e && p.Value + size >= p.Value)
                {
                    TakeLocked(p.Value, size);
                    return true;
                }
            }
            return false;
        }
    }

    public bool IsFree(PhysAddr p, ulong size)
    {
        lock (_lock)
        {
            return _free.Any(r => p.Value >= r.Base && p.Value + size <= r.End);
        }
    }

    public void Free(PhysAddr p, ulong size)
    {
        if (size == 0)
        {
            return;
        }
        lock (_lock)
        {
            var b = p.Value;
            var e = p.Value + size;
            var i = 0;
            while (i < _free.Count && _free[i].Base < b)
            {
                i++;
            }
            _free.Insert(i, (b, e));
            // Merge with neighbours.
            if (i + 1 < _free.Count && _free[i].End == _free[i + 1].Base)
            {
                _free[i] = (_free[i].Base, _free[i + 1].End);
                _free.RemoveAt(i + 1);
            }
            if (i > 0 && _free[i - 1].End == _free[i].Base)
            {
                _free[i - 1] = (_free[i - 1].Base, _free[i].End);
                _free.RemoveAt(i);
            }
        }
    }

    private void TakeLocked(ulong start, ulong size)
    {
        var end = start + size;
        for (var i = 0; i < _free.Count; i++)
        {
            var (b, e) = _free[i];
            if (start >= b && end <= e)
            {
                _free.RemoveAt(i);
                if (end < e)
                {
                    _free.Insert(i, (end, e));
                }
                if (start > b)
                {
                    _free.Insert(i, (b, start));
                }
                return;
            }
        }
        throw new InvalidOperationException($"allocator: {Hex.Format(start)}+{Hex.Format(size)} is not free");
    }
}
