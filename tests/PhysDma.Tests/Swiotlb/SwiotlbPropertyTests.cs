using CsCheck;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Swiotlb.SwiotlbMachines;

namespace PhysDma.Tests.Swiotlb;

/// <summary>
/// Random map/unmap sequences over random pool sizes, areas, min_align masks, segment boundaries and
/// alloc_align masks. After every step: the free-list counts, used slots at 0 and area counts,
/// slot accounting, and for each mapping min_align_mask kept, alloc_align honoured, no segment or boundary crossed and the max mapping size respected. CsCheck shrinks a failure to a
/// minimal sequence and prints it.
/// </summary>
public class SwiotlbPropertyTests
{
    public sealed record PoolSetup(int Slots, int Areas, ulong MinAlignMask, ulong SegBoundary);

    /// <summary>A map (<see cref="Size"/> &gt; 0) or an unmap of live mapping number <see cref="Pick"/> modulo the live count.</summary>
    public sealed record Op(int Size, int OrigOffset, ulong AllocAlignMask, int Cpu, int Pick)
    {
        public override string ToString() => Size > 0
            ? $"map(size {Size}, orig +{Hex.Format((ulong)OrigOffset)}, align {Hex.Format(AllocAlignMask)}, cpu {Cpu})"
            : $"unmap(#{Pick})";
    }

    private static readonly Gen<PoolSetup> GenSetup =
        Gen.Select(Gen.OneOf(128, 256, 512, 1024, 2048), Gen.OneOf(1, 2, 4), Gen.OneOf(0UL, 3UL, 0x7ffUL, 0xfffUL, 0x3fffUL),
            Gen.OneOf(0xffffffffUL, 0x3ffffUL, 0xffffUL), (s, a, m, b) => new PoolSetup(s, a, m, b));

    private static readonly Gen<Op> GenMap =
        Gen.Select(
            Gen.Frequency((6, Gen.Int[1, 4096]), (3, Gen.Int[4097, 70000]), (1, Gen.Int[70001, 263000])),
            Gen.Int[0, 0x3fff],
            Gen.OneOf(0UL, 0UL, 0xfffUL, 0x3fffUL),
            Gen.Int[0, 3],
            (size, off, align, cpu) => new Op(size, off, align, cpu, 0));

    private static readonly Gen<Op> GenUnmap = Gen.Int[0, 1000].Select(p => new Op(0, 0, 0, 0, p));

    private static readonly Gen<(PoolSetup, Op[])> GenCase =
        Gen.Select(GenSetup, Gen.Frequency((3, GenMap), (2, GenUnmap)).Array[1, 60]);

    [Fact]
    public void Random_map_unmap_sequences_keep_the_free_list_and_counts_exact() =>
        GenCase.Sample((setup, ops) => Run(setup, ops), iter: 400);

    private sealed record Live(PhysAddr Tlb, ulong Size, int First, int NSlots);

    private static void Run(PoolSetup setup, Op[] ops)
    {
        var cfg = X86(new SwiotlbConfig((ulong)setup.Slots * IoTlb.Size, setup.Areas, false, false, null), 0,
            Dev("dev0", minAlignMask: setup.MinAlignMask, segBoundary: setup.SegBoundary));
        var (m, api) = Build(cfg);
        var dev = m.Device("dev0");
        var s = api.Swiotlb;
        var pool = s.DefaultMem.DefPool!;
        var used = new bool[pool.NSlabs];
        var live = new List<Live>();
        var mask = setup.MinAlignMask;

        for (var step = 0; step < ops.Length; step++)
        {
            var op = ops[step];
            if (op.Size > 0)
            {
                var orig = new PhysAddr(FourGiB + 0x100000 + ((ulong)step << 19) + (ulong)op.OrigOffset);
                PhysAddr tlb;
                using (m.OnCpu(op.Cpu))
                {
                    tlb = s.TblMapSingle(dev, orig, (ulong)op.Size, op.AllocAlignMask, DmaDirection.ToDevice, DmaAttrs.NoWarn);
                }
                var align = op.AllocAlignMask;
                var offset = orig.Value & mask & (align | 2047);
                var allocSize = Sizes.AlignUp((ulong)op.Size + offset, align + 1);
                var nslots = (int)IoTlb.NrSlots(allocSize);
                if (allocSize > IoTlb.SegSize * IoTlb.Size || (mask == 0 && (ulong)op.Size > s.MaxMappingSize(dev)))
                {
                    Assert.True(tlb.IsInvalid, $"step {step}: {allocSize} bytes cannot fit in one segment");
                }
                if (!tlb.IsInvalid)
                {
                    Assert.True(pool.Contains(tlb));
                    var first = (int)((tlb - pool.Start) >> IoTlb.Shift) - (int)(offset >> IoTlb.Shift);
                    var firstAddr = pool.SlotAddr(first);
                    Assert.Equal(offset & 2047, tlb.Value & 2047);
                    Assert.Equal(orig.Value & mask, tlb.Value & mask);
                    if (align != 0)
                    {
                        Assert.Equal(0UL, firstAddr.Value & (align | 2047));
                    }
                    else if (mask == 0 && allocSize >= 4096)
                    {
                        Assert.Equal(0UL, firstAddr.Value & 4095);
                    }
                    Assert.Equal(first / IoTlb.SegSize, (first + nslots - 1) / IoTlb.SegSize);
                    var lastByte = firstAddr.Value + ((ulong)nslots << IoTlb.Shift) - 1;
                    Assert.Equal(firstAddr.Value & ~setup.SegBoundary, lastByte & ~setup.SegBoundary);
                    for (var i = first; i < first + nslots; i++)
                    {
                        Assert.False(used[i], $"step {step}: slot {i} handed out twice");
                        used[i] = true;
                    }
                    live.Add(new Live(tlb, (ulong)op.Size, first, nslots));
                }
            }
            else if (live.Count > 0)
            {
                var l = live[op.Pick % live.Count];
                live.Remove(l);
                s.TblUnmapSingle(dev, l.Tlb, l.Size, DmaDirection.ToDevice, 0);
                for (var i = l.First; i < l.First + l.NSlots; i++)
                {
                    used[i] = false;
                }
            }

            var err = CheckFreeList(pool, used);
            Assert.True(err is null, $"after step {step} ({op}): {err}");
            Assert.Equal(used.Count(u => u), s.SlotsUsed);
        }

        foreach (var l in live)
        {
            s.TblUnmapSingle(dev, l.Tlb, l.Size, DmaDirection.ToDevice, 0);
        }
        Assert.Equal(0L, s.SlotsUsed);
        Assert.Null(CheckFreeList(pool, new bool[pool.NSlabs]));
    }
}
