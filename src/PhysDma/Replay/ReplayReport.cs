using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using PhysDma.Core;

namespace PhysDma.Replay;

/// <summary>How traced physical addresses were given to the model.</summary>
internal enum PhysPolicy
{
    /// <summary>Traced addresses used as they are: RAM where the machine has RAM, MMIO where attrs say MMIO.</summary>
    AsTraced,

    /// <summary>Traced pages placed in free model RAM, keeping in-page offsets and each mapping's contiguity.</summary>
    Relocate,
}

/// <summary>Per device: the traced name, the model device, and how many of each call.</summary>
internal sealed class DeviceCounts(string traced, string model)
{
    public string Traced { get; } = traced;
    public string Model { get; } = model;
    public long[] Calls { get; } = new long[(int)TraceEventKind.Derived + 1];
}

/// <summary>One replayed call whose model address differs or failed; or a traced call's addresses, when asked for.</summary>
internal sealed record ReplayedCall(long Line, string Device, string Event, ulong TracedDma, ulong ModelDma);

/// <summary>A dma-debug report, with the trace line of the call that made it and the line that mapped what it is about.</summary>
internal sealed record ReplayDebugReport(long Line, string LineText, string Check, string Message, long? MappedAtLine);

/// <summary>A call that failed on the modelled machine (or only in the trace), and why.</summary>
internal sealed record ReplayFailure(long Line, string Device, string Event, string Reason);

/// <summary>A mapping still held at the end of the trace.</summary>
internal sealed record ReplayLeak(long Line, string Device, string Event, ulong TracedDma, ulong ModelDma, ulong Size);

/// <summary>Everything a replay found.</summary>
internal sealed class ReplayReport
{
    public const string CannotShow =
        "A trace cannot show: the data bytes the CPU and device moved, whether the driver checked dma_mapping_error() " +
        "(replay assumes every successful mapping was checked), CPU accesses to the buffers, the dma_iova_* API and " +
        "P2P bus-address mappings (they emit no dma events), and the lengths of scatterlist entries that an IOMMU merged.";

    public required string Trace { get; init; }
    public required string Machine { get; init; }
    public required PhysPolicy Policy { get; init; }
    public required bool Debug { get; init; }
    public long Lines { get; set; }
    public long Events { get; set; }
    public long Replayed { get; set; }
    public long HeaderLines { get; set; }
    public Dictionary<string, long> Skipped { get; } = new(StringComparer.Ordinal);
    public string? TruncatedLastLine { get; set; }
    public long TruncatedLine { get; set; }
    public List<DeviceCounts> Devices { get; } = [];
    public List<ReplayDebugReport> DebugReports { get; } = [];
    public List<ReplayFailure> Failures { get; } = [];
    public List<ReplayLeak> Leaks { get; } = [];
    public long AddressesDiffering { get; set; }
    public long AddressesCompared { get; set; }

    /// <summary>Every replayed mapping call's traced and model address, kept only when asked (tests, small traces).</summary>
    public List<ReplayedCall>? Calls { get; set; }

    public long PeakSwiotlbSlots { get; set; }
    public List<long> PeakSwiotlbHolders { get; } = [];
    public long PeakIovaPages { get; set; }
    public ulong BytesBounced { get; set; }
    public long CacheCleans { get; set; }
    public long CacheInvalidates { get; set; }
    public long CacheFlushes { get; set; }

    public static string PolicyText(PhysPolicy p) => p == PhysPolicy.Relocate
        ? "relocate: traced pages placed in free model RAM, in-page offsets and each mapping's contiguity kept"
        : "as traced: physical addresses used as they are (RAM where the machine has RAM, MMIO where attrs say MMIO)";

    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public JsonObject ToJsonObject()
    {
        var devices = new JsonArray();
        foreach (var d in Devices)
        {
            var calls = new JsonObject();
            for (var k = 1; k < d.Calls.Length - 1; k++)
            {
                if (d.Calls[k] != 0)
                {
                    calls[TracePayload.Name((TraceEventKind)k)] = d.Calls[k];
                }
            }
            devices.Add(new JsonObject { ["traced"] = d.Traced, ["device"] = d.Model, ["calls"] = calls });
        }
        var skipped = new JsonObject();
        foreach (var (k, v) in Skipped.OrderBy(k => k.Key, StringComparer.Ordinal))
        {
            skipped[k] = v;
        }
        var o = new JsonObject
        {
            ["trace"] = Trace,
            ["machine"] = Machine,
            ["phys_policy"] = Policy == PhysPolicy.Relocate ? "relocate" : "as_traced",
            ["phys_policy_text"] = PolicyText(Policy),
            ["dma_debug"] = Debug,
            ["lines"] = Lines,
            ["events"] = Events,
            ["replayed"] = Replayed,
            ["header_lines"] = HeaderLines,
            ["skipped_events"] = skipped,
            ["truncated_last_line"] = TruncatedLastLine is null ? null : new JsonObject { ["line"] = TruncatedLine, ["text"] = TruncatedLastLine },
            ["devices"] = devices,
            ["dma_debug_reports"] = new JsonArray([.. DebugReports.Select(r => (JsonNode)new JsonObject
            {
                ["line"] = r.Line,
                ["trace_line"] = r.LineText,
                ["check"] = r.Check,
                ["message"] = r.Message,
                ["mapped_at_line"] = r.MappedAtLine,
            })]),
            ["failed"] = new JsonArray([.. Failures.Select(f => (JsonNode)new JsonObject
            {
                ["line"] = f.Line, ["device"] = f.Device, ["event"] = f.Event, ["reason"] = f.Reason,
            })]),
            ["leaks"] = new JsonArray([.. Leaks.Select(l => (JsonNode)new JsonObject
            {
                ["line"] = l.Line, ["device"] = l.Device, ["event"] = l.Event,
                ["traced_dma_addr"] = Hex.Format(l.TracedDma), ["dma_addr"] = Hex.Format(l.ModelDma), ["size"] = l.Size,
            })]),
            ["addresses_compared"] = AddressesCompared,
            ["addresses_differing"] = AddressesDiffering,
            ["peak_swiotlb_slots"] = PeakSwiotlbSlots,
            ["peak_swiotlb_holders"] = new JsonArray([.. PeakSwiotlbHolders.Select(l => (JsonNode)JsonValue.Create(l))]),
            ["peak_iova_pages"] = PeakIovaPages,
            ["bytes_bounced"] = BytesBounced,
            ["cache_ops"] = new JsonObject { ["clean"] = CacheCleans, ["invalidate"] = CacheInvalidates, ["flush"] = CacheFlushes },
            ["cannot_show"] = CannotShow,
        };
        if (Calls is not null)
        {
            o["calls"] = new JsonArray([.. Calls.Select(c => (JsonNode)new JsonObject
            {
                ["line"] = c.Line, ["device"] = c.Device, ["event"] = c.Event,
                ["traced_dma_addr"] = Hex.Format(c.TracedDma), ["dma_addr"] = Hex.Format(c.ModelDma),
            })]);
        }
        return o;
    }

    public string ToJson() => ToJsonObject().ToJsonString(Options) + "\n";
}
