using System.Diagnostics;
using System.Globalization;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>--scaling [NAME]</c>: how throughput grows from one modelled CPU on one thread to two CPUs on two threads, part
/// by part along the IOMMU map paths and for the whole lazy path at several sizes, beside a control loop that shares
/// nothing (what the host gives two threads at best). Each figure is the best of three rounds; NAME keeps only the
/// rows whose name contains it. Run it with <c>DOTNET_TieredCompilation=0</c> so every loop is measured fully
/// optimized: in a run this short, tiered compilation can still be running instrumented code, whose counters both
/// threads write.
/// <para>
/// The parts tell where scaling is lost. Each CPU's IOVA cache and flush-queue ring scale, and so do page-table
/// writes to different lines. What does not is two CPUs writing PTEs in one 64-byte line. Strict mode, where each
/// CPU frees its IOVA at once and gets it back on its next map, does that on every map when the two CPUs' IOVAs
/// are neighbours (what the allocator hands two CPUs that start together), as the kernel's page tables do. Behind a
/// lazy domain it happens to about half the maps at 4 KiB: the flush queue and the IOVA caches' depot pass IOVAs
/// from one CPU to the other (the kernel's algorithm, same pfns), so both CPUs' pages spread over the same PTE
/// lines. What that costs depends on how far apart the host runs the two threads, so the check prints a line's
/// round trip between them (<see cref="HostLineProbe"/>) before and after the rows.
/// </para>
/// </para>
/// </summary>
internal static class ScalingCheck
{
    private const ulong Pages = (1UL << 12) | (1UL << 21) | (1UL << 30);

    public static int Run(string? only)
    {
        const long ops = 1 << 19;
        var probes = new List<(string Name, long Ops, Func<Action<int, long>> Make)>
        {
            ("control (shares nothing)", ops, () => (cpu, n) =>
            {
                var x = (ulong)cpu + 88172645463325252UL;
                for (long i = 0; i < n * 32; i++)
                {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                GC.KeepAlive(x);
            }),
            ("rcache alloc+free, 1 page", ops, () =>
            {
                var d = new IovaDomain(4096, 1, 2, new Clock());
                return (cpu, n) =>
                {
                    for (long i = 0; i < n; i++)
                    {
                        d.FreeIovaFast(d.AllocIovaFast(1, 0xfffff, true), 1);
                    }
                };
            }),
            ("PTE map+unmap, tables apart", ops, () => PteLoop(stride: 1UL << 30)),
            // Eight neighbouring pages keep their PTEs in one host cache line (IoPageTable.Index).
            ("PTE map+unmap, lines apart", ops, () => PteLoop(stride: 8 * 4096)),
            ("PTE map+unmap, one line", ops, () => PteLoop(stride: 4096)),
        };
        foreach (var part in new[] { "alloc+free", "alloc+map+unmap+free", "alloc+queue", "alloc+map+unmap+queue" })
        {
            probes.Add(($"part: {part}", ops, () => PartLoop(part)));
        }
        foreach (var (mode, size) in new[] { (IommuMode.Strict, 4096UL), (IommuMode.Lazy, 4096UL), (IommuMode.Lazy, 8192UL), (IommuMode.Lazy, 16384UL), (IommuMode.Lazy, 32768UL), (IommuMode.Lazy, 65536UL) })
        {
            probes.Add(($"dma_map_phys+unmap {mode.ToString().ToLowerInvariant()} {size / 1024} KiB", ops * 4096 / (long)size, () =>
            {
                var m = new Machine(BenchMachines.Iommu(mode, debug: false, cpus: 2));
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
            }
            ));
        }
        Console.WriteLine(HostLineProbe.Describe("before"));
        foreach (var (name, n, make) in probes)
        {
            if (only is null || name.Contains(only, StringComparison.Ordinal))
            {
                Probe(name, n, make);
            }
        }
        Console.WriteLine(HostLineProbe.Describe("after"));
        return 0;
    }

    /// <summary>
    /// The lazy path's own steps on a 4 KiB IOVA, without the DMA API around them: an IOVA from the caches, its PTE
    /// written and cleared, and the IOVA freed at once (strict, less the IOTLB) or queued for the flush (lazy).
    /// </summary>
    private static Action<int, long> PartLoop(string part)
    {
        var m = new Machine(BenchMachines.Iommu(IommuMode.Lazy, debug: false, cpus: 2));
        var api = new DmaApi(m);
        var cookie = api.Iommu!.CookieOf(m.Device("nic0"))!;
        var iovad = cookie.Iovad;
        var domain = cookie.Domain;
        var map = part.Contains("map", StringComparison.Ordinal);
        var queue = part.EndsWith("queue", StringComparison.Ordinal);
        return (cpu, n) =>
        {
            for (long i = 0; i < n; i++)
            {
                var pfn = iovad.AllocIovaFast(1, 0xfffff, true);
                if (map)
                {
                    domain.Map(pfn << 12, new PhysAddr(0x100000000), 4096, 3);
                    var gather = IotlbGather.Init();
                    gather.Queued = true;
                    domain.UnmapFast(pfn << 12, 4096, ref gather);
                }
                if (queue)
                {
                    cookie.Fq!.Queue(pfn, 1);
                }
                else
                {
                    iovad.FreeIovaFast(pfn, 1);
                }
            }
        };
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
