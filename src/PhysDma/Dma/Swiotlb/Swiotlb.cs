using System.Runtime.CompilerServices;
using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// swiotlb (kernel/dma/swiotlb.c): bounce buffers for devices that cannot reach a buffer or must not
/// touch it directly. Bytes are copied by the CPU through the cache model, slots are chosen exactly as
/// the kernel chooses them, and pools live in modelled RAM taken from the machine's allocator: the
/// default pool at boot (here: when the <see cref="DmaApi"/> is built), restricted pools per device, and
/// with dynamic swiotlb, pools grown in the background and transient per-device pools.
/// </summary>
internal sealed partial class Swiotlb
{
    private const ulong FourGiB = 4 * Sizes.GiB;

    private readonly DmaApi _api;
    private readonly Machine _m;
    private readonly List<IoTlbMem> _mems = [];
    private readonly ConditionalWeakTable<Device, DeviceIoTlbPools> _devicePools = [];
    private readonly ulong _pageSize;
    private readonly bool _highmem;
    private readonly bool _memEncrypt;
    private int _memEncryptWarned;

    internal Swiotlb(DmaApi api)
    {
        _api = api;
        _m = api.Machine;
        _pageSize = _m.PageSize;
        _highmem = _m.Config.HighmemAbove is not null;
        _memEncrypt = _m.Config.MemEncryptBit != 0;
        var cfg = _m.Config.Swiotlb;
        Dynamic = cfg is { Dynamic: true };
        DefaultMem = new IoTlbMem("swiotlb");
        _mems.Add(DefaultMem);
        if (cfg is not null)
        {
            InitDefault(cfg);
        }

        var restricted = new Dictionary<(ulong, ulong), IoTlbMem>();
        var i = 0;
        foreach (var dev in _m.Devices)
        {
            // swiotlb_dev_init: every device starts on the default allocator.
            _api.State(dev).IoTlbMem = DefaultMem;
            dev.DmaUsesIoTlb = false;
            if (dev.Config.RestrictedPool is { } rp)
            {
                InitRestricted(dev, rp, restricted, i);
            }
            i++;
        }
    }

    private KernelLog Log => _api.Log;

    /// <summary>CONFIG_SWIOTLB_DYNAMIC: pools may be added, and lookups go through <c>dma_uses_io_tlb</c>.</summary>
    public bool Dynamic { get; }

    /// <summary><c>io_tlb_default_mem</c>.</summary>
    public IoTlbMem DefaultMem { get; }

    /// <summary>Every allocator: the default one first, then restricted pools in device order.</summary>
    public IReadOnlyList<IoTlbMem> Mems => _mems;

    /// <summary><c>default_nslabs</c> after boot-time rounding (and any halving when RAM was short).</summary>
    public long DefaultNSlabs { get; private set; }

    /// <summary><c>default_nareas</c>: 0 when swiotlb was never set up.</summary>
    public int DefaultNAreas { get; private set; }

    /// <summary>Slots in use over every allocator (results' <c>swiotlb_slots_used</c>).</summary>
    public long SlotsUsed
    {
        get
        {
            long used = 0;
            foreach (var mem in _mems)
            {
                used += mem.TotalUsed;
            }
            return used;
        }
    }

    /// <summary><c>dev->dma_io_tlb_mem</c>.</summary>
    public IoTlbMem? Mem(Device dev) => _api.State(dev).IoTlbMem;

    /// <summary>The device's live transient pools, newest first.</summary>
    public IReadOnlyList<IoTlbPool> TransientPools(Device dev) =>
        _devicePools.TryGetValue(dev, out var d) ? d.Pools : [];

    /// <summary><c>is_swiotlb_force_bounce</c>, plus the model's per-device <c>force_bounce</c>.</summary>
    public bool IsForceBounce(Device dev) => dev.Config.ForceBounce || Mem(dev) is { ForceBounce: true };

    /// <summary><c>is_swiotlb_active</c>: the device's allocator has slots.</summary>
    public bool IsActive(Device dev) => Mem(dev) is { NSlabs: > 0 };

    /// <summary><c>is_swiotlb_for_alloc</c>: coherent allocations come from the device's (restricted) pool.</summary>
    public bool IsForAlloc(Device dev) => Mem(dev) is { ForAlloc: true };

    /// <summary><c>is_swiotlb_buffer</c> / <c>swiotlb_find_pool != NULL</c>.</summary>
    public bool IsSwiotlbBuffer(Device dev, PhysAddr p) => FindPool(dev, p) is not null;

    /// <summary>
    /// <c>swiotlb_find_pool</c>. Dynamic swiotlb looks only when the device ever got a bounce buffer
    /// (<c>dma_uses_io_tlb</c>): global pools first, then the device's transient pools.
    /// </summary>
    public IoTlbPool? FindPool(Device dev, PhysAddr p)
    {
        if (Mem(dev) is not { } mem)
        {
            return null;
        }
        if (!Dynamic)
        {
            return mem.DefPool is { } def && def.Contains(p) ? def : null;
        }
        if (!dev.DmaUsesIoTlb)
        {
            return null;
        }
        foreach (var pool in mem.PoolArray)
        {
            if (pool.Contains(p))
            {
                return pool;
            }
        }
        if (_devicePools.TryGetValue(dev, out var d))
        {
            foreach (var pool in d.Pools)
            {
                if (pool.Contains(p))
                {
                    return pool;
                }
            }
        }
        return null;
    }

    /// <summary><c>swiotlb_max_mapping_size</c>: one segment, less what min_align_mask may skip.</summary>
    public ulong MaxMappingSize(Device dev)
    {
        var minAlignMask = (uint)dev.MinAlignMask;
        var minAlign = minAlignMask != 0 ? Sizes.DivRoundUp(minAlignMask, IoTlb.Size) * IoTlb.Size : 0;
        return IoTlb.Size * IoTlb.SegSize - minAlign;
    }

    /// <summary>The arch's low-memory limit for the boot pool (ARCH_LOW_ADDRESS_LIMIT + 1), never in highmem.</summary>
    private ulong LowLimit => Math.Min(FourGiB, _m.Config.HighmemAbove ?? ulong.MaxValue);

    /// <summary>
    /// <c>swiotlb_adjust_nareas</c> and <c>round_up_default_nslabs</c>, then <c>swiotlb_init_remap</c>: the
    /// default pool is carved top-down out of RAM below 4 GiB (or at <c>base</c>), halving on failure.
    /// </summary>
    private void InitDefault(SwiotlbConfig cfg)
    {
        var size = cfg.Size == 0 ? IoTlb.DefaultSize : cfg.Size;
        var nslabs = (long)Sizes.AlignUp(IoTlb.NrSlots(size), IoTlb.SegSize);

        // Areas: the configured count, else one per possible CPU; always a power of two.
        var nareas = cfg.Areas > 0 ? cfg.Areas : _m.Cpus;
        nareas = (int)Sizes.RoundUpPowerOfTwo((ulong)nareas);
        Log.Print(LogLevel.Info, $"software IO TLB: area num {nareas}.");
        if (nslabs < (long)IoTlb.SegSize * nareas || !Sizes.IsPowerOfTwo((ulong)nslabs))
        {
            nslabs = (long)Sizes.RoundUpPowerOfTwo((ulong)Math.Max(nslabs, (long)IoTlb.SegSize * nareas));
            Log.Print(LogLevel.Info, $"software IO TLB: SWIOTLB bounce buffer size roundup to {((ulong)nslabs << IoTlb.Shift) >> 20}MB");
        }
        DefaultNSlabs = nslabs;
        DefaultNAreas = nareas;
        DefaultMem.ForceBounce = cfg.Force;

        var poolAreas = IoTlb.LimitNAreas(nareas, nslabs);
        PhysAddr start;
        ulong bytes;
        while (true)
        {
            bytes = Sizes.AlignUp((ulong)nslabs << IoTlb.Shift, _pageSize);
            if (cfg.Base is { } b)
            {
                // A fixed base is the model's stand-in for a platform that places the pool itself.
                if (!Sizes.IsAligned(b, _pageSize) || !_m.Allocator.Reserve(new PhysAddr(b), bytes))
                {
                    throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Swiotlb)).Then(nameof(SwiotlbConfig.Base)),
                        $"swiotlb pool {Hex.Format(b)}+{Hex.Format(bytes)} is not page aligned free RAM");
                }
                start = new PhysAddr(b);
                break;
            }
            if (_m.Allocator.AllocTopDown(bytes, _pageSize, LowLimit) is { } p)
            {
                start = p;
                break;
            }
            Log.Print(LogLevel.Warn, $"software IO TLB: swiotlb_memblock_alloc: Failed to allocate {bytes} bytes tlb structure");
            if (nslabs <= IoTlb.MinSlabs)
            {
                return;
            }
            nslabs = (long)Sizes.AlignUp((ulong)nslabs >> 1, IoTlb.SegSize);
            poolAreas = IoTlb.LimitNAreas(poolAreas, nslabs);
        }
        if (nslabs != DefaultNSlabs)
        {
            Log.Print(LogLevel.Info, $"software IO TLB: SWIOTLB bounce buffer size adjusted {DefaultNSlabs} -> {nslabs} slabs");
            DefaultNSlabs = nslabs;
        }

        // The kernel zeroes the pool here; untouched modelled RAM already reads as zero, and writing
        // 64 MiB through the cache model would only cost memory.
        var pool = new IoTlbPool(start, (int)nslabs, poolAreas, _m.Kmap.PhysToVirt(start), lateAlloc: false, bytes);
        DefaultMem.DefPool = pool;
        DefaultMem.AddPool(pool);
        if (Dynamic)
        {
            DefaultMem.CanGrow = true;
            DefaultMem.PhysLimit = LowLimit - 1;
        }
        Log.Print(LogLevel.Info,
            $"software IO TLB: mapped [mem {Hex.Padded16(pool.Start.Value)}-{Hex.Padded16(pool.End.Value - 1)}] ({((ulong)nslabs << IoTlb.Shift) >> 20}MB)");
    }

    /// <summary>
    /// <c>rmem_swiotlb_device_init</c>: a restricted DMA pool, shared by every device naming the same
    /// region; one area, always bouncing, also used for coherent allocations, never grown.
    /// </summary>
    private void InitRestricted(Device dev, AddrRange rp, Dictionary<(ulong, ulong), IoTlbMem> shared, int devIndex)
    {
        if (!shared.TryGetValue((rp.Base, rp.Size), out var mem))
        {
            if (_m.Config.HighmemAbove is { } h && rp.Base >= h)
            {
                Log.Print(LogLevel.Err, $"{dev.PrintkPrefix}: Restricted DMA pool must be accessible within the linear mapping.");
                return;
            }
            var nslabs = rp.Size >> IoTlb.Shift;
            if (nslabs == 0 || nslabs > int.MaxValue || !Sizes.IsAligned(rp.Base, _pageSize)
                || !_m.Allocator.Reserve(new PhysAddr(rp.Base), rp.Size))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), devIndex).Then(nameof(DeviceConfig.RestrictedPool)),
                    $"device '{dev.Name}': restricted pool {Hex.Format(rp.Base)}+{Hex.Format(rp.Size)} is not page aligned free RAM of at least one slot");
            }
            var start = new PhysAddr(rp.Base);
            var pool = new IoTlbPool(start, (int)nslabs, 1, _m.Kmap.PhysToVirt(start), lateAlloc: false, rp.Size);
            mem = new IoTlbMem($"restricted@{Hex.Llx(rp.Base)}")
            {
                ForceBounce = true,
                ForAlloc = true,
                DefPool = pool,
            };
            mem.AddPool(pool);
            shared.Add((rp.Base, rp.Size), mem);
            _mems.Add(mem);
            Log.Print(LogLevel.Info,
                $"Reserved memory: created restricted DMA pool at {Hex.Padded16(rp.Base)}, size {rp.Size / Sizes.MiB} MiB");
        }
        _api.State(dev).IoTlbMem = mem;
    }

    /// <summary>
    /// <c>swiotlb_alloc_pool</c>: a pool from the page allocator below <paramref name="physLimit"/>, capped at
    /// one MAX_PAGE_ORDER block and halved (to at least <paramref name="minSlabs"/>) while RAM is short.
    /// </summary>
    private IoTlbPool? AllocPool(long minSlabs, long nslabs, int nareas, ulong physLimit)
    {
        var maxSlabs = (long)(_pageSize >> IoTlb.Shift) << IoTlb.MaxPageOrder;
        if (nslabs > maxSlabs)
        {
            nslabs = maxSlabs;
            nareas = IoTlb.LimitNAreas(nareas, nslabs);
        }
        PhysAddr start;
        ulong allocated;
        while (!AllocTlb((ulong)nslabs << IoTlb.Shift, physLimit, out start, out allocated))
        {
            if (nslabs <= minSlabs)
            {
                return null;
            }
            nslabs = (long)Sizes.AlignUp((ulong)nslabs >> 1, IoTlb.SegSize);
            nareas = IoTlb.LimitNAreas(nareas, nslabs);
        }
        return new IoTlbPool(start, (int)nslabs, nareas, _m.Kmap.PhysToVirt(start), lateAlloc: true, allocated);
    }

    /// <summary>
    /// <c>swiotlb_alloc_tlb</c>: a naturally aligned block of pages, all of it at or below the limit and in
    /// the linear map (the page allocator's zone fallback, folded into one bounded search).
    /// </summary>
    private bool AllocTlb(ulong bytes, ulong physLimit, out PhysAddr start, out ulong allocated)
    {
        allocated = _pageSize << IoTlb.GetOrder(bytes, _m.PageShift);
        var hi = physLimit == ulong.MaxValue ? ulong.MaxValue : physLimit + 1;
        hi = Math.Min(hi, _m.Config.HighmemAbove ?? ulong.MaxValue);
        if (_m.Allocator.Alloc(allocated, allocated, 0, hi) is { } p && p.Value + bytes - 1 <= physLimit)
        {
            start = p;
            return true;
        }
        start = PhysAddr.Invalid;
        return false;
    }

    /// <summary>
    /// <c>schedule_work(&amp;mem->dyn_alloc)</c>: the background pool is made by a worker, modelled as a
    /// timer that fires on the next <c>tick</c>.
    /// </summary>
    private void ScheduleDynAlloc(IoTlbMem mem)
    {
        if (mem.TryQueueDynAlloc())
        {
            _m.Clock.Schedule(0, () => DynAlloc(mem));
        }
    }

    /// <summary><c>swiotlb_dyn_alloc</c>: a default-sized pool (at least 1 MiB) joins the head of the list.</summary>
    private void DynAlloc(IoTlbMem mem)
    {
        mem.DynAllocStarted();
        var pool = AllocPool(IoTlb.MinSlabs, DefaultNSlabs, DefaultNAreas, mem.PhysLimit);
        if (pool is null)
        {
            Log.Ratelimited("swiotlb_dyn_alloc:fail", LogLevel.Warn, static () => "software IO TLB: Failed to allocate new pool");
            return;
        }
        mem.AddPool(pool);
    }

    /// <summary>
    /// The transient-pool branch of the dynamic <c>swiotlb_find_slots</c>: a one-area pool of exactly the
    /// slots needed, below the device's limit, owned by the device until the mapping is unmapped.
    /// </summary>
    private int AllocTransient(Device dev, IoTlbMem mem, ulong orig, ulong allocSize, uint allocAlignMask, out IoTlbPool? pool)
    {
        var nslabs = (long)IoTlb.NrSlots(allocSize);
        var physLimit = Sizes.MinNotZero(dev.DmaMask, dev.BusDmaLimit);
        pool = AllocPool(nslabs, nslabs, 1, physLimit);
        if (pool is null)
        {
            return -1;
        }
        var index = SearchPoolArea(dev, mem, pool, 0, orig, allocSize, allocAlignMask);
        if (index < 0)
        {
            _m.Allocator.Free(pool.Start, pool.AllocatedBytes);
            pool = null;
            return -1;
        }
        pool.Transient = true;
        var d = _devicePools.GetValue(dev, static _ => new DeviceIoTlbPools());
        lock (d.Lock)
        {
            d.Pools = [pool, .. d.Pools];
        }
        mem.AddTransient(pool.NSlabs);
        return index;
    }

    /// <summary><c>swiotlb_del_transient</c>: the whole pool goes back to the page allocator.</summary>
    private void DelTransient(Device dev, IoTlbMem mem, IoTlbPool pool)
    {
        mem.DecUsed(pool.NSlabs);
        if (_devicePools.TryGetValue(dev, out var d))
        {
            lock (d.Lock)
            {
                d.Pools = [.. d.Pools.Where(p => p != pool)];
            }
        }
        mem.AddTransient(-pool.NSlabs);
        // call_rcu(swiotlb_dyn_free): no reader can still be inside, the mapping is gone.
        _m.Allocator.Free(pool.Start, pool.AllocatedBytes);
    }
}
