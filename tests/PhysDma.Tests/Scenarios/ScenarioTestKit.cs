using System.Text.Json.Nodes;
using PhysDma.Cli;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Scenarios;

/// <summary>Runs scenarios from text or files, through the library or through the CLI entry point.</summary>
internal static class ScenarioTestKit
{
    public static string RepoRoot { get; } = FindRoot();

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "PhysDma.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("cannot find the repository root");
    }

    public static string Example(string name) => Path.Combine(RepoRoot, "examples", name);

    public static RunResult Run(string yaml, string file = "test.yaml") =>
        ScenarioRunner.Run(ScenarioParser.Parse(yaml, file));

    /// <summary>Writes the scenario to a temp file and runs the CLI on it.</summary>
    public static (int Exit, string Out, string Err, string File) RunCli(string yaml, params string[] extra)
    {
        var dir = Path.Combine(Path.GetTempPath(), "physdma-tests");
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, $"s{Guid.NewGuid():N}.yaml");
        File.WriteAllText(file, yaml);
        var (exit, o, e) = CliArgs(["run", file, .. extra]);
        return (exit, o, e, file);
    }

    public static (int Exit, string Out, string Err) CliArgs(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var exit = PhysDmaCli.Invoke(args, o, e);
        return (exit, o.ToString(), e.ToString());
    }

    public static JsonObject Step(RunResult r, int index) => r.Json["steps"]![index]!.AsObject();

    public static JsonObject Step(RunResult r, string id) =>
        r.Json["steps"]!.AsArray().Select(s => s!.AsObject()).Single(s => s["id"]?.GetValue<string>() == id);

    public static string Str(JsonNode? n) => n!.GetValue<string>();
}
