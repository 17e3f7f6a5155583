using PhysDma.Core;

namespace PhysDma.Iommu;

/// <summary>
/// The IOMMU's translation cache, tagged by domain. It fills as devices use translations and is
/// emptied only by explicit invalidation (a range sync or a full flush): an entry whose page was
/// unmapped keeps working for the device until then, exactly the window lazy mode accepts. It never
/// evicts on its own, so the window is deterministic.
/// </summary>
internal sealed class Iotlb
{
    private readonly record struct Key(int Domain, ulong Base);

    private readonly Lock _lock = new();

    // One table per page size, so a lookup probes only the sizes the IOTLB holds at all: one probe
    // when every entry is a 4 KiB page.
    private readonly Dictionary<Key, IoPte>[] _bySize;
    private readonly int[] _shifts;

    /// <param name="pageShifts">The page sizes (as shifts) an entry may have.</param>
    public Iotlb(int[] pageShifts)
    {
        _shifts = pageShifts;
        _bySize = new Dictionary<Key, IoPte>[pageShifts.Length];
        for (var i = 0; i < pageShifts.Length; i++)
        {
            _bySize[i] = [];
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                var n = 0;
                foreach (var t in _bySize)
                {
                    n += t.Count;
                }
                return n;
            }
        }
    }

    private int SizeIndex(int shift)
    {
        for (var i = 0; i < _shifts.Length; i++)
        {
            if (_shifts[i] == shift)
            {
                return i;
            }
        }
        throw new ArgumentException($"the IOTLB holds no pages of 2^{shift} bytes", nameof(shift));
    }

    private bool Probe(int domain, ulong iova, out IoPte entry)
    {
        for (var i = 0; i < _bySize.Length; i++)
        {
            var t = _bySize[i];
            if (t.Count != 0 && t.TryGetValue(new Key(domain, iova & ~((1UL << _shifts[i]) - 1)), out entry))
            {
                return true;
            }
        }
        entry = default;
        return false;
    }

    /// <summary>Range invalidations and full flushes issued so far.</summary>
    public long RangeInvalidations { get; private set; }

    public long FullFlushes { get; private set; }

    public int CountFor(int domain)
    {
        lock (_lock)
        {
            var n = 0;
            foreach (var t in _bySize)
            {
                foreach (var k in t.Keys)
                {
                    if (k.Domain == domain)
                    {
                        n++;
                    }
                }
            }
            return n;
        }
    }

    public bool TryLookup(int domain, ulong iova, out IoPte entry)
    {
        lock (_lock)
        {
            return Probe(domain, iova, out entry);
        }
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
            if (Probe(domain.Id, iova, out entry))
            {
                hit = true;
                return true;
            }
            hit = false;
            if (!domain.Walk(iova, out entry))
            {
                return false;
            }
            _bySize[SizeIndex(entry.SizeShift)][new Key(domain.Id, entry.IovaBase)] = entry;
            return true;
        }
    }

    public void Fill(int domain, IoPte entry)
    {
        lock (_lock)
        {
            _bySize[SizeIndex(entry.SizeShift)][new Key(domain, entry.IovaBase)] = entry;
        }
    }

    /// <summary>Drops every entry of <paramref name="domain"/> (a domain-selective flush).</summary>
    public void InvalidateDomain(int domain)
    {
        lock (_lock)
        {
            FullFlushes++;
            foreach (var t in _bySize)
            {
                if (t.Count == 0)
                {
                    continue;
                }
                foreach (var k in t.Keys)
                {
                    if (k.Domain == domain)
                    {
                        t.Remove(k);
                    }
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
            for (var i = 0; i < _bySize.Length; i++)
            {
                var t = _bySize[i];
                if (t.Count == 0)
                {
                    continue;
                }
                var shift = _shifts[i];
                // Probe the keys the range could hold when that is cheaper than scanning every entry.
                if ((end >> shift) - (start >> shift) + 1 <= (ulong)t.Count)
                {
                    for (var b = start >> shift; b <= end >> shift; b++)
                    {
                        t.Remove(new Key(domain, b << shift));
                    }
                    continue;
                }
                foreach (var (k, e) in t)
                {
                    if (k.Domain == domain && e.IovaBase <= end && e.IovaBase + e.Size - 1 >= start)
                    {
                        t.Remove(k);
                    }
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
            foreach (var t in _bySize)
            {
                t.Clear();
            }
        }
    }

    /// <summary>A snapshot of the entries of one domain, for tests and reports.</summary>
    public List<IoPte> EntriesOf(int domain)
    {
        lock (_lock)
        {
            return [.. _bySize.SelectMany(t => t.Where(kv => kv.Key.Domain == domain).Select(kv => kv.Value)).OrderBy(e => e.IovaBase)];
        }
    }

    internal static string Describe(IoPte e) => $"{Hex.Format(e.IovaBase)}+{Hex.Format(e.Size)} -> {e.PhysBase}";
}
