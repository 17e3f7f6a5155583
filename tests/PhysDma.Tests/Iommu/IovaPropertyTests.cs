using CsCheck;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;

namespace PhysDma.Tests.Iommu;

/// <summary>
/// Random map/unmap/read/tick/flush sequences through dma-iommu on 1–2 CPUs, strict or lazy, with small
/// flush-queue rings and a nearly full 32-bit IOVA space (so 32-bit failures, the switch to 48-bit and
/// the drain-and-retry path all happen). After every step the tree, the magazines and the depot must
/// agree, no IOVA may be live twice, a lazily freed IOVA may come back only after a flush that finished
/// after its unmap, and strict domains may hold no IOTLB entry for anything unmapped. At the end,
/// unmapping everything and draining leaves every structure empty. CsCheck shrinks a failure to a
/// minimal sequence and prints it.
/// </summary>
public class IovaPropertyTests
{
    public enum Kind
    {
        Map,
        Unmap,
        Read,
        Tick,
        Flush,
    }

    internal sealed record Setup(IommuMode Mode, int Cpus, int FqEntries, int Free32Pages);

    /// <summary>One step. Map: <see cref="Size"/> bytes at in-page <see cref="Offset"/> by device <see cref="Dev"/> on <see cref="Cpu"/>; Unmap/Read: live mapping number <see cref="Pick"/> modulo the live count; Tick: <see cref="Size"/> ms.</summary>
    public sealed record Op(Kind Kind, int Dev, int Size, int Offset, int Cpu, int Pick)
    {
        public override string ToString() => Kind switch
        {
            Kind.Map => $"map({Devices[Dev]}, {Size} bytes at +{Hex.Format((ulong)Offset)}, cpu {Cpu})",
            Kind.Unmap => $"unmap(#{Pick}, cpu {Cpu})",
            Kind.Read => $"read(#{Pick})",
            Kind.Tick => $"tick({Size} ms)",
            _ => "flush",
        };
    }

    private static readonly string[] Devices = ["nic0", "dev32"];

    private static readonly Gen<Setup> GenSetup =
        Gen.Select(Gen.OneOf(IommuMode.Strict, IommuMode.Lazy), Gen.Int[1, 2], Gen.OneOf(4, 8, 256), Gen.OneOf(48, 200, 4096),
            (mode, cpus, fq, free) => new Setup(mode, cpus, fq, free));

    private static readonly Gen<Op> GenMap =
        Gen.Select(Gen.Int[0, 1],
            Gen.Frequency((8, Gen.Int[1, 4096]), (3, Gen.Int[4097, 40000]), (1, Gen.Int[40001, 160000])),
            Gen.Frequency((1, Gen.Const(0)), (1, Gen.Int[1, 4095])), Gen.Int[0, 1],
            (dev, size, off, cpu) => new Op(Kind.Map, dev, size, off, cpu, 0));

    private static readonly Gen<Op> GenOther =
        Gen.Select(Gen.Int[0, 3], Gen.Int[1, 120], Gen.Int[0, 1], Gen.Int[0, 1000], (k, ms, cpu, pick) => k switch
        {
            0 or 1 => new Op(Kind.Unmap, 0, 0, 0, cpu, pick),
            2 => new Op(Kind.Read, 0, 0, 0, 0, pick),
            _ => new Op(Kind.Tick, 0, ms, 0, 0, 0),
        });

    private static readonly Gen<Op> GenFlush = Gen.Const(new Op(Kind.Flush, 0, 0, 0, 0, 0));

    private static readonly Gen<(Setup, Op[])> GenCase =
        Gen.Select(GenSetup, Gen.Frequency((5, GenMap), (5, GenOther), (1, GenFlush)).Array[1, 80]);

    [Fact]
    public void Random_sequences_keep_tree_magazines_depot_and_queue_consistent() =>
        GenCase.Sample((setup, ops) => Run(setup, ops, maxLive: int.MaxValue), iter: 500);

    /// <summary>
    /// The generators shrink: a deliberately false property ("never three live mappings") fails, and
    /// CsCheck reduces the failing case to the three maps that break it and nothing else.
    /// </summary>
    [Fact]
    public void A_failure_shrinks_to_a_minimal_sequence()
    {
        var e = Assert.ThrowsAny<Exception>(() =>
            GenCase.Sample((setup, ops) => Run(setup, ops, maxLive: 2), iter: 20000, threads: 1,
                print: c => $"[{c.Item2.Length} ops: {string.Join("; ", c.Item2)}]"));
        Assert.Matches(@"\[3 ops: map\([^;]*; map\([^;]*; map\([^;]*\]", e.Message);
    }

    private sealed record Live(int Dev, DmaAddr Addr, ulong Size, ulong Pfn, ulong Pages);

    private static void Run(Setup setup, Op[] ops, int maxLive)
    {
        var m = new Machine(Config(setup.Mode, setup.Cpus, fqEntries: setup.FqEntries) with
        {
            Debug = false,
            Swiotlb = new SwiotlbConfig(4 * Sizes.MiB, 1, false, false, null),
        });
        var api = new DmaApi(m);
        var devs = Devices.Select(m.Device).ToArray();
        var cookies = devs.Select(d => api.Iommu!.CookieOf(d)!).ToArray();
        foreach (var c in cookies)
        {
            // Only the top Free32Pages pages below 4 GiB stay free.
            c.Iovad.ReserveIova(1, 0xfffffUL - (ulong)setup.Free32Pages);
        }
        var live = new List<Live>();
        // Lazily unmapped ranges not yet proven flushed: (device, first pfn, pages, finish count at unmap).
        var pending = new List<(int Dev, ulong Pfn, ulong Pages, long Finished)>();

        for (var step = 0; step < ops.Length; step++)
        {
            var op = ops[step];
            switch (op.Kind)
            {
                case Kind.Map:
                    {
                        var dev = devs[op.Dev];
                        var phys = new PhysAddr(0x100000000UL + ((ulong)step << 18) + (ulong)op.Offset);
                        DmaAddr a;
                        using (m.OnCpu(op.Cpu % setup.Cpus))
                        {
                            a = api.MapPhys(dev, phys, (ulong)op.Size, DmaDirection.Bidirectional, DmaAttrs.None);
                        }
                        if (a.IsError)
                        {
                            // Only the 32-bit device can run out (the other falls back to 48 bits).
                            Assert.Equal(1, op.Dev);
                            break;
                        }
                        Assert.Equal((ulong)op.Offset, a.Value & 0xfff);
                        var pages = IovaDomain.FastAllocSize(Sizes.AlignUp((ulong)op.Size + (ulong)op.Offset, 4096) >> 12);
                        var l = new Live(op.Dev, a, (ulong)op.Size, a.Value >> 12, pages);
                        var fq = cookies[op.Dev].Fq;
                        foreach (var p in pending)
                        {
                            if (p.Dev == op.Dev && l.Pfn < p.Pfn + p.Pages && p.Pfn < l.Pfn + l.Pages)
                            {
                                Assert.True(fq!.FinishCount > p.Finished, $"step {step} ({op}): {a} reused before a flush finished after its unmap");
                            }
                        }
                        pending.RemoveAll(p => cookies[p.Dev].Fq!.FinishCount > p.Finished);
                        if (op.Dev == 1 || !devs[0].Pci32BitWorkaround)
                        {
                            Assert.True(a.Value + (ulong)op.Size <= (op.Dev == 1 ? 1UL << 32 : 1UL << 48));
                        }
                        else
                        {
                            Assert.True(a.Value + (ulong)op.Size <= 1UL << 32, $"step {step}: {a} above 4 GiB while the 32-bit workaround is on");
                        }
                        live.Add(l);
                        break;
                    }
                case Kind.Unmap when live.Count > 0:
                    {
                        var l = live[op.Pick % live.Count];
                        live.Remove(l);
                        using (m.OnCpu(op.Cpu % setup.Cpus))
                        {
                            api.UnmapPhys(devs[l.Dev], l.Addr, l.Size, DmaDirection.Bidirectional, DmaAttrs.None);
                        }
                        if (cookies[l.Dev].Fq is { } fq)
                        {
                            pending.Add((l.Dev, l.Pfn, l.Pages, fq.FinishCount));
                        }
                        break;
                    }
                case Kind.Read when live.Count > 0:
                    {
                        var l = live[op.Pick % live.Count];
                        Assert.Null(m.DeviceRead(devs[l.Dev], l.Addr, new byte[Math.Min(l.Size, 64UL)]));
                        break;
                    }
                case Kind.Tick:
                    m.Clock.Advance((ulong)op.Size * 1_000_000);
                    break;
                case Kind.Flush:
                    api.Iommu!.FlushAll();
                    break;
            }
            Check(step, op, setup, devs, cookies, live, api);
            Assert.True(live.Count <= maxLive, $"{live.Count} live mappings");
        }

        foreach (var l in live)
        {
            api.UnmapPhys(devs[l.Dev], l.Addr, l.Size, DmaDirection.Bidirectional, DmaAttrs.None);
        }
        api.Iommu!.FlushAll();
        foreach (var c in cookies)
        {
            for (var cpu = 0; cpu < setup.Cpus; cpu++)
            {
                c.Iovad.FreeCpuCachedIovas(cpu);
            }
            c.Iovad.FreeGlobalCachedIovas();
            Assert.Null(c.Iovad.CheckConsistency());
            Assert.Equal(0UL, c.Iovad.TreePages);
            Assert.Equal(0UL, c.Iovad.CachedPages);
            Assert.Equal(0, c.Fq?.QueuedEntries ?? 0);
            Assert.Equal(0, c.Domain.PteCount);
        }
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0, api.Iommu.IotlbEntries);
        Assert.Equal(0, m.FaultCount);
    }

    private static void Check(int step, Op op, Setup setup, Device[] devs, IommuDmaCookie[] cookies, List<Live> live, DmaApi api)
    {
        var where = $"after step {step} ({op})";
        for (var d = 0; d < devs.Length; d++)
        {
            var c = cookies[d];
            var err = c.Iovad.CheckConsistency();
            Assert.True(err is null, $"{where}: {devs[d].Name}: {err}");
            var mine = live.Where(l => l.Dev == d).OrderBy(l => l.Pfn).ToList();
            for (var i = 1; i < mine.Count; i++)
            {
                Assert.True(mine[i - 1].Pfn + mine[i - 1].Pages <= mine[i].Pfn, $"{where}: {mine[i - 1].Addr} and {mine[i].Addr} are live at once");
            }
            var cached = c.Iovad.SnapshotRcaches()
                .SelectMany(r => r.Cpus.SelectMany(x => x.Loaded.Concat(x.Prev)).Concat(r.Depot.SelectMany(x => x)))
                .ToHashSet();
            var nodes = c.Iovad.AllocatedRanges().ToDictionary(r => r.Lo, r => r.Hi);
            var reserved = c.Iovad.ReservedRanges();
            foreach (var l in mine)
            {
                Assert.True(nodes.TryGetValue(l.Pfn, out var hi) && hi == l.Pfn + l.Pages - 1, $"{where}: live {l.Addr} is not its own tree node");
                Assert.False(cached.Contains(l.Pfn), $"{where}: live {l.Addr} also sits in a magazine");
                Assert.False(c.Fq?.IsQueued(l.Pfn) ?? false, $"{where}: live {l.Addr} also sits in the flush queue");
                Assert.DoesNotContain(reserved, r => r.Lo <= l.Pfn + l.Pages - 1 && l.Pfn <= r.Hi);
                Assert.True(l.Pfn >= 1);
            }
            Assert.Equal(mine.Aggregate(0UL, (n, l) => n + l.Pages), c.PagesInUse);
            if (setup.Mode == IommuMode.Strict)
            {
                // Strict: nothing unmapped survives in the IOTLB.
                foreach (var e in api.Iommu!.Unit.Iotlb.EntriesOf(c.Domain.Id))
                {
                    Assert.Contains(mine, l => e.IovaBase >> 12 >= l.Pfn && e.IovaBase >> 12 < l.Pfn + l.Pages);
                }
            }
        }
    }
}
