using System.Text.Json.Nodes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// Runs a parsed scenario on a fresh machine: each step is one driver, CPU or device action; the API calls
/// are measured (path, bounce, cache ops, struct page reads, kernel mappings) and every expectation is
/// checked. A run is deterministic: the same scenario gives byte-identical JSON.
/// </summary>
public sealed class ScenarioRunner
{
    private readonly Scenario _scenario;
    private readonly Machine _m;
    private readonly DmaApi _api;
    private readonly BufferAllocator _alloc;
    private readonly Dictionary<string, Buffer> _buffers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Handle> _handles = new(StringComparer.Ordinal);
    private readonly List<ExpectFailure> _failures = [];
    private readonly JsonArray _faults = [];
    private readonly JsonArray _log = [];
    private readonly DmaRecorder _recorder = new();
    private readonly List<CacheOp> _cacheOps = [];
    private readonly P2PImport _importer;

    private sealed class Handle
    {
        public required string Name { get; init; }
        public required Device Dev { get; init; }
        public required Buffer Buf { get; init; }
        public required PhysAddr Phys { get; init; }
        public required ulong Size { get; init; }
        public required DmaDirection Dir { get; init; }
        public required DmaAttrs Attrs { get; init; }
        public required MapApi Api { get; init; }
        public required DmaAddr Addr { get; init; }

        /// <summary>Set for handles made by <c>p2p_map</c>: what the importer decided.</summary>
        public P2PMapping? P2P { get; init; }

        public bool Unmapped { get; set; }

        /// <summary>Whether this handle holds a DMA-API mapping (bus addresses and failures do not).</summary>
        public bool IsDmaMapping => !Addr.IsError && P2P is not { Type: P2PMapType.BusAddr };
    }

    private sealed class SgHandle
    {
        public required string Name { get; init; }
        public required Device Dev { get; init; }
        public required SgTable Table { get; init; }
        public required DmaDirection Dir { get; init; }
        public required DmaAttrs Attrs { get; init; }
        public required bool Mapped { get; init; }
        public bool Unmapped { get; set; }
    }

    private readonly Dictionary<string, SgHandle> _sg = new(StringComparer.Ordinal);

    private sealed class IovaHandle
    {
        public required Device Dev { get; init; }
        public required DmaIovaState State { get; init; }
        public bool Done { get; set; }
    }

    private readonly Dictionary<string, IovaHandle> _iova = new(StringComparer.Ordinal);
    private readonly HashSet<string> _coherent = new(StringComparer.Ordinal);
    private readonly JsonArray _debug = [];

    public ScenarioRunner(Scenario scenario)
    {
        _scenario = scenario;
        try
        {
            _m = new Machine(scenario.Machine);
            _api = new DmaApi(_m);
        }
        catch (MachineConfigException e)
        {
            throw new ScenarioError(scenario.File, 1, "machine." + e.Field, e.Message);
        }
        _alloc = new BufferAllocator(_m, _api);
        _importer = new P2PImport(_api);
    }

    public Machine Machine => _m;
    public DmaApi Api => _api;

    public static RunResult Run(Scenario scenario) => new ScenarioRunner(scenario).Run();

    public RunResult Run()
    {
        var steps = new JsonArray();
        string? bug = null;
        string? violation = null;
        _api.Recorder = _recorder;
        _m.ArchCache.Log = _cacheOps;
        foreach (var step in _scenario.Steps)
        {
            var r = new JsonObject { ["index"] = step.Index, ["op"] = step.Op, ["id"] = step.Id };
            var faultsBefore = _m.FaultCount;
            var logBefore = _api.Log.Count;
            var debugBefore = _api.Debug?.ReportCount ?? 0;
            if (_api.Debug is { } dbg)
            {
                // dma-debug's "Mapped at:" names the step that made a mapping, as the kernel names the caller.
                dbg.CurrentSite = $"{Path.GetFileName(_scenario.File)}:{step.Line} (step {step.Index}, {step.Op})";
            }
            try
            {
                using (_m.OnCpu(step.Cpu))
                {
                    Execute(step, r);
                }
            }
            catch (KernelBug e)
            {
                r["error"] = "BUG";
                bug = e.Message;
            }
            catch (ModelViolation e)
            {
                r["error"] = "model_violation";
                violation = e.Message;
            }
            CollectFaults(step, faultsBefore, r);
            CollectLog(step, logBefore);
            CollectDebug(step, debugBefore, r);
            r["error"] ??= null;
            var ok = CheckStep(step, r);
            r["ok"] = ok;
            steps.Add(r);
            if (bug is not null || violation is not null)
            {
                break;
            }
        }
        _api.Recorder = null;
        _m.ArchCache.Log = null;

        var final = new JsonObject
        {
            ["live_mappings"] = (long)(_handles.Values.Count(h => !h.Unmapped && h.IsDmaMapping) + _sg.Values.Count(h => h.Mapped && !h.Unmapped)
                + _iova.Values.Count(h => !h.Done)),
            ["iova_pages_in_use"] = _api.Iommu is { } iommu ? (long)iommu.IovaPagesInUse : null,
            ["swiotlb_slots_used"] = _api.Swiotlb.SlotsUsed,
            ["iotlb_entries"] = _api.Iommu is { } iommu2 ? (long)iommu2.IotlbEntries : null,
        };
        var json = new JsonObject
        {
            ["format"] = "physdma-result/1",
            ["scenario"] = _scenario.Name,
            ["machine"] = _scenario.Machine.Name,
            ["ok"] = false,
            ["steps"] = steps,
            ["debug"] = _api.Debug is null ? null : _debug,
            ["faults"] = _faults,
            ["log"] = _log,
            ["final"] = final,
        };
        if (bug is not null)
        {
            json["bug"] = bug;
        }
        if (violation is not null)
        {
            json["violation"] = violation;
        }
        foreach (var e in _scenario.FinalExpect)
        {
            JsonNode? actual = e.Field switch
            {
                "debug" => json["debug"],
                "faults" => json["faults"],
                "ok" => JsonValue.Create(_failures.Count == 0 && bug is null && violation is null),
                _ => final[e.Field],
            };
            var why = Expectations.Check(e.Field, e.Value, actual);
            if (why is not null)
            {
                _failures.Add(new ExpectFailure(null, e.Value.Line, e.Field, why));
            }
        }
        var failures = new JsonArray();
        foreach (var f in _failures)
        {
            failures.Add(new JsonObject { ["step"] = f.Step, ["line"] = f.Line, ["field"] = f.Field, ["message"] = f.Message });
        }
        json["failures"] = failures;
        var result = new RunResult { Json = json, Failures = [.. _failures] };
        json["ok"] = result.Ok;
        return result;
    }

    private bool CheckStep(Step step, JsonObject r)
    {
        var ok = true;
        foreach (var e in step.Expect)
        {
            var why = Expectations.Check(e.Field, e.Value, r[e.Field]);
            if (why is not null)
            {
                ok = false;
                _failures.Add(new ExpectFailure(step.Index, e.Value.Line, e.Field, why));
            }
        }
        return ok;
    }

    private void CollectFaults(Step step, int before, JsonObject r)
    {
        var all = _m.Faults;
        for (var i = before; i < all.Count; i++)
        {
            var f = all[i];
            _faults.Add(new JsonObject
            {
                ["step"] = step.Index,
                ["dev"] = f.Dev,
                ["addr"] = Hex.Format(f.Addr.Value),
                ["access"] = f.Access == DmaAccess.Read ? "read" : "write",
                ["reason"] = FaultName(f.Reason),
            });
        }
    }

    public static string FaultName(FaultReason r) => r switch
    {
        FaultReason.Unmapped => "unmapped",
        FaultReason.Permission => "permission",
        FaultReason.P2PBlocked => "p2p_blocked",
        _ => "out_of_range",
    };

    /// <summary>Every error dma-debug counted during the step, in order, top-level and under the step.</summary>
    private void CollectDebug(Step step, int before, JsonObject r)
    {
        if (_api.Debug is not { } debug)
        {
            return;
        }
        var reports = debug.ReportsSince(before);
        if (reports.Count == 0)
        {
            return;
        }
        var mine = new JsonArray();
        foreach (var rep in reports)
        {
            _debug.Add(new JsonObject
            {
                ["step"] = step.Index,
                ["check"] = rep.Check,
                ["message"] = rep.Message,
                ["printed"] = rep.Printed,
                ["mapped_at"] = rep.MappedAt,
            });
            mine.Add(rep.Check);
        }
        r["debug"] = mine;
    }

    private void CollectLog(Step step, int before)
    {
        var lines = _api.Log.Lines;
        for (var i = before; i < lines.Count; i++)
        {
            _log.Add(new JsonObject
            {
                ["step"] = step.Index,
                ["level"] = lines[i].Level.ToString().ToLowerInvariant(),
                ["message"] = lines[i].Message,
            });
        }
    }

    private ScenarioError Error(Step step, string field, string message) => new(_scenario.File, step.Line, field, message);

    private void Execute(Step step, JsonObject r)
    {
        switch (step)
        {
            case AllocStep s:
                DoAlloc(s, r);
                break;
            case FreeStep s:
                var fb = _buffers[s.Name];
                if (fb.Freed)
                {
                    throw Error(s, "name", $"buffer '{s.Name}' was already freed");
                }
                fb.Freed = true;
                _alloc.Free(fb);
                r["buf"] = s.Name;
                break;
            case CpuWriteStep s:
                DoCpuWrite(s, r);
                break;
            case CpuReadStep s:
                DoCpuRead(s, r);
                break;
            case MapStep s:
                DoMap(s, r);
                break;
            case UnmapStep s:
                DoUnmap(s, r);
                break;
            case MappingErrorStep s:
                var mh = _handles[s.Handle];
                r["handle"] = mh.Name;
                r["dev"] = mh.Dev.Name;
                r["dma_addr"] = Hex.Format(mh.Addr.Value);
                var ret = _api.MappingError(mh.Dev, mh.Addr);
                r["ret"] = -(long)ret;
                r["error"] = ret == Errno.None ? null : ret.ToString();
                break;
            case SyncStep s:
                DoSync(s, r);
                break;
            case DevReadStep s:
                DoDevRead(s, r);
                break;
            case P2PMapStep s:
                DoP2PMap(s, r);
                break;
            case MapSgStep s:
                DoMapSg(s, r);
                break;
            case UnmapSgStep s:
                DoUnmapSg(s, r);
                break;
            case SyncSgStep s:
                DoSyncSg(s, r);
                break;
            case DevWriteStep s:
                DoDevWrite(s, r);
                break;
            case AllocCoherentStep s:
                DoAllocCoherent(s, r);
                break;
            case FreeCoherentStep s:
                DoFreeCoherent(s, r);
                break;
            case IovaAllocStep s:
                DoIovaAlloc(s, r);
                break;
            case IovaLinkStep s:
                DoIovaLink(s, r);
                break;
            case IovaSyncStep s:
                {
                    var h = Iova(s, s.State);
                    r["handle"] = s.State;
                    r["dev"] = h.Dev.Name;
                    r["at"] = (long)s.At;
                    r["size"] = (long)s.Size;
                    var syncRet = _api.IovaSync(h.Dev, h.State, s.At, s.Size);
                    r["ret"] = -(long)syncRet;
                    r["error"] = syncRet == Errno.None ? null : syncRet.ToString();
                    break;
                }
            case IovaUnlinkStep s:
                {
                    var h = Iova(s, s.State);
                    r["handle"] = s.State;
                    r["dev"] = h.Dev.Name;
                    r["at"] = (long)s.At;
                    r["size"] = (long)s.Size;
                    r["dir"] = DmaNames.ScenarioName(s.Dir);
                    r["attrs"] = AttrList(s.Attrs);
                    BeginCall();
                    var before = _m.Counters.Snapshot();
                    _api.IovaUnlink(h.Dev, h.State, s.At, s.Size, s.Dir, s.Attrs);
                    EndCall(r, before);
                    break;
                }
            case IovaFreeStep s:
                {
                    var h = Iova(s, s.State);
                    r["handle"] = s.State;
                    r["dev"] = h.Dev.Name;
                    _api.IovaFree(h.Dev, h.State);
                    h.Done = true;
                    break;
                }
            case IovaDestroyStep s:
                {
                    var h = Iova(s, s.State);
                    r["handle"] = s.State;
                    r["dev"] = h.Dev.Name;
                    r["mapped_len"] = (long)s.MappedLen;
                    r["dir"] = DmaNames.ScenarioName(s.Dir);
                    r["attrs"] = AttrList(s.Attrs);
                    BeginCall();
                    var before = _m.Counters.Snapshot();
                    _api.IovaDestroy(h.Dev, h.State, s.MappedLen, s.Dir, s.Attrs);
                    EndCall(r, before);
                    h.Done = true;
                    break;
                }
            case IommuFlushStep:
                _api.Iommu?.FlushAll();
                r["iotlb_entries"] = _api.Iommu is { } iommu ? (long)iommu.IotlbEntries : null;
                break;
            case RemoveDeviceStep s:
                {
                    var dev = _m.Device(s.Dev);
                    r["dev"] = s.Dev;
                    var live = _api.Debug?.Entries(dev).Count;
                    _api.Debug?.RemoveDevice(dev);
                    r["leaked"] = live is null ? null : (long)live.Value;
                    break;
                }
            case TickStep s:
                _m.Clock.Advance(s.Ms * 1_000_000);
                r["ms"] = (long)s.Ms;
                r["now_ms"] = (long)_m.Clock.NowMs;
                break;
            default:
                throw Error(step, "op", $"op '{step.Op}' is not handled");
        }
    }

    private void DoAlloc(AllocStep s, JsonObject r)
    {
        var b = _alloc.Allocate(s, (field, msg) => Error(s, field, msg));
        _buffers[s.Name] = b;
        r["buf"] = b.Name;
        r["kind"] = b.KindName;
        r["phys"] = Hex.Format(b.Phys.Value);
        r["size"] = (long)b.Size;
    }

    private ulong CheckRange(Step s, Buffer b, ulong offset, ulong len, string field)
    {
        if (offset > b.Size || len > b.Size - offset)
        {
            throw Error(s, field, $"offset {offset} + length {len} runs past buffer '{b.Name}' ({b.Size} bytes)");
        }
        return len;
    }

    private void DoCpuWrite(CpuWriteStep s, JsonObject r)
    {
        var b = _buffers[s.Buf];
        var len = s.Len ?? (ulong?)s.Data.NaturalLength ?? (b.Size - Math.Min(s.Offset, b.Size));
        CheckRange(s, b, s.Offset, len, "data");
        CheckCpuAccess(b, s.Offset, len, write: true);
        _m.Cpu.Write(b.Va + s.Offset, s.Data.Expand((int)len));
        r["buf"] = b.Name;
        r["offset"] = (long)s.Offset;
        r["len"] = (long)len;
    }

    private void DoCpuRead(CpuReadStep s, JsonObject r)
    {
        var b = _buffers[s.Buf];
        CheckRange(s, b, s.Offset, s.Len, "len");
        var data = new byte[s.Len];
        CheckCpuAccess(b, s.Offset, s.Len, write: false);
        _m.Cpu.Read(b.Va + s.Offset, data);
        r["buf"] = b.Name;
        r["offset"] = (long)s.Offset;
        r["len"] = (long)s.Len;
        r["data"] = Values.HexBytes(data);
    }

    /// <summary>dma-debug (our own check) sees every CPU access, one physically contiguous piece at a time.</summary>
    private void CheckCpuAccess(Buffer b, ulong offset, ulong len, bool write)
    {
        if (_api.Debug is not { } debug || b.Kind is BufferKind.Coherent)
        {
            return;
        }
        var end = offset + len;
        while (offset < end)
        {
            var inPage = b.PageSize - ((b.FirstOffset + offset) % b.PageSize);
            var chunk = Math.Min(inPage, end - offset);
            debug.CheckCpuAccess(b.PhysAt(offset), chunk, write);
            offset += chunk;
        }
    }

    private void BeginCall()
    {
        _recorder.Reset();
        _cacheOps.Clear();
    }

    private void EndCall(JsonObject r, CounterSnapshot before)
    {
        var d = _m.Counters.Snapshot() - before;
        var ops = new JsonArray();
        foreach (var op in _cacheOps)
        {
            ops.Add(new JsonObject { ["op"] = op.Name, ["phys"] = Hex.Format(op.Phys.Value), ["size"] = (long)op.Size });
        }
        r["cache_ops"] = ops;
        r["page_touches"] = d.PageReads;
        r["kernel_mappings"] = d.KernelMappings;
    }

    private static JsonArray AttrList(DmaAttrs attrs)
    {
        var a = new JsonArray();
        foreach (var n in attrs.ScenarioNames())
        {
            a.Add(n);
        }
        return a;
    }

    /// <summary>
    /// What <c>map</c> and <c>p2p_map</c> share before the call: the device, the buffer and the range inside
    /// it (an offset past the end is bad input), recorded in the step's result.
    /// </summary>
    private (Device Dev, Buffer Buf, ulong Size, PhysAddr Phys) BeginMapStep(
        Step s, string devName, string bufName, ulong offset, ulong? sizeOpt, DmaDirection dir, DmaAttrs attrs, string handle, JsonObject r)
    {
        var dev = _m.Device(devName);
        var b = _buffers[bufName];
        if (offset >= b.Size)
        {
            throw Error(s, "offset", $"offset {offset} is outside buffer '{b.Name}' ({b.Size} bytes)");
        }
        var size = sizeOpt ?? b.Size - offset;
        var phys = b.PhysAt(offset);
        r["handle"] = handle;
        r["dev"] = dev.Name;
        r["phys"] = Hex.Format(phys.Value);
        r["size"] = (long)size;
        r["dir"] = dir.ScenarioName();
        r["attrs"] = AttrList(attrs);
        return (dev, b, size, phys);
    }

    private void DoMap(MapStep s, JsonObject r)
    {
        var (dev, b, size, phys) = BeginMapStep(s, s.Dev, s.Buf, s.Offset, s.Size, s.Dir, s.Attrs, s.As, r);
        if (s.Api == MapApi.Page && !b.HasStructPage)
        {
            throw Error(s, "api", $"api page needs a struct page, and buffer '{b.Name}' ({b.KindName}) has none; use api phys or resource with mmio");
        }
        BeginCall();
        var before = _m.Counters.Snapshot();
        var addr = s.Api switch
        {
            MapApi.Page => _api.MapPage(dev, new Page(phys.Pfn(_m.PageShift)), phys.OffsetInPage(_m.PageSize), size, s.Dir, s.Attrs),
            MapApi.Single when s.Kmap => _api.MapSingle(dev, _m.Kmap.KmapLocalPfn(phys.Pfn(_m.PageShift)) + phys.OffsetInPage(_m.PageSize), size, s.Dir, s.Attrs),
            MapApi.Single => _api.MapSingle(dev, b.Va + s.Offset, size, s.Dir, s.Attrs),
            MapApi.Resource => _api.MapResource(dev, phys, size, s.Dir, s.Attrs),
            _ => _api.MapPhys(dev, phys, size, s.Dir, s.Attrs),
        };
        _handles[s.As] = new Handle
        {
            Name = s.As,
            Dev = dev,
            Buf = b,
            Phys = phys,
            Size = size,
            Dir = s.Dir,
            Attrs = s.Attrs,
            Api = s.Api,
            Addr = addr,
        };
        r["dma_addr"] = Hex.Format(addr.Value);
        r["error"] = addr.IsError ? "DMA_MAPPING_ERROR" : null;
        r["path"] = addr.IsError ? "none" : DmaRecorder.PathName(_recorder.Path);
        r["p2p"] = "none";
        r["bounce"] = _recorder.Bounce is { } bounce && !addr.IsError ? Hex.Format(bounce.Value) : null;
        r["iommu_prot"] = _recorder.IommuProt is { } prot && !addr.IsError ? ProtList(prot) : null;
        EndCall(r, before);
    }

    /// <summary>IOMMU prot bits by name, in bit order.</summary>
    public static JsonArray ProtList(int prot)
    {
        string[] names = ["READ", "WRITE", "CACHE", "NOEXEC", "MMIO", "PRIV"];
        var a = new JsonArray();
        for (var i = 0; i < names.Length; i++)
        {
            if ((prot & (1 << i)) != 0)
            {
                a.Add(names[i]);
            }
        }
        return a;
    }

    private void DoUnmap(UnmapStep s, JsonObject r)
    {
        var h = _handles[s.Handle];
        var size = s.Size ?? h.Size;
        var dir = s.Dir ?? h.Dir;
        var attrs = s.Attrs ?? h.Attrs;
        var api = s.Api ?? h.Api;
        r["handle"] = h.Name;
        r["dev"] = h.Dev.Name;
        r["dma_addr"] = Hex.Format(h.Addr.Value);
        r["size"] = (long)size;
        r["dir"] = dir.ScenarioName();
        r["attrs"] = AttrList(attrs);
        BeginCall();
        var before = _m.Counters.Snapshot();
        if (h.P2P is { } p2p)
        {
            _importer.Unmap(h.Dev, p2p, size, dir, attrs);
            h.Unmapped = true;
            EndCall(r, before);
            return;
        }
        switch (api)
        {
            case MapApi.Page:
                _api.UnmapPage(h.Dev, h.Addr, size, dir, attrs);
                break;
            case MapApi.Single:
                _api.UnmapSingle(h.Dev, h.Addr, size, dir, attrs);
                break;
            case MapApi.Resource:
                _api.UnmapResource(h.Dev, h.Addr, size, dir, attrs);
                break;
            default:
                _api.UnmapPhys(h.Dev, h.Addr, size, dir, attrs);
                break;
        }
        h.Unmapped = true;
        EndCall(r, before);
    }

    private void DoSync(SyncStep s, JsonObject r)
    {
        var h = _handles[s.Handle];
        var size = s.Size ?? h.Size - Math.Min(s.Offset, h.Size);
        var dir = s.Dir ?? h.Dir;
        var addr = h.Addr + s.Offset;
        r["handle"] = h.Name;
        r["dev"] = h.Dev.Name;
        r["dma_addr"] = Hex.Format(addr.Value);
        r["size"] = (long)size;
        r["dir"] = dir.ScenarioName();
        r["for"] = s.ForCpu ? "cpu" : "device";
        BeginCall();
        var before = _m.Counters.Snapshot();
        if (s.ForCpu)
        {
            _api.SyncSingleForCpu(h.Dev, addr, size, dir);
        }
        else
        {
            _api.SyncSingleForDevice(h.Dev, addr, size, dir);
        }
        EndCall(r, before);
    }

    public static string MapTypeName(P2PMapType t) => t switch
    {
        P2PMapType.BusAddr => "bus_addr",
        P2PMapType.ThruHostBridge => "thru_host_bridge",
        P2PMapType.NotSupported => "not_supported",
        _ => "none",
    };

    private void DoP2PMap(P2PMapStep s, JsonObject r)
    {
        var (dev, b, size, phys) = BeginMapStep(s, s.Dev, s.Buf, s.Offset, s.Size, s.Dir, s.Attrs, s.As, r);
        BeginCall();
        var before = _m.Counters.Snapshot();
        P2PMapping m;
        if (b.HasStructPage)
        {
            // Block layer / HMM: the page's pgmap says whether and whose P2P memory this is.
            var state = default(P2PMapState);
            m = _importer.MapPage(ref state, dev, new Page(phys.Pfn(_m.PageShift)), phys, size, s.Dir, s.Attrs);
        }
        else if (_api.P2P.ProviderAt(phys) is { } provider)
        {
            // VFIO dma-buf: the exporter hands over the provider with the page-less range.
            m = _importer.MapProvider(provider, dev, phys, size, s.Dir, s.Attrs);
        }
        else
        {
            throw Error(s, "buf", $"buffer '{b.Name}' ({b.KindName}) is neither memory with struct page nor part of a PCI BAR: no importer can map it");
        }
        _handles[s.As] = new Handle
        {
            Name = s.As,
            Dev = dev,
            Buf = b,
            Phys = phys,
            Size = size,
            Dir = s.Dir,
            Attrs = s.Attrs,
            Api = MapApi.Phys,
            Addr = m.Addr,
            P2P = m,
        };
        r["dma_addr"] = Hex.Format(m.Addr.Value);
        r["error"] = m.Error != Errno.None ? m.Error.ToString() : m.Addr.IsError ? "DMA_MAPPING_ERROR" : null;
        r["path"] = m.Ok ? DmaRecorder.PathName(_recorder.Path) : "none";
        r["p2p"] = MapTypeName(m.Type);
        r["bounce"] = _recorder.Bounce is { } bounce && m.Ok ? Hex.Format(bounce.Value) : null;
        r["iommu_prot"] = _recorder.IommuProt is { } prot && m.Ok ? ProtList(prot) : null;
        EndCall(r, before);
    }

    private DmaAddr Target(Step s, string? handle, ulong? addr, ulong offset) =>
        handle is null ? new DmaAddr(addr!.Value + offset)
        : _sg.TryGetValue(handle, out var sg) ? sg.Table.Sgl[0].DmaAddress + offset
        : _iova.TryGetValue(handle, out var iova) ? iova.State.Addr + offset
        : _handles[handle].Addr + offset;

    private ulong HandleSize(string handle) =>
        _sg.TryGetValue(handle, out var sg) ? sg.Table.Sgl.Take(Math.Max(1, sg.Table.Nents)).Aggregate(0UL, (a, e) => a + e.DmaLength)
        : _iova.TryGetValue(handle, out var iova) ? iova.State.Size
        : _handles[handle].Size;

    private IovaHandle Iova(Step s, string name)
    {
        var h = _iova[name];
        if (!h.State.UseIova)
        {
            // dma_iova_try_alloc said no (no IOMMU, identity domain, ...): a driver maps page by page instead.
            throw Error(s, "state", $"IOVA state '{name}' has no IOVA on this machine (iova_alloc gave use_iova: false; a driver falls back to map)");
        }
        if (h.Done)
        {
            throw Error(s, "state", $"IOVA state '{name}' was already freed or destroyed");
        }
        return h;
    }

    private void DoAllocCoherent(AllocCoherentStep s, JsonObject r)
    {
        var dev = _m.Device(s.Dev);
        r["handle"] = s.As;
        r["dev"] = dev.Name;
        r["size"] = (long)s.Size;
        r["attrs"] = AttrList(s.Attrs);
        BeginCall();
        var before = _m.Counters.Snapshot();
        var va = _api.AllocAttrs(dev, s.Size, out var dma, s.Attrs);
        EndCall(r, before);
        r.Remove("cache_ops");
        r["dma_addr"] = Hex.Format(dma.Value);
        if (va is not { } cpu)
        {
            r["phys"] = null;
            r["path"] = "none";
            r["iommu_prot"] = null;
            r["error"] = "ENOMEM";
            return;
        }
        var pageSize = _m.PageSize;
        var npages = (int)((s.Size + pageSize - 1) / pageSize);
        var pages = new PhysAddr[npages];
        for (var i = 0; i < npages; i++)
        {
            pages[i] = _m.Kmap.VirtToPhys(cpu + ((ulong)i * pageSize));
        }
        var buf = new Buffer
        {
            Name = s.As,
            Kind = BufferKind.Coherent,
            Size = s.Size,
            Va = cpu,
            Pages = pages,
            FirstOffset = 0,
            HasStructPage = true,
            PageSize = pageSize,
        };
        _buffers[s.As] = buf;
        _coherent.Add(s.As);
        _handles[s.As] = new Handle
        {
            Name = s.As,
            Dev = dev,
            Buf = buf,
            Phys = pages[0],
            Size = s.Size,
            Dir = DmaDirection.Bidirectional,
            Attrs = s.Attrs,
            Api = MapApi.Phys,
            Addr = dma,
        };
        r["phys"] = Hex.Format(pages[0].Value);
        r["path"] = dev.DmaIommu ? "iommu" : _api.Swiotlb.IsSwiotlbBuffer(dev, pages[0]) ? "swiotlb" : "direct";
        r["iommu_prot"] = _recorder.IommuProt is { } prot ? ProtList(prot) : null;
        r["error"] = null;
    }

    private void DoFreeCoherent(FreeCoherentStep s, JsonObject r)
    {
        var h = _handles[s.Handle];
        if (h.Unmapped)
        {
            throw Error(s, "handle", $"coherent allocation '{s.Handle}' was already freed");
        }
        r["handle"] = s.Handle;
        r["dev"] = h.Dev.Name;
        r["dma_addr"] = Hex.Format(h.Addr.Value);
        r["size"] = (long)h.Size;
        if (!h.Addr.IsError)
        {
            _api.FreeAttrs(h.Dev, h.Size, h.Buf.Va + s.CpuOffset, h.Addr, h.Attrs);
        }
        h.Unmapped = true;
        h.Buf.Freed = true;
    }

    private void DoIovaAlloc(IovaAllocStep s, JsonObject r)
    {
        var dev = _m.Device(s.Dev);
        var phys = s.PhysOf is { } po ? _buffers[po].PhysAt(s.PhysOfOffset) : new PhysAddr(0);
        var state = new DmaIovaState();
        var ok = _api.Iommu is not null && _api.IovaTryAlloc(dev, state, phys, s.Size);
        _iova[s.As] = new IovaHandle { Dev = dev, State = state, Done = !ok };
        r["handle"] = s.As;
        r["dev"] = dev.Name;
        r["size"] = (long)s.Size;
        r["dma_addr"] = ok ? Hex.Format(state.Addr.Value) : null;
        r["use_iova"] = DmaApi.UseIova(state);
        r["error"] = null;
    }

    private void DoIovaLink(IovaLinkStep s, JsonObject r)
    {
        var h = Iova(s, s.State);
        var b = _buffers[s.Buf];
        CheckRange(s, b, s.Offset, s.Size, "size");
        var phys = b.PhysAt(s.Offset);
        r["handle"] = s.State;
        r["dev"] = h.Dev.Name;
        r["phys"] = Hex.Format(phys.Value);
        r["size"] = (long)s.Size;
        r["at"] = (long)s.At;
        r["dir"] = DmaNames.ScenarioName(s.Dir);
        r["attrs"] = AttrList(s.Attrs);
        BeginCall();
        var before = _m.Counters.Snapshot();
        var ret = _api.IovaLink(h.Dev, h.State, phys, s.At, s.Size, s.Dir, s.Attrs);
        r["dma_addr"] = ret == Errno.None ? Hex.Format((h.State.Addr + s.At).Value) : null;
        r["ret"] = -(long)ret;
        r["error"] = ret == Errno.None ? null : ret.ToString();
        r["bounce"] = _recorder.Bounce is { } bounce && ret == Errno.None ? Hex.Format(bounce.Value) : null;
        r["iommu_prot"] = _recorder.IommuProt is { } prot && ret == Errno.None ? ProtList(prot) : null;
        EndCall(r, before);
    }

    private static string ErrnoName(int ret) => Enum.IsDefined(typeof(Errno), -ret) ? ((Errno)(-ret)).ToString() : ret.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private JsonArray Segments(SgTable t)
    {
        var a = new JsonArray();
        for (var i = 0; i < t.Nents; i++)
        {
            a.Add(new JsonObject { ["dma_addr"] = Hex.Format(t.Sgl[i].DmaAddress.Value), ["len"] = (long)t.Sgl[i].DmaLength });
        }
        return a;
    }

    private void DoMapSg(MapSgStep s, JsonObject r)
    {
        var dev = _m.Device(s.Dev);
        var entries = new List<ScatterEntry>();
        foreach (var seg in s.Segments)
        {
            var b = _buffers[seg.Buf];
            CheckRange(s, b, seg.Offset, seg.Size, "segments");
            var phys = b.PhysAt(seg.Offset);
            if (b.PhysAt(seg.Offset + seg.Size - 1).Value != phys.Value + seg.Size - 1)
            {
                throw Error(s, "segments", $"segment {b.Name}+{seg.Offset} of {seg.Size} bytes is not physically contiguous (buffer '{b.Name}' is {b.KindName}); split it at page boundaries");
            }
            entries.Add(new ScatterEntry(phys, (uint)seg.Size));
        }
        var table = new SgTable(entries);
        r["handle"] = s.As;
        r["dev"] = dev.Name;
        r["dir"] = s.Dir.ScenarioName();
        r["attrs"] = AttrList(s.Attrs);
        BeginCall();
        var before = _m.Counters.Snapshot();
        var ret = _api.MapSgtable(dev, table, s.Dir, s.Attrs);
        _sg[s.As] = new SgHandle { Name = s.As, Dev = dev, Table = table, Dir = s.Dir, Attrs = s.Attrs, Mapped = ret == 0 && table.Nents > 0 };
        r["nents"] = ret == 0 ? table.Nents : 0;
        r["segments"] = ret == 0 ? Segments(table) : new JsonArray();
        r["error"] = ret == 0 ? null : ErrnoName(ret);
        r["path"] = ret == 0 && table.Nents > 0 ? DmaRecorder.PathName(_recorder.Path) : "none";
        EndCall(r, before);
    }

    private void DoUnmapSg(UnmapSgStep s, JsonObject r)
    {
        var h = _sg[s.Handle];
        var dir = s.Dir ?? h.Dir;
        var attrs = s.Attrs ?? h.Attrs;
        var nents = s.Nents ?? h.Table.OrigNents;
        if (nents > h.Table.Sgl.Count)
        {
            // The kernel would walk off the end of the list: an oops, not a debug report.
            throw Error(s, "nents", $"nents {nents} is more than the {h.Table.Sgl.Count} entries of '{s.Handle}'");
        }
        r["handle"] = h.Name;
        r["dev"] = h.Dev.Name;
        r["dir"] = dir.ScenarioName();
        r["attrs"] = AttrList(attrs);
        r["nents"] = nents;
        BeginCall();
        var before = _m.Counters.Snapshot();
        _api.UnmapSgAttrs(h.Dev, h.Table.Sgl, nents, dir, attrs);
        h.Unmapped = true;
        EndCall(r, before);
    }

    private void DoSyncSg(SyncSgStep s, JsonObject r)
    {
        var h = _sg[s.Handle];
        var dir = s.Dir ?? h.Dir;
        var nents = s.Nents ?? h.Table.OrigNents;
        if (nents > h.Table.Sgl.Count)
        {
            // The kernel would walk off the end of the list: an oops, not a debug report.
            throw Error(s, "nents", $"nents {nents} is more than the {h.Table.Sgl.Count} entries of '{s.Handle}'");
        }
        r["handle"] = h.Name;
        r["dev"] = h.Dev.Name;
        r["dir"] = dir.ScenarioName();
        r["for"] = s.ForCpu ? "cpu" : "device";
        r["nents"] = nents;
        BeginCall();
        var before = _m.Counters.Snapshot();
        if (s.ForCpu)
        {
            _api.SyncSgForCpu(h.Dev, h.Table.Sgl, nents, dir);
        }
        else
        {
            _api.SyncSgForDevice(h.Dev, h.Table.Sgl, nents, dir);
        }
        EndCall(r, before);
    }

    private void DoDevRead(DevReadStep s, JsonObject r)
    {
        var dev = _m.Device(s.Dev);
        var a = Target(s, s.Handle, s.Addr, s.Offset);
        var data = new byte[s.Len];
        var fault = _m.DeviceRead(dev, a, data);
        r["dev"] = dev.Name;
        r["dma_addr"] = Hex.Format(a.Value);
        r["len"] = (long)s.Len;
        r["data"] = fault is null ? Values.HexBytes(data) : null;
        r["error"] = fault is null ? null : "fault";
    }

    private void DoDevWrite(DevWriteStep s, JsonObject r)
    {
        var dev = _m.Device(s.Dev);
        var a = Target(s, s.Handle, s.Addr, s.Offset);
        var len = s.Len ?? (ulong?)s.Data.NaturalLength ?? (HandleSize(s.Handle!) - Math.Min(s.Offset, HandleSize(s.Handle!)));
        var fault = _m.DeviceWrite(dev, a, s.Data.Expand((int)len));
        r["dev"] = dev.Name;
        r["dma_addr"] = Hex.Format(a.Value);
        r["len"] = (long)len;
        r["error"] = fault is null ? null : "fault";
    }
}
