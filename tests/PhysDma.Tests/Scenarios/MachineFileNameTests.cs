namespace PhysDma.Tests.Scenarios;

/// <summary>A machine read from a file is shown under the file's name, whether it is whole or overrides a base.</summary>
public class MachineFileNameTests
{
    private static string WriteMachine(string fileName, string text)
    {
        var dir = Path.Combine(Path.GetTempPath(), "physdma-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, fileName);
        File.WriteAllText(path, text);
        return path;
    }

    private const string Steps = "steps:\n  - { op: tick, ms: 1 }\n";

    [Theory]
    [InlineData("base: x86-noiommu\ncpus: 4\n")]
    [InlineData("machine:\n  base: x86-noiommu\n  cpus: 4\n")]
    public void A_machine_file_with_base_is_named_after_the_file(string text)
    {
        var path = WriteMachine("my-board.yaml", text);
        var r = ScenarioTestKit.Run($"machine: {path}\n" + Steps);
        Assert.Equal("my-board", ScenarioTestKit.Str(r.Json["machine"]));
    }

    [Fact]
    public void A_machine_file_naming_a_profile_keeps_the_profile_name()
    {
        var path = WriteMachine("alias.yaml", "machine: arm64-noncoherent\n");
        var r = ScenarioTestKit.Run($"machine: {path}\n" + Steps);
        Assert.Equal("arm64-noncoherent", ScenarioTestKit.Str(r.Json["machine"]));
    }

    [Fact]
    public void The_machine_option_with_a_file_shows_the_file_name()
    {
        var path = WriteMachine("lab.yaml", "base: default\niommu: { mode: strict }\n");
        var (exit, o, _, _) = ScenarioTestKit.RunCli("machine: default\n" + Steps, "--machine", path, "--json");
        Assert.Equal(0, exit);
        Assert.Contains("\"machine\": \"lab\"", o, StringComparison.Ordinal);
    }
}
