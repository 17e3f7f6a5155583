using BenchmarkDotNet.Attributes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// The allocators alone, on the work the kernel's own code was timed on: <c>alloc_iova_fast</c> +
/// <c>free_iova_fast</c> of one page from a warm per-CPU cache; <c>alloc_iova</c> + <c>__free_iova</c>
/// with 10 000 live one-page ranges; the same tree under churn (a random live range freed, then one
/// page allocated); and swiotlb's slot search and release of 4 KiB on a 64 MiB pool half full.
/// </summary>
[MemoryDiagnoser]
public class AllocatorBenchmarks
{
    private const ulong Limit = (1UL << 36) - 1;
    private const int Live = 10_000;

    private IovaDomain _rcache = null!;
    private IovaDomain _tree = null!;
    private IovaDomain _churn = null!;
    private readonly ulong[] _live = new ulong[Live];
    private ulong _rng = 0x9e3779b97f4a7c15;

    private Machine _m = null!;
    private DmaApi _api = null!;
    private Device _dev = null!;
    private PhysAddr _orig;

    [GlobalSetup]
    public void Setup()
    {
        _rcache = new IovaDomain(4096, 1, 1, new Clock());
        _rcache.FreeIovaFast(_rcache.AllocIovaFast(1, Limit, flushRcache: true), 1);

        _tree = Fragmented();
        _churn = Fragmented();
        // The churn tree's live ranges, to free at random.
        var n = 0;
        foreach (var (lo, _) in _churn.AllocatedRanges())
        {
            if (n < Live)
            {
                _live[n++] = lo;
            }
        }
        if (n != Live)
        {
            throw new InvalidOperationException($"benchmark setup: {n} live ranges, not {Live}");
        }

        var cfg = new MachineConfig
        {
            Name = "bench-swiotlb-64m",
            Arch = Arch.X86_64,
            Cpus = 1,
            Debug = false,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = new SwiotlbConfig(64 * Sizes.MiB, 1, false, false, null),
            Devices = [new DeviceConfig { Name = "nic0", DmaMaskBits = 32, CoherentDmaMaskBits = 32 }],
        };
        _m = new Machine(cfg);
        _api = new DmaApi(_m);
        _dev = _m.Device("nic0");
        _orig = new PhysAddr(4 * Sizes.GiB);
        // Fill every slot with 2 KiB allocations, then free a seeded-random half of them.
        var slots = new List<PhysAddr>();
        while (true)
        {
            var s = _api.Swiotlb.FindSlotsOnly(_dev, _orig, IoTlb.Size);
            if (s.IsInvalid)
            {
                break;
            }
            slots.Add(s);
        }
        var rnd = new Random(17);
        foreach (var s in slots.OrderBy(_ => rnd.Next()).Take(slots.Count / 2))
        {
            _api.Swiotlb.ReleaseSlotsOnly(_dev, s);
        }
        if (_api.Swiotlb.SlotsUsed != slots.Count / 2 || slots.Count != 32768)
        {
            throw new InvalidOperationException($"benchmark setup: {_api.Swiotlb.SlotsUsed} of {slots.Count} slots used");
        }
    }

    /// <summary>10 000 live one-page ranges with one-page holes between them, below a reserved window.</summary>
    private static IovaDomain Fragmented()
    {
        var d = new IovaDomain(4096, 1, 1, new Clock());
        d.ReserveIova(0xc0000, 0xfffff);
        var pfns = new ulong[2 * Live];
        for (var i = 0; i < pfns.Length; i++)
        {
            pfns[i] = d.AllocIova(1, Limit, sizeAligned: true);
        }
        for (var i = 0; i < pfns.Length; i += 2)
        {
            d.FreeIova(pfns[i]);
        }
        return d;
    }

    [Benchmark(Description = "rcache alloc_iova_fast+free_iova_fast 1 page")]
    public ulong RcacheAllocFree()
    {
        var pfn = _rcache.AllocIovaFast(1, Limit, flushRcache: true);
        _rcache.FreeIovaFast(pfn, 1);
        return pfn;
    }

    [Benchmark(Description = "tree alloc_iova+free_iova 1 page, 10k live")]
    public ulong TreeAllocFree()
    {
        var pfn = _tree.AllocIova(1, Limit, sizeAligned: true);
        _tree.FreeIova(pfn);
        return pfn;
    }

    [Benchmark(Description = "tree churn: free random live, alloc 1 page")]
    public ulong TreeChurn()
    {
        var x = _rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        _rng = x;
        var i = (int)(x % Live);
        _churn.FreeIova(_live[i]);
        var pfn = _churn.AllocIova(1, Limit, sizeAligned: true);
        _live[i] = pfn;
        return pfn;
    }

    [Benchmark(Description = "swiotlb find+release 4 KiB, 64 MiB pool half full")]
    public PhysAddr SwiotlbFindRelease()
    {
        var s = _api.Swiotlb.FindSlotsOnly(_dev, _orig, 4096);
        _api.Swiotlb.ReleaseSlotsOnly(_dev, s);
        return s;
    }
}
