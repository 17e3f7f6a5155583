using PhysDma.Core;

namespace PhysDma.Dma;

/// <summary>The swiotlb constants of include/linux/swiotlb.h and kernel/dma/swiotlb.c (IO_TLB_SHIFT, IO_TLB_SIZE, IO_TLB_SEGSIZE, ...).</summary>
internal static class IoTlb
{
    /// <summary><c>IO_TLB_SHIFT</c>: a slot is 2 KiB.</summary>
    public const int Shift = 11;

    /// <summary><c>IO_TLB_SIZE</c>.</summary>
    public const ulong Size = 1UL << Shift;

    /// <summary><c>IO_TLB_SEGSIZE</c>: the longest contiguous run of slots one allocation may take.</summary>
    public const int SegSize = 128;

    /// <summary><c>IO_TLB_DEFAULT_SIZE</c>.</summary>
    public const ulong DefaultSize = 64 * Sizes.MiB;

    /// <summary><c>IO_TLB_MIN_SLABS</c>: 1 MiB, the smallest pool worth having.</summary>
    public const int MinSlabs = (1 << 20) >> Shift;

    /// <summary><c>MAX_PAGE_ORDER</c>: the largest page-allocator block, which caps a dynamically allocated pool.</summary>
    public const int MaxPageOrder = 10;

    /// <summary><c>nr_slots</c>: slots needed for <paramref name="bytes"/> (no overflow near 2^64).</summary>
    public static ulong NrSlots(ulong bytes) => (bytes >> Shift) + ((bytes & (Size - 1)) != 0 ? 1UL : 0);

    /// <summary><c>io_tlb_offset</c>: position of slot <paramref name="i"/> inside its 128-slot segment.</summary>
    public static int SegOffset(long i) => (int)(i & (SegSize - 1));

    /// <summary><c>limit_nareas</c>: no more areas than 128-slot segments.</summary>
    public static int LimitNAreas(int nareas, long nslots) =>
        nslots < (long)nareas * SegSize ? (int)(nslots / SegSize) : nareas;

    /// <summary><c>get_order</c>: the smallest page order whose block holds <paramref name="size"/> bytes.</summary>
    public static int GetOrder(ulong size, int pageShift)
    {
        if (size <= 1)
        {
            return 0;
        }
        return Math.Max(0, Sizes.Fls64((size - 1) >> pageShift));
    }
}

/// <summary><c>struct io_tlb_slot</c>.</summary>
internal struct IoTlbSlot
{
    /// <summary>Original buffer address of this slot's data, or <c>INVALID_PHYS_ADDR</c> (free, padding, or a pure allocation).</summary>
    public ulong OrigAddr;

    /// <summary>Bytes from this slot's data to the end of the allocation.</summary>
    public ulong AllocSize;

    /// <summary>Free slots from here to the end of the segment (0 when used).</summary>
    public int List;

    /// <summary>Padding slots before this one; meaningful only in the first data slot.</summary>
    public int PadSlots;
}

/// <summary>A copy of one slot's bookkeeping, for inspection.</summary>
internal readonly record struct IoTlbSlotInfo(PhysAddr OrigAddr, ulong AllocSize, int List, int PadSlots)
{
    public bool IsFree => List != 0;
}

/// <summary><c>struct io_tlb_area</c>: a slice of a pool with its own lock, so CPUs rarely contend.</summary>
internal sealed class IoTlbArea
{
    // area->lock, a spinlock as in the kernel (and padded, so two areas' locks never share a line).
    public readonly KernelSpinLock Lock = new();
    public long Used;
    public int Index;
}

/// <summary>
/// <c>struct io_tlb_pool</c>: one contiguous bounce buffer in RAM, cut into 2 KiB slots and split into areas.
/// The slot array and area state are the kernel's; read them through <see cref="Slot"/>,
/// <see cref="AreaUsed"/> and <see cref="AreaIndex"/>.
/// </summary>
internal sealed class IoTlbPool
{
    internal readonly IoTlbSlot[] Slots;
    internal readonly IoTlbArea[] Areas;

    /// <summary><c>swiotlb_init_io_tlb_pool</c>: every slot free, free-list counts to the segment end.</summary>
    internal IoTlbPool(PhysAddr start, int nslabs, int nareas, KernelVirt vaddr, bool lateAlloc, ulong allocatedBytes)
    {
        Start = start;
        NSlabs = nslabs;
        End = start + ((ulong)nslabs << IoTlb.Shift);
        NAreas = nareas;
        AreaNSlabs = nslabs / nareas;
        VAddr = vaddr;
        LateAlloc = lateAlloc;
        AllocatedBytes = allocatedBytes;
        Areas = new IoTlbArea[nareas];
        for (var i = 0; i < nareas; i++)
        {
            Areas[i] = new IoTlbArea();
        }
        Slots = new IoTlbSlot[nslabs];
        for (var i = 0; i < nslabs; i++)
        {
            Slots[i] = new IoTlbSlot
            {
                List = Math.Min(IoTlb.SegSize - IoTlb.SegOffset(i), nslabs - i),
                OrigAddr = PhysAddr.Invalid.Value,
            };
        }
    }

    public PhysAddr Start { get; }

    /// <summary>One past the last slot byte.</summary>
    public PhysAddr End { get; }

    public int NSlabs { get; }
    public int NAreas { get; }
    public int AreaNSlabs { get; }

    /// <summary>A per-device pool made for one mapping and deleted when it is unmapped (dynamic swiotlb).</summary>
    public bool Transient { get; internal set; }

    /// <summary>Allocated from the page allocator after boot (dynamic pools), rather than reserved at boot.</summary>
    public bool LateAlloc { get; }

    /// <summary>The pool's linear-map address (<c>pool->vaddr</c>).</summary>
    internal KernelVirt VAddr { get; }

    /// <summary>RAM taken from the allocator for this pool (a power-of-two page block for late pools).</summary>
    internal ulong AllocatedBytes { get; }

    public bool Contains(PhysAddr p) => p >= Start && p < End;

    /// <summary>Address of slot <paramref name="index"/> (<c>slot_addr</c>).</summary>
    public PhysAddr SlotAddr(int index) => Start + ((ulong)index << IoTlb.Shift);

    public IoTlbSlotInfo Slot(int index)
    {
        var s = Slots[index];
        return new IoTlbSlotInfo(new PhysAddr(s.OrigAddr), s.AllocSize, s.List, s.PadSlots);
    }

    public long AreaUsed(int area)
    {
        var a = Areas[area];
        using (a.Lock.Enter())
        {
            return a.Used;
        }
    }

    /// <summary>Where the next search in <paramref name="area"/> starts (relative to the area).</summary>
    public int AreaIndex(int area)
    {
        var a = Areas[area];
        using (a.Lock.Enter())
        {
            return a.Index;
        }
    }

    /// <summary><c>mem_pool_used</c>.</summary>
    public long Used
    {
        get
        {
            long used = 0;
            for (var i = 0; i < NAreas; i++)
            {
                used += AreaUsed(i);
            }
            return used;
        }
    }

    public override string ToString() => $"swiotlb pool [{Start}-{End - 1}] {NSlabs} slots, {NAreas} areas{(Transient ? ", transient" : "")}";
}

/// <summary>
/// <c>struct io_tlb_mem</c>: the bounce-buffer allocator a device uses: the default one, or a restricted
/// pool shared by the devices attached to it. With dynamic swiotlb it holds a list of pools, newest first.
/// </summary>
internal sealed class IoTlbMem
{
    private readonly Lock _poolsLock = new();
    private volatile IoTlbPool[] _pools = [];
    private long _nslabs;
    private long _totalUsed;
    private long _usedHiwater;
    private long _transientNSlabs;
    private int _dynAllocPending;

    internal IoTlbMem(string name)
    {
        Name = name;
    }

    /// <summary>"swiotlb" for the default allocator, the reserved region's name for a restricted pool.</summary>
    public string Name { get; }

    public bool ForceBounce { get; internal set; }

    /// <summary>Coherent allocations come from this allocator (<c>swiotlb_alloc</c>): restricted pools.</summary>
    public bool ForAlloc { get; internal set; }

    /// <summary>New pools may be added at run time (dynamic swiotlb, default allocator only).</summary>
    public bool CanGrow { get; internal set; }

    /// <summary>Highest physical address a grown pool may use.</summary>
    public ulong PhysLimit { get; internal set; }

    /// <summary>The boot-time pool (<c>defpool</c>); null when no pool could be made.</summary>
    public IoTlbPool? DefPool { get; internal set; }

    /// <summary>Every pool of this allocator, newest first (transient pools are the devices').</summary>
    public IReadOnlyList<IoTlbPool> Pools => _pools;

    internal IoTlbPool[] PoolArray => _pools;

    /// <summary>Slots over all pools (<c>mem->nslabs</c>).</summary>
    public long NSlabs => Volatile.Read(ref _nslabs);

    /// <summary>Slots in use, transient pools included (<c>total_used</c>).</summary>
    public long TotalUsed => Volatile.Read(ref _totalUsed);

    /// <summary>Most slots ever in use at once (<c>used_hiwater</c>).</summary>
    public long UsedHiwater => Volatile.Read(ref _usedHiwater);

    /// <summary>Slots in live transient pools (<c>transient_nslabs</c>).</summary>
    public long TransientNSlabs => Volatile.Read(ref _transientNSlabs);

    /// <summary><c>add_mem_pool</c>: publish a pool at the head of the list (readers see old or new array, never half).</summary>
    internal void AddPool(IoTlbPool pool)
    {
        lock (_poolsLock)
        {
            _pools = [pool, .. _pools];
            _nslabs += pool.NSlabs;
        }
    }

    /// <summary><c>inc_used_and_hiwater</c>.</summary>
    internal void IncUsed(long n)
    {
        var used = Interlocked.Add(ref _totalUsed, n);
        var hi = Volatile.Read(ref _usedHiwater);
        while (used > hi)
        {
            var seen = Interlocked.CompareExchange(ref _usedHiwater, used, hi);
            if (seen == hi)
            {
                break;
            }
            hi = seen;
        }
    }

    /// <summary><c>dec_used</c>.</summary>
    internal void DecUsed(long n) => Interlocked.Add(ref _totalUsed, -n);

    internal void AddTransient(long n) => Interlocked.Add(ref _transientNSlabs, n);

    /// <summary><c>schedule_work(&amp;mem->dyn_alloc)</c>: true if the work was not already pending.</summary>
    internal bool TryQueueDynAlloc() => Interlocked.Exchange(ref _dynAllocPending, 1) == 0;

    internal void DynAllocStarted() => Volatile.Write(ref _dynAllocPending, 0);

    public override string ToString() => $"io_tlb_mem {Name}: {NSlabs} slots, {TotalUsed} used";
}

/// <summary>A device's transient pools (<c>dev->dma_io_tlb_pools</c> and <c>dma_io_tlb_lock</c>).</summary>
internal sealed class DeviceIoTlbPools
{
    public readonly Lock Lock = new();
    public volatile IoTlbPool[] Pools = [];
}
