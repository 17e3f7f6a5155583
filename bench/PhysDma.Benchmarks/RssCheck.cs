using System.Diagnostics;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>--rss [MAPPINGS]</c>: the memory a big machine costs. 1 TiB of RAM, a 48-bit IOMMU in lazy mode,
/// and 1 M live 4 KiB mappings (dma_map_phys, no unmap) of pages spread evenly over all of that RAM;
/// then the process's resident set and the managed heap, in a process of its own so nothing else counts.
/// Exit code 1 when the resident set is 100 MB or more.
/// </summary>
internal static class RssCheck
{
    public static int Run(int mappings)
    {
        const ulong ram = 1UL << 40;
        var cfg = BenchMachines.Iommu(IommuMode.Lazy, debug: false, cpus: 1) with
        {
            Name = "bench-1tib",
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, ram - (4 * Sizes.GiB))],
        };
        var m = new Machine(cfg);
        var api = new DmaApi(m);
        var dev = m.Device("nic0");
        var stride = (ram - (8 * Sizes.GiB)) / (ulong)mappings & ~4095UL;
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < mappings; i++)
        {
            var phys = new PhysAddr((4 * Sizes.GiB) + ((ulong)i * stride));
            var a = api.MapPhys(dev, phys, 4096, DmaDirection.ToDevice, DmaAttrs.None);
            if (a.IsError)
            {
                Console.Error.WriteLine($"mapping {i} of {phys} failed");
                return 2;
            }
        }
        var elapsed = sw.Elapsed;
        // Give back what the GC holds but no longer uses (the arrays the IOVA tree outgrew), as a
        // long-running process would over time; what is left is what the model needs.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        var rss = self.WorkingSet64;
        var heap = GC.GetTotalMemory(forceFullCollection: true);
        var live = api.Iommu!.IovaPagesInUse;
        Console.WriteLine($"1 TiB RAM, 48-bit IOVA, {mappings:N0} live 4 KiB mappings ({live:N0} IOVA pages in use, {api.Iommu.DomainOf(dev)!.PteCount:N0} PTEs), mapped in {elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"resident set {rss / 1e6:F1} MB, managed heap {heap / 1e6:F1} MB");
        GC.KeepAlive(api);
        return rss < 100_000_000 ? 0 : 1;
    }
}
