using BenchmarkDotNet.Attributes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// The dispatch cost of each driver-facing entry point (docs/phys-api.md, question (b)): one map and its
/// unmap of a 4 KiB page of RAM or a 4 KiB window of a peer's BAR, through <c>dma_map_phys</c>,
/// <c>dma_map_page_attrs</c>, <c>dma_map_phys</c> with <c>DMA_ATTR_MMIO</c> and <c>dma_map_resource</c>, on a
/// coherent 64-bit device whose backend does no work of its own: dma-direct (no ops), 6.18 legacy ops
/// (<c>map_page</c>/<c>map_resource</c>) or 6.19 ops (<c>map_phys</c>). dma-debug is off, so the rows differ
/// only by the wrappers and the route taken. None of them allocates.
/// </summary>
[MemoryDiagnoser]
public class EntryPointBenchmarks
{
    private DmaApi _api = null!;
    private Device _dev = null!;
    private PhysAddr _ram;
    private PhysAddr _bar;
    private Page _page;
    private ulong _offset;

    // A name, not the enum: the enum is internal to PhysDma and BenchmarkDotNet's generated code sets the value.
    [Params("None", "Legacy", "Phys")]
    public string Ops { get; set; } = "None";

    [GlobalSetup]
    public void Setup()
    {
        const ulong barBase = 0xd000_0000;
        var cfg = new MachineConfig
        {
            Name = "bench-entry-points",
            Arch = Arch.X86_64,
            Cpus = 1,
            Debug = false,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = null,
            Devices =
            [
                new DeviceConfig { Name = "nic0", DmaMaskBits = 64, CoherentDmaMaskBits = 64, Ops = Enum.Parse<DeviceOpsKind>(Ops) },
                new DeviceConfig { Name = "gpu0", DmaMaskBits = 64, CoherentDmaMaskBits = 64, Bars = [new BarConfig(0, barBase, Sizes.MiB, barBase)] },
            ],
        };
        var m = new Machine(cfg);
        _api = new DmaApi(m);
        _dev = m.Device("nic0");
        _ram = m.Allocator.Alloc(4096, 4096, 4 * Sizes.GiB)!.Value;
        _bar = new PhysAddr(barBase);
        _page = new Page(_ram.Pfn(m.PageShift));
        _offset = _ram.OffsetInPage(m.PageSize);
        // Every route must map: a benchmark of a refused call would measure the refusal.
        foreach (var a in new[] { DmaMapPhys(), DmaMapPageAttrs(), DmaMapPhysMmio(), DmaMapResource() })
        {
            if (a.IsError)
            {
                throw new InvalidOperationException($"{Ops}: a benchmarked call failed to map");
            }
        }
    }

    [Benchmark(Baseline = true, Description = "dma_map_phys + dma_unmap_phys (RAM)")]
    public DmaAddr DmaMapPhys()
    {
        var a = _api.MapPhys(_dev, _ram, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        _api.UnmapPhys(_dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        return a;
    }

    [Benchmark(Description = "dma_map_page_attrs + dma_unmap_page_attrs (RAM)")]
    public DmaAddr DmaMapPageAttrs()
    {
        var a = _api.MapPage(_dev, _page, _offset, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        _api.UnmapPage(_dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        return a;
    }

    [Benchmark(Description = "dma_map_phys(MMIO) + dma_unmap_phys(MMIO) (BAR)")]
    public DmaAddr DmaMapPhysMmio()
    {
        var a = _api.MapPhys(_dev, _bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio);
        _api.UnmapPhys(_dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio);
        return a;
    }

    [Benchmark(Description = "dma_map_resource + dma_unmap_resource (BAR)")]
    public DmaAddr DmaMapResource()
    {
        var a = _api.MapResource(_dev, _bar, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        _api.UnmapResource(_dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        return a;
    }
}
