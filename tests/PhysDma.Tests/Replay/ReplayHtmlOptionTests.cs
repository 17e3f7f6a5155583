using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Replaying;

/// <summary><c>physdma replay --html FILE</c> on the command line: where the report goes, and bad paths.</summary>
public class ReplayHtmlOptionTests
{
    private static readonly string Fixture = Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "TestData", "traces", "tbt-bounce-nic-lazy.trace");

    [Fact]
    public void Html_into_a_missing_directory_is_bad_input_naming_the_path()
    {
        var path = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid().ToString("N"), "r.html");
        var (exit, o, err) = CliArgs("replay", Fixture, "--html", path);
        Assert.Equal(2, exit);
        Assert.Equal("", o);
        Assert.Equal($"physdma: --html: cannot write '{path}': the directory '{Path.GetDirectoryName(path)}' does not exist\n", err.Replace("\r\n", "\n"));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Html_naming_a_directory_is_bad_input_and_nothing_is_replayed()
    {
        var dir = Directory.CreateTempSubdirectory("physdma-html-dir").FullName;
        var (exit, o, err) = CliArgs("replay", Fixture, "--html", dir);
        Assert.Equal(2, exit);
        Assert.Equal("", o);
        Assert.StartsWith($"physdma: --html: '{dir}' is a directory, not a file to write the report to", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void Html_writes_one_self_contained_report_beside_the_usual_output()
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("physdma-html").FullName, "r.html");
        var (exit, o, err) = CliArgs("replay", Fixture, "--html", path);
        Assert.True(exit == 0, err);
        Assert.Contains("9 replayed", o);
        var html = File.ReadAllText(path);
        Assert.Contains("<title>PhysDma replay: tbt-bounce-nic-lazy.trace on default</title>", html);
        Assert.Contains("\"kind\":\"replay\"", html.Replace(" ", ""));
        Assert.DoesNotContain("src=\"http", html);
    }

    [Fact]
    public void Replay_help_lists_html()
    {
        var (exit, o, _) = CliArgs("replay", "--help");
        Assert.Equal(0, exit);
        Assert.Contains("--html <html>", o);
        Assert.Contains("write a self-contained HTML report to this file: the replayed events with their trace lines", o);
    }
}
