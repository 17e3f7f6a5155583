using System.Globalization;
using System.Text;
using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// dma-debug (kernel/dma/debug.c, CONFIG_DMA_API_DEBUG) plus PhysDma's own checks. Every live mapping is an
/// entry in a 16384-bucket hash keyed by DMA address; unmaps and syncs are checked against it, map-time
/// checks look at the buffer, and a radix tree of active cachelines catches overlapping mappings a
/// non-coherent CPU cache would corrupt. Errors go through <c>err_printk</c>'s counting and printing rules
/// and are also kept as <see cref="DebugReport"/>s.
/// <para>
/// Reports name the device as <c>DMA-API: &lt;driver&gt; &lt;device&gt;: </c>. The model has no driver objects,
/// so the driver is the device's scenario name (the scenario names a device after the driver that owns
/// it) and the device is its PCI address when it has one (the kernel's <c>dev_name</c>), else its name.
/// </para>
/// </summary>
internal sealed partial class DmaDebug
{
    /// <summary>HASH_SIZE.</summary>
    public const int HashSize = 16384;

    /// <summary>HASH_FN_SHIFT.</summary>
    public const int HashFnShift = 13;

    /// <summary>PREALLOC_DMA_DEBUG_ENTRIES (the default of <c>dma_debug_entries=</c>).</summary>
    public const int DefaultPreallocEntries = 1 << 16;

    /// <summary>sizeof(struct dma_debug_entry) before cacheline alignment, with a 5-entry stack trace, on 64-bit.</summary>
    private const ulong EntryBytes = 112;

    private const int LockStripes = 64;

    private readonly DmaApi _api;
    private readonly Machine _m;
    private readonly KernelLog _log;

    // Bucket lists are intrusive and doubly linked like list_head, appended at the tail.
    private readonly DebugEntry?[] _head = new DebugEntry?[HashSize];
    private readonly DebugEntry?[] _tail = new DebugEntry?[HashSize];

    // The kernel has one spinlock per bucket; a stripe of locks keeps the same ordering rules for less memory.
    // Spinlocks as the kernel's: a bucket is held for a short list walk, and System.Threading.Lock cost about
    // three times as much to take and drop (it looks up the thread's id and supports recursion, which nothing
    // here needs: no code takes a bucket lock while holding one).
    private readonly KernelSpinLock[] _bucketLocks;

    private readonly KernelSpinLock _freeLock = new();
    private readonly Stack<DebugEntry> _spare = new();

    private readonly Lock _errLock = new();
    private readonly AppendLog<DebugReport> _reports = new();

    private volatile bool _globalDisable;
    private string _driverFilter = "";
    private int _live;

    /// <summary><c>dma_debug_init</c>: preallocates <paramref name="preallocEntries"/> entries (<c>dma_debug_entries=</c>).</summary>
    public DmaDebug(DmaApi api, int preallocEntries = DefaultPreallocEntries)
    {
        _api = api;
        _m = api.Machine;
        _log = api.Log;
        _bucketLocks = new KernelSpinLock[LockStripes];
        for (var i = 0; i < LockStripes; i++)
        {
            _bucketLocks[i] = new KernelSpinLock();
        }
        PreallocEntries = preallocEntries > 0 ? (uint)preallocEntries : DefaultPreallocEntries;
        DynamicEntries = (uint)(_m.PageSize / Sizes.AlignUp(EntryBytes, _m.CacheLine));
        _clPerPageShift = _m.PageShift - Sizes.Log2(_m.CacheLine);
        _l1Shift = Sizes.Log2(_m.CacheLine);

        var pages = Sizes.DivRoundUp(PreallocEntries, DynamicEntries);
        NrTotalEntries = (uint)(pages * DynamicEntries);
        NumFreeEntries = NrTotalEntries;
        MinFreeEntries = NumFreeEntries;
        HookScatterGather();
        // The boot lines ("preallocated N debug entries") are not logged: the modelled log starts after boot.
    }

    /// <summary><c>nr_prealloc_entries</c>.</summary>
    public uint PreallocEntries { get; }

    /// <summary>DMA_DEBUG_DYNAMIC_ENTRIES: how many entries one page holds (the pool grows by one page).</summary>
    public uint DynamicEntries { get; }

    /// <summary>debugfs <c>num_free_entries</c>.</summary>
    public uint NumFreeEntries { get; private set; }

    /// <summary>debugfs <c>min_free_entries</c>.</summary>
    public uint MinFreeEntries { get; private set; }

    /// <summary>debugfs <c>nr_total_entries</c>.</summary>
    public uint NrTotalEntries { get; private set; }

    /// <summary>Models memory exhaustion: the pool cannot grow past this many entries (null: it always can).</summary>
    public uint? MaxTotalEntries { get; set; }

    /// <summary>
    /// Fault injection: only <paramref name="free"/> entries are left and the pool cannot grow, so the next
    /// mapping past them finds it exhausted ("DMA-API: debugging out of memory - disabling").
    /// </summary>
    public void LimitEntries(uint free)
    {
        using (_freeLock.Enter())
        {
            NumFreeEntries = Math.Min(free, NumFreeEntries);
            MinFreeEntries = NumFreeEntries;
            MaxTotalEntries = NrTotalEntries;
            _entriesLimited = true;
        }
    }

    private bool _entriesLimited;

    /// <summary>debugfs <c>disabled</c> (<c>global_disable</c>): set by <c>dma_debug=off</c> or an allocation failure.</summary>
    public bool Disabled
    {
        get => _globalDisable;
        set => _globalDisable = value;
    }

    /// <summary>debugfs <c>error_count</c>: every error, printed or not.</summary>
    public uint ErrorCount { get; private set; }

    /// <summary>debugfs <c>num_errors</c>: how many more errors will be printed (default 1).</summary>
    public uint NumErrors { get; set; } = 1;

    /// <summary>debugfs <c>all_errors</c>: print every error.</summary>
    public bool AllErrors { get; set; }

    /// <summary>
    /// debugfs <c>driver_filter</c> / <c>dma_debug_driver=</c>: only this driver's errors are printed (all are
    /// counted). Empty switches the filter off.
    /// </summary>
    public string DriverFilter
    {
        get => _driverFilter;
        set
        {
            var name = value?.Trim() ?? "";
            if (name.Length == 0 || !char.IsAsciiLetterOrDigit(name[0]))
            {
                if (_driverFilter.Length > 0)
                {
                    _log.Print(LogLevel.Info, "DMA-API: switching off dma-debug driver filter");
                }
                _driverFilter = "";
                return;
            }
            var end = name.IndexOfAny([' ', '\t', '\n']);
            _driverFilter = end < 0 ? name : name[..end];
            _log.Print(LogLevel.Info, $"DMA-API: enable driver filter for driver [{_driverFilter}]");
        }
    }

    /// <summary>
    /// Where the caller is, stored in each new entry as the kernel stores a stack trace, and shown with
    /// reports about that entry (the scenario runner sets it to the current step).
    /// </summary>
    public string? CurrentSite { get; set; }

    /// <summary>Live entries in the hash (0 after every mapping has been unmapped, as <c>dma_debug_device_change</c> expects at unbind).</summary>
    public int LiveEntries => Volatile.Read(ref _live);

    /// <summary>Every report so far, in order.</summary>
    public IReadOnlyList<DebugReport> Reports => _reports.Snapshot();

    public int ReportCount => _reports.Count;

    /// <summary>The reports made since the first <paramref name="start"/> (how a runner attributes them to a step).</summary>
    public IReadOnlyList<DebugReport> ReportsSince(int start) => _reports.Since(start);

    /// <summary>Raised for every report as it is made.</summary>
    public event Action<DebugReport>? Reported;

    internal static string TypeName(DebugEntryType t) => t switch
    {
        DebugEntryType.Single => "single",
        DebugEntryType.ScatterGather => "scatter-gather",
        DebugEntryType.Coherent => "coherent",
        _ => "phy",
    };

    private static string MapErrName(MapErrType t) => t switch
    {
        MapErrType.NotApplicable => "dma map error check not applicable",
        MapErrType.NotChecked => "dma map error not checked",
        _ => "dma map error checked",
    };

    /// <summary>dev_driver_string: see the class remarks.</summary>
    public static string DriverName(Device dev) => dev.Name;

    /// <summary>dev_name: the PCI address when the device has one.</summary>
    public static string DevName(Device dev) => dev.Config.Bdf ?? dev.Name;

    /// <summary><c>0x%016llx</c>.</summary>
    private static string X16(ulong v) => Hex.Padded16(v);

    /// <summary><c>%p</c> as printed with <c>no_hash_pointers</c>: 16 hex digits, no prefix.</summary>
    private static string Ptr(ulong v) => v.ToString("x16", CultureInfo.InvariantCulture);

    /// <summary><c>%pa</c>: <c>0x</c> and 16 hex digits on 64-bit.</summary>
    private static string Pa(ulong v) => Hex.Padded16(v);

    private static string U(ulong v) => v.ToString(CultureInfo.InvariantCulture);

    private static string D(int v) => v.ToString(CultureInfo.InvariantCulture);

    private static int HashFn(DmaAddr a) => (int)((a.Value >> HashFnShift) & (HashSize - 1));

    private KernelSpinLock BucketLock(int bucket) => _bucketLocks[bucket & (LockStripes - 1)];

    /// <summary><c>driver_filter</c>: no filter, or the device's driver is the one named.</summary>
    private bool DriverFilterMatches(Device dev)
    {
        var f = _driverFilter;
        return f.Length == 0 || string.Equals(DriverName(dev), f, StringComparison.Ordinal);
    }

    /// <summary>
    /// <c>err_printk</c>: counts the error, prints it (with where the entry was mapped) when the driver
    /// filter lets it through and <c>all_errors</c> is set or <c>num_errors</c> is not used up, then uses up
    /// one of <c>num_errors</c> whether or not it printed.
    /// </summary>
    private void ErrPrintk(string check, Device dev, DebugEntry? entry, string text)
    {
        var message = $"DMA-API: {DriverName(dev)} {DevName(dev)}: {text}";
        var mappedAt = entry?.MappedAt;
        bool printed;
        DebugReport report;
        lock (_errLock)
        {
            ErrorCount++;
            printed = DriverFilterMatches(dev) && (AllErrors || NumErrors > 0);
            if (!AllErrors && NumErrors > 0)
            {
                NumErrors--;
            }
            report = new DebugReport(check, message, printed, dev.Name, Kernel: true, mappedAt);
            _reports.Add(report);
        }
        if (printed)
        {
            _log.Print(LogLevel.Warn, message);
            if (entry is not null)
            {
                _log.Print(LogLevel.Warn, "Mapped at:");
                _log.Print(LogLevel.Warn, $" {mappedAt ?? "(unknown)"}");
            }
        }
        Reported?.Invoke(report);
    }

    /// <summary>Records one of PhysDma's own findings: not a kernel error, so never counted or printed by err_printk rules.</summary>
    private void OwnReport(string check, Device dev, string? mappedAt, string text)
    {
        var report = new DebugReport(check, $"PhysDma: {dev.Name}: {text}", Printed: false, dev.Name, Kernel: false, mappedAt);
        _reports.Add(report);
        Reported?.Invoke(report);
    }

    /// <summary><c>dma_entry_alloc</c>: takes a free entry, growing the pool by one page when it is empty.</summary>
    private DebugEntry? EntryAlloc()
    {
        var grew = false;
        uint total = 0;
        DebugEntry entry;
        using (_freeLock.Enter())
        {
            if (NumFreeEntries == 0)
            {
                if (MaxTotalEntries is { } max && NrTotalEntries + DynamicEntries > max)
                {
                    _globalDisable = true;
                    _log.Print(LogLevel.Err, "DMA-API: debugging out of memory - disabling");
                    if (_entriesLimited)
                    {
                        _m.Inject.Record(FaultPoint.DmaDebugEntries);
                    }
                    return null;
                }
                NumFreeEntries += DynamicEntries;
                NrTotalEntries += DynamicEntries;
                grew = true;
                total = NrTotalEntries;
            }
            NumFreeEntries--;
            if (NumFreeEntries < MinFreeEntries)
            {
                MinFreeEntries = NumFreeEntries;
            }
            entry = _spare.Count > 0 ? _spare.Pop() : new DebugEntry();
        }
        if (grew && total % PreallocEntries < DynamicEntries)
        {
            // Said each time the pool passes another multiple of its preallocated size: likely a leak.
            _log.Print(LogLevel.Info, $"DMA-API: dma_debug_entry pool grown to {total} ({total / PreallocEntries}00%)");
        }
        entry.Reset();
        entry.MappedAt = CurrentSite;
        return entry;
    }

    /// <summary><c>dma_entry_free</c>: leaves the cacheline tree, then returns to the pool.</summary>
    private void EntryFree(DebugEntry entry)
    {
        ActiveCachelineRemove(entry);
        OwnershipUntrack(entry);
        using (_freeLock.Enter())
        {
            entry.Dev = null!;
            _spare.Push(entry);
            NumFreeEntries++;
        }
    }

    private void HashAdd(DebugEntry entry)
    {
        var b = HashFn(entry.DevAddr);
        using (BucketLock(b).Enter())
        {
            entry.Prev = _tail[b];
            entry.Next = null;
            if (_tail[b] is { } t)
            {
                t.Next = entry;
            }
            else
            {
                _head[b] = entry;
            }
            _tail[b] = entry;
        }
        Interlocked.Increment(ref _live);
    }

    /// <summary>Unlinks from bucket <paramref name="b"/>; the caller holds its lock.</summary>
    private void HashDelLocked(int b, DebugEntry entry)
    {
        if (entry.Prev is { } p)
        {
            p.Next = entry.Next;
        }
        else
        {
            _head[b] = entry.Next;
        }
        if (entry.Next is { } n)
        {
            n.Prev = entry.Prev;
        }
        else
        {
            _tail[b] = entry.Prev;
        }
        entry.Next = entry.Prev = null;
        Interlocked.Decrement(ref _live);
    }

    /// <summary>
    /// <c>__hash_bucket_find</c>: among entries of bucket <paramref name="b"/> that match, a perfect fit on size,
    /// type, direction and sg count wins at once; otherwise the best fit, but only if it was the only match.
    /// </summary>
    private DebugEntry? BucketFindLocked(int b, in DebugRef r, bool containing)
    {
        DebugEntry? ret = null;
        int matches = 0, lastLevel = -1;
        for (var e = _head[b]; e is not null; e = e.Next)
        {
            if (e.Dev != r.Dev)
            {
                continue;
            }
            if (containing
                ? !(e.DevAddr.Value <= r.DevAddr.Value && e.DevAddr.Value + e.Size >= r.DevAddr.Value + r.Size)
                : e.DevAddr != r.DevAddr)
            {
                continue;
            }
            matches++;
            var level = (e.Size == r.Size ? 1 : 0) + (e.Type == r.Type ? 1 : 0)
                + (e.Direction == r.Direction ? 1 : 0) + (e.SgCallEnts == r.SgCallEnts ? 1 : 0);
            if (level == 4)
            {
                return e;
            }
            if (level > lastLevel)
            {
                lastLevel = level;
                ret = e;
            }
        }
        return matches == 1 ? ret : null;
    }

    /// <summary><c>bucket_find_exact</c>, for unmaps: same device and DMA address.</summary>
    internal DebugEntryInfo? FindExact(Device dev, DmaAddr addr, ulong size, DebugEntryType type, DmaDirection dir, int sgCallEnts = 0)
    {
        var r = new DebugRef(dev, addr, size, type, dir, sgCallEnts, default);
        var b = HashFn(addr);
        using (BucketLock(b).Enter())
        {
            return BucketFindLocked(b, r, containing: false)?.Info();
        }
    }

    /// <summary>
    /// <c>bucket_find_contain</c>, for syncs: an entry of the device covering the whole reference range,
    /// looked for in the reference's bucket and then in earlier ones, since a mapping is hashed by its start.
    /// Returns the entry and leaves its bucket locked (<paramref name="lockedBucket"/>), or null with none held.
    /// </summary>
    private DebugEntry? FindContainLocking(in DebugRef r, out int lockedBucket)
    {
        var limit = (int)Math.Min((ulong)HashSize, (r.DevAddr.Value >> HashFnShift) + 1);
        var addr = r.DevAddr.Value;
        for (var i = 0; i < limit; i++)
        {
            var b = HashFn(new DmaAddr(addr));
            var l = BucketLock(b);
            l.Take();
            var e = BucketFindLocked(b, r, containing: true);
            if (e is not null)
            {
                lockedBucket = b;
                return e;
            }
            l.Release();
            addr -= 1UL << HashFnShift;
        }
        lockedBucket = -1;
        return null;
    }

    /// <summary>Containing lookup as tests see it: the entry a sync of this range would be checked against.</summary>
    public DebugEntryInfo? FindContaining(Device dev, DmaAddr addr, ulong size)
    {
        var r = new DebugRef(dev, addr, size, DebugEntryType.Single, DmaDirection.Bidirectional, 0, default);
        var e = FindContainLocking(r, out var b);
        if (e is null)
        {
            return null;
        }
        var info = e.Info();
        BucketLock(b).Release();
        return info;
    }

    /// <summary>The live entries (of one device, or all), bucket by bucket, as <c>dump</c> walks them.</summary>
    public IReadOnlyList<DebugEntryInfo> Entries(Device? dev = null)
    {
        var list = new List<DebugEntryInfo>();
        for (var b = 0; b < HashSize; b++)
        {
            if (Volatile.Read(ref _head[b]) is null)
            {
                continue;
            }
            using (BucketLock(b).Enter())
            {
                for (var e = _head[b]; e is not null; e = e.Next)
                {
                    if (dev is null || e.Dev == dev)
                    {
                        list.Add(e.Info());
                    }
                }
            }
        }
        return list;
    }

    /// <summary>debugfs <c>dump</c>: one line per entry.</summary>
    public string Dump()
    {
        var sb = new StringBuilder();
        for (var b = 0; b < HashSize; b++)
        {
            if (Volatile.Read(ref _head[b]) is null)
            {
                continue;
            }
            using (BucketLock(b).Enter())
            {
                for (var e = _head[b]; e is not null; e = e.Next)
                {
                    sb.Append(CultureInfo.InvariantCulture,
                        $"{DriverName(e.Dev)} {DevName(e.Dev)} {TypeName(e.Type)} idx {b} P={Pa(e.Paddr.Value)} D={Hex.Llx(e.DevAddr.Value)} L={Hex.Llx(e.Size)} cln={Pa(CachelineNumber(e.Paddr))} {e.Direction.KernelName()} {MapErrName(e.MapErrType)}\n");
                }
            }
        }
        return sb.ToString();
    }

    /// <summary>
    /// <c>dma_debug_device_change</c> on BUS_NOTIFY_UNBOUND_DRIVER (driver unbind): counts what the device
    /// still has mapped and reports it with the details of one leaked entry. The entries stay tracked.
    /// </summary>
    public void RemoveDevice(Device dev)
    {
        if (_globalDisable)
        {
            return;
        }
        var count = 0;
        DebugEntry? last = null;
        DebugEntryInfo? lastInfo = null;
        for (var b = 0; b < HashSize; b++)
        {
            if (Volatile.Read(ref _head[b]) is null)
            {
                continue;
            }
            using (BucketLock(b).Enter())
            {
                for (var e = _head[b]; e is not null; e = e.Next)
                {
                    if (e.Dev == dev)
                    {
                        count++;
                        last = e;
                        lastInfo = e.Info();
                    }
                }
            }
        }
        if (count == 0 || lastInfo is null)
        {
            return;
        }
        ErrPrintk("leak_on_unbind", dev, last,
            $"device driver has pending DMA allocations while released from device [count={D(count)}]\n" +
            $"One of leaked entries details: [device address={X16(lastInfo.DevAddr.Value)}] [size={U(lastInfo.Size)} bytes] " +
            $"[mapped with {lastInfo.Direction.KernelName()}] [mapped as {TypeName(lastInfo.Type)}]");
    }

    /// <summary>A reference record: what an unmap or sync says about the mapping it means.</summary>
    private readonly record struct DebugRef(
        Device Dev, DmaAddr DevAddr, ulong Size, DebugEntryType Type, DmaDirection Direction, int SgCallEnts, PhysAddr Paddr);

    /// <summary>A tracked mapping; pooled, and linked into its hash bucket (and the ownership list) in place.</summary>
    private sealed class DebugEntry
    {
        public DebugEntry? Next;
        public DebugEntry? Prev;
        public DebugEntry? OwnNext;
        public DebugEntry? OwnPrev;
        public bool OwnTracked;
        public Device Dev = null!;
        public DmaAddr DevAddr;
        public ulong Size;
        public DebugEntryType Type;
        public DmaDirection Direction;
        public int SgCallEnts;
        public int SgMappedEnts;
        public PhysAddr Paddr;
        public MapErrType MapErrType;
        public DmaAttrs Attrs;
        public string? MappedAt;

        // PhysDma's ownership tracking: which CPU range the device may write, and who owns it now.
        public PhysAddr OwnPhys;
        public ulong OwnLen;
        public bool DeviceOwns;

        // Ownership-only entries for CPU segments of a merged scatterlist that have no entry of their own
        // (not in the hash); owned by the list's first entry, and the link of the spare list.
        public DebugEntry? OwnExtra;

        public void Reset()
        {
            Next = Prev = OwnNext = OwnPrev = null;
            OwnTracked = false;
            DevAddr = default;
            Size = 0;
            Type = DebugEntryType.Single;
            Direction = DmaDirection.Bidirectional;
            SgCallEnts = SgMappedEnts = 0;
            Paddr = default;
            MapErrType = MapErrType.NotApplicable;
            Attrs = DmaAttrs.None;
            MappedAt = null;
            OwnPhys = default;
            OwnLen = 0;
            DeviceOwns = false;
            OwnExtra = null;
        }

        /// <summary>What every new entry records: device, kind of mapping, both addresses, length, direction, attributes.</summary>
        public void Set(Device dev, DebugEntryType type, PhysAddr paddr, DmaAddr devAddr, ulong size, DmaDirection dir, DmaAttrs attrs)
        {
            Dev = dev;
            Type = type;
            Paddr = paddr;
            DevAddr = devAddr;
            Size = size;
            Direction = dir;
            Attrs = attrs;
        }

        public DebugEntryInfo Info() => new(Dev.Name, DevAddr, Size, Type, Direction, SgCallEnts, SgMappedEnts, Paddr,
            MapErrType, Attrs, DeviceOwns, MappedAt);
    }
}
