using System.Diagnostics;
using System.Reflection;
using BenchmarkDotNet.Running;
using PhysDma.Benchmarks;

namespace PhysDma.Cli;

/// <summary>
/// <c>physdma bench</c>: the BenchmarkDotNet benchmarks of <c>bench/PhysDma.Benchmarks</c>, run inside this
/// process (BenchmarkDotNet's in-process toolchain), so an installed tool needs no source tree to build.
/// Every other option is BenchmarkDotNet's own (<c>--filter</c>, <c>--job</c>, <c>--list</c>, ...).
/// </summary>
public static class BenchCommand
{
    /// <summary>The hint printed with the list when no benchmark is named.</summary>
    public const string PickHint = "pick benchmarks with --filter, e.g. physdma bench --filter '*Swiotlb*' --job short";

    public static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        // Figures from a debug build of the model would measure the JIT's debug code, not the model;
        // BenchmarkDotNet refuses such assemblies too, with a longer message.
        var model = typeof(PhysDma.Dma.DmaApi).Assembly;
        if (!IsOptimized(model))
        {
            stderr.WriteLine($"physdma: bench needs an optimized build, and {model.GetName().Name}.dll was built for debugging; " +
                             "run it as: dotnet run -c Release --project src/PhysDma.Cli -- bench" + string.Concat(args.Select(a => " " + ShellQuote(a))));
            return PhysDmaCli.ExitBadInput;
        }

        var listOnly = args.Count == 0;
        var bdnArgs = listOnly ? ["--list", "flat"] : args.ToList();
        if (!bdnArgs.Contains("--inProcess") && !bdnArgs.Contains("-i"))
        {
            bdnArgs.Add("--inProcess");
        }
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(SwiotlbBenchmarks).Assembly).Run([.. bdnArgs]).ToList();
        if (listOnly)
        {
            stdout.WriteLine(PickHint);
            return PhysDmaCli.ExitOk;
        }
        var failed = summaries.Count == 0 && !bdnArgs.Contains("--list")
            || summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success));
        return failed ? PhysDmaCli.ExitExpectFailed : PhysDmaCli.ExitOk;
    }

    /// <summary>Quotes an argument for the shell when it holds anything but plain word characters (a glob, a space).</summary>
    private static string ShellQuote(string a) =>
        a.Length > 0 && a.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/' or '=' or ':')
            ? a
            : "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static bool IsOptimized(Assembly a) =>
        a.GetCustomAttribute<DebuggableAttribute>() is not { IsJITOptimizerDisabled: true };
}
