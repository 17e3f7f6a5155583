using BenchmarkDotNet.Attributes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>dma_map_phys</c> + <c>dma_unmap_phys</c> of a buffer a 32-bit device cannot reach, so every call
/// bounces through swiotlb, next to the model's CPU memcpy of the same size (what the bounce itself
/// costs). TO_DEVICE copies once (in at map); BIDIRECTIONAL twice (in at map, back at unmap).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(ThroughputConfig))]
public class SwiotlbBenchmarks
{
    private Machine _m = null!;
    private DmaApi _api = null!;
    private Device _dev = null!;
    private PhysAddr _buf;
    private KernelVirt _src;
    private KernelVirt _dst;

    [Params(64, 4096, 65536)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var cfg = new MachineConfig
        {
            Name = "bench-x86-swiotlb",
            Arch = Arch.X86_64,
            Cpus = 1,
            Debug = false,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            // Small on purpose: the bounce slots rotate through the whole pool, and every cache line
            // the model has ever touched stays resident.
            Swiotlb = new SwiotlbConfig(4 * Sizes.MiB, 1, false, false, null),
            Devices = [new DeviceConfig { Name = "nic0", DmaMaskBits = 32, CoherentDmaMaskBits = 32 }],
        };
        _m = new Machine(cfg);
        _api = new DmaApi(_m);
        _dev = _m.Device("nic0");
        _buf = _m.Allocator.Alloc(65536, 4096, 4 * Sizes.GiB)!.Value;
        _src = _m.Kmap.PhysToVirt(_buf);
        _dst = _m.Kmap.PhysToVirt(_m.Allocator.Alloc(65536, 4096, 4 * Sizes.GiB)!.Value);
        _m.Cpu.Memset(_src, 0x66, 65536);
    }

    [Benchmark(Baseline = true, Description = "cpu memcpy")]
    public void Memcpy() => _m.Cpu.Memcpy(_dst, _src, (ulong)Size);

    [Benchmark(Description = "swiotlb map+unmap TO_DEVICE")]
    public DmaAddr MapUnmapToDevice() => MapUnmap(DmaDirection.ToDevice);

    [Benchmark(Description = "swiotlb map+unmap BIDIRECTIONAL")]
    public DmaAddr MapUnmapBidirectional() => MapUnmap(DmaDirection.Bidirectional);

    private DmaAddr MapUnmap(DmaDirection dir)
    {
        var a = _api.MapPhys(_dev, _buf, (ulong)Size, dir, 0);
        _api.UnmapPhys(_dev, a, (ulong)Size, dir, 0);
        return a;
    }
}
