using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>
/// The result JSON is a public contract: every example on every built-in machine it runs on, and every misuse
/// catalogue scenario, must give the JSON recorded in <c>Golden/</c> byte for byte. A deliberate change of
/// output is recorded again with <c>PHYSDMA_UPDATE_GOLDEN=1 dotnet test --filter GoldenResultTests</c> and
/// reviewed in the diff.
/// </summary>
public class GoldenResultTests
{
    private static string GoldenDir => Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "Scenarios", "Golden");

    public static TheoryData<string, string?> Runs()
    {
        var data = new TheoryData<string, string?>();
        foreach (var f in Directory.GetFiles(Path.Combine(RepoRoot, "examples"), "*.yaml").Order(StringComparer.Ordinal))
        {
            var rel = Path.GetRelativePath(RepoRoot, f);
            foreach (var machine in Profiles.Names.Order(StringComparer.Ordinal))
            {
                data.Add(rel, machine);
            }
        }
        foreach (var f in Directory.GetFiles(Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "Misuse"), "*.yaml").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetRelativePath(RepoRoot, f), null);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public void Result_json_is_byte_identical_to_the_recorded_one(string file, string? machine)
    {
        string actual;
        try
        {
            actual = ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(RepoRoot, file), machine)).ToJson();
        }
        catch (ScenarioError e)
        {
            // Runs that stop as bad input (a device the machine lacks) are recorded as their message.
            actual = "error: " + e.Message.Replace(RepoRoot, "$REPO", StringComparison.Ordinal) + "\n";
        }
        var name = file.Replace('/', '_').Replace('\\', '_') + (machine is null ? "" : "@" + machine) + ".json";
        var path = Path.Combine(GoldenDir, name);
        if (Environment.GetEnvironmentVariable("PHYSDMA_UPDATE_GOLDEN") == "1")
        {
            Directory.CreateDirectory(GoldenDir);
            File.WriteAllText(path, actual);
            return;
        }
        Assert.True(File.Exists(path), $"no recorded result {name}; record it with PHYSDMA_UPDATE_GOLDEN=1");
        Assert.Equal(File.ReadAllText(path), actual);
    }
}
