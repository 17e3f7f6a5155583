using System.Collections.Concurrent;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Tests.Concurrency;

/// <summary>
/// Eight threads hammer the IOVA allocator and the swiotlb slot allocator at once, more threads than
/// modelled CPUs so two threads share one CPU's caches and areas, while one of them now and then drains
/// another CPU's caches. Every page or slot handed out is claimed in a shared table: a second claim is a
/// double hand-out. When all is returned, nothing may be missing. A fixed amount of work; nothing is timed.
/// </summary>
public class AllocatorStressTests
{
    private const int Threads = 8;

    private static void RunThreads(Action<int> work)
    {
        var errors = new ConcurrentQueue<Exception>();
        var threads = new Thread[Threads];
        for (var t = 0; t < Threads; t++)
        {
            var id = t;
            threads[t] = new Thread(() =>
            {
                try
                {
                    work(id);
                }
                catch (Exception e)
                {
                    errors.Enqueue(e);
                }
            });
            threads[t].Start();
        }
        foreach (var th in threads)
        {
            th.Join();
        }
        Assert.Empty(errors);
    }

    [Fact]
    public void Eight_threads_on_three_cpus_never_get_one_iova_twice_and_lose_none()
    {
        const int cpus = 3;
        const ulong limit = (1UL << 32) - 1;
        var m = new Machine(new MachineConfig
        {
            Name = "stress",
            Cpus = cpus,
            Ram = [new AddrRange(0, Sizes.GiB)],
            Devices = [],
        });
        var iovad = new IovaDomain(4096, 1, cpus, m.Clock);
        iovad.ReserveIova(0xfee00, 0xfeeff);
        var owner = new ConcurrentDictionary<ulong, int>();
        var doubles = new ConcurrentQueue<string>();

        RunThreads(t =>
        {
            using var bound = m.OnCpu(t % cpus);
            var rng = new Random(17 + t);
            var live = new List<(ulong Pfn, ulong Pages, bool Fast)>();
            for (var i = 0; i < 20000; i++)
            {
                if (live.Count < 32 && (live.Count == 0 || rng.Next(2) == 0))
                {
                    var fast = rng.Next(4) != 0;
                    var pages = (ulong)rng.Next(1, fast ? 40 : 9);
                    var pfn = fast ? iovad.AllocIovaFast(pages, limit >> 12, flushRcache: true) : iovad.AllocIova(pages, limit >> 12, sizeAligned: true);
                    Assert.NotEqual(0UL, pfn);
                    var taken = fast ? IovaDomain.FastAllocSize(pages) : pages;
                    for (var p = pfn; p < pfn + taken; p++)
                    {
                        if (!owner.TryAdd(p, t))
                        {
                            doubles.Enqueue($"pfn {p:x} handed to thread {t} while thread {owner.GetValueOrDefault(p)} holds it");
                        }
                    }
                    live.Add((pfn, taken, fast));
                }
                else
                {
                    var k = rng.Next(live.Count);
                    var (pfn, pages, fast) = live[k];
                    live.RemoveAt(k);
                    for (var p = pfn; p < pfn + pages; p++)
                    {
                        owner.TryRemove(p, out _);
                    }
                    if (fast)
                    {
                        iovad.FreeIovaFast(pfn, pages);
                    }
                    else
                    {
                        iovad.FreeIova(pfn);
                    }
                }
                if (t == 0 && i % 997 == 0)
                {
                    // What a failed allocation does: empty another CPU's caches into the tree under its lock.
                    iovad.FreeCpuCachedIovas((i / 997) % cpus);
                }
            }
            foreach (var (pfn, pages, fast) in live)
            {
                for (var p = pfn; p < pfn + pages; p++)
                {
                    owner.TryRemove(p, out _);
                }
                if (fast)
                {
                    iovad.FreeIovaFast(pfn, pages);
                }
                else
                {
                    iovad.FreeIova(pfn);
                }
            }
        });

        Assert.Empty(doubles);
        Assert.Empty(owner);
        Assert.Null(iovad.CheckConsistency());
        // Everything handed back sits in the caches or the tree; emptying the caches empties the tree.
        for (var c = 0; c < cpus; c++)
        {
            iovad.FreeCpuCachedIovas(c);
        }
        iovad.FreeGlobalCachedIovas();
        Assert.Equal(0UL, iovad.CachedPages);
        Assert.Equal(0UL, iovad.TreePages);
        Assert.Equal([(0xfee00UL, 0xfeeffUL)], iovad.ReservedRanges());
    }

    [Fact]
    public void Eight_threads_on_four_cpus_never_get_one_swiotlb_slot_twice_and_lose_none()
    {
        var m = new Machine(new MachineConfig
        {
            Name = "stress-swiotlb",
            Arch = Arch.X86_64,
            Cpus = 4,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = new SwiotlbConfig(2 * Sizes.MiB, 4, false, false, null),
            Devices = [new DeviceConfig { Name = "dev32", DmaMaskBits = 32, CoherentDmaMaskBits = 32 }],
        });
        var api = new DmaApi(m);
        var dev = m.Device("dev32");
        var pool = api.Swiotlb.DefaultMem.DefPool!;
        Assert.Equal(4, pool.NAreas);
        var owner = new ConcurrentDictionary<int, int>();
        var doubles = new ConcurrentQueue<string>();
        var full = 0;

        RunThreads(t =>
        {
            using var bound = m.OnCpu(t % 4);
            var rng = new Random(31 + t);
            var live = new List<(PhysAddr Tlb, int Slots)>();
            for (var i = 0; i < 20000; i++)
            {
                if (live.Count < 24 && (live.Count == 0 || rng.Next(2) == 0))
                {
                    var size = (ulong)rng.Next(1, 9) * 2048 - (ulong)rng.Next(0, 2048);
                    var orig = new PhysAddr(4 * Sizes.GiB + ((ulong)t << 24) + ((ulong)i & 0xfff) * 64);
                    var tlb = api.Swiotlb.FindSlotsOnly(dev, orig, size);
                    if (tlb.IsInvalid)
                    {
                        Interlocked.Increment(ref full);
                        continue;
                    }
                    var first = (int)((tlb.Value - pool.Start.Value) >> IoTlb.Shift);
                    var slots = (int)IoTlb.NrSlots(size);
                    for (var s = first; s < first + slots; s++)
                    {
                        if (!owner.TryAdd(s, t))
                        {
                            doubles.Enqueue($"slot {s} handed to thread {t} while thread {owner.GetValueOrDefault(s)} holds it");
                        }
                    }
                    live.Add((tlb, slots));
                }
                else
                {
                    var k = rng.Next(live.Count);
                    var (tlb, slots) = live[k];
                    live.RemoveAt(k);
                    var first = (int)((tlb.Value - pool.Start.Value) >> IoTlb.Shift);
                    for (var s = first; s < first + slots; s++)
                    {
                        owner.TryRemove(s, out _);
                    }
                    api.Swiotlb.ReleaseSlotsOnly(dev, tlb);
                }
            }
            foreach (var (tlb, slots) in live)
            {
                var first = (int)((tlb.Value - pool.Start.Value) >> IoTlb.Shift);
                for (var s = first; s < first + slots; s++)
                {
                    owner.TryRemove(s, out _);
                }
                api.Swiotlb.ReleaseSlotsOnly(dev, tlb);
            }
        });

        Assert.Empty(doubles);
        Assert.Empty(owner);
        Assert.Equal(0, api.Swiotlb.SlotsUsed);
        for (var a = 0; a < pool.NAreas; a++)
        {
            Assert.Equal(0, pool.AreaUsed(a));
        }
        // Every slot is free again with the free-run count it had at boot: none lost, no run broken.
        for (var i = 0; i < pool.NSlabs; i++)
        {
            var slot = pool.Slot(i);
            Assert.Equal(Math.Min(IoTlb.SegSize - IoTlb.SegOffset(i), pool.NSlabs - i), slot.List);
            Assert.Equal(PhysAddr.Invalid, slot.OrigAddr);
        }
    }
}
