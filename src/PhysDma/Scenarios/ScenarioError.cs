namespace PhysDma.Scenarios;

/// <summary>
/// Bad input: a malformed scenario or machine file, or a request the model cannot make. Carries the file,
/// line and field so the one-line message points at the exact place.
/// </summary>
internal sealed class ScenarioError(string file, int line, string field, string message) : Exception(message)
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public string Field { get; } = field;

    /// <summary>The column, for YAML syntax errors (0: not known).</summary>
    public int Column { get; init; }

    private string Where => Column > 0 ? $"{File}:{Line}:{Column}" : $"{File}:{Line}";

    /// <summary><c>FILE:LINE: FIELD: message</c> (<c>FILE:LINE:COLUMN: message</c> for YAML syntax errors).</summary>
    public string Formatted => Field.Length == 0 ? $"{Where}: {Message}" : $"{Where}: {Field}: {Message}";

    public override string ToString() => Formatted;
}
