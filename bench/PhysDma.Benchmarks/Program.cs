using BenchmarkDotNet.Running;
using PhysDma.Benchmarks;

// Every benchmark class in this assembly; pick with --filter, e.g. --filter '*Swiotlb*' --job short.
// On a loaded machine, --cputime NAME[,NAME] gives a quick thread-CPU-time figure per benchmark instead.
// --scaling [NAME]: one modelled CPU against two on two threads, part by part along the IOMMU map paths and at
// several sizes, beside a control loop that shares nothing (run with DOTNET_TieredCompilation=0).
// --rss [MAPPINGS]: the resident set of a 1 TiB machine with 1 M live mappings (its own process).
if (args.Length >= 1 && args[0] == "--rss")
{
    return RssCheck.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1_000_000);
}
if (args.Length >= 1 && args[0] == "--scaling")
{
    return ScalingCheck.Run(args.Length > 1 ? args[1] : null);
}
if (args.Length == 2 && args[0] == "--cputime")
{
    CpuTimeRunner.Run(args[1]);
    return 0;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
