using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Tests.Platform;

public sealed class CpuCacheTests
{
    private static readonly PhysAddr Line = new(0x1000);

    private static (PhysicalMemory Mem, CpuCache Cache) New()
    {
        var mem = new PhysicalMemory();
        return (mem, new CpuCache(mem, 64));
    }

    private static byte[] Mem(PhysicalMemory m, PhysAddr p, int n)
    {
        var b = new byte[n];
        m.Read(p, b);
        return b;
    }

    private static byte[] Load(CpuCache c, PhysAddr p, int n)
    {
        var b = new byte[n];
        c.Load(p, b);
        return b;
    }

    [Fact]
    public void Store_stays_in_cache_until_clean_clean_keeps_the_line()
    {
        var (mem, cache) = New();
        cache.Store(Line + 8, [1, 2, 3]);
        Assert.True(cache.IsDirty(Line));
        Assert.Equal(new byte[3], Mem(mem, Line + 8, 3));

        cache.Clean(Line + 63, 1);
        Assert.Equal([1, 2, 3], Mem(mem, Line + 8, 3));
        Assert.True(cache.IsCached(Line));
        Assert.False(cache.IsDirty(Line));
    }

    [Fact]
    public void Load_fills_from_memory_then_hides_later_memory_changes()
    {
        var (mem, cache) = New();
        mem.Write(Line, [9, 9]);
        Assert.Equal([9, 9], Load(cache, Line, 2));
        mem.Write(Line, [5, 5]); // a non-coherent device writes behind the cache
        Assert.Equal([9, 9], Load(cache, Line, 2));
        cache.Invalidate(Line, 64);
        Assert.Equal([5, 5], Load(cache, Line, 2));
    }

    [Fact]
    public void Invalidate_full_lines_discards_dirty_data()
    {
        var (mem, cache) = New();
        cache.Store(Line, TestMachines.Pattern(128, 1));
        cache.Invalidate(Line, 128);
        Assert.Equal(0, cache.LineCount);
        Assert.Equal(new byte[128], Mem(mem, Line, 128));
    }

    [Fact]
    public void Invalidate_partial_edge_lines_are_written_back_first()
    {
        var (mem, cache) = New();
        var data = TestMachines.Pattern(192, 1);
        cache.Store(Line, data); // three dirty lines: 0x1000, 0x1040, 0x1080
        cache.Invalidate(Line + 0x20, 0x80); // [0x1020, 0x10a0): edges at both ends, one whole line between

        Assert.Equal(0, cache.LineCount);
        var after = Mem(mem, Line, 192);
        // Edge lines were cleaned and invalidated (dc civac): all their bytes reach memory.
        Assert.Equal(data[..0x40], after[..0x40]);
        Assert.Equal(data[0x80..], after[0x80..]);
        // The whole line inside the range was dropped without write-back.
        Assert.Equal(new byte[0x40], after[0x40..0x80]);
    }

    [Fact]
    public void Flush_writes_back_and_drops()
    {
        var (mem, cache) = New();
        cache.Store(Line + 1, [7]);
        cache.Store(Line + 0x41, [8]);
        cache.Flush(Line, 0x41);
        Assert.Equal(0, cache.LineCount);
        Assert.Equal([7], Mem(mem, Line + 1, 1));
        Assert.Equal([8], Mem(mem, Line + 0x41, 1));
    }

    [Fact]
    public void Zero_size_ops_do_nothing()
    {
        var (mem, cache) = New();
        cache.Store(Line, [1]);
        cache.Clean(Line, 0);
        cache.Invalidate(Line, 0);
        cache.Flush(Line, 0);
        Assert.True(cache.IsDirty(Line));
        Assert.Equal(new byte[1], Mem(mem, Line, 1));
    }

    [Fact]
    public void Snoop_read_sees_dirty_lines_without_changing_them()
    {
        var (mem, cache) = New();
        mem.Write(Line, TestMachines.Pattern(128, 50));
        cache.Store(Line + 0x3e, [1, 2, 3, 4]); // dirty bytes straddling two lines
        var seen = new byte[128];
        cache.SnoopRead(Line, seen);
        var expected = TestMachines.Pattern(128, 50);
        expected[0x3e] = 1;
        expected[0x3f] = 2;
        expected[0x40] = 3;
        expected[0x41] = 4;
        Assert.Equal(expected, seen);
        Assert.True(cache.IsDirty(Line));
        Assert.Equal(TestMachines.Pattern(128, 50)[0x3e..0x42], Mem(mem, Line + 0x3e, 4));
    }

    [Fact]
    public void Snoop_write_writes_back_dirty_neighbours_drops_lines_writes_memory()
    {
        var (mem, cache) = New();
        cache.Store(Line, [0xaa, 0xbb]);
        cache.SnoopWrite(Line + 1, [0xcc]);
        Assert.False(cache.IsCached(Line));
        Assert.Equal([0xaa, 0xcc], Mem(mem, Line, 2));
        Assert.Equal([0xaa, 0xcc], Load(cache, Line, 2));
    }

    [Fact]
    public void Line_size_must_be_a_power_of_two() =>
        Assert.Throws<ArgumentException>(() => new CpuCache(new PhysicalMemory(), 48));
}
