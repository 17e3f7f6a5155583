using BenchmarkDotNet.Running;
using PhysDma.Benchmarks;

// Every benchmark class in this assembly; pick with --filter, e.g. --filter '*Swiotlb*' --job short.
// On a loaded machine, --cputime NAME[,NAME] gives a quick thread-CPU-time figure per benchmark instead.
if (args.Length == 2 && args[0] == "--cputime")
{
    CpuTimeRunner.Run(args[1]);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
