using System.Diagnostics;
using System.Reflection;
using PhysDma.Cli;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

public class BenchCommandTests
{
    private static bool ModelIsDebugBuild =>
        typeof(PhysDma.Dma.DmaApi).Assembly.GetCustomAttribute<DebuggableAttribute>() is { IsJITOptimizerDisabled: true };

    [Fact]
    public void Bench_on_a_debug_build_refuses_with_the_release_command_else_lists_the_benchmarks()
    {
        var (exit, stdout, stderr) = CliArgs("bench", "--filter", "*Swiotlb*", "--list", "flat");
        if (ModelIsDebugBuild)
        {
            // BenchmarkDotNet's options pass through untouched, and the glob is quoted for the shell.
            Assert.Equal(PhysDmaCli.ExitBadInput, exit);
            Assert.Equal("", stdout);
            Assert.Equal(
                "physdma: bench needs an optimized build, and PhysDma.dll was built for debugging; " +
                "run it as: dotnet run -c Release --project src/PhysDma.Cli -- bench --filter '*Swiotlb*' --list flat\n",
                stderr.Replace("\r\n", "\n", StringComparison.Ordinal));
        }
        else
        {
            Assert.Equal(PhysDmaCli.ExitOk, exit);
            Assert.Equal("", stderr);
        }
    }

    [Fact]
    public void Bench_is_listed_in_the_help()
    {
        var (exit, stdout, _) = CliArgs("--help");
        Assert.Equal(PhysDmaCli.ExitOk, exit);
        Assert.Contains("bench", stdout, StringComparison.Ordinal);
        Assert.Contains("run the BenchmarkDotNet benchmarks in this process", stdout, StringComparison.Ordinal);
    }
}
