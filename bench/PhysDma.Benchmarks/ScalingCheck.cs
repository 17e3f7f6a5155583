using System.Diagnostics;
using System.Globalization;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>--scaling</c>: how throughput grows from one modelled CPU on one thread to two CPUs on two threads, part by
/// part along the lazy IOMMU map path and for the whole path at several sizes, beside a control loop that shares
/// nothing (what the host gives two threads at best). Each figure is the best of three rounds. Run it with
/// <c>DOTNET_TieredCompilation=0</c> so every loop is measured fully optimized.
/// <para>
/// The parts tell where scaling is lost. Each CPU's IOVA cache and flush-queue ring, and page-table writes to
/// different cache lines, scale; two CPUs writing PTEs in one 64-byte line do not, and neither does the whole
/// 4 KiB path, because the IOVA allocator (the kernel's algorithm, same pfns) hands two CPUs interleaved pages
/// whose PTEs share lines. From 32 KiB up a mapping's PTEs fill whole lines of their own.
/// </para>
/// </summary>
internal static class ScalingCheck
{
    private const ulong Pages = (1UL << 12) | (1UL << 21) | (1UL << 30);

    public static int Run()
    {
        const long ops = 1 << 19;
        Probe("control (shares nothing)", ops, () => (cpu, n) =>
        {
            var x = (ulong)cpu + 88172645463325252UL;
            for (long i = 0; i < n * 32; i++)
            {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            GC.KeepAlive(x);
        });
        Probe("rcache alloc+free, 1 page", ops, () =>
        {
            var d = new IovaDomain(4096, 1, 2, new Clock());
            return (cpu, n) =>
            {
                for (long i = 0; i < n; i++)
                {
                    d.FreeIovaFast(d.AllocIovaFast(1, 0xfffff, true), 1);
                }
            };
        });
        Probe("PTE map+unmap, lines apart", ops, () => PteLoop(stride: 1UL << 30));
        Probe("PTE map+unmap, one line", ops, () => PteLoop(stride: 4096));
        foreach (var size in new ulong[] { 4096, 8192, 16384, 32768, 65536 })
        {
            Probe($"dma_map_phys+unmap lazy {size / 1024} KiB", ops * 4096 / (long)size, () =>
            {
                var m = new Machine(BenchMachines.Iommu(IommuMode.Lazy, debug: false, cpus: 2));
                var api = new DmaApi(m);
                var dev = m.Device("nic0");
                return (cpu, n) =>
                {
                    var buf = new PhysAddr(0x100000000 + ((ulong)cpu << 20));
                    for (long i = 0; i < n; i++)
                    {
                        var a = api.MapPhys(dev, buf, size, DmaDirection.ToDevice, DmaAttrs.None);
                        api.UnmapPhys(dev, a, size, DmaDirection.ToDevice, DmaAttrs.None);
                    }
                };
            });
        }
        return 0;
    }

    private static Action<int, long> PteLoop(ulong stride)
    {
        var pt = new IoPageTable(12, 48, Pages);
        return (cpu, n) =>
        {
            var iova = 0x1000_0000UL + ((ulong)cpu * stride);
            for (long i = 0; i < n; i++)
            {
                pt.MapOne(iova, new PhysAddr(0x1000), 12, 3);
                pt.UnmapOne(iova);
            }
        };
    }

    private static void Probe(string name, long ops, Func<Action<int, long>> make)
    {
        var body = make();
        var binder = new Machine(BenchMachines.Iommu(IommuMode.Lazy, debug: false, cpus: 2));
        void Work(int cpu, long n)
        {
            using var _ = binder.OnCpu(cpu);
            body(cpu, n);
        }
        // Both CPUs warm up together, as dma_map_benchmark's threads start together.
        Both(Work, ops);
        var one = Best(() => Work(0, ops)) / ops;
        var two = Best(() => Both(Work, ops)) / (2 * ops);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-36} 1 CPU {one,7:F1} ns/op   2 CPUs {two,7:F1} ns/op   throughput {one / two:F2}x"));
    }

    private static void Both(Action<int, long> work, long ops)
    {
        var t = new Thread(() => work(1, ops));
        t.Start();
        work(0, ops);
        t.Join();
    }

    private static double Best(Action round)
    {
        var best = double.MaxValue;
        for (var r = 0; r < 3; r++)
        {
            var sw = Stopwatch.StartNew();
            round();
            best = Math.Min(best, sw.Elapsed.TotalNanoseconds);
        }
        return best;
    }
}
