using System.Runtime.InteropServices;
using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Iommu;

/// <summary>
/// The lazy-mode flush queue of dma-iommu (<c>struct iova_fq</c> per CPU and its timer): an unmapped
/// IOVA range is not freed at once but queued with the flush count current at the time, and freed only
/// after a full IOTLB flush that started after it was queued has finished. Flushes happen when a ring is
/// full or when the timer fires (armed on the first queueing after the last timeout).
/// </summary>
internal sealed class IovaFlushQueue
{
    private struct Entry
    {
        public ulong Pfn;
        public ulong Pages;
        public long Counter;
    }

    /// <summary>One CPU's ring; its hot fields a cache line away from either end of the object (see <see cref="CacheLine"/>).</summary>
    [StructLayout(LayoutKind.Explicit)]
    private sealed class Ring(int size)
    {
        [FieldOffset(CacheLine.Size)]
        public readonly KernelSpinLock Lock = new();

        [FieldOffset(CacheLine.Size + 8)]
        public readonly Entry[] Entries = new Entry[size];

        [FieldOffset(CacheLine.Size + 16)]
        public int Head;

        [FieldOffset(CacheLine.Size + 20)]
        public int Tail;

#pragma warning disable IDE0044, IDE0051, CS0169 // the cache line after the hot fields
        [FieldOffset((2 * CacheLine.Size) + 16)]
        private long _tail;
#pragma warning restore IDE0044, IDE0051, CS0169
    }

    private readonly IovaDomain _iovad;
    private readonly Action _flushIotlbAll;
    private readonly Clock _clock;
    private readonly Ring[] _rings;
    private readonly int _mask;
    private readonly ulong _timeoutNs;
    private readonly Action _timeout;
    // Read on every queueing with plain loads (atomic64_read): Interlocked.Read is a locked compare-exchange
    // on x86-64, which would pull the line from whichever CPU read it last, on every unmap of every CPU.
    private long _startCnt;
    private long _finishCnt;
    private int _timerOn;

    /// <summary><c>iommu_dma_init_fq</c> (per-CPU variant).</summary>
    /// <param name="flushIotlbAll">The domain's <c>flush_iotlb_all</c>.</param>
    public IovaFlushQueue(IovaDomain iovad, Action flushIotlbAll, Clock clock, int cpus, int entries, int timeoutMs)
    {
        if (entries < 2 || (entries & (entries - 1)) != 0)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Iommu)).Then(nameof(IommuConfig.FlushQueue)).Then(nameof(FlushQueueConfig.Entries)), $"flush queue entries must be a power of two of at least 2, not {entries}");
        }
        if (timeoutMs < 1)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Iommu)).Then(nameof(IommuConfig.FlushQueue)).Then(nameof(FlushQueueConfig.TimeoutMs)), $"flush queue timeout must be at least 1 ms, not {timeoutMs}");
        }
        _iovad = iovad;
        _flushIotlbAll = flushIotlbAll;
        _clock = clock;
        _mask = entries - 1;
        _timeoutNs = (ulong)timeoutMs * 1_000_000;
        _rings = new Ring[cpus];
        for (var i = 0; i < cpus; i++)
        {
            _rings[i] = new Ring(entries);
        }
        _timeout = Timeout;
    }

    /// <summary><c>fq_flush_start_cnt</c>.</summary>
    public long StartCount => Volatile.Read(ref _startCnt);

    /// <summary><c>fq_flush_finish_cnt</c>.</summary>
    public long FinishCount => Volatile.Read(ref _finishCnt);

    public bool TimerArmed => Volatile.Read(ref _timerOn) != 0;

    /// <summary>Entries waiting in all rings.</summary>
    public int QueuedEntries
    {
        get
        {
            var n = 0;
            foreach (var r in _rings)
            {
                using (r.Lock.Enter())
                {
                    n += (r.Tail - r.Head) & _mask;
                }
            }
            return n;
        }
    }

    /// <summary>IOVA pages waiting in all rings, counted as allocated (rounded as <see cref="IovaDomain.FastAllocSize"/>).</summary>
    public ulong QueuedPages
    {
        get
        {
            var n = 0UL;
            foreach (var r in _rings)
            {
                using (r.Lock.Enter())
                {
                    for (var i = r.Head; i != r.Tail; i = (i + 1) & _mask)
                    {
                        n += IovaDomain.FastAllocSize(r.Entries[i].Pages);
                    }
                }
            }
            return n;
        }
    }

    /// <summary>Whether [pfn, pfn+pages) overlaps a queued entry (tests: "not reused before the flush").</summary>
    public bool IsQueued(ulong pfn)
    {
        foreach (var r in _rings)
        {
            using (r.Lock.Enter())
            {
                for (var i = r.Head; i != r.Tail; i = (i + 1) & _mask)
                {
                    ref var e = ref r.Entries[i];
                    if (pfn >= e.Pfn && pfn < e.Pfn + e.Pages)
                    {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    private bool Full(Ring r) => ((r.Tail + 1) & _mask) == r.Head;

    /// <summary><c>fq_ring_free_locked</c>: frees head entries whose flush has completed.</summary>
    private void RingFreeLocked(Ring r)
    {
        var finished = Volatile.Read(ref _finishCnt);
        while (r.Head != r.Tail)
        {
            ref var e = ref r.Entries[r.Head];
            if (e.Counter >= finished)
            {
                break;
            }
            _iovad.FreeIovaFast(e.Pfn, e.Pages);
            r.Head = (r.Head + 1) & _mask;
        }
    }

    /// <summary><c>fq_flush_iotlb</c>: one full IOTLB flush, bracketed by the start and finish counters.</summary>
    public void FlushIotlb()
    {
        Interlocked.Increment(ref _startCnt);
        _flushIotlbAll();
        Interlocked.Increment(ref _finishCnt);
    }

    /// <summary><c>queue_iova</c>: defers freeing [pfn, pfn+pages) to after the next full flush, on the calling CPU's ring.</summary>
    public void Queue(ulong pfn, ulong pages)
    {
        Interlocked.MemoryBarrier();
        var r = _rings[Machine.CurrentCpu % _rings.Length];
        using (r.Lock.Enter())
        {
            RingFreeLocked(r);
            // Usually one flush empties a full ring. But when another CPU's flush started before some
            // entries here were queued and has not finished yet, the finish count this flush leaves
            // behind does not cover them, and the ring stays full: flush again rather than let the
            // append overwrite the oldest entry (its IOVA would never be freed). Each round moves the
            // finish count forward, so this ends once the flushes in flight elsewhere complete.
            while (Full(r))
            {
                FlushIotlb();
                RingFreeLocked(r);
            }
            ref var e = ref r.Entries[r.Tail];
            e.Pfn = pfn;
            e.Pages = pages;
            e.Counter = Volatile.Read(ref _startCnt);
            r.Tail = (r.Tail + 1) & _mask;
        }
        if (Volatile.Read(ref _timerOn) == 0 && Interlocked.Exchange(ref _timerOn, 1) == 0)
        {
            _clock.Schedule(_timeoutNs, _timeout);
        }
    }

    /// <summary><c>fq_flush_timeout</c>: flush, then free what every ring may free.</summary>
    private void Timeout()
    {
        Volatile.Write(ref _timerOn, 0);
        FlushNow();
    }

    /// <summary>What the timer does, now, leaving the timer alone: a full flush, then every eligible entry freed.</summary>
    public void FlushNow()
    {
        FlushIotlb();
        FreeEligible();
    }

    private void FreeEligible()
    {
        foreach (var r in _rings)
        {
            using (r.Lock.Enter())
            {
                RingFreeLocked(r);
            }
        }
    }
}
