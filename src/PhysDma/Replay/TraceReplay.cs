using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Dma.Trace;
using PhysDma.Platform;
using PhysDma.Report;

namespace PhysDma.Replay;

/// <summary>How to replay a trace.</summary>
internal sealed class ReplayOptions
{
    /// <summary>Traced <c>dev_name</c> to model device name (<c>--device 0000:03:00.0=nic0</c>).</summary>
    public Dictionary<string, string> DeviceMap { get; init; } = new(StringComparer.Ordinal);

    /// <summary>Place traced pages in free model RAM instead of using the traced addresses.</summary>
    public bool Relocate { get; init; }

    /// <summary>Keep each mapping call's traced and model address in the report (the first <see cref="TraceReplay.MaxKeptCalls"/>).</summary>
    public bool KeepCalls { get; init; }

    /// <summary>Called every 64 Ki lines with the bytes read so far.</summary>
    public Action<long>? Progress { get; init; }

    /// <summary>Record what the HTML report draws after each DMA event (<see cref="TraceReplay.Steps"/>).</summary>
    public bool Report { get; init; }
}

/// <summary>
/// Replays the DMA API calls of a captured trace on a modelled machine: every <c>dma_map_phys</c>,
/// <c>dma_map_sg</c>, sync, unmap, <c>dma_alloc</c> and <c>dma_free</c> becomes the same call on the model,
/// in order, at the traced time. The traced <c>dma_addr</c>s tie the calls together (an unmap names the
/// mapping its traced address came from); the model's own addresses are the result.
/// </summary>
internal sealed class TraceReplay
{
    private readonly ReplayOptions _opt;
    private readonly Dictionary<string, DevState> _devs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DevState>.AlternateLookup<ReadOnlySpan<char>> _devLookup;
    private readonly HashSet<ulong> _claimed = [];
    private readonly Dictionary<string, long> _skipped = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>> _skippedLookup;
    private readonly Dictionary<ulong, ulong> _reloc = [];
    private readonly List<ulong> _a = [];
    private readonly List<ulong> _b = [];
    private readonly List<ulong> _c = [];
    private readonly List<CacheOp> _cacheLog = [];
    private readonly HashSet<Mapping> _bounced = [];
    private readonly DmaRecorder _rec = new();
    private readonly ulong _page;
    private readonly int _pageShift;
    private ReplayReport _report = null!;
    private TraceReader _reader = null!;
    private Mapping? _about;
    private Mapping? _made;
    private DevState? _eventDev;
    private long _iovaPages;

    public TraceReplay(MachineConfig config, ReplayOptions? options = null)
    {
        _opt = options ?? new ReplayOptions();
        Machine = new Machine(config);
        Api = new DmaApi(Machine);
        Api.Recorder = _rec;
        _devLookup = _devs.GetAlternateLookup<ReadOnlySpan<char>>();
        _skippedLookup = _skipped.GetAlternateLookup<ReadOnlySpan<char>>();
        _page = Machine.PageSize;
        _pageShift = Machine.PageShift;
        if (Machine.ArchCache.HasNonCoherentDma)
        {
            Machine.ArchCache.Log = _cacheLog;
        }
        if (Api.Debug is { } debug)
        {
            debug.Reported += OnReport;
        }
        if (_opt.Report)
        {
            _rec.Why = [];
            Steps = new ReplayReportRecorder(Machine, Api, _rec, LiveMappings);
        }
    }

    /// <summary>The HTML report's events and snapshots, when <see cref="ReplayOptions.Report"/> asked for them.</summary>
    public ReplayReportRecorder? Steps { get; }

    public Machine Machine { get; }
    public DmaApi Api { get; }

    /// <summary>Replays <paramref name="input"/>; throws <see cref="TraceFormatException"/> for bad input (the line and why).</summary>
    public ReplayReport Run(Stream input, string traceName)
    {
        _report = new ReplayReport
        {
            Trace = traceName,
            Machine = Machine.Config.Name ?? "machine",
            Policy = _opt.Relocate ? PhysPolicy.Relocate : PhysPolicy.AsTraced,
            Debug = Api.Debug is not null,
            Calls = _opt.KeepCalls ? [] : null,
        };
        using (_reader = new TraceReader(input))
        {
            while (_reader.Read())
            {
                if ((_reader.LineNumber & 0xffff) == 0)
                {
                    _opt.Progress?.Invoke(_reader.Position);
                }
                if (_reader.Kind == TraceLineKind.Header)
                {
                    _report.HeaderLines++;
                    continue;
                }
                _report.Events++;
                var kind = TracePayload.KindOf(_reader.EventName);
                if (kind is TraceEventKind.Other or TraceEventKind.Derived)
                {
                    // Counted by name without a string per line (a whole-system trace is mostly other events).
                    var name = _reader.EventName;
                    _skippedLookup[name] = _skippedLookup.TryGetValue(name, out var n) ? n + 1 : 1;
                    continue;
                }
                Steps?.Begin(_report);
                try
                {
                    Replay(kind);
                }
                catch (PayloadException e)
                {
                    throw new TraceFormatException(_reader.LineNumber, _reader.Line.ToString(), $"{TracePayload.Name(kind)}: {e.Message}");
                }
                if (Steps is { } steps && _eventDev is { } ed)
                {
                    steps.End(_report, _reader.LineNumber, _reader.Line, kind, ed.Counts.Traced, ed.Dev, _made is { } made ? Report(made) : null, _cacheLog);
                }
                if (_cacheLog.Count > 0)
                {
                    CountCacheOps();
                }
            }
            _report.Lines = _reader.LineNumber;
            if (_reader.TruncatedLastLine is { } cut)
            {
                _report.TruncatedLastLine = cut;
                _report.TruncatedLine = _reader.LineNumber;
            }
        }
        _opt.Progress?.Invoke(input.CanSeek ? input.Length : 0);
        foreach (var (name, n) in _skipped)
        {
            Skip(TracePayload.KindOf(name) == TraceEventKind.Derived ? "derived: " + name : name, n);
        }
        Finish();
        return _report;
    }

    private void Skip(string what, long n = 1)
    {
        _report.Skipped[what] = _report.Skipped.GetValueOrDefault(what) + n;
        Steps?.Skipped(what);
    }

    private void CountCacheOps()
    {
        foreach (var op in _cacheLog)
        {
            switch (op.Op)
            {
                case CacheOpKind.Clean:
                    _report.CacheCleans++;
                    break;
                case CacheOpKind.Invalidate:
                    _report.CacheInvalidates++;
                    break;
                default:
                    _report.CacheFlushes++;
                    break;
            }
        }
        _cacheLog.Clear();
    }

    private void OnReport(DebugReport r)
    {
        var line = _reader is { } rd && _report.Lines == 0 ? rd.LineNumber : 0;
        var text = line == 0 ? "(end of trace: driver unbound)" : _reader.Line.ToString();
        _report.DebugReports.Add(new ReplayDebugReport(line, text, r.Check, r.Message, _about?.Line));
    }

    private DevState Dev(ReadOnlySpan<char> name)
    {
        if (_devLookup.TryGetValue(name, out var d))
        {
            return d;
        }
        var traced = name.ToString();
        var target = _opt.DeviceMap.GetValueOrDefault(traced);
        Device? found = null;
        foreach (var dev in Machine.Devices)
        {
            if (target is not null ? dev.Name == target : DmaTrace.DevName(dev) == traced || dev.Name == traced)
            {
                found = dev;
            }
        }
        if (found is null)
        {
            var have = string.Join(", ", Machine.Devices.Select(x => x.Config.Bdf is { } b ? $"{x.Name} ({b})" : x.Name));
            throw new TraceFormatException(_reader.LineNumber, _reader.Line.ToString(), target is not null
                ? $"--device {traced}={target}: machine {_report.Machine} has no device '{target}' (it has: {have})"
                : $"traced device '{traced}' matches no device of machine {_report.Machine} (it has: {have}); map it with --device {traced}=NAME");
        }
        d = new DevState(found, new DeviceCounts(traced, found.Name));
        _devs[traced] = d;
        _report.Devices.Add(d.Counts);
        return d;
    }

    private void Replay(TraceEventKind kind)
    {
        var p = _reader.Payload;
        _eventDev = null;
        _made = null;
        var d = Dev(TracePayload.Device(p));
        _eventDev = d;
        d.Counts.Calls[(int)kind]++;
        var now = Machine.Clock.NowNs;
        if (_reader.TimeNs > now)
        {
            Machine.Clock.Advance(_reader.TimeNs - now);
        }
        using var cpu = Machine.OnCpu(_reader.Cpu % Machine.Cpus);
        _about = null;
        try
        {
            switch (kind)
            {
                case TraceEventKind.MapPhys:
                    MapPhys(d, p);
                    break;
                case TraceEventKind.UnmapPhys:
                    UnmapPhys(d, p);
                    break;
                case TraceEventKind.SyncSingleForCpu:
                case TraceEventKind.SyncSingleForDevice:
                    SyncSingle(d, p, kind == TraceEventKind.SyncSingleForCpu);
                    break;
                case TraceEventKind.MapSg:
                    MapSg(d, p);
                    break;
                case TraceEventKind.UnmapSg:
                    UnmapSg(d, p);
                    break;
                case TraceEventKind.SyncSgForCpu:
                case TraceEventKind.SyncSgForDevice:
                    SyncSg(d, p, kind == TraceEventKind.SyncSgForCpu);
                    break;
                case TraceEventKind.Alloc:
                    Alloc(d, p);
                    break;
                case TraceEventKind.Free:
                    Free(d, p);
                    break;
                case TraceEventKind.MapSgErr:
                    Fail(d, kind, "failed in the trace with err=" + TracePayload.Dec(TracePayload.Field(p, "err="), "err") + " (the event has no lengths): not replayed");
                    return;
                default:
                    Fail(d, kind, "not modelled by PhysDma (dma_alloc_pages/dma_alloc_sgt family): counted, not replayed");
                    return;
            }
            _report.Replayed++;
        }
        catch (KernelBug e)
        {
            Fail(d, kind, "the kernel would BUG() here: " + e.Message);
        }
        catch (ModelViolation e)
        {
            Fail(d, kind, "model violation (a bug in PhysDma, please report it): " + e.Message);
        }
    }

    private void Fail(DevState d, TraceEventKind kind, string reason) =>
        _report.Failures.Add(new ReplayFailure(_reader.LineNumber, d.Counts.Traced, TracePayload.Name(kind), reason));

    private void Compare(DevState d, TraceEventKind kind, ulong traced, ulong model)
    {
        _report.AddressesCompared++;
        if (traced != model)
        {
            _report.AddressesDiffering++;
        }
        if (_report.Calls is { Count: < MaxKeptCalls } calls)
        {
            calls.Add(new ReplayedCall(_reader.LineNumber, d.Counts.Traced, TracePayload.Name(kind), traced, model));
        }
    }

    /// <summary>At most this many calls are kept in the report (memory stays flat for long traces).</summary>
    public const int MaxKeptCalls = 100_000;

    /// <summary>The model address for a traced physical range: as traced (RAM is claimed from the model's allocator), or relocated.</summary>
    private PhysAddr GivePhys(ulong phys, ulong size, DmaAttrs attrs)
    {
        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            return new PhysAddr(phys);
        }
        var len = Math.Max(size, 1);
        var first = phys >> _pageShift;
        var last = (phys + len - 1) >> _pageShift;
        if (_opt.Relocate)
        {
            if (_reloc.TryGetValue(first, out var at))
            {
                var ok = true;
                for (var pfn = first + 1; pfn <= last && ok; pfn++)
                {
                    ok = _reloc.TryGetValue(pfn, out var next) && next == at + (pfn - first);
                }
                if (ok)
                {
                    return new PhysAddr((at << _pageShift) + (phys & (_page - 1)));
                }
            }
            var n = last - first + 1;
            var got = Machine.Allocator.Alloc(n << _pageShift, _page)
                ?? throw new TraceFormatException(_reader.LineNumber, _reader.Line.ToString(),
                    $"--relocate: no {n} free contiguous pages of RAM left on machine {_report.Machine}");
            var basePfn = got.Value >> _pageShift;
            for (var i = 0UL; i < n; i++)
            {
                _reloc[first + i] = basePfn + i;
            }
            return new PhysAddr((basePfn << _pageShift) + (phys & (_page - 1)));
        }
        if (!Machine.Map.IsRam(new PhysAddr(phys), len))
        {
            throw new TraceFormatException(_reader.LineNumber, _reader.Line.ToString(),
                $"phys_addr {Hex.Format(phys)} (size {size}) is not RAM on machine {_report.Machine} and attrs do not say MMIO; " +
                "a trace from another host needs --relocate");
        }
        for (var pfn = first; pfn <= last; pfn++)
        {
            if (_claimed.Add(pfn))
            {
                // Taken from the allocator so the model's own buffers (coherent, bounce pools) stay clear of it;
                // a page the model already uses (kernel text, a stack) is mapped as it is.
                Machine.Allocator.Reserve(new PhysAddr(pfn << _pageShift), _page);
            }
        }
        return new PhysAddr(phys);
    }

    private void MapPhys(DevState d, ReadOnlySpan<char> p)
    {
        var traced = TracePayload.Hex(TracePayload.Field(p, "dma_addr="), "dma_addr");
        var size = (ulong)TracePayload.Dec(TracePayload.Field(p, "size="), "size");
        var phys = TracePayload.Hex(TracePayload.Field(p, "phys_addr="), "phys_addr");
        var dir = TracePayload.Dir(TracePayload.Field(p, "dir="));
        var attrs = TracePayload.Attrs(TracePayload.Field(p, "attrs="));
        var modelPhys = GivePhys(phys, size, attrs);
        var logBefore = Api.Log.Count;
        _rec.Reset();
        var addr = Api.MapPhys(d.Dev, modelPhys, size, dir, attrs);
        // The driver checks every mapping (a trace cannot show whether it did; dma-debug would otherwise flag each unmap).
        Api.MappingError(d.Dev, addr);
        var tracedError = traced == DmaAddr.MappingError.Value;
        if (!tracedError)
        {
            Compare(d, TraceEventKind.MapPhys, traced, addr.Value);
        }
        if (addr.IsError)
        {
            Fail(d, TraceEventKind.MapPhys, (tracedError ? "failed in the trace and on the model: " : "") + Reason(logBefore));
            if (!tracedError)
            {
                d.Put(traced, Mapping.Failed(MappingKind.Single, _reader.LineNumber, traced));
            }
            return;
        }
        if (tracedError)
        {
            Fail(d, TraceEventKind.MapPhys, $"failed in the trace, mapped on the model at {Hex.Format(addr.Value)} (unmapped again: the driver saw a failure)");
            Api.UnmapPhys(d.Dev, addr, size, dir, attrs);
            return;
        }
        var m = d.Take(traced);
        m.Set(MappingKind.Single, _reader.LineNumber, traced, addr, size, dir);
        m.Phys = modelPhys;
        Hold(d, m, _rec.Path is DmaPath.Swiotlb or DmaPath.IommuSwiotlb);
    }

    private string Reason(int logBefore)
    {
        var lines = Api.Log.Lines;
        var msg = lines.Count > logBefore ? string.Join("; ", lines.Skip(logBefore).Select(l => l.Message)) : null;
        return msg ?? "DMA_MAPPING_ERROR (no new kernel message: the path printed none, or printed it once already)";
    }

    /// <summary>Accounting for a new live mapping: IOVA pages, swiotlb peak and its holders.</summary>
    private void Hold(DevState d, Mapping m, bool bounced)
    {
        _made = m;
        m.Live = true;
        d.LiveCount++;
        if (d.Dev.DmaIommu)
        {
            if (m.Kind == MappingKind.Sg)
            {
                m.IovaPages = 0;
                for (var i = 0; i < m.Nents && m.Sgl![i].DmaLength != 0; i++)
                {
                    m.IovaPages += Pages(m.Sgl[i].DmaAddress.Value, m.Sgl[i].DmaLength);
                }
            }
            else
            {
                m.IovaPages = Pages(m.ModelDma.Value, m.Size);
            }
            _iovaPages += m.IovaPages;
            _report.PeakIovaPages = Math.Max(_report.PeakIovaPages, _iovaPages);
        }
        if (bounced)
        {
            m.Bounced = true;
            _bounced.Add(m);
            _report.BytesBounced += m.Size;
            var slots = Api.Swiotlb.SlotsUsed;
            if (slots > _report.PeakSwiotlbSlots)
            {
                _report.PeakSwiotlbSlots = slots;
                _report.PeakSwiotlbHolders.Clear();
                foreach (var h in _bounced)
                {
                    if (_report.PeakSwiotlbHolders.Count < 64)
                    {
                        _report.PeakSwiotlbHolders.Add(h.Line);
                    }
                }
                _report.PeakSwiotlbHolders.Sort();
            }
        }
    }

    private long Pages(ulong addr, ulong size) =>
        (long)(((addr + Math.Max(size, 1) - 1) >> _pageShift) - (addr >> _pageShift) + 1);

    private void Release(DevState d, Mapping m)
    {
        if (!m.Live)
        {
            return;
        }
        m.Live = false;
        d.LiveCount--;
        if (Steps is { } steps)
        {
            Unmapping(steps, d, m);
        }
        _iovaPages -= m.IovaPages;
        m.IovaPages = 0;
        if (m.Bounced)
        {
            _bounced.Remove(m);
            m.Bounced = false;
        }
    }

    private void UnmapPhys(DevState d, ReadOnlySpan<char> p)
    {
        var traced = TracePayload.Hex(TracePayload.Field(p, "dma_addr="), "dma_addr");
        var size = (ulong)TracePayload.Dec(TracePayload.Field(p, "size="), "size");
        var dir = TracePayload.Dir(TracePayload.Field(p, "dir="));
        var attrs = TracePayload.Attrs(TracePayload.Field(p, "attrs="));
        var addr = new DmaAddr(traced);
        if (d.ByDma.TryGetValue(traced, out var m))
        {
            if (m.FailedOnModel)
            {
                Skip("unmap of a mapping that failed on the model");
                return;
            }
            _about = m;
            addr = m.ModelDma;
            Release(d, m);
        }
        Api.UnmapPhys(d.Dev, addr, size, dir, attrs);
    }

    /// <summary>The live mapping holding a traced address (a sync may name any byte of it).</summary>
    private static Mapping? Containing(DevState d, ulong traced)
    {
        if (d.ByDma.TryGetValue(traced, out var m) && (m.Live || m.FailedOnModel))
        {
            return m;
        }
        if (d.LiveCount == 0)
        {
            return m;
        }
        foreach (var x in d.ByDma.Values)
        {
            if (x.Live && traced >= x.TracedDma && traced - x.TracedDma < Math.Max(x.Size, 1))
            {
                return x;
            }
        }
        return m;
    }

    private void SyncSingle(DevState d, ReadOnlySpan<char> p, bool forCpu)
    {
        var traced = TracePayload.Hex(TracePayload.Field(p, "dma_addr="), "dma_addr");
        var size = (ulong)TracePayload.Dec(TracePayload.Field(p, "size="), "size");
        var dir = TracePayload.Dir(TracePayload.Field(p, "dir="));
        var addr = new DmaAddr(traced);
        if (Containing(d, traced) is { } m)
        {
            if (m.FailedOnModel)
            {
                Skip("sync of a mapping that failed on the model");
                return;
            }
            _about = m;
            addr = m.ModelDma + (traced - m.TracedDma);
        }
        if (forCpu)
        {
            Api.SyncSingleForCpu(d.Dev, addr, size, dir);
        }
        else
        {
            Api.SyncSingleForDevice(d.Dev, addr, size, dir);
        }
    }

    private void MapSg(DevState d, ReadOnlySpan<char> p)
    {
        var dir = TracePayload.Dir(TracePayload.Field(p, "dir="));
        var attrs = TracePayload.Attrs(TracePayload.Field(p, "attrs="));
        var nents = TracePayload.FullCount(TracePayload.Field(p, "nents="), "nents");
        var ents = TracePayload.FullCount(TracePayload.Field(p, "ents="), "ents");
        TracePayload.Array(TracePayload.Field(p, "dma_addrs="), "dma_addrs", _a);
        TracePayload.Array(TracePayload.Field(p, "sizes="), "sizes", _b);
        TracePayload.Array(TracePayload.Field(p, "phys_addrs="), "phys_addrs", _c);
        if (nents > DmaTrace.MaxSgEntries || ents > DmaTrace.MaxSgEntries || p.Contains(" [TRUNCATED]", StringComparison.Ordinal))
        {
            Fail(d, TraceEventKind.MapSg, $"the trace kept only {DmaTrace.MaxSgEntries} of {nents} entries ([TRUNCATED]): not replayed");
            if (_c.Count > 0)
            {
                d.SgByPhys[_c[0]] = Mapping.Failed(MappingKind.Sg, _reader.LineNumber, _a.Count > 0 ? _a[0] : 0);
            }
            return;
        }
        if (_c.Count != nents || _a.Count != ents || _b.Count != ents || nents == 0)
        {
            throw new PayloadException("nents", $"nents={nents} ents={ents} but the arrays hold {_c.Count} phys_addrs, {_a.Count} dma_addrs and {_b.Count} sizes");
        }
        var m = _a.Count > 0 ? d.Take(_a[0]) : new Mapping();
        var list = m.Entries(nents);
        // Entry lengths: the DMA lengths when nothing merged; else each merged segment is split page by page.
        var seg = 0;
        var left = _b[0];
        for (var i = 0; i < nents; i++)
        {
            ulong len;
            if (ents == nents)
            {
                len = _b[i];
            }
            else
            {
                while (left == 0 && seg + 1 < _b.Count)
                {
                    left = _b[++seg];
                }
                var toPageEnd = _page - (_c[i] & (_page - 1));
                len = i == nents - 1 ? Math.Max(left, 1) : Math.Max(Math.Min(left, toPageEnd), 1);
                left -= Math.Min(left, len);
            }
            var e = list[i];
            e.Phys = GivePhys(_c[i], len, attrs);
            e.Length = (uint)len;
            e.DmaAddress = default;
            e.DmaLength = 0;
            e.IsBusAddress = false;
            e.UsedSwiotlb = false;
        }
        var slotsBefore = Api.Swiotlb.SlotsUsed;
        var logBefore = Api.Log.Count;
        var got = Api.MapSgAttrs(d.Dev, list, nents, dir, attrs);
        if (got == 0)
        {
            Fail(d, TraceEventKind.MapSg, Reason(logBefore));
            m.SetFailed(MappingKind.Sg, _reader.LineNumber, _a[0]);
            d.SgByPhys[_c[0]] = m;
            return;
        }
        for (var i = 0; i < Math.Min(got, ents); i++)
        {
            Compare(d, TraceEventKind.MapSg, _a[i], list[i].DmaAddress.Value);
        }
        if (got != ents)
        {
            Fail(d, TraceEventKind.MapSg, $"mapped as {got} DMA segments on the model, {ents} in the trace");
        }
        ulong total = 0;
        for (var i = 0; i < nents; i++)
        {
            total += list[i].Length;
        }
        m.Set(MappingKind.Sg, _reader.LineNumber, _a[0], list[0].DmaAddress, total, dir);
        m.Nents = nents;
        d.SgByPhys[_c[0]] = m;
        Hold(d, m, Api.Swiotlb.SlotsUsed > slotsBefore);
    }

    private void UnmapSg(DevState d, ReadOnlySpan<char> p)
    {
        var dir = TracePayload.Dir(TracePayload.Field(p, "dir="));
        var attrs = TracePayload.Attrs(TracePayload.Field(p, "attrs="));
        TracePayload.Array(TracePayload.Field(p, "phys_addrs="), "phys_addrs", _c);
        if (_c.Count == 0 || !d.SgByPhys.TryGetValue(_c[0], out var m))
        {
            Fail(d, TraceEventKind.UnmapSg, "unmap of a scatterlist this trace never mapped: not replayed (the trace does not say its lengths)");
            return;
        }
        if (m.FailedOnModel)
        {
            Skip("unmap of a mapping that failed on the model");
            return;
        }
        _about = m;
        Release(d, m);
        Api.UnmapSgAttrs(d.Dev, m.Sgl!, Math.Min(m.Nents, _c.Count), dir, attrs);
    }

    private void SyncSg(DevState d, ReadOnlySpan<char> p, bool forCpu)
    {
        var dir = TracePayload.Dir(TracePayload.Field(p, "dir="));
        TracePayload.Array(TracePayload.Field(p, "dma_addrs="), "dma_addrs", _a);
        if (_a.Count == 0 || !d.ByDma.TryGetValue(_a[0], out var m) || m.Kind != MappingKind.Sg)
        {
            Fail(d, forCpu ? TraceEventKind.SyncSgForCpu : TraceEventKind.SyncSgForDevice,
                "sync of a scatterlist this trace never mapped: not replayed");
            return;
        }
        if (m.FailedOnModel)
        {
            Skip("sync of a mapping that failed on the model");
            return;
        }
        _about = m;
        var n = Math.Min(m.Nents, _a.Count);
        if (forCpu)
        {
            Api.SyncSgForCpu(d.Dev, m.Sgl!, n, dir);
        }
        else
        {
            Api.SyncSgForDevice(d.Dev, m.Sgl!, n, dir);
        }
    }

    private void Alloc(DevState d, ReadOnlySpan<char> p)
    {
        var traced = TracePayload.Hex(TracePayload.Field(p, "dma_addr="), "dma_addr");
        var size = (ulong)TracePayload.Dec(TracePayload.Field(p, "size="), "size");
        var attrs = TracePayload.Attrs(TracePayload.Field(p, "attrs="));
        var virt = TracePayload.Hex(TracePayload.Field(p, "virt_addr="), "virt_addr");
        var logBefore = Api.Log.Count;
        _rec.Reset();
        var cpu = Api.AllocAttrs(d.Dev, size, out var addr, attrs);
        var tracedFailed = virt == 0;
        if (!tracedFailed)
        {
            Compare(d, TraceEventKind.Alloc, traced, addr.Value);
        }
        if (cpu is null)
        {
            Fail(d, TraceEventKind.Alloc, (tracedFailed ? "failed in the trace and on the model: " : "") + Reason(logBefore));
            if (!tracedFailed)
            {
                d.Put(traced, Mapping.Failed(MappingKind.Coherent, _reader.LineNumber, traced));
            }
            return;
        }
        if (tracedFailed)
        {
            Fail(d, TraceEventKind.Alloc, $"failed in the trace, allocated on the model at {Hex.Format(addr.Value)} (freed again)");
            Api.FreeAttrs(d.Dev, size, cpu.Value, addr, attrs);
            return;
        }
        var m = d.Take(traced);
        m.Set(MappingKind.Coherent, _reader.LineNumber, traced, addr, size, DmaDirection.Bidirectional);
        m.Cpu = cpu.Value;
        Hold(d, m, bounced: false);
    }

    private void Free(DevState d, ReadOnlySpan<char> p)
    {
        var traced = TracePayload.Hex(TracePayload.Field(p, "dma_addr="), "dma_addr");
        var size = (ulong)TracePayload.Dec(TracePayload.Field(p, "size="), "size");
        var attrs = TracePayload.Attrs(TracePayload.Field(p, "attrs="));
        if (!d.ByDma.TryGetValue(traced, out var m) || m.Kind != MappingKind.Coherent)
        {
            Fail(d, TraceEventKind.Free, "free of a buffer this trace never allocated: not replayed (the model has no CPU address for it)");
            return;
        }
        if (m.FailedOnModel)
        {
            Skip("free of an allocation that failed on the model");
            return;
        }
        _about = m;
        Release(d, m);
        Api.FreeAttrs(d.Dev, size, m.Cpu, m.ModelDma, attrs);
    }

    /// <summary>End of trace: what is still mapped is a leak; dma-debug reports it as the kernel does when the driver unbinds.</summary>
    private void Finish()
    {
        _report.Lines = Math.Max(_report.Lines, _reader.LineNumber);
        var leaked = new List<DevState>();
        foreach (var d in _devs.Values)
        {
            var seen = new HashSet<Mapping>();
            foreach (var m in d.ByDma.Values.Concat(d.SgByPhys.Values))
            {
                if (m.Live && seen.Add(m))
                {
                    _report.Leaks.Add(new ReplayLeak(m.Line, d.Counts.Traced, KindName(m.Kind), m.TracedDma, m.ModelDma.Value, m.Size));
                }
            }
            if (seen.Count > 0)
            {
                leaked.Add(d);
            }
        }
        _report.Leaks.Sort((x, y) => x.Line.CompareTo(y.Line));
        _about = null;
        foreach (var d in leaked)
        {
            Api.Debug?.RemoveDevice(d.Dev);
        }
        if (_cacheLog.Count > 0)
        {
            CountCacheOps();
        }
    }

    /// <summary>The name the HTML report gives a mapping: the trace line that made it and the call.</summary>
    private static string ReportName(Mapping m) => $"line {m.Line} {KindName(m.Kind)}";

    private ReplayReportRecorder.Made Report(Mapping m)
    {
        var segs = new List<(ulong Dma, ulong Len)>();
        if (m.Kind == MappingKind.Sg)
        {
            for (var i = 0; i < m.Nents && m.Sgl![i].DmaLength != 0; i++)
            {
                segs.Add((m.Sgl[i].DmaAddress.Value, m.Sgl[i].DmaLength));
            }
        }
        return new(ReportName(m), m.TracedDma, m.ModelDma.Value, segs);
    }

    private static void Unmapping(ReplayReportRecorder steps, DevState d, Mapping m)
    {
        if (m.Kind != MappingKind.Sg)
        {
            steps.Unmapping(d.Dev, ReportName(m), m.ModelDma.Value, m.Size);
            return;
        }
        for (var i = 0; i < m.Nents && m.Sgl![i].DmaLength != 0; i++)
        {
            steps.Unmapping(d.Dev, ReportName(m), m.Sgl[i].DmaAddress.Value, m.Sgl[i].DmaLength);
        }
    }

    /// <summary>The live mappings, as the HTML report draws them (only called when a report was asked for).</summary>
    private IEnumerable<ReportMapping> LiveMappings()
    {
        var seen = new HashSet<Mapping>();
        foreach (var d in _devs.Values)
        {
            foreach (var m in d.ByDma.Values.Concat(d.SgByPhys.Values))
            {
                if (!m.Live || !seen.Add(m))
                {
                    continue;
                }
                var name = ReportName(m);
                switch (m.Kind)
                {
                    case MappingKind.Sg:
                        for (var i = 0; i < m.Nents; i++)
                        {
                            var e = m.Sgl![i];
                            yield return new(d.Dev, name, e.Phys.Value, e.Length, e.DmaAddress.Value, e.DmaLength, Single: false);
                        }
                        break;
                    case MappingKind.Coherent:
                        yield return new(d.Dev, name, Machine.Kmap.VirtToPhys(m.Cpu).Value, m.Size, m.ModelDma.Value, m.Size, Single: false);
                        break;
                    default:
                        yield return new(d.Dev, name, m.Phys.Value, m.Size, m.ModelDma.Value, m.Size, Single: true);
                        break;
                }
            }
        }
    }

    private static string KindName(MappingKind k) => k switch
    {
        MappingKind.Sg => "dma_map_sg",
        MappingKind.Coherent => "dma_alloc",
        _ => "dma_map_phys",
    };

    private enum MappingKind
    {
        Single,
        Sg,
        Coherent,
    }

    /// <summary>One traced mapping and what the model made of it; reused when its traced address comes back.</summary>
    private sealed class Mapping
    {
        public MappingKind Kind;
        public long Line;
        public ulong TracedDma;
        public DmaAddr ModelDma;
        public ulong Size;
        public DmaDirection Dir;
        public bool Live;
        public bool FailedOnModel;
        public bool Bounced;
        public long IovaPages;
        public KernelVirt Cpu;
        public PhysAddr Phys;
        public List<ScatterEntry>? Sgl;
        public int Nents;

        public static Mapping Failed(MappingKind kind, long line, ulong traced)
        {
            var m = new Mapping();
            m.SetFailed(kind, line, traced);
            return m;
        }

        public void SetFailed(MappingKind kind, long line, ulong traced)
        {
            Kind = kind;
            Line = line;
            TracedDma = traced;
            FailedOnModel = true;
            Live = false;
        }

        public void Set(MappingKind kind, long line, ulong traced, DmaAddr model, ulong size, DmaDirection dir) =>
            (Kind, Line, TracedDma, ModelDma, Size, Dir, FailedOnModel) = (kind, line, traced, model, size, dir, false);

        public List<ScatterEntry> Entries(int n)
        {
            Sgl ??= [];
            while (Sgl.Count < n)
            {
                Sgl.Add(new ScatterEntry(default, 0));
            }
            return Sgl;
        }
    }

    private sealed class DevState(Device dev, DeviceCounts counts)
    {
        public Device Dev { get; } = dev;
        public DeviceCounts Counts { get; } = counts;
        public Dictionary<ulong, Mapping> ByDma { get; } = [];
        public Dictionary<ulong, Mapping> SgByPhys { get; } = [];
        public int LiveCount;

        /// <summary>The record for a traced address: the old one when it is no longer live (no allocation in steady state).</summary>
        public Mapping Take(ulong traced)
        {
            if (ByDma.TryGetValue(traced, out var m) && !m.Live && m.Kind != MappingKind.Sg)
            {
                return m;
            }
            m = new Mapping();
            ByDma[traced] = m;
            return m;
        }

        public void Put(ulong traced, Mapping m) => ByDma[traced] = m;
    }
}
