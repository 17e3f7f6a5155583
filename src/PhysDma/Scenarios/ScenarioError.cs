namespace PhysDma.Scenarios;

/// <summary>
/// Bad input: a malformed scenario or machine file, or a request the model cannot make. Carries the file,
/// line and field so the one-line message points at the exact place.
/// </summary>
public sealed class ScenarioError(string file, int line, string field, string message) : Exception(message)
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Field { get; } = field;

    /// <summary><c>FILE:LINE: FIELD: message</c>.</summary>
    public string Formatted => Field.Length == 0 ? $"{File}:{Line}: {Message}" : $"{File}:{Line}: {Field}: {Message}";

    public override string ToString() => Formatted;
}
