using System.Collections.Concurrent;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;

namespace PhysDma.Tests.Iommu;

/// <summary>
/// Several threads, each bound to its own modelled CPU, map, let the device read, and unmap through one
/// device's DMA domain at once, while another thread moves the clock (flush-queue timers, depot trim) and
/// now and then flushes everything. A fixed amount of work, about a second on a laptop; nothing is timed.
/// </summary>
public class IommuConcurrencyTests
{
    private const int Threads = 4;
    private const int OpsPerThread = 12000;
    private const int MaxLivePerThread = 8;

    [Theory]
    [InlineData(IommuMode.Strict)]
    [InlineData(IommuMode.Lazy)]
    public void Concurrent_map_unmap_never_hands_out_a_live_iova_twice_and_everything_returns(object modeArg)
    {
        var mode = (IommuMode)modeArg; // xunit theories are public; the type is internal to PhysDma
        var m = new Machine(Config(mode, cpus: Threads, fqEntries: 16) with { Debug = false });
        var api = new DmaApi(m);
        var nic = m.Device("nic0");
        var cookie = api.Iommu!.CookieOf(nic)!;
        // Every mapped page of IOVA space -> the thread holding it.
        var owner = new ConcurrentDictionary<ulong, int>();
        var errors = new ConcurrentQueue<string>();
        var done = 0;

        // Each thread's buffers: slot j of thread t at its own 64 KiB, filled with a byte that names both.
        static PhysAddr BufferOf(int t, int slot) => new(0x100000000UL + ((ulong)((t * MaxLivePerThread) + slot) << 16));
        static byte Tag(int t, int slot) => (byte)(0x10 + (t * MaxLivePerThread) + slot);
        for (var t = 0; t < Threads; t++)
        {
            for (var s = 0; s < MaxLivePerThread; s++)
            {
                CpuWrite(m, BufferOf(t, s), Enumerable.Repeat(Tag(t, s), 0x10000).ToArray());
            }
        }

        void Worker(int t)
        {
            using var cpu = m.OnCpu(t);
            var rng = new Random(1000 + t);
            var live = new (DmaAddr Addr, ulong Size, ulong Pfn, ulong Pages)?[MaxLivePerThread];
            var seen = new byte[64];
            for (var i = 0; i < OpsPerThread; i++)
            {
                var slot = rng.Next(MaxLivePerThread);
                if (live[slot] is { } l)
                {
                    for (var p = l.Pfn; p < l.Pfn + l.Pages; p++)
                    {
                        owner.TryRemove(p, out _);
                    }
                    api.UnmapPhys(nic, l.Addr, l.Size, DmaDirection.ToDevice, DmaAttrs.None);
                    live[slot] = null;
                    continue;
                }
                var off = (ulong)rng.Next(0x1000);
                var size = (ulong)rng.Next(1, 0x8000);
                var a = api.MapPhys(nic, BufferOf(t, slot) + off, size, DmaDirection.ToDevice, DmaAttrs.None);
                if (a.IsError)
                {
                    errors.Enqueue($"cpu {t}: map failed");
                    continue;
                }
                var pfn = a.Value >> 12;
                // The whole range the allocator took (small sizes round up to a power of two).
                var pages = IovaDomain.FastAllocSize(Sizes.AlignUp(size + off, 4096) >> 12);
                for (var p = pfn; p < pfn + pages; p++)
                {
                    if (!owner.TryAdd(p, t))
                    {
                        errors.Enqueue($"cpu {t}: IOVA page {p:x} handed out while cpu {owner.GetValueOrDefault(p, -1)} has it mapped");
                    }
                }
                live[slot] = (a, size, pfn, pages);
                // The device must see this mapping's bytes, not those of whatever had the IOVA before.
                var n = (int)Math.Min(size, (ulong)seen.Length);
                if (m.DeviceRead(nic, a, seen.AsSpan(0, n)) is { } f)
                {
                    errors.Enqueue($"cpu {t}: device read of {a} faulted ({f.Reason})");
                }
                else if (seen.AsSpan(0, n).IndexOfAnyExcept(Tag(t, slot)) >= 0)
                {
                    errors.Enqueue($"cpu {t}: device read of {a} returned another buffer's bytes");
                }
            }
            foreach (var l in live)
            {
                if (l is { } x)
                {
                    for (var p = x.Pfn; p < x.Pfn + x.Pages; p++)
                    {
                        owner.TryRemove(p, out _);
                    }
                    api.UnmapPhys(nic, x.Addr, x.Size, DmaDirection.ToDevice, DmaAttrs.None);
                }
            }
        }

        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                Worker(t);
            }
            catch (Exception e)
            {
                errors.Enqueue($"cpu {t}: {e}");
            }
            finally
            {
                Interlocked.Increment(ref done);
            }
        })).ToList();
        var ticker = new Thread(() =>
        {
            var k = 0;
            while (Volatile.Read(ref done) < Threads)
            {
                m.Clock.Advance(1_000_000);
                if (++k % 50 == 0)
                {
                    api.Iommu.FlushAll();
                }
                Thread.Yield();
            }
        });
        workers.ForEach(w => w.Start());
        ticker.Start();
        workers.ForEach(w => w.Join());
        ticker.Join();

        Assert.Empty(errors);
        Assert.Empty(owner);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0, cookie.Domain.PteCount);
        Assert.Equal(0, api.Iommu.Unit.StaleAccessCount);
        Assert.Equal(0, m.FaultCount);
        Assert.Null(cookie.Iovad.CheckConsistency());

        // Drain: the queue, then every CPU's magazines and the depot go back to the tree.
        api.Iommu.FlushAll();
        for (var c = 0; c < Threads; c++)
        {
            cookie.Iovad.FreeCpuCachedIovas(c);
        }
        cookie.Iovad.FreeGlobalCachedIovas();
        Assert.Equal(0, cookie.Fq?.QueuedEntries ?? 0);
        Assert.Equal(0UL, cookie.Iovad.TreePages);
        Assert.Equal(0, api.Iommu.IotlbEntries);
        Assert.Null(cookie.Iovad.CheckConsistency());
    }
    [Fact]
    public void A_full_ring_whose_entries_a_flush_in_flight_does_not_cover_flushes_again_instead_of_losing_one()
    {
        // The timer's flush on another CPU has bumped the start count and is still invalidating when
        // this CPU fills its ring (capacity 3) with entries stamped with that start count. Its own flush
        // then finishes first, so the finish count it leaves still does not cover them.
        var iovad = new IovaDomain(4096, 1, 1, new Clock());
        var inFlush = new ManualResetEventSlim();
        var release = new ManualResetEventSlim();
        var calls = 0;
        IovaFlushQueue fq = null!;
        fq = new IovaFlushQueue(iovad, () =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                inFlush.Set();
                release.Wait();
            }
        }, new Clock(), cpus: 1, entries: 4, timeoutMs: 10);
        var pfns = Enumerable.Range(0, 4).Select(_ => iovad.AllocIovaFast(1, 0xfffff, true)).ToArray();
        var timer = new Thread(() => fq.FlushNow());
        timer.Start();
        inFlush.Wait();
        for (var i = 0; i < 3; i++)
        {
            fq.Queue(pfns[i], 1);
        }
        Assert.Equal(3, fq.QueuedEntries);
        fq.Queue(pfns[3], 1);
        // Two flushes of its own (start 2 -> 3, finish 1 -> 2) freed the three; the fourth waits.
        Assert.Equal(3L, fq.StartCount);
        Assert.Equal(2L, fq.FinishCount);
        Assert.Equal(1, fq.QueuedEntries);
        Assert.Equal(3UL, iovad.CachedPages);
        Assert.True(fq.IsQueued(pfns[3]));
        release.Set();
        timer.Join();
        Assert.Equal(3L, fq.FinishCount);
        Assert.Equal(4UL, iovad.TreePages);
        Assert.Null(iovad.CheckConsistency());
    }
}
