using BenchmarkDotNet.Attributes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>dma_map_phys</c> + <c>dma_mapping_error</c> + <c>dma_unmap_phys</c> of one page on a coherent
/// 64-bit device through dma-direct, with no bus offset and with a <c>dma_ranges</c> map (the range walk
/// of <c>phys_to_dma</c> and <c>dma_to_phys</c>), dma-debug off and on.
/// </summary>
[MemoryDiagnoser]
public class DirectMapBenchmarks
{
    private DmaApi _api = null!;
    private Device _dev = null!;
    private PhysAddr _buf;

    [Params(false, true)]
    public bool DmaRanges { get; set; }

    [Params(false, true)]
    public bool Debug { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var cfg = new MachineConfig
        {
            Name = "bench-direct",
            Arch = Arch.X86_64,
            Cpus = 1,
            Debug = Debug,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = null,
            Devices =
            [
                new DeviceConfig
                {
                    Name = "nic0",
                    DmaMaskBits = 64,
                    CoherentDmaMaskBits = 64,
                    DmaRanges = DmaRanges
                        ? [new DmaRangeConfig(0, 0x80_0000_0000, 3 * Sizes.GiB), new DmaRangeConfig(4 * Sizes.GiB, 0x81_0000_0000, 4 * Sizes.GiB)]
                        : [],
                },
            ],
        };
        var m = new Machine(cfg);
        _api = new DmaApi(m);
        _dev = m.Device("nic0");
        _buf = m.Allocator.Alloc(4096, 4096, 4 * Sizes.GiB)!.Value;
        var a = MapUnmap();
        if (a.IsError || (DmaRanges && a.Value < 0x81_0000_0000))
        {
            throw new InvalidOperationException($"benchmark setup: mapped to {a}");
        }
    }

    [Benchmark(Description = "direct map+mapping_error+unmap 4K")]
    public DmaAddr MapUnmap()
    {
        var a = _api.MapPhys(_dev, _buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        _api.MappingError(_dev, a);
        _api.UnmapPhys(_dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        return a;
    }
}

/// <summary>
/// <c>dma_map_phys</c> + <c>dma_mapping_error</c> + <c>dma_unmap_phys</c> of 4 KiB through dma-iommu on a
/// coherent PCI device, strict and lazy, dma-debug off and on.
/// </summary>
[MemoryDiagnoser]
public class IommuPathBenchmarks
{
    private DmaApi _api = null!;
    private Device _dev = null!;
    private static readonly PhysAddr Buf = new(0x100000000);

    // A name, not the enum: the enum is internal to PhysDma and BenchmarkDotNet's generated code sets the value.
    [Params("Strict", "Lazy")]
    public string Mode { get; set; } = "Strict";

    [Params(false, true)]
    public bool Debug { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var m = new Machine(BenchMachines.Iommu(Enum.Parse<IommuMode>(Mode), Debug, cpus: 1));
        _api = new DmaApi(m);
        _dev = m.Device("nic0");
        if (MapUnmap().IsError)
        {
            throw new InvalidOperationException("benchmark setup: map failed");
        }
    }

    // A correct driver checks the mapping: without dma_mapping_error, dma-debug would report
    // map_error_not_checked on every unmap and the figure would be the cost of that report.
    [Benchmark(Description = "iommu map+mapping_error+unmap 4K")]
    public DmaAddr MapUnmap()
    {
        var a = _api.MapPhys(_dev, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        _api.MappingError(_dev, a);
        _api.UnmapPhys(_dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        return a;
    }
}

/// <summary>
/// Throughput of modelled CPUs mapping and unmapping through a lazy IOMMU, each on its own thread
/// bound to its CPU: the time per operation over all threads, so two CPUs that scale show half of one.
/// Fifteen warm-up iterations, not ShortRun's three: until tiered compilation has replaced the
/// instrumented code of the path (whose counters both threads write), two threads measure that, not the
/// model, and a run may come out twice as slow. Each case prints to its log how long a cache line takes to
/// go between two threads and back (<see cref="HostLineProbe"/>), before and after it runs: two CPUs on one
/// device share lines as the kernel's do, so their figure is to be read beside that one.
/// </summary>
[MemoryDiagnoser]
[WarmupCount(15)]
public class CpuScalingBenchmarks
{
    private const int TotalOps = 1 << 18;

    private DmaApi _api = null!;
    private Device[] _devs = [];
    private Machine _m = null!;
    private Thread[] _workers = [];
    private SemaphoreSlim[] _go = [];
    private CountdownEvent _done = null!;
    private volatile bool _stop;

    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>
    /// Bytes per mapping. With one device the flush queue and the IOVA caches' depot pass pages between the two
    /// CPUs (as in the kernel, which hands out the same pfns), so their PTEs share cache lines of the page table;
    /// the larger the mapping, the more of each operation is work of its own.
    /// </summary>
    [Params(4096UL, 32768UL)]
    public ulong Size { get; set; }

    /// <summary>
    /// <c>one-device</c>: every CPU maps for nic0, as dma_map_benchmark's threads do (one domain, one IOVA space,
    /// one page table). <c>device-per-cpu</c>: CPU n maps for its own NIC, the same code with nothing of the
    /// model shared: the figure the host gives this path on two threads, beside which the first one reads.
    /// </summary>
    [Params("one-device", "device-per-cpu")]
    public string Devices { get; set; } = "one-device";

    /// <summary>
    /// One worker thread per modelled CPU, bound to it for the whole run and woken for each invocation (as
    /// dma_map_benchmark's kthreads are made once): the one-CPU case runs on a worker too, so both pay the same
    /// wake-up and neither pays for starting threads.
    /// </summary>
    [GlobalSetup]
    public void Setup()
    {
        Console.WriteLine(HostLineProbe.Describe("before this case"));
        _m = new Machine(BenchMachines.Iommu(IommuMode.Lazy, debug: false, cpus: 2));
        _api = new DmaApi(_m);
        // The device each CPU maps for.
        _devs = [.. Enumerable.Range(0, Threads).Select(cpu => _m.Device(Devices == "one-device" ? "nic0" : $"nic{cpu}"))];
        _done = new CountdownEvent(Threads);
        _go = new SemaphoreSlim[Threads];
        _workers = new Thread[Threads];
        for (var t = 0; t < Threads; t++)
        {
            var cpu = t;
            _go[t] = new SemaphoreSlim(0);
            _workers[t] = new Thread(() => Worker(cpu)) { IsBackground = true };
            _workers[t].Start();
        }
        Run();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        Console.WriteLine(HostLineProbe.Describe("after this case"));
        _stop = true;
        foreach (var go in _go)
        {
            go.Release();
        }
        foreach (var w in _workers)
        {
            w.Join();
        }
    }

    [Benchmark(OperationsPerInvoke = TotalOps, Description = "iommu lazy map+unmap, per op over all CPUs")]
    public void Run()
    {
        _done.Reset();
        foreach (var go in _go)
        {
            go.Release();
        }
        _done.Wait();
    }

    private void Worker(int cpu)
    {
        using var _ = _m.OnCpu(cpu);
        var per = TotalOps / Threads;
        while (true)
        {
            _go[cpu].Wait();
            if (_stop)
            {
                return;
            }
            Work(cpu, per);
            _done.Signal();
        }
    }

    private void Work(int cpu, int ops)
    {
        var dev = _devs[cpu];
        var buf = new PhysAddr(0x100000000 + ((ulong)cpu << 20));
        for (var i = 0; i < ops; i++)
        {
            var a = _api.MapPhys(dev, buf, Size, DmaDirection.ToDevice, DmaAttrs.None);
            _api.UnmapPhys(dev, a, Size, DmaDirection.ToDevice, DmaAttrs.None);
        }
    }
}

/// <summary>Machines the benchmarks share.</summary>
internal static class BenchMachines
{
    /// <summary>x86 with an IOMMU (4 KiB/2 MiB/1 GiB pages, 48-bit), one host bridge and two PCI NICs, each behind a root port of its own (so each has its own DMA domain).</summary>
    public static MachineConfig Iommu(IommuMode mode, bool debug, int cpus) => new()
    {
        Name = "bench-x86-iommu",
        Arch = Arch.X86_64,
        Cpus = cpus,
        Debug = debug,
        Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
        Swiotlb = new SwiotlbConfig(4 * Sizes.MiB, 1, false, false, null),
        Iommu = new IommuConfig(mode, [4 * Sizes.KiB, 2 * Sizes.MiB, Sizes.GiB], 48, false,
            new FlushQueueConfig(256, 10), [new AddrRange(0xfee00000, Sizes.MiB)]),
        Pci =
        [
            new PciNodeConfig("hb0", PciNodeType.HostBridge, null, 0x8086, 0x2020, true, [new AddrRange(0xc0000000, 0x3ec00000)], false),
            new PciNodeConfig("rp0", PciNodeType.RootPort, "hb0", 0x8086, 0x2021, true, [], false),
            new PciNodeConfig("rp1", PciNodeType.RootPort, "hb0", 0x8086, 0x2021, true, [], false),
        ],
        Devices =
        [
            new DeviceConfig { Name = "nic0", Parent = "rp0", Bdf = "0000:01:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64 },
            new DeviceConfig { Name = "nic1", Parent = "rp1", Bdf = "0000:02:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64 },
        ],
    };
}
