using PhysDma.Core;
using PhysDma.Iommu;

namespace PhysDma.Tests.Iommu;

/// <summary>
/// The IO page table on its own: every IOVA has its own entry (each table's array starts with a line it keeps
/// empty, so slots are offset from the hardware's indices and must still map one to one), leaves refuse to
/// overwrite live entries at every level, and unmap gives back exactly what was mapped.
/// </summary>
public class IoPageTableTests
{
    private const ulong Sizes4K2M1G = (1UL << 12) | (1UL << 21) | (1UL << 30);

    [Fact]
    public void Each_of_1024_neighbouring_pages_across_two_leaf_tables_keeps_its_own_translation()
    {
        var pt = new IoPageTable(12, 48, Sizes4K2M1G);
        const ulong Base = 0x7fe00000; // the last 2 MiB below 2 GiB, and the first 2 MiB above it
        for (ulong i = 0; i < 1024; i++)
        {
            Assert.True(pt.MapOne(Base + (i << 12), new PhysAddr(0x100000000 + (i * 3 << 12)), 12, 1));
        }
        Assert.Equal(1024, pt.LeafCount);
        Assert.Equal(1024UL << 12, pt.MappedBytes);
        for (ulong i = 0; i < 1024; i++)
        {
            Assert.True(pt.Walk(Base + (i << 12) + 0x123, out var leaf));
            Assert.Equal(Base + (i << 12), leaf.IovaBase);
            Assert.Equal(0x100000000 + (i * 3 << 12), leaf.PhysBase.Value);
            Assert.Equal(12, leaf.SizeShift);
            Assert.Equal(1, leaf.Prot);
            Assert.False(pt.MapOne(Base + (i << 12), new PhysAddr(0x5000), 12, 1));
        }
        for (ulong i = 0; i < 1024; i += 2)
        {
            Assert.Equal(4096UL, pt.UnmapOne(Base + (i << 12)));
        }
        for (ulong i = 0; i < 1024; i++)
        {
            Assert.Equal(i % 2 == 1, pt.Walk(Base + (i << 12), out _));
        }
        Assert.Equal(512, pt.LeafCount);
        Assert.Equal(0UL, pt.UnmapOne(Base));
    }

    [Fact]
    public void A_block_is_refused_over_a_table_that_still_maps_a_page_and_a_page_inside_a_block_is_refused()
    {
        var pt = new IoPageTable(12, 48, Sizes4K2M1G);
        Assert.True(pt.MapOne(0x40201000, new PhysAddr(0x9000), 12, 3));
        Assert.False(pt.MapOne(0x40200000, new PhysAddr(0x200000), 21, 3));
        Assert.Equal(4096UL, pt.UnmapOne(0x40201000));
        Assert.True(pt.MapOne(0x40200000, new PhysAddr(0x200000), 21, 3));
        Assert.True(pt.MapOne(0x80001000, new PhysAddr(0x9000), 12, 3));
        // The counts are a walk of the tables: a block is one leaf of 2 MiB, beside one 4 KiB page.
        Assert.Equal(2, pt.LeafCount);
        Assert.Equal((1UL << 21) + 4096, pt.MappedBytes);
        Assert.Equal(4096UL, pt.UnmapOne(0x80001000));
        Assert.False(pt.MapOne(0x40203000, new PhysAddr(0x9000), 12, 3));
        Assert.True(pt.Walk(0x40203456, out var leaf));
        Assert.Equal((0x40200000UL, 21, 0x200000UL), (leaf.IovaBase, leaf.SizeShift, leaf.PhysBase.Value));
        Assert.Equal(1UL << 21, pt.UnmapOne(0x40203000));
        Assert.False(pt.Walk(0x40203456, out _));
        Assert.Equal(0, pt.LeafCount);
    }

    [Fact]
    public void Two_threads_mapping_and_unmapping_neighbouring_pages_never_see_each_others_entries()
    {
        var pt = new IoPageTable(12, 48, Sizes4K2M1G);
        var failures = new int[2];
        var threads = new Thread[2];
        for (var t = 0; t < 2; t++)
        {
            var me = t;
            threads[t] = new Thread(() =>
            {
                // Thread 0 takes even pages, thread 1 odd ones, as two CPUs get them from the IOVA allocator.
                for (var round = 0; round < 20_000; round++)
                {
                    var iova = 0x10000000UL + ((ulong)(((round % 64) * 2) + me) << 12);
                    var phys = new PhysAddr((ulong)(me + 1) << 32);
                    if (!pt.MapOne(iova, phys, 12, 3) || !pt.Walk(iova, out var leaf) || leaf.PhysBase != phys || pt.UnmapOne(iova) != 4096)
                    {
                        failures[me]++;
                    }
                }
            });
            threads[t].Start();
        }
        foreach (var th in threads)
        {
            th.Join();
        }
        Assert.Equal([0, 0], failures);
        Assert.Equal(0, pt.LeafCount);
    }
}
