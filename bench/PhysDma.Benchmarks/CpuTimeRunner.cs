using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>--cputime FILTER</c>: a quick check for a machine too loaded for wall-clock figures. Each matching
/// benchmark (every parameter combination) runs in a plain loop, timed by the thread's own CPU clock
/// (<c>CLOCK_THREAD_CPUTIME_ID</c>), which does not count the time the thread waited for a core.
/// Cache and frequency effects of other load remain; BenchmarkDotNet's figures are the ones to report.
/// </summary>
internal static partial class CpuTimeRunner
{
    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Sec;
        public long Nsec;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGettime(int clock, out Timespec ts);

    private static long ThreadNs()
    {
        ClockGettime(3, out var ts);
        return (ts.Sec * 1_000_000_000) + ts.Nsec;
    }

    public static void Run(string filter)
    {
        foreach (var type in typeof(CpuTimeRunner).Assembly.GetTypes().Where(t => t.IsPublic && !t.IsAbstract))
        {
            var methods = type.GetMethods().Where(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null).ToList();
            if (methods.Count == 0)
            {
                continue;
            }
            var paramProps = type.GetProperties().Where(p => p.GetCustomAttribute<ParamsAttribute>() is not null).ToList();
            var combos = new List<List<(PropertyInfo, object?)>> { new() };
            foreach (var p in paramProps)
            {
                var values = p.GetCustomAttribute<ParamsAttribute>()!.Values;
                combos = [.. combos.SelectMany(c => values.Select(v => new List<(PropertyInfo, object?)>(c) { (p, v) }))];
            }
            foreach (var combo in combos)
            {
                foreach (var m in methods)
                {
                    var desc = m.GetCustomAttribute<BenchmarkAttribute>()!.Description ?? m.Name;
                    var name = $"{type.Name}.{m.Name} {string.Join(" ", combo.Select(c => $"{c.Item1.Name}={c.Item2}"))}";
                    if (!Matches(name, filter))
                    {
                        continue;
                    }
                    var inst = Activator.CreateInstance(type)!;
                    foreach (var (p, v) in combo)
                    {
                        p.SetValue(inst, v);
                    }
                    type.GetMethods().FirstOrDefault(x => x.GetCustomAttribute<GlobalSetupAttribute>() is not null)?.Invoke(inst, null);
                    var opsPer = m.GetCustomAttribute<BenchmarkAttribute>()!.OperationsPerInvoke;
                    var call = m.ReturnType == typeof(void)
                        ? m.CreateDelegate<Action>(inst)
                        : (Action)typeof(CpuTimeRunner).GetMethod(nameof(Discard), BindingFlags.NonPublic | BindingFlags.Static)!
                            .MakeGenericMethod(m.ReturnType)
                            .Invoke(null, [m.CreateDelegate(typeof(Func<>).MakeGenericType(m.ReturnType), inst)])!;
                    // Warm up (tiered JIT), then the best of 5 rounds of ~200 ms CPU.
                    var n = 1;
                    while (true)
                    {
                        var t0 = ThreadNs();
                        for (var i = 0; i < n; i++)
                        {
                            call();
                        }
                        if (ThreadNs() - t0 > 50_000_000)
                        {
                            break;
                        }
                        n *= 2;
                    }
                    n *= 4;
                    var best = double.MaxValue;
                    var allocBefore = GC.GetAllocatedBytesForCurrentThread();
                    for (var round = 0; round < 5; round++)
                    {
                        var t0 = ThreadNs();
                        for (var i = 0; i < n; i++)
                        {
                            call();
                        }
                        best = Math.Min(best, (ThreadNs() - t0) / (double)n / opsPer);
                    }
                    var alloc = (GC.GetAllocatedBytesForCurrentThread() - allocBefore) / (5.0 * n * opsPer);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{desc,-55} {string.Join(" ", combo.Select(c => $"{c.Item1.Name}={c.Item2}")),-28} {best,9:F1} ns  {alloc,6:F0} B/op"));
                }
            }
        }
    }

    private static Action Discard<T>(Func<T> f) => () => f();

    private static bool Matches(string name, string filter) =>
        filter == "*" || filter.Split(',').Any(f => name.Contains(f.Trim('*'), StringComparison.OrdinalIgnoreCase));
}
