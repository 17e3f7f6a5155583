using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace PhysDma.Scenarios;

/// <summary>An expectation that did not hold, with where it was written (<c>step</c> is null for the final block).</summary>
internal sealed record ExpectFailure(int? Step, int Line, string Field, string Message);

/// <summary>A dma-debug report: the check, the kernel's message, whether it was printed, and where the mapping was made.</summary>
internal sealed record DebugReportResult(int Step, string Check, string Message, bool Printed, string? MappedAt);

/// <summary>A device access that the fabric or the IOMMU refused.</summary>
internal sealed record FaultResult(int Step, string Dev, HexAddr Addr, string Access, string Reason);

/// <summary>A kernel message, with the step that printed it.</summary>
internal sealed record LogResult(int Step, string Level, string Message);

/// <summary>What is left when the run ends.</summary>
internal sealed record FinalState(long LiveMappings, long? IovaPagesInUse, long SwiotlbSlotsUsed, long? IotlbEntries);

/// <summary>
/// The result of a run, <c>physdma-result/1</c>: this record is the JSON document (its properties in order are
/// the document's fields), plus the view the terminal and tests use.
/// </summary>
internal sealed class RunResult
{
    public string Format => "physdma-result/1";

    public required string Scenario { get; init; }

    public required string Machine { get; init; }

    /// <summary>Every expectation held and the run did not stop at a BUG or a model violation.</summary>
    public bool Ok => Failures.Count == 0 && Bug is null && Violation is null;

    public required IReadOnlyList<StepResult> Steps { get; init; }

    /// <summary>Every dma-debug report in order; null when dma-debug is off.</summary>
    public required IReadOnlyList<DebugReportResult>? Debug { get; init; }

    public required IReadOnlyList<FaultResult> Faults { get; init; }

    public required IReadOnlyList<LogResult> Log { get; init; }

    public required FinalState Final { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Bug { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Violation { get; init; }

    public required IReadOnlyList<ExpectFailure> Failures { get; init; }

    /// <summary>Every fault the <c>faults:</c> section injected, in order; absent without one.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<InjectedFaultResult>? Injected { get; init; }

    /// <summary>The JSON text: deterministic for the same inputs.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ResultJson.Context.RunResult) + "\n";

    /// <summary>The document as a JSON tree, for code that walks it by field name.</summary>
    [JsonIgnore]
    public JsonObject Json => _json ??= JsonSerializer.SerializeToNode(this, ResultJson.Context.RunResult)!.AsObject();

    private JsonObject? _json;
}

/// <summary>The source-generated serializer of the result records: snake_case names, indented, readable text.</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(RunResult))]
[JsonSerializable(typeof(StepResult))]
[JsonSerializable(typeof(FinalState))]
[JsonSerializable(typeof(IReadOnlyList<DebugReportResult>))]
[JsonSerializable(typeof(IReadOnlyList<FaultResult>))]
[JsonSerializable(typeof(IReadOnlyList<InjectedFaultResult>))]
internal sealed partial class ResultJsonContext : JsonSerializerContext;

/// <summary>The one set of serializer options results are written with.</summary>
internal static class ResultJson
{
    public static ResultJsonContext Context { get; } = new(new JsonSerializerOptions
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
