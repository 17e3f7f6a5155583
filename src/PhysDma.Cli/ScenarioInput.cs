using PhysDma.Scenarios;

namespace PhysDma.Cli;

/// <summary>Where <c>physdma run</c> reads its scenario from, and how it reports what escaped.</summary>
internal static class ScenarioInput
{
    /// <summary>A scenario from a file, or from standard input when the path is <c>-</c>.</summary>
    public static Scenario Parse(string path, string? machine, IReadOnlyList<(string Name, string Target)>? devices = null)
    {
        if (path == "-")
        {
            string text;
            try
            {
                text = Console.In.ReadToEnd();
            }
            catch (IOException e)
            {
                throw new ScenarioError("<stdin>", 0, "", $"cannot read the scenario from standard input: {e.Message}");
            }
            return ScenarioParser.Parse(text, "<stdin>", machine, devices);
        }
        if (Directory.Exists(path))
        {
            throw new ScenarioError(path, 0, "", "is a directory: give a scenario file (YAML or JSON), or - to read one from standard input");
        }
        return ScenarioParser.ParseFile(path, machine, devices);
    }

    /// <summary>Parses <c>--max-memory</c> (a size: 512MiB, 4GiB) and runs <paramref name="run"/> with it.</summary>
    public static int WithBudget(string? option, TextWriter stderr, Func<ulong, int> run)
    {
        if (option is null)
        {
            return run(ScenarioRunner.DefaultMaxMemory);
        }
        ulong budget;
        try
        {
            budget = new YNode(new YamlDotNet.RepresentationModel.YamlScalarNode(option), "--max-memory", "").AsSize();
        }
        catch (ScenarioError e)
        {
            stderr.WriteLine($"physdma: --max-memory: {e.Message}");
            return PhysDmaCli.ExitBadInput;
        }
        return run(budget);
    }

    /// <summary>Reports a defect of PhysDma (no stack trace: the step and the exception's type and message).</summary>
    public static int InternalError(Exception e, string path, TextWriter stderr)
    {
        var what = e is InternalError ie ? ie.Message : $"internal error while reading {path}: {e.GetType().Name}: {e.Message}";
        stderr.WriteLine($"physdma: {what}");
        stderr.WriteLine("physdma: this is a bug in PhysDma, not in the scenario; please report it with the scenario file");
        return PhysDmaCli.ExitInternalError;
    }
}
