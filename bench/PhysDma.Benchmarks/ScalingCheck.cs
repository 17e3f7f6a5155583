using System.Diagnostics;
using System.Globalization;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>--scaling [SECONDS]</c>: how throughput grows from one modelled CPU on one thread to two on two, for
/// the IOMMU lazy map+unmap loop of <see cref="CpuScalingBenchmarks"/>, beside a control loop that shares
/// nothing (integer arithmetic in registers). The control says what the host gives two threads at best:
/// on two real cores it is close to 2.0x, on two hyperthreads of one core far less. Each figure is the best
/// of several rounds, so a round another process disturbed does not count.
/// </summary>
internal static class ScalingCheck
{
    public static int Run(double seconds)
    {
        const long ops = 1 << 19;
        Report("control (shares nothing)", seconds, ops, () => Control, warmTogether: true);
        Report("iommu lazy map+unmap 4K, CPUs warmed together", seconds, ops, () => MapLoop(), warmTogether: true);
        Report("iommu lazy map+unmap 4K, CPUs warmed in turn", seconds, ops, () => MapLoop(), warmTogether: false);
        return 0;
    }

    /// <summary>
    /// A fresh machine's map+unmap loop. Which IOVAs each CPU ends up cycling through depends on the warm-up:
    /// CPUs that start together take interleaved pfns from the tree (their PTEs share cache lines, as
    /// dma_map_benchmark's threads do on Linux); CPUs warmed one after the other take disjoint blocks.
    /// </summary>
    private static Action<int, long> MapLoop()
    {
        var m = new Machine(BenchMachines.Iommu(IommuMode.Lazy, debug: false, cpus: 2));
        var api = new DmaApi(m);
        var dev = m.Device("nic0");
        return (cpu, n) =>
        {
            using var _ = m.OnCpu(cpu);
            var buf = new PhysAddr(0x100000000 + ((ulong)cpu << 20));
            for (long i = 0; i < n; i++)
            {
                var a = api.MapPhys(dev, buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
                api.UnmapPhys(dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
            }
        };
    }

    private static void Control(int cpu, long ops)
    {
        var x = (ulong)cpu + 88172645463325252UL;
        for (long i = 0; i < ops * 16; i++)
        {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        if (x == 0)
        {
            Console.WriteLine("never");
        }
    }

    private static void Both(Action<int, long> work, long ops)
    {
        var t = new Thread(() => work(1, ops));
        t.Start();
        work(0, ops);
        t.Join();
    }

    private static void Report(string name, double seconds, long ops, Func<Action<int, long>> make, bool warmTogether)
    {
        var work = make();
        if (warmTogether)
        {
            Both(work, 4096);
        }
        else
        {
            work(0, 4096);
            work(1, 4096);
        }
        var one = Best(seconds, () => work(0, ops));
        var two = Best(seconds, () => Both(work, ops));
        var perOne = one / ops;
        var perTwo = two / (2 * ops);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-48} 1 CPU {perOne,7:F1} ns/op   2 CPUs {perTwo,7:F1} ns/op   throughput {perOne / perTwo:F2}x"));
    }

    private static double Best(double seconds, Action round)
    {
        var best = double.MaxValue;
        var total = Stopwatch.StartNew();
        do
        {
            var sw = Stopwatch.StartNew();
            round();
            best = Math.Min(best, sw.Elapsed.TotalNanoseconds);
        }
        while (total.Elapsed.TotalSeconds < seconds);
        return best;
    }
}
