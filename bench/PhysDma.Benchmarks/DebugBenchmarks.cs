using BenchmarkDotNet.Attributes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>What dma-debug costs on the common path.</summary>
public enum DebugMode
{
    /// <summary>The machine has <c>debug: off</c>: no <see cref="DmaDebug"/> at all, one null check per hook.</summary>
    Off,

    /// <summary>dma-debug built and running: every map is tracked, every unmap checked.</summary>
    On,

    /// <summary>dma-debug built but disabled from the start (<c>dma_debug=off</c>): each hook tests the flag and returns.</summary>
    BootDisabled,
}

/// <summary>
/// <c>dma_map_phys</c> + <c>dma_mapping_error</c> + <c>dma_unmap_phys</c> of one page on a coherent 64-bit
/// device without an IOMMU (dma-direct, no bounce): the cheapest mapping there is, so the debug hooks
/// are the largest share of it. The memory diagnoser shows that none of the modes allocates.
/// </summary>
[MemoryDiagnoser]
public class DebugBenchmarks
{
    private DmaApi _api = null!;
    private Device _dev = null!;
    private PhysAddr _buf;

    [Params(DebugMode.Off, DebugMode.On, DebugMode.BootDisabled)]
    public DebugMode Mode { get; set; }

    [Params(DmaDirection.ToDevice, DmaDirection.FromDevice)]
    public DmaDirection Dir { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var cfg = new MachineConfig
        {
            Name = "bench-x86-direct",
            Arch = Arch.X86_64,
            Cpus = 1,
            Debug = Mode != DebugMode.Off,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = null,
            Devices = [new DeviceConfig { Name = "nic0", DmaMaskBits = 64, CoherentDmaMaskBits = 64 }],
        };
        var m = new Machine(cfg);
        _api = new DmaApi(m);
        if (Mode == DebugMode.BootDisabled)
        {
            _api.Debug!.Disabled = true;
        }
        _dev = m.Device("nic0");
        _buf = m.Allocator.Alloc(4096, 4096, 4 * Sizes.GiB)!.Value;
    }

    [Benchmark(Description = "dma_map_phys + mapping_error + dma_unmap_phys")]
    public DmaAddr MapUnmap()
    {
        var a = _api.MapPhys(_dev, _buf, 4096, Dir, DmaAttrs.None);
        _api.MappingError(_dev, a);
        _api.UnmapPhys(_dev, a, 4096, Dir, DmaAttrs.None);
        return a;
    }
}
