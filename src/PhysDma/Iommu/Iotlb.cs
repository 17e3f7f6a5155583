using PhysDma.Core;

namespace PhysDma.Iommu;

/// <summary>
/// The IOMMU's translation cache, tagged by domain. It fills as devices use translations and is
/// emptied only by explicit invalidation (a range sync or a full flush): an entry whose page was
/// unmapped keeps working for the device until then, exactly the window lazy mode accepts. It never
/// evicts on its own, so the window is deterministic.
/// </summary>
public sealed class Iotlb
{
    private readonly record struct Key(int Domain, ulong Base, int Shift);

    private readonly Lock _lock = new();
    private readonly Dictionary<Key, IoPte> _entries = [];
    private readonly int[] _shifts;

    /// <param name="pageShifts">The page sizes (as shifts) an entry may have.</param>
    public Iotlb(int[] pageShifts)
    {
        _shifts = pageShifts;
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Range invalidations and full flushes issued so far.</summary>
    public long RangeInvalidations { get; private set; }

    public long FullFlushes { get; private set; }

    public int CountFor(int domain)
    {
        lock (_lock)
        {
            var n = 0;
            foreach (var k in _entries.Keys)
            {
                if (k.Domain == domain)
                {
                    n++;
                }
            }
            return n;
        }
    }

    public bool TryLookup(int domain, ulong iova, out IoPte entry)
    {
        lock (_lock)
        {
            foreach (var shift in _shifts)
            {
                if (_entries.TryGetValue(new Key(domain, iova & ~((1UL << shift) - 1), shift), out entry))
                {
                    return true;
                }
            }
        }
        entry = default;
        return false;
    }

    /// <summary>
    /// A lookup that, on a miss, walks <paramref name="domain"/>'s page table and caches the leaf. The walk
    /// and the fill happen under the IOTLB lock, so an invalidation issued after a concurrent unmap cleared
    /// the PTE can never be overtaken by a fill of the old translation (hardware orders them the same way).
    /// False when nothing maps <paramref name="iova"/>; <paramref name="hit"/> says whether the entry was cached.
    /// </summary>
    public bool LookupOrWalk(IommuDomain domain, ulong iova, out IoPte entry, out bool hit)
    {
        lock (_lock)
        {
            foreach (var shift in _shifts)
            {
                if (_entries.TryGetValue(new Key(domain.Id, iova & ~((1UL << shift) - 1), shift), out entry))
                {
                    hit = true;
                    return true;
                }
            }
            hit = false;
            if (!domain.Walk(iova, out entry))
            {
                return false;
            }
            _entries[new Key(domain.Id, entry.IovaBase, entry.SizeShift)] = entry;
            return true;
        }
    }

    public void Fill(int domain, IoPte entry)
    {
        lock (_lock)
        {
            _entries[new Key(domain, entry.IovaBase, entry.SizeShift)] = entry;
        }
    }

    /// <summary>Drops every entry of <paramref name="domain"/> (a domain-selective flush).</summary>
    public void InvalidateDomain(int domain)
    {
        lock (_lock)
        {
            FullFlushes++;
            if (_entries.Count == 0)
            {
                return;
            }
            foreach (var k in _entries.Keys)
            {
                if (k.Domain == domain)
                {
                    _entries.Remove(k);
                }
            }
        }
    }

    /// <summary>Drops every entry of <paramref name="domain"/> that overlaps [start, end] (inclusive).</summary>
    public void InvalidateRange(int domain, ulong start, ulong end)
    {
        lock (_lock)
        {
            RangeInvalidations++;
            if (_entries.Count == 0)
            {
                return;
            }
            // Probe the keys the range could hold when that is cheaper than scanning every entry.
            var probes = 0UL;
            foreach (var shift in _shifts)
            {
                probes += ((end >> shift) - (start >> shift)) + 1;
            }
            if (probes <= (ulong)_entries.Count)
            {
                foreach (var shift in _shifts)
                {
                    for (var b = start >> shift; b <= end >> shift; b++)
                    {
                        _entries.Remove(new Key(domain, b << shift, shift));
                    }
                }
                return;
            }
            foreach (var (k, e) in _entries)
            {
                if (k.Domain == domain && e.IovaBase <= end && e.IovaBase + e.Size - 1 >= start)
                {
                    _entries.Remove(k);
                }
            }
        }
    }

    /// <summary>Drops everything (a global invalidation).</summary>
    public void InvalidateAll()
    {
        lock (_lock)
        {
            FullFlushes++;
            _entries.Clear();
        }
    }

    /// <summary>A snapshot of the entries of one domain, for tests and reports.</summary>
    public List<IoPte> EntriesOf(int domain)
    {
        lock (_lock)
        {
            return [.. _entries.Where(kv => kv.Key.Domain == domain).Select(kv => kv.Value).OrderBy(e => e.IovaBase)];
        }
    }

    internal static string Describe(IoPte e) => $"{Hex.Format(e.IovaBase)}+{Hex.Format(e.Size)} -> {e.PhysBase}";
}
