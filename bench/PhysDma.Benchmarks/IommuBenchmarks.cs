using BenchmarkDotNet.Attributes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>dma_map_phys</c> + <c>dma_unmap_phys</c> of 4 KiB through dma-iommu on a coherent 64-bit PCI
/// device, in strict mode (IOTLB range invalidation on every unmap) and lazy mode (the IOVA goes
/// through the flush queue; a full ring forces one flush every 255 unmaps). The device reads the
/// mapping once in the "+ device read" variants, so the IOTLB really holds an entry to invalidate.
/// </summary>
[MemoryDiagnoser]
public class IommuMapBenchmarks
{
    private Machine _m = null!;
    private DmaApi _api = null!;
    private Device _dev = null!;
    private readonly byte[] _scratch = new byte[64];

    // A name, not the enum: the enum is internal to PhysDma and BenchmarkDotNet's generated code sets the value.
    [Params("Strict", "Lazy")]
    public string Mode { get; set; } = "Strict";

    private static readonly PhysAddr Buf = new(0x100000000);

    [GlobalSetup]
    public void Setup()
    {
        var cfg = new MachineConfig
        {
            Name = "bench-x86-iommu",
            Arch = Arch.X86_64,
            Cpus = 1,
            Debug = false,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = new SwiotlbConfig(4 * Sizes.MiB, 1, false, false, null),
            Iommu = new IommuConfig(Enum.Parse<IommuMode>(Mode), [4 * Sizes.KiB, 2 * Sizes.MiB, Sizes.GiB], 48, false,
                new FlushQueueConfig(256, 10), [new AddrRange(0xfee00000, Sizes.MiB)]),
            Pci =
            [
                new PciNodeConfig("hb0", PciNodeType.HostBridge, null, 0x8086, 0x2020, true, [new AddrRange(0xc0000000, 0x3ec00000)], false),
                new PciNodeConfig("rp0", PciNodeType.RootPort, "hb0", 0x8086, 0x2021, true, [], false),
            ],
            Devices = [new DeviceConfig { Name = "nic0", Parent = "rp0", Bdf = "0000:01:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64 }],
        };
        _m = new Machine(cfg);
        _api = new DmaApi(_m);
        _dev = _m.Device("nic0");
    }

    [Benchmark(Description = "iommu map+unmap 4K")]
    public DmaAddr MapUnmap()
    {
        var a = _api.MapPhys(_dev, Buf, 4096, DmaDirection.ToDevice, 0);
        _api.UnmapPhys(_dev, a, 4096, DmaDirection.ToDevice, 0);
        return a;
    }

    [Benchmark(Description = "iommu map+device read+unmap 4K")]
    public DmaAddr MapReadUnmap()
    {
        var a = _api.MapPhys(_dev, Buf, 4096, DmaDirection.ToDevice, 0);
        _m.DeviceRead(_dev, a, _scratch);
        _api.UnmapPhys(_dev, a, 4096, DmaDirection.ToDevice, 0);
        return a;
    }
}

/// <summary>
/// The IOVA allocator alone: <c>alloc_iova_fast</c> + <c>free_iova_fast</c> of one page (a per-CPU
/// magazine hit once warm), and <c>alloc_iova</c> + <c>free_iova</c> of one page in the tree with
/// 10 000 other ranges allocated (the O(log n) augmented-tree search).
/// </summary>
[MemoryDiagnoser]
public class IommuIovaBenchmarks
{
    private IovaDomain _iovad = null!;
    private const ulong Limit = (1UL << 36) - 1;

    [GlobalSetup]
    public void Setup()
    {
        _iovad = new IovaDomain(4096, 1, 1, new Clock());
        _iovad.ReserveIova(0xc0000, 0xfffff);
        // Fragment the space: 10 000 one-page ranges with one-page holes between some of them.
        var pfns = new List<ulong>();
        for (var i = 0; i < 20000; i++)
        {
            pfns.Add(_iovad.AllocIova(1, Limit, sizeAligned: true));
        }
        for (var i = 0; i < pfns.Count; i += 2)
        {
            _iovad.FreeIova(pfns[i]);
        }
    }

    [Benchmark(Description = "alloc_iova_fast+free_iova_fast 1 page (rcache)")]
    public ulong FastAllocFree()
    {
        var pfn = _iovad.AllocIovaFast(1, Limit, flushRcache: true);
        _iovad.FreeIovaFast(pfn, 1);
        return pfn;
    }

    [Benchmark(Description = "alloc_iova+free_iova 1 page (tree)")]
    public ulong TreeAllocFree()
    {
        var pfn = _iovad.AllocIova(1, Limit, sizeAligned: true);
        _iovad.FreeIova(pfn);
        return pfn;
    }
}
