using BenchmarkDotNet.Attributes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// Mapping 64 scattered 4 KiB pages for one request, three ways, on a lazy x86 IOMMU: the two-step IOVA
/// API (one IOVA, 64 links, one sync, one destroy), 64 separate <c>dma_map_phys</c>/<c>dma_unmap_phys</c>,
/// and one 64-entry scatter-gather list (<c>dma_map_sgtable</c>/<c>dma_unmap_sgtable</c>).
/// </summary>
[MemoryDiagnoser]
public class IovaBenchmarks
{
    private const int Pages = 64;
    private const ulong Page = 4096;

    private Machine _m = null!;
    private DmaApi _api = null!;
    private Device _dev = null!;
    private readonly PhysAddr[] _pages = new PhysAddr[Pages];
    private readonly DmaAddr[] _addrs = new DmaAddr[Pages];
    private readonly DmaIovaState _state = new();
    private SgTable _sgt = null!;

    [GlobalSetup]
    public void Setup()
    {
        var cfg = new MachineConfig
        {
            Name = "bench-x86-iommu-lazy",
            Arch = Arch.X86_64,
            Cpus = 1,
            Debug = false,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = new SwiotlbConfig(4 * Sizes.MiB, 1, false, false, null),
            Iommu = new IommuConfig(IommuMode.Lazy, [4 * Sizes.KiB, 2 * Sizes.MiB, Sizes.GiB], 48, false,
                new FlushQueueConfig(256, 10), [new AddrRange(0xfee00000, Sizes.MiB)]),
            Devices = [new DeviceConfig { Name = "nic0", Iommu = true, DmaMaskBits = 64, CoherentDmaMaskBits = 64 }],
        };
        _m = new Machine(cfg);
        _api = new DmaApi(_m);
        _dev = _m.Device("nic0");
        // Every other page, so nothing is physically contiguous.
        var entries = new ScatterEntry[Pages];
        for (var i = 0; i < Pages; i++)
        {
            _pages[i] = new PhysAddr(4 * Sizes.GiB + ((ulong)i * 2 * Page));
            entries[i] = new ScatterEntry(_pages[i], (uint)Page);
        }
        _sgt = new SgTable(entries);

        // Measure working calls only: 64 pages merge into 4 segments of max_seg_size (64 KiB).
        if (MapSg64() != 4 || IovaLink64().IsError || MapPhys64().IsError)
        {
            throw new InvalidOperationException("benchmark setup: a mapping failed");
        }
        if (!_api.IovaTryAlloc(_dev, _state, _pages[1], Page)
            || _api.IovaLink(_dev, _state, _pages[1], 0, Page, DmaDirection.ToDevice, DmaAttrs.None) != Errno.None)
        {
            throw new InvalidOperationException("benchmark setup: dma_iova_link failed");
        }
        _api.IovaDestroy(_dev, _state, Page, DmaDirection.ToDevice, DmaAttrs.None);
        _api.Iommu!.FlushAll();
        if (_api.Iommu.DomainOf(_dev)!.PteCount != 0 || _api.Iommu.IovaPagesInUse != 0)
        {
            throw new InvalidOperationException($"benchmark setup: mappings left behind: {_api.Iommu.DomainOf(_dev)!.PteCount} PTEs, {_api.Iommu.IovaPagesInUse} IOVA pages");
        }
    }

    [Benchmark(Baseline = true, Description = "64 x dma_map_phys 4 KiB + unmap")]
    public DmaAddr MapPhys64()
    {
        for (var i = 0; i < Pages; i++)
        {
            _addrs[i] = _api.MapPhys(_dev, _pages[i], Page, DmaDirection.ToDevice, DmaAttrs.None);
        }
        for (var i = 0; i < Pages; i++)
        {
            _api.UnmapPhys(_dev, _addrs[i], Page, DmaDirection.ToDevice, DmaAttrs.None);
        }
        return _addrs[0];
    }

    [Benchmark(Description = "IOVA alloc + 64 x dma_iova_link 4 KiB + 1 sync + destroy")]
    public DmaAddr IovaLink64()
    {
        var s = _state;
        _api.IovaTryAlloc(_dev, s, _pages[0], Pages * Page);
        for (var i = 0; i < Pages; i++)
        {
            _api.IovaLink(_dev, s, _pages[i], (ulong)i * Page, Page, DmaDirection.ToDevice, DmaAttrs.None);
        }
        _api.IovaSync(_dev, s, 0, Pages * Page);
        _api.IovaDestroy(_dev, s, Pages * Page, DmaDirection.ToDevice, DmaAttrs.None);
        return s.Addr;
    }

    [Benchmark(Description = "dma_map_sgtable 64 x 4 KiB + unmap")]
    public int MapSg64()
    {
        _api.MapSgtable(_dev, _sgt, DmaDirection.ToDevice, DmaAttrs.None);
        var n = _sgt.Nents;
        _api.UnmapSgtable(_dev, _sgt, DmaDirection.ToDevice, DmaAttrs.None);
        return n;
    }
}
