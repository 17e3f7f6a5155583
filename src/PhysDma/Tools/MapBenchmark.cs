using System.Diagnostics;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tools;

/// <summary>What <c>struct map_benchmark</c> asks for (the kernel's dma_map_benchmark ioctl, with the sg mode).</summary>
internal sealed record MapBenchmarkParams
{
    /// <summary><c>DMA_MAP_MAX_THREADS</c>.</summary>
    public const int MaxThreads = 1024;

    /// <summary><c>DMA_MAP_MAX_SECONDS</c>.</summary>
    public const int MaxSeconds = 300;

    /// <summary><c>DMA_MAP_MAX_TRANS_DELAY</c> (10 ms, in ns).</summary>
    public const int MaxTransDelayNs = 10_000_000;

    /// <summary><c>DMA_MAP_BENCH_SINGLE_MODE</c>: <c>dma_map_single</c> of granule pages.</summary>
    public const int SingleMode = 0;

    /// <summary><c>DMA_MAP_BENCH_SG_MODE</c>: <c>dma_map_sg</c> of granule one-page entries.</summary>
    public const int SgMode = 1;

    public int Threads { get; init; } = 1;
    public int Seconds { get; init; } = 20;

    /// <summary>NUMA node to run on; -1 is <c>NUMA_NO_NODE</c>. The modelled machines have one node, 0.</summary>
    public int Node { get; init; } = -1;
    public int DmaBits { get; init; } = 32;

    /// <summary>0 bidirectional, 1 to device, 2 from device (<c>DMA_MAP_*</c>, not <c>enum dma_data_direction</c>).</summary>
    public int Dir { get; init; }
    public int TransNs { get; init; }
    public int Granule { get; init; } = 1;
    public int Mode { get; init; } = SingleMode;

    /// <summary>The kernel's names of <see cref="Dir"/> and <see cref="Mode"/>, as the tool prints them.</summary>
    public static readonly string[] Directions = ["BIDIRECTIONAL", "TO_DEVICE", "FROM_DEVICE"];

    public static readonly string[] Modes = ["SINGLE_MODE", "SG_MODE"];
}

/// <summary>Average and standard deviation of the map and unmap latencies, in 100 ns units, as the kernel reports them.</summary>
internal readonly record struct MapBenchmarkResult(ulong AvgMap100ns, ulong MapStddev, ulong AvgUnmap100ns, ulong UnmapStddev, long Loops);

/// <summary>The benchmark refused its parameters or a mapping failed: what the kernel logs, and the errno the ioctl returns.</summary>
internal sealed class MapBenchmarkException(string kernelLog, Errno errno) : Exception(kernelLog)
{
    public Errno Errno { get; } = errno;
}

/// <summary>
/// The kernel's dma_map_benchmark driver (kernel/dma/map_benchmark.c) on a modelled device: threads, each
/// on a modelled CPU, map and unmap one buffer (or one scatterlist) as fast as they can for a given time,
/// timing each call with the wall clock; the averages and standard deviations come out in 100 ns units
/// with the kernel's integer arithmetic. A plain timed loop, so it ships with the tool.
/// </summary>
internal static class MapBenchmark
{
    /// <summary>
    /// <c>map_benchmark_ioctl</c>: checks the parameters as the driver does, sets the device's DMA mask for the
    /// run, runs it and restores the mask. Throws <see cref="MapBenchmarkException"/> where the ioctl fails.
    /// </summary>
    public static MapBenchmarkResult Run(DmaApi api, Device dev, MapBenchmarkParams p)
    {
        if (p.Mode is < 0 or > MapBenchmarkParams.SgMode)
        {
            throw new MapBenchmarkException("invalid map mode", Errno.EINVAL);
        }
        if (p.Threads is <= 0 or > MapBenchmarkParams.MaxThreads)
        {
            throw new MapBenchmarkException("invalid thread number", Errno.EINVAL);
        }
        if (p.Seconds is <= 0 or > MapBenchmarkParams.MaxSeconds)
        {
            throw new MapBenchmarkException("invalid duration seconds", Errno.EINVAL);
        }
        if (p.TransNs is < 0 or > MapBenchmarkParams.MaxTransDelayNs)
        {
            throw new MapBenchmarkException("invalid transmission delay", Errno.EINVAL);
        }
        // One NUMA node in every modelled machine.
        if (p.Node != -1 && p.Node != 0)
        {
            throw new MapBenchmarkException("invalid numa node", Errno.EINVAL);
        }
        if (p.Granule is < 1 or > 1024)
        {
            throw new MapBenchmarkException("invalid granule size", Errno.EINVAL);
        }
        var dir = p.Dir switch
        {
            0 => DmaDirection.Bidirectional,
            1 => DmaDirection.ToDevice,
            2 => DmaDirection.FromDevice,
            _ => throw new MapBenchmarkException("invalid DMA direction", Errno.EINVAL),
        };
        var oldMask = dev.DmaMask;
        if (p.DmaBits is < 1 or > 64 || api.SetMask(dev, Sizes.DmaBitMask(p.DmaBits)) != Errno.None)
        {
            throw new MapBenchmarkException($"failed to set dma_mask on device {dev.Name}", Errno.EINVAL);
        }
        try
        {
            return DoMapBenchmark(api, dev, p, dir);
        }
        finally
        {
            api.SetMask(dev, oldMask);
        }
    }

    private sealed class Shared
    {
        public long SumMap;
        public long SumUnmap;
        public long SumSqMap;
        public long SumSqUnmap;
        public long Loops;
        public volatile bool Stop;
        public string? Failure;
    }

    /// <summary><c>do_map_benchmark</c>: start the threads, sleep, stop them, then the integer statistics.</summary>
    private static MapBenchmarkResult DoMapBenchmark(DmaApi api, Device dev, MapBenchmarkParams p, DmaDirection dir)
    {
        var m = api.Machine;
        var shared = new Shared();
        var threads = new Thread[p.Threads];
        using var start = new ManualResetEventSlim();
        for (var i = 0; i < threads.Length; i++)
        {
            var cpu = i % m.Cpus;
            threads[i] = new Thread(() =>
            {
                start.Wait();
                ThreadMain(api, dev, p, dir, cpu, shared);
            })
            { IsBackground = true, Name = $"dma-map-benchmark/{i}" };
            threads[i].Start();
        }
        start.Set();
        Thread.Sleep(TimeSpan.FromSeconds(p.Seconds));
        shared.Stop = true;
        foreach (var t in threads)
        {
            t.Join();
        }
        if (shared.Failure is { } failure)
        {
            throw new MapBenchmarkException(failure, Errno.ENOMEM);
        }
        var loops = (ulong)shared.Loops;
        if (loops == 0)
        {
            return default;
        }
        var avgMap = (ulong)shared.SumMap / loops;
        var avgUnmap = (ulong)shared.SumUnmap / loops;
        var mapVar = ((ulong)shared.SumSqMap / loops) - (avgMap * avgMap);
        var unmapVar = ((ulong)shared.SumSqUnmap / loops) - (avgUnmap * avgUnmap);
        return new MapBenchmarkResult(avgMap, IntSqrt(mapVar), avgUnmap, IntSqrt(unmapVar), (long)loops);
    }

    /// <summary><c>int_sqrt64</c>: the floor of the square root.</summary>
    public static ulong IntSqrt(ulong x)
    {
        var r = Math.Min((ulong)Math.Sqrt(x), uint.MaxValue);
        while (r * r > x)
        {
            r--;
        }
        while (r < uint.MaxValue && (r + 1) * (r + 1) <= x)
        {
            r++;
        }
        return r;
    }

    /// <summary><c>map_benchmark_thread</c>: prepare the buffer, then stain, map, pretend to transfer, unmap, account.</summary>
    private static void ThreadMain(DmaApi api, Device dev, MapBenchmarkParams p, DmaDirection dir, int cpu, Shared shared)
    {
        var m = api.Machine;
        using var binding = m.OnCpu(cpu);
        var pageSize = m.PageSize;
        var npages = (ulong)p.Granule;
        PhysAddr single = default;
        ScatterEntry[]? sgl = null;
        if (p.Mode == MapBenchmarkParams.SingleMode)
        {
            // alloc_pages_exact
            if (m.Allocator.Alloc(npages * pageSize, pageSize) is not { } buf)
            {
                Fail(shared, "buffer allocation failed");
                return;
            }
            single = buf;
        }
        else
        {
            sgl = new ScatterEntry[npages];
            for (var i = 0; i < sgl.Length; i++)
            {
                // __get_free_page for each entry
                if (m.Allocator.Alloc(pageSize, pageSize) is not { } pg)
                {
                    Fail(shared, "buffer allocation failed");
                    return;
                }
                sgl[i] = new ScatterEntry(pg, (uint)pageSize);
            }
        }
        var size = npages * pageSize;
        // Untimed rounds first, so the JIT's first tiers are not counted as map latency (a kernel has no JIT).
        for (var w = 0; w < WarmupRounds && !shared.Stop; w++)
        {
            if (sgl is null)
            {
                var a = api.MapSingle(dev, m.Kmap.PhysToVirt(single), size, dir, DmaAttrs.None);
                if (api.MappingError(dev, a) == Errno.None)
                {
                    api.UnmapSingle(dev, a, size, dir, DmaAttrs.None);
                }
            }
            else if (api.MapSgAttrs(dev, sgl, sgl.Length, dir, DmaAttrs.None) != 0)
            {
                api.UnmapSgAttrs(dev, sgl, sgl.Length, dir, DmaAttrs.None);
            }
        }
        long map100ns = 0, unmap100ns = 0, sqMap = 0, sqUnmap = 0, loops = 0;
        while (!shared.Stop)
        {
            if (dir != DmaDirection.FromDevice)
            {
                // Stain the buffer in the cache, so a non-coherent device pays for the writeback.
                if (sgl is null)
                {
                    m.Cpu.Memset(m.Kmap.PhysToVirt(single), 0x66, size);
                }
                else
                {
                    foreach (var e in sgl)
                    {
                        m.Cpu.Memset(m.Kmap.PhysToVirt(e.Phys), 0x66, pageSize);
                    }
                }
            }
            var t0 = Stopwatch.GetTimestamp();
            DmaAddr addr = default;
            if (sgl is null)
            {
                addr = api.MapSingle(dev, m.Kmap.PhysToVirt(single), size, dir, DmaAttrs.None);
                if (api.MappingError(dev, addr) != Errno.None)
                {
                    Fail(shared, $"dma_map_single failed on {dev.Name}");
                    break;
                }
            }
            else if (api.MapSgAttrs(dev, sgl, sgl.Length, dir, DmaAttrs.None) == 0)
            {
                Fail(shared, $"dma_map_sg failed on {dev.Name}");
                break;
            }
            var t1 = Stopwatch.GetTimestamp();
            if (p.TransNs > 0)
            {
                NDelay(p.TransNs);
            }
            var t2 = Stopwatch.GetTimestamp();
            if (sgl is null)
            {
                api.UnmapSingle(dev, addr, size, dir, DmaAttrs.None);
            }
            else
            {
                api.UnmapSgAttrs(dev, sgl, sgl.Length, dir, DmaAttrs.None);
            }
            var t3 = Stopwatch.GetTimestamp();
            var mapNs = (long)((t1 - t0) * NsPerTick);
            var unmapNs = (long)((t3 - t2) * NsPerTick);
            var m100 = mapNs / 100;
            var u100 = unmapNs / 100;
            map100ns += m100;
            unmap100ns += u100;
            sqMap += m100 * m100;
            sqUnmap += u100 * u100;
            loops++;
        }
        Interlocked.Add(ref shared.SumMap, map100ns);
        Interlocked.Add(ref shared.SumUnmap, unmap100ns);
        Interlocked.Add(ref shared.SumSqMap, sqMap);
        Interlocked.Add(ref shared.SumSqUnmap, sqUnmap);
        Interlocked.Add(ref shared.Loops, loops);
        if (sgl is null)
        {
            m.Allocator.Free(single, size);
        }
        else
        {
            foreach (var e in sgl)
            {
                m.Allocator.Free(e.Phys, pageSize);
            }
        }
    }

    private const int WarmupRounds = 2000;

    private static readonly double NsPerTick = 1e9 / Stopwatch.Frequency;

    /// <summary><c>ndelay</c>: a busy wait.</summary>
    private static void NDelay(int ns)
    {
        var until = Stopwatch.GetTimestamp() + (long)Math.Ceiling(ns / NsPerTick);
        while (Stopwatch.GetTimestamp() < until)
        {
            Thread.SpinWait(1);
        }
    }

    private static void Fail(Shared shared, string message)
    {
        Interlocked.CompareExchange(ref shared.Failure, message, null);
        shared.Stop = true;
    }
}
