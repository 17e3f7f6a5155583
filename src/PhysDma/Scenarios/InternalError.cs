namespace PhysDma.Scenarios;

/// <summary>
/// A defect in PhysDma itself, not in the scenario: an exception no layer expected escaped while a step ran.
/// Carries the step so the report says where; the CLI prints it without a stack trace and exits with
/// <c>3</c>, a code of its own (not an expectation failure, not bad input).
/// </summary>
internal sealed class InternalError(string file, int line, int step, string op, Exception inner)
    : Exception($"internal error in step {step} ({op}) at {file}:{line}: {inner.GetType().Name}: {inner.Message}", inner)
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public int Step { get; } = step;
    public string Op { get; } = op;
}
