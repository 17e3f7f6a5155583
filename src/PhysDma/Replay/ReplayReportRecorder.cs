using System.Text.Json.Nodes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using PhysDma.Report;

namespace PhysDma.Replay;

/// <summary>
/// What the HTML report shows of a replay: every replayed DMA event as a step (its outcome, its decision
/// trail, the trace line it came from) and, after each, the machine's state through <see cref="StateSnapshots"/>,
/// the same data the report draws for a scenario run. A trace does not show the device's accesses, so the
/// report assumes the device used every mapping it was given: behind a lazy IOMMU an unmapped IOVA stays
/// reachable through the IOTLB (the lazy window) until the flush queue's next IOTLB flush. The first <see cref="MaxSteps"/> events are kept, so a
/// long trace gives a report a browser can open; the rest are counted.
/// </summary>
internal sealed class ReplayReportRecorder
{
    /// <summary>At most this many events are drawn.</summary>
    public const int MaxSteps = 2000;

    /// <summary>What a mapping event made: the name the report gives it, its traced and model address, its DMA segments (scatterlists).</summary>
    public sealed record Made(string Name, ulong TracedDma, ulong ModelDma, IReadOnlyList<(ulong Dma, ulong Len)> Segments);

    private readonly StateSnapshots _snaps;
    private readonly DmaApi _api;
    private readonly DmaRecorder _rec;
    private readonly List<(ReportLazyRange Range, long FlushCount)> _lazy = [];
    private readonly List<ReportLazyRange> _unmapped = [];
    private readonly JsonArray _steps = [];
    private readonly Dictionary<long, long> _stepOfLine = [];
    private int _debugBefore;
    private int _failuresBefore;
    private string? _skipped;
    private long _events;

    internal ReplayReportRecorder(Machine machine, DmaApi api, DmaRecorder rec, Func<IEnumerable<ReportMapping>> live)
    {
        _snaps = new StateSnapshots(machine, api, live, () => _lazy.Select(l => l.Range));
        _api = api;
        _rec = rec;
    }

    /// <summary>How many DMA events the trace had (drawn or not).</summary>
    public long Events => _events;

    /// <summary>Past <see cref="MaxSteps"/> events: only counted, and the layers stop writing decision trails.</summary>
    private bool Full => _events >= MaxSteps;

    internal void Begin(ReplayReport report)
    {
        if (Full)
        {
            _rec.Why = null;
            return;
        }
        _debugBefore = report.DebugReports.Count;
        _failuresBefore = report.Failures.Count;
        _skipped = null;
        _rec.Reset();
        _rec.Why!.Clear();
    }

    internal void Skipped(string what)
    {
        if (!Full)
        {
            _skipped ??= what;
        }
    }

    /// <summary>
    /// A mapping is about to be unmapped: behind a lazy IOMMU, what each of its IOVA pages translates to now
    /// stays reachable until the flush queue flushes the IOTLB.
    /// </summary>
    internal void Unmapping(Device dev, string name, ulong dma, ulong size)
    {
        if (Full || !dev.DmaIommu || size == 0 || _api.Iommu is not { } iommu || iommu.CookieOf(dev) is not { Fq: not null }
            || iommu.DomainOf(dev) is not { } domain)
        {
            return;
        }
        var granule = domain.Granule;
        var at = dma & ~(granule - 1);
        while (at < dma + size)
        {
            if (domain.Walk(at, out var leaf))
            {
                if (!_unmapped.Any(u => u.Dev == dev && u.Iova == leaf.IovaBase))
                {
                    _unmapped.Add(new ReportLazyRange(dev, name, leaf.IovaBase, leaf.PhysBase.Value, leaf.Size));
                }
                at = leaf.IovaBase + leaf.Size;
            }
            else
            {
                at += granule;
            }
        }
    }

    /// <summary>Drops the lazy windows whose device's flush queue flushed the IOTLB since their unmap; adds this event's.</summary>
    private void UpdateLazy()
    {
        var iommu = _api.Iommu;
        _lazy.RemoveAll(l => iommu?.CookieOf(l.Range.Dev)?.Fq is not { } fq || fq.StartCount > l.FlushCount);
        foreach (var u in _unmapped)
        {
            _lazy.Add((u, iommu!.CookieOf(u.Dev)!.Fq!.StartCount));
        }
        _unmapped.Clear();
    }

    internal void End(ReplayReport report, long line, ReadOnlySpan<char> text, TraceEventKind kind, string tracedDev, Device dev,
        Made? made, List<CacheOp> cacheOps)
    {
        var index = _events++;
        if (index >= MaxSteps)
        {
            _unmapped.Clear();
            return;
        }
        UpdateLazy();
        _stepOfLine[line] = index;
        var step = new JsonObject
        {
            ["index"] = index,
            ["op"] = TracePayload.Name(kind),
            ["line"] = line,
            ["trace_line"] = text.Trim().ToString(),
            ["dev"] = dev.Name,
            ["traced_dev"] = tracedDev,
        };
        if (_rec.Path != DmaPath.None)
        {
            step["path"] = DmaRecorder.PathName(_rec.Path);
        }
        if (made is not null)
        {
            _snaps.MadeAt(made.Name, index);
            step["mapping"] = made.Name;
            step["dma_addr"] = Hex.Format(made.ModelDma);
            step["traced_dma_addr"] = Hex.Format(made.TracedDma);
            if (made.Segments.Count > 0)
            {
                step["segments"] = new JsonArray([.. made.Segments.Select(g => (JsonNode)new JsonObject { ["dma_addr"] = Hex.Format(g.Dma), ["len"] = g.Len })]);
            }
        }
        if (_rec.Bounce is { } bounce)
        {
            step["bounce"] = Hex.Format(bounce.Value);
        }
        if (_rec.IommuProt is { } prot)
        {
            step["iommu_prot"] = new JsonArray([.. IommuProt.Names(prot).Select(n => (JsonNode)JsonValue.Create(n)!)]);
        }
        if (cacheOps.Count > 0)
        {
            step["cache_ops"] = new JsonArray([.. cacheOps.Select(o => (JsonNode)new JsonObject { ["op"] = o.Name, ["phys"] = Hex.Format(o.Phys.Value), ["size"] = o.Size })]);
        }
        var debug = report.DebugReports.Skip(_debugBefore).ToList();
        if (debug.Count > 0)
        {
            step["debug"] = new JsonArray([.. debug.Select(d => (JsonNode)JsonValue.Create(d.Check)!)]);
        }
        var failures = report.Failures.Skip(_failuresBefore).ToList();
        if (failures.Count > 0)
        {
            step["error"] = string.Join("; ", failures.Select(f => f.Reason));
        }
        else if (_skipped is not null)
        {
            step["error"] = "skipped: " + _skipped;
        }
        step["why"] = new JsonArray([.. _rec.Why!.Select(w => (JsonNode)JsonValue.Create(w)!)]);
        step["ok"] = failures.Count == 0 && debug.Count == 0;
        _steps.Add(step);
        _snaps.Take(index);
    }

    /// <summary>
    /// The replay's report data, in the shape the HTML report draws for a run: <c>steps</c> (the events),
    /// <c>failures</c> (failed calls, dma-debug reports, leaks), <c>spans</c> (<see cref="StateSnapshots.Spans"/>), <c>topology</c>, and the
    /// replay's own summary under <c>replay</c>.
    /// </summary>
    public JsonObject Build(ReplayReport report, string file)
    {
        var summary = report.ToJsonObject();
        summary.Remove("calls");
        var failures = new JsonArray();
        foreach (var f in report.Failures)
        {
            failures.Add(Failure(f.Line, f.Event, $"{f.Device}: {f.Reason}"));
        }
        foreach (var d in report.DebugReports)
        {
            failures.Add(Failure(d.Line, "dma-debug " + d.Check, d.Message + (d.MappedAtLine is { } at ? $" (mapped at line {at})" : "")));
        }
        foreach (var l in report.Leaks)
        {
            failures.Add(Failure(0, "leak", $"{l.Device}: {l.Event} of line {l.Line} ({l.Size} bytes at {Hex.Format(l.ModelDma)}) still mapped at the end of the trace"));
        }
        return new JsonObject
        {
            ["kind"] = "replay",
            ["scenario"] = Path.GetFileName(report.Trace),
            ["machine"] = report.Machine,
            ["file"] = file,
            ["ok"] = failures.Count == 0,
            ["events"] = _events,
            ["events_drawn"] = _steps.Count,
            ["steps"] = _steps.DeepClone(),
            ["failures"] = failures,
            ["replay"] = summary,
            ["spans"] = _snaps.Spans(),
            ["topology"] = _snaps.Topology(),
        };
    }

    private JsonObject Failure(long line, string field, string message) => new()
    {
        ["step"] = line != 0 && _stepOfLine.TryGetValue(line, out var s) ? s : null,
        ["line"] = line == 0 ? "end" : line,
        ["field"] = field,
        ["message"] = message,
    };
}
