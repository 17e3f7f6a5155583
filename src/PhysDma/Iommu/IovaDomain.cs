using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Iommu;

/// <summary>
/// An IOVA space (drivers/iommu/iova.c, <c>struct iova_domain</c>): the tree of allocated ranges with the
/// kernel's cached-node, top-down, size-aligned allocation and its 32-bit fail-fast hint, plus the
/// per-CPU range caches ("rcache": magazines of 127 pfns, a loaded and a previous one per CPU and size
/// class, a depot of full ones trimmed 100 ms after it grows). Ranges sitting in a cache or a flush
/// queue stay allocated in the tree, as in the kernel.
/// </summary>
internal sealed class IovaDomain
{
    /// <summary><c>IOVA_RANGE_CACHE_MAX_SIZE</c>: size classes 1, 2, 4 … 32 pages.</summary>
    public const int RangeCacheMaxSize = 6;

    /// <summary><c>IOVA_MAG_SIZE</c>.</summary>
    public const int MagSize = 127;

    /// <summary><c>IOVA_DEPOT_DELAY</c> in nanoseconds (100 ms).</summary>
    public const ulong DepotDelayNs = 100_000_000;

    private const ulong Anchor = ulong.MaxValue;

    /// <summary>Nodes the allocation walk visits before the augmented search takes over (same result, O(log n)).</summary>
    private const int WalkSteps = 16;

    // iova_rbtree_lock: a spinlock, as in the kernel.
    private readonly KernelSpinLock _treeLock = new();
    private readonly IovaTree _tree = new();
    private readonly Rcache[] _rcaches;
    private readonly Clock _clock;
    private readonly int _cpus;
    private readonly Lock _magPoolLock = new();
    private readonly Stack<Magazine> _magPool = new();

    // cached_node / cached32_node: node numbers, which the tree keeps stable as the kernel's pointers are.
    private readonly int _anchor;
    private int _cached;
    private int _cached32;
    private ulong _max32AllocSize;

    /// <summary><c>init_iova_domain</c>.</summary>
    public IovaDomain(ulong granule, ulong startPfn, int cpus, Clock clock)
    {
        if (!Sizes.IsPowerOfTwo(granule))
        {
            throw new ArgumentException("granule must be a power of two", nameof(granule));
        }
        Granule = granule;
        Shift = Sizes.Log2(granule);
        StartPfn = startPfn;
        Dma32BitPfn = 1UL << (32 - Shift);
        _max32AllocSize = Dma32BitPfn;
        _cpus = cpus;
        _clock = clock;
        _anchor = _tree.Insert(Anchor, Anchor, reserved: true);
        _cached = _anchor;
        _cached32 = _anchor;
        _rcaches = new Rcache[RangeCacheMaxSize];
        for (var i = 0; i < RangeCacheMaxSize; i++)
        {
            _rcaches[i] = new Rcache(this, i, cpus);
        }
    }

    public ulong Granule { get; }
    public int Shift { get; }
    public ulong StartPfn { get; }
    public ulong Dma32BitPfn { get; }

    /// <summary>The fail-fast hint: sub-4 GiB requests of at least this many pages fail without a search.</summary>
    public ulong Max32AllocSize
    {
        get
        {
            using (_treeLock.Enter())
            {
                return _max32AllocSize;
            }
        }
    }

    /// <summary>Pages allocated in the tree (handed out, cached, or queued; reserved ranges excluded).</summary>
    public ulong TreePages
    {
        get
        {
            using (_treeLock.Enter())
            {
                return _tree.AllocatedPages;
            }
        }
    }

    /// <summary>Pages held by reserved ranges (the anchor excluded).</summary>
    public ulong ReservedPages
    {
        get
        {
            using (_treeLock.Enter())
            {
                return _tree.ReservedPages - 1;
            }
        }
    }

    /// <summary>Pages sitting in per-CPU magazines and the depots.</summary>
    public ulong CachedPages
    {
        get
        {
            var total = 0UL;
            foreach (var rc in _rcaches)
            {
                total += (ulong)rc.CachedPfns() << rc.Order;
            }
            return total;
        }
    }

    /// <summary><c>iova_shift</c>-based helpers.</summary>
    public ulong IovaPfn(ulong iova) => iova >> Shift;

    public ulong IovaOffset(ulong a) => a & (Granule - 1);

    public ulong IovaAlign(ulong size) => Sizes.AlignUp(size, Granule);

    /// <summary>
    /// <c>reserve_iova</c>: marks [loPfn, hiPfn] as never allocatable. Each node it overlaps is stretched
    /// down over the free pages before it (<c>__adjust_overlap_range</c>), so a reservation over an
    /// allocated range becomes part of that allocation and is released with it, as in the kernel; what
    /// is left above the last overlapped node becomes one reserved node.
    /// </summary>
    public void ReserveIova(ulong loPfn, ulong hiPfn)
    {
        // The kernel refuses pfns whose addresses would not fit (WARN_ON, returns NULL).
        if ((loPfn | hiPfn) > (ulong.MaxValue >> Shift) || loPfn > hiPfn)
        {
            return;
        }
        using (_treeLock.Enter())
        {
            for (var n = _tree.FirstEndingAtOrAbove(loPfn); n >= 0; n = _tree.Next(n))
            {
                if (loPfn > _tree.Hi(n) || hiPfn < _tree.Lo(n))
                {
                    // Nodes are in order: nothing further on overlaps either.
                    break;
                }
                if (loPfn < _tree.Lo(n))
                {
                    _tree.StretchDown(n, loPfn);
                }
                if (hiPfn > _tree.Hi(n))
                {
                    loPfn = _tree.Hi(n) + 1;
                }
                if (loPfn >= _tree.Lo(n) && hiPfn <= _tree.Hi(n))
                {
                    return;
                }
            }
            _tree.Insert(loPfn, hiPfn, reserved: true);
        }
    }

    /// <summary>
    /// <c>alloc_iova</c> with the kernel's walk (<c>__alloc_and_insert_iova_range</c>): the highest free
    /// size-aligned block below the cached node, else above it up to the limit; a failure records the
    /// size in the 32-bit hint. Returns the first pfn, or 0.
    /// </summary>
    public ulong AllocIova(ulong size, ulong limitPfn, bool sizeAligned)
    {
        if (size == 0)
        {
            return 0;
        }
        var limit = limitPfn + 1; // exclusive from here on
        var alignMask = sizeAligned ? ~0UL << Sizes.Fls64(size - 1) : ~0UL;
        using (_treeLock.Enter())
        {
            if (limit <= Dma32BitPfn && size >= _max32AllocSize)
            {
                return 0;
            }
            var cached = limit <= Dma32BitPfn ? _cached32 : _cached;
            var pfn = IovaTree.NotFound;
            var insertBefore = -1;

            // The kernel's walk backwards from the cached node, for as long as it stays short.
            var curr = cached;
            var high = limit;
            var low = StartPfn;
            ulong newPfn;
            int prev;
            var steps = 0;
            bool more;
            do
            {
                high = Math.Min(high, _tree.Lo(curr));
                newPfn = (high - size) & alignMask;
                prev = curr;
                curr = _tree.Prev(curr);
                more = curr >= 0 && newPfn <= _tree.Hi(curr) && newPfn >= low;
            }
            while (more && ++steps < WalkSteps);
            if (!more)
            {
                if (high >= size && newPfn >= low)
                {
                    pfn = newPfn;
                    insertBefore = prev;
                }
            }
            else
            {
                // A long walk: the gap-augmented search finds the same block without visiting every node.
                pfn = _tree.FindHighestFit(StartPfn, Math.Min(limit, _tree.Lo(cached)), size, alignMask);
            }
            var cHi = _tree.Hi(cached);
            if (pfn == IovaTree.NotFound && cHi < limit)
            {
                // Retry in the space above the cached node, which the first walk never looks at.
                pfn = _tree.FindHighestFit(cHi + 1, limit, size, alignMask);
            }
            if (pfn == IovaTree.NotFound)
            {
                _max32AllocSize = size;
                return 0;
            }
            var node = insertBefore >= 0
                ? _tree.InsertBefore(insertBefore, pfn, pfn + size - 1)
                : _tree.Insert(pfn, pfn + size - 1);
            if (pfn + size - 1 < Dma32BitPfn)
            {
                _cached32 = node;
            }
            else
            {
                _cached = node;
            }
            return pfn;
        }
    }

    /// <summary><c>free_iova</c>: returns the range holding <paramref name="pfn"/> to the tree.</summary>
    public void FreeIova(ulong pfn)
    {
        using (_treeLock.Enter())
        {
            FreeIovaLocked(pfn);
        }
    }

    private void FreeIovaLocked(ulong pfn)
    {
        // The range allocated last is the one most often freed next: try the cached nodes before a search.
        var n = _tree.Contains(_cached, pfn) ? _cached
            : _tree.Contains(_cached32, pfn) ? _cached32
            : _tree.FindContaining(pfn);
        if (n < 0 || n == _anchor)
        {
            return;
        }
        var lo = _tree.Lo(n);
        var hi = _tree.Hi(n);
        // __cached_rbnode_delete_update: the cached nodes move up past a freed range at or above them.
        var next = _tree.Next(n);
        if (n == _cached32 || (hi < Dma32BitPfn && lo >= _tree.Lo(_cached32)))
        {
            _cached32 = next;
        }
        if (lo < Dma32BitPfn)
        {
            _max32AllocSize = Dma32BitPfn;
        }
        if (lo >= _tree.Lo(_cached))
        {
            _cached = next;
        }
        _tree.Remove(n);
    }

    /// <summary>
    /// <c>alloc_iova_fast</c>: sizes under 32 pages round up to a power of two; the CPU's cache first,
    /// then the tree; with <paramref name="flushRcache"/> a failure empties every cache into the tree
    /// and tries once more. Returns the first pfn, or 0.
    /// </summary>
    public ulong AllocIovaFast(ulong size, ulong limitPfn, bool flushRcache)
    {
        size = FastAllocSize(size);
        var order = OrderBase2(size);
        if (order < RangeCacheMaxSize)
        {
            var pfn = _rcaches[order].Get(limitPfn + 1 - size);
            if (pfn != 0)
            {
                return pfn;
            }
        }
        return AllocIovaFastFromTree(size, limitPfn, flushRcache);
    }

    /// <summary>The CPU's cache had nothing that fits: the tree, and with <paramref name="flushRcache"/> one retry after emptying every cache.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong AllocIovaFastFromTree(ulong size, ulong limitPfn, bool flushRcache)
    {
        while (true)
        {
            var pfn = AllocIova(size, limitPfn, sizeAligned: true);
            if (pfn != 0 || !flushRcache)
            {
                return pfn;
            }
            flushRcache = false;
            for (var cpu = 0; cpu < _cpus; cpu++)
            {
                FreeCpuCachedIovas(cpu);
            }
            FreeGlobalCachedIovas();
        }
    }

    /// <summary>
    /// The pages <see cref="AllocIovaFast"/> really takes for a request of <paramref name="size"/>: under
    /// 32 pages rounded up to a power of two, so a range freed into a cache fits its class exactly.
    /// </summary>
    public static ulong FastAllocSize(ulong size) =>
        size < (1UL << (RangeCacheMaxSize - 1)) ? Sizes.RoundUpPowerOfTwo(size) : size;

    /// <summary><c>free_iova_fast</c>: into the CPU's cache if it takes it, else back to the tree.</summary>
    public void FreeIovaFast(ulong pfn, ulong size)
    {
        var order = OrderBase2(size);
        if (order < RangeCacheMaxSize && _rcaches[order].Insert(pfn))
        {
            return;
        }
        FreeIova(pfn);
    }

    private static int OrderBase2(ulong size) => size <= 1 ? 0 : Sizes.Fls64(size - 1);

    /// <summary><c>free_cpu_cached_iovas</c>: empties one CPU's loaded and previous magazines into the tree.</summary>
    public void FreeCpuCachedIovas(int cpu)
    {
        foreach (var rc in _rcaches)
        {
            rc.FreeCpu(cpu);
        }
    }

    /// <summary><c>free_global_cached_iovas</c>: empties every depot into the tree.</summary>
    public void FreeGlobalCachedIovas()
    {
        foreach (var rc in _rcaches)
        {
            rc.FreeDepot();
        }
    }

    /// <summary><c>iova_magazine_free_pfns</c>: the magazine's ranges go back to the tree.</summary>
    private void MagazineFreePfns(Magazine mag)
    {
        using (_treeLock.Enter())
        {
            for (var i = 0; i < mag.Size; i++)
            {
                FreeIovaLocked(mag.Pfns[i]);
            }
        }
        mag.Size = 0;
    }

    private Magazine MagazineAlloc()
    {
        lock (_magPoolLock)
        {
            if (_magPool.TryPop(out var m))
            {
                m.Size = 0;
                m.Next = null;
                return m;
            }
        }
        return new Magazine();
    }

    private void MagazineFree(Magazine m)
    {
        lock (_magPoolLock)
        {
            _magPool.Push(m);
        }
    }

    /// <summary>A snapshot of the caches: per size class, each CPU's loaded and prev sizes and the depot's magazine sizes.</summary>
    public RcacheSnapshot[] SnapshotRcaches() => [.. _rcaches.Select(r => r.Snapshot())];

    /// <summary>
    /// Checks the tree and the caches against each other; returns the first problem or null. Every
    /// cached pfn must start an allocated node of its class's size and appear once across all caches.
    /// </summary>
    public string? CheckConsistency()
    {
        // Snapshot the caches before taking the tree lock: the caches' locks are taken before the tree's
        // everywhere else (a magazine is emptied into the tree under its CPU lock), so the other order
        // could deadlock against a concurrent drain. Meant for a quiescent domain.
        var snaps = SnapshotRcaches();
        using (_treeLock.Enter())
        {
            var e = _tree.Check();
            if (e is not null)
            {
                return e;
            }
            var seen = new HashSet<ulong>();
            foreach (var snap in snaps)
            {
                var rc = _rcaches[snap.Order];
                foreach (var (loaded, prev) in snap.Cpus)
                {
                    if (loaded.Length > MagSize || prev.Length > MagSize)
                    {
                        return $"class {rc.Order}: a magazine holds more than {MagSize} pfns";
                    }
                }
                foreach (var m in snap.Depot)
                {
                    if (m.Length != MagSize)
                    {
                        return $"class {rc.Order}: depot holds a magazine of {m.Length} pfns (only full ones belong there)";
                    }
                }
                foreach (var pfn in snap.Cpus.SelectMany(c => c.Loaded.Concat(c.Prev)).Concat(snap.Depot.SelectMany(d => d)))
                {
                    if (!seen.Add(pfn))
                    {
                        return $"pfn {pfn:x} is cached twice";
                    }
                    var n = _tree.FindContaining(pfn);
                    if (n < 0 || _tree.Lo(n) != pfn || _tree.IsReserved(n))
                    {
                        return $"cached pfn {pfn:x} does not start an allocated range";
                    }
                    if (OrderBase2(_tree.Hi(n) - _tree.Lo(n) + 1) != rc.Order)
                    {
                        return $"cached pfn {pfn:x} starts a range of {_tree.Hi(n) - _tree.Lo(n) + 1} pages, not of size class {rc.Order}";
                    }
                }
            }
            return null;
        }
    }

    /// <summary>Allocated (not reserved) ranges in the tree, in pfns.</summary>
    public List<(ulong Lo, ulong Hi)> AllocatedRanges()
    {
        using (_treeLock.Enter())
        {
            return [.. _tree.Nodes().Where(n => !n.Reserved).Select(n => (n.Lo, n.Hi))];
        }
    }

    /// <summary>Reserved ranges in the tree, in pfns (the anchor excluded).</summary>
    public List<(ulong Lo, ulong Hi)> ReservedRanges()
    {
        using (_treeLock.Enter())
        {
            return [.. _tree.Nodes().Where(n => n.Reserved && n.Lo != Anchor).Select(n => (n.Lo, n.Hi))];
        }
    }

    // Per-CPU objects keep their hot fields a cache line away from either end (see CacheLine).
    private const int Pad = CacheLine.Size;

    [StructLayout(LayoutKind.Explicit)]
    private sealed class Magazine
    {
        [FieldOffset(Pad)]
        public int Size;

        [FieldOffset(Pad + 8)]
        public Magazine? Next;

        [FieldOffset(Pad + 16)]
        public PfnSlots Pfns;

#pragma warning disable IDE0044, IDE0051, CS0169 // the cache line after the pfns
        [FieldOffset(Pad + 16 + (MagSize * 8) + Pad - 8)]
        private long _tail;
#pragma warning restore IDE0044, IDE0051, CS0169

        public bool IsFull => Size == MagSize;
        public bool IsEmpty => Size == 0;

        /// <summary><c>iova_magazine_pop</c>: the newest pfn that fits under the limit, swap-removed; 0 if none.</summary>
        public ulong Pop(ulong limitPfn)
        {
            var i = Size - 1;
            while (Pfns[i] > limitPfn)
            {
                if (i == 0)
                {
                    return 0;
                }
                i--;
            }
            var pfn = Pfns[i];
            Pfns[i] = Pfns[--Size];
            return pfn;
        }

        public void Push(ulong pfn) => Pfns[Size++] = pfn;

        public ulong[] Contents() => ((ReadOnlySpan<ulong>)Pfns)[..Size].ToArray();
    }

    /// <summary>A magazine's pfns, stored inside the magazine (one load less than an array).</summary>
    [InlineArray(MagSize)]
    private struct PfnSlots
    {
#pragma warning disable IDE0044, IDE0051, CS0169 // the first element of the inline array
        private ulong _first;
#pragma warning restore IDE0044, IDE0051, CS0169
    }

    /// <summary>One CPU's loaded and previous magazines of one size class, with their lock (<c>struct iova_cpu_rcache</c>).</summary>
    [StructLayout(LayoutKind.Explicit)]
    private sealed class CpuRcache(Magazine loaded, Magazine prev)
    {
        [FieldOffset(Pad)]
        public KernelSpinLockWord Lock;

        [FieldOffset(Pad + 8)]
        public Magazine Loaded = loaded;

        [FieldOffset(Pad + 16)]
        public Magazine Prev = prev;

#pragma warning disable IDE0044, IDE0051, CS0169 // the cache line after the hot fields
        [FieldOffset(Pad + 24 + Pad - 8)]
        private long _tail;
#pragma warning restore IDE0044, IDE0051, CS0169
    }

    /// <summary>One size class: per-CPU magazines, the depot and its trim work.</summary>
    private sealed class Rcache
    {
        private readonly IovaDomain _d;
        private readonly Lock _lock = new();
        private readonly CpuRcache[] _cpu;
        private readonly Action _work;
        private Magazine? _depot;
        private int _depotSize;
        private int _workPending;

        public Rcache(IovaDomain d, int order, int cpus)
        {
            _d = d;
            Order = order;
            _cpu = new CpuRcache[cpus];
            for (var i = 0; i < cpus; i++)
            {
                _cpu[i] = new CpuRcache(d.MagazineAlloc(), d.MagazineAlloc());
            }
            _work = DepotWork;
        }

        public int Order { get; }

        private CpuRcache Mine
        {
            get
            {
                var cpu = Machine.CurrentCpu;
                var cpus = _cpu;
                return cpus[(uint)cpu < (uint)cpus.Length ? cpu : cpu % cpus.Length];
            }
        }

        private void DepotPush(Magazine m)
        {
            m.Next = _depot;
            _depot = m;
            _depotSize++;
        }

        private Magazine DepotPop()
        {
            var m = _depot!;
            _depot = m.Next;
            m.Next = null;
            _depotSize--;
            return m;
        }

        /// <summary><c>__iova_rcache_insert</c>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool Insert(ulong pfn)
        {
            // The CPU lock is taken and dropped without a try/finally scope: nothing on the common path can
            // throw, and the rare path releases it itself if it does.
            var c = Mine;
            c.Lock.Take();
            if (c.Loaded.IsFull)
            {
                Rotate(c, forInsert: true);
            }
            c.Loaded.Push(pfn);
            c.Lock.Release();
            return true;
        }

        /// <summary><c>__iova_rcache_get</c>; <paramref name="limitPfn"/> is the highest acceptable first pfn.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public ulong Get(ulong limitPfn)
        {
            var c = Mine;
            c.Lock.Take();
            var pfn = c.Loaded.IsEmpty && !Rotate(c, forInsert: false) ? 0 : c.Loaded.Pop(limitPfn);
            c.Lock.Release();
            return pfn;
        }

        /// <summary>
        /// With the CPU lock held, makes the loaded magazine fit for an insert (not full) or a get (not empty):
        /// the previous magazine takes its place if it fits; otherwise an insert moves the full one to the
        /// depot and starts a fresh one, and a get takes a full one from the depot. False when a get finds the
        /// depot empty.
        /// </summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        private bool Rotate(CpuRcache c, bool forInsert)
        {
            try
            {
                if (forInsert ? !c.Prev.IsFull : !c.Prev.IsEmpty)
                {
                    (c.Prev, c.Loaded) = (c.Loaded, c.Prev);
                    return true;
                }
                if (forInsert)
                {
                    var fresh = _d.MagazineAlloc();
                    lock (_lock)
                    {
                        DepotPush(c.Loaded);
                    }
                    ScheduleWork();
                    c.Loaded = fresh;
                    return true;
                }
                lock (_lock)
                {
                    if (_depot is null)
                    {
                        return false;
                    }
                    _d.MagazineFree(c.Loaded);
                    c.Loaded = DepotPop();
                    return true;
                }
            }
            catch
            {
                c.Lock.Release();
                throw;
            }
        }

        private void ScheduleWork()
        {
            // schedule_delayed_work: a no-op while the work is already pending.
            if (Interlocked.Exchange(ref _workPending, 1) == 0)
            {
                _d._clock.Schedule(DepotDelayNs, _work);
            }
        }

        /// <summary><c>iova_depot_work_func</c>: frees one magazine while the depot is larger than the CPU count, then re-arms.</summary>
        private void DepotWork()
        {
            Volatile.Write(ref _workPending, 0);
            Magazine? mag = null;
            lock (_lock)
            {
                if (_depotSize > _d._cpus)
                {
                    mag = DepotPop();
                }
            }
            if (mag is not null)
            {
                _d.MagazineFreePfns(mag);
                _d.MagazineFree(mag);
                ScheduleWork();
            }
        }

        public void FreeCpu(int cpu)
        {
            var c = _cpu[cpu];
            using (c.Lock.Enter())
            {
                _d.MagazineFreePfns(c.Loaded);
                _d.MagazineFreePfns(c.Prev);
            }
        }

        public void FreeDepot()
        {
            lock (_lock)
            {
                while (_depot is not null)
                {
                    var m = DepotPop();
                    _d.MagazineFreePfns(m);
                    _d.MagazineFree(m);
                }
            }
        }

        public int DepotSize
        {
            get
            {
                lock (_lock)
                {
                    return _depotSize;
                }
            }
        }

        public long CachedPfns()
        {
            long n = 0;
            foreach (var c in _cpu)
            {
                using (c.Lock.Enter())
                {
                    n += c.Loaded.Size + c.Prev.Size;
                }
            }
            lock (_lock)
            {
                for (var m = _depot; m is not null; m = m.Next)
                {
                    n += m.Size;
                }
            }
            return n;
        }

        public RcacheSnapshot Snapshot()
        {
            var cpus = new (ulong[] Loaded, ulong[] Prev)[_cpu.Length];
            for (var i = 0; i < _cpu.Length; i++)
            {
                var c = _cpu[i];
                using (c.Lock.Enter())
                {
                    cpus[i] = (c.Loaded.Contents(), c.Prev.Contents());
                }
            }
            var depot = new List<ulong[]>();
            lock (_lock)
            {
                for (var m = _depot; m is not null; m = m.Next)
                {
                    depot.Add(m.Contents());
                }
            }
            return new RcacheSnapshot(Order, cpus, depot);
        }
    }
}

/// <summary>The state of one rcache size class: each CPU's loaded and prev magazines, and the depot (newest first).</summary>
internal sealed record RcacheSnapshot(int Order, (ulong[] Loaded, ulong[] Prev)[] Cpus, List<ulong[]> Depot);
