using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PhysDma.Scenarios;

/// <summary>An expectation that did not hold, with where it was written.</summary>
public sealed record ExpectFailure(int? Step, int Line, string Field, string Message);

/// <summary>The result of a run: the JSON document of SCENARIOS.md plus what the terminal view needs.</summary>
public sealed class RunResult
{
    public required JsonObject Json { get; init; }
    public required IReadOnlyList<ExpectFailure> Failures { get; init; }
    public bool Ok => Failures.Count == 0 && Json["bug"] is null && Json["violation"] is null;

    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The JSON text: deterministic for the same inputs.</summary>
    public string ToJson() => Json.ToJsonString(Options) + "\n";
}
