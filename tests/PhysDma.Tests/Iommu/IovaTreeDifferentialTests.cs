using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Tests.Iommu;

/// <summary>
/// The IOVA allocator against a plain transcription of what drivers/iommu/iova.c does, on a sorted list
/// walked node by node: <c>__alloc_and_insert_iova_range</c> from the cached node with its retry above it,
/// <c>__cached_rbnode_delete_update</c> on free, and <c>reserve_iova</c> stretching the nodes it overlaps
/// (<c>__adjust_overlap_range</c>). Seeded random sequences must give the same pfns and the same ranges.
/// </summary>
public class IovaTreeDifferentialTests
{
    /// <summary>The kernel's list of <c>struct iova</c> in address order, with its two cached node pointers.</summary>
    private sealed class KernelIova
    {
        private sealed class Node(ulong lo, ulong hi)
        {
            public ulong Lo = lo;
            public ulong Hi = hi;
        }

        private readonly List<Node> _nodes = [];
        private readonly ulong _start;
        private readonly ulong _dma32;
        private Node _cached;
        private Node _cached32;
        private ulong _max32;

        public KernelIova(ulong startPfn, int shift)
        {
            _start = startPfn;
            _dma32 = 1UL << (32 - shift);
            _max32 = _dma32;
            var anchor = new Node(ulong.MaxValue, ulong.MaxValue);
            _nodes.Add(anchor);
            _cached = anchor;
            _cached32 = anchor;
        }

        public ulong Alloc(ulong size, ulong limitPfn, bool sizeAligned)
        {
            var limit = limitPfn + 1;
            // fls_long(size - 1)
            var alignMask = sizeAligned ? ~0UL << (64 - (int)ulong.LeadingZeroCount(size - 1)) : ~0UL;
            if (limit <= _dma32 && size >= _max32)
            {
                return 0;
            }
            var curr = limit <= _dma32 ? _cached32 : _cached;
            var idx = _nodes.IndexOf(curr);
            var retryPfn = curr.Hi;
            var high = limit;
            var low = _start;
            while (true)
            {
                ulong newPfn;
                int prevIdx;
                do
                {
                    high = Math.Min(high, _nodes[idx].Lo);
                    newPfn = (high - size) & alignMask;
                    prevIdx = idx;
                    idx--;
                }
                while (idx >= 0 && newPfn <= _nodes[idx].Hi && newPfn >= low);
                if (high < size || newPfn < low)
                {
                    if (low == _start && retryPfn < limit)
                    {
                        high = limit;
                        low = retryPfn + 1;
                        idx = _nodes.FindIndex(n => n.Hi >= limit);
                        continue;
                    }
                    _max32 = size;
                    return 0;
                }
                var node = new Node(newPfn, newPfn + size - 1);
                _nodes.Insert(prevIdx, node);
                if (node.Hi < _dma32)
                {
                    _cached32 = node;
                }
                else
                {
                    _cached = node;
                }
                return newPfn;
            }
        }

        public void Free(ulong pfn)
        {
            var i = _nodes.FindIndex(n => n.Lo <= pfn && pfn <= n.Hi);
            if (i < 0 || _nodes[i].Lo == ulong.MaxValue)
            {
                return;
            }
            var free = _nodes[i];
            var next = _nodes[i + 1];
            if (free == _cached32 || (free.Hi < _dma32 && free.Lo >= _cached32.Lo))
            {
                _cached32 = next;
            }
            if (free.Lo < _dma32)
            {
                _max32 = _dma32;
            }
            if (free.Lo >= _cached.Lo)
            {
                _cached = next;
            }
            _nodes.RemoveAt(i);
        }

        public void Reserve(ulong lo, ulong hi)
        {
            var overlap = false;
            var i = 0;
            for (; i < _nodes.Count; i++)
            {
                var n = _nodes[i];
                if (lo <= n.Hi && hi >= n.Lo)
                {
                    if (lo < n.Lo)
                    {
                        n.Lo = lo;
                    }
                    if (hi > n.Hi)
                    {
                        lo = n.Hi + 1;
                    }
                    if (lo >= n.Lo && hi <= n.Hi)
                    {
                        return;
                    }
                    overlap = true;
                }
                else if (overlap)
                {
                    break;
                }
            }
            var at = _nodes.FindIndex(n => n.Lo > lo);
            _nodes.Insert(at, new Node(lo, hi));
        }

        public List<(ulong Lo, ulong Hi)> Ranges() =>
            [.. _nodes.Where(n => n.Lo != ulong.MaxValue).Select(n => (n.Lo, n.Hi))];

        public List<ulong> Live() => [.. _nodes.Where(n => n.Lo != ulong.MaxValue).Select(n => n.Lo)];
    }

    private static List<(ulong Lo, ulong Hi)> Ranges(IovaDomain d) =>
        [.. d.AllocatedRanges().Concat(d.ReservedRanges()).OrderBy(r => r.Lo)];

    [Fact]
    public void Reserving_over_an_allocation_stretches_it_so_freeing_it_releases_the_reserved_pages()
    {
        // The reproducer: start_pfn 1, pfns in hex.
        var d = new IovaDomain(4096, 1, 1, new Clock());
        Assert.Equal(0xffff0UL, d.AllocIova(0x10, 0xfffff, sizeAligned: true));
        d.ReserveIova(0xfff00, 0xffff3);
        Assert.Equal([(0xfff00UL, 0xfffffUL)], d.AllocatedRanges());
        Assert.Empty(d.ReservedRanges());
        d.FreeIova(0xffff0);
        Assert.Empty(d.AllocatedRanges());
        Assert.Equal(0xfff00UL, d.AllocIova(0x100, 0xfffff, sizeAligned: true));
    }

    [Fact]
    public void A_reservation_spanning_two_nodes_stretches_both_and_inserts_only_the_rest()
    {
        var d = new IovaDomain(4096, 1, 1, new Clock());
        var a = d.AllocIova(0x10, 0xfffff, sizeAligned: true);
        var b = d.AllocIova(0x10, 0xfffff, sizeAligned: true);
        var c = d.AllocIova(0x10, 0xfffff, sizeAligned: true);
        Assert.Equal((0xffff0UL, 0xfffe0UL, 0xfffd0UL), (a, b, c));
        d.FreeIova(b);
        // [fffd0,fffdf] and [ffff0,fffff] live with a hole between: [fffd8, 100003] overlaps both. The first
        // keeps its range, the second grows down over the hole, and only [100000, 100003] is a new node.
        d.ReserveIova(0xfffd8, 0x100003);
        Assert.Equal([(0xfffd0UL, 0xfffdfUL), (0xfffe0UL, 0xfffffUL)], d.AllocatedRanges());
        Assert.Equal([(0x100000UL, 0x100003UL)], d.ReservedRanges());
    }

    [Theory]
    [InlineData(1, 5)]
    [InlineData(2, 5)]
    [InlineData(3, 5)]
    [InlineData(4, 5)]
    [InlineData(5, 7)]
    [InlineData(6, 8)]
    public void Random_sequences_give_the_kernels_pfns_and_ranges(int seed, int allocTenths)
    {
        // allocTenths of every ten steps allocate: 7 and 8 grow hundreds of live ranges, so allocation
        // walks get long and the augmented search stands in for them.
        for (var run = 0; run < 40; run++)
        {
            var rnd = new Random((seed * 1000) + run);
            // 16 KiB granule: the 32-bit boundary is at pfn 0x40000, so small spaces fill up and fail.
            var shift = rnd.Next(2) == 0 ? 12 : 14;
            var start = (ulong)rnd.Next(1, 3);
            var k = new KernelIova(start, shift);
            var d = new IovaDomain(1UL << shift, start, 1, new Clock());
            var dma32 = 1UL << (32 - shift);
            ulong[] limits = [dma32 - 1, (1UL << 36) - 1, (ulong)rnd.Next(64, 4096), dma32 + 500];
            var live = new List<ulong>();
            for (var step = 0; step < 400; step++)
            {
                var op = rnd.Next(10);
                if (op < allocTenths || live.Count == 0)
                {
                    var size = rnd.Next(4) == 0 ? (ulong)rnd.Next(1, 300) : (ulong)rnd.Next(1, 9);
                    var limit = limits[rnd.Next(limits.Length)];
                    var aligned = rnd.Next(4) != 0;
                    var want = k.Alloc(size, limit, aligned);
                    var got = d.AllocIova(size, limit, aligned);
                    Assert.True(want == got, $"seed {seed} run {run} step {step}: alloc_iova({size:x}, {limit:x}, {aligned}) gave {got:x}, the kernel {want:x}");
                    if (got != 0)
                    {
                        live.Add(got);
                    }
                }
                else if (op < 9 || allocTenths >= 9)
                {
                    var i = rnd.Next(live.Count);
                    // Sometimes free by a pfn inside the range, as free_iova allows.
                    var pfn = live[i];
                    live.RemoveAt(i);
                    k.Free(pfn);
                    d.FreeIova(pfn);
                }
                else
                {
                    var lo = (ulong)rnd.Next(1, 0x2000) + (rnd.Next(2) == 0 ? 0 : dma32 - 0x1000);
                    var hi = lo + (ulong)rnd.Next(0, 64);
                    k.Reserve(lo, hi);
                    d.ReserveIova(lo, hi);
                    // Reserved pages stretched into a node are freed with it; forget lows no longer starting a node.
                    live = [.. live.Where(p => k.Live().Contains(p))];
                }
                Assert.Equal(k.Ranges(), Ranges(d));
                Assert.Null(d.CheckConsistency());
            }
        }
    }
}
