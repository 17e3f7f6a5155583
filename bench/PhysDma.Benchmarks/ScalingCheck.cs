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
        var m = new Machine(BenchMachines.Iommu(IommuMode.Lazy, debug: false, cpus: 2));
        var api = new DmaApi(m);
        var dev = m.Device("nic0");
        void Map(int cpu, long ops)
        {
            using var _ = m.OnCpu(cpu);
            var buf = new PhysAddr(0x100000000 + ((ulong)cpu << 20));
            for (long i = 0; i < ops; i++)
            {
                var a = api.MapPhys(dev, buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
                api.UnmapPhys(dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
            }
        }
        static void Control(int cpu, long ops)
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
        foreach (var (name, work) in new (string, Action<int, long>)[] { ("control (shares nothing)", Control), ("iommu lazy map+unmap 4K", Map) })
        {
            const long ops = 1 << 19;
            work(0, ops);
            work(1, ops);
            var one = Best(seconds, () => work(0, ops));
            var two = Best(seconds, () =>
            {
                var t = new Thread(() => work(1, ops));
                t.Start();
                work(0, ops);
                t.Join();
            });
            var perOne = one / ops;
            var perTwo = two / (2 * ops);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-28} 1 CPU {perOne,7:F1} ns/op   2 CPUs {perTwo,7:F1} ns/op   throughput {perOne / perTwo:F2}x"));
        }
        return 0;
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
