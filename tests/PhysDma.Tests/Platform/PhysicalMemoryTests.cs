using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;

namespace PhysDma.Tests.Platform;

public sealed class PhysicalMemoryTests
{
    [Fact]
    public void One_TiB_address_space_costs_only_touched_chunks()
    {
        var mem = new PhysicalMemory();
        mem.Write(new PhysAddr(0), [1, 2, 3]);
        mem.Write(new PhysAddr(TiB - 2), [4, 5]);
        mem.Write(new PhysAddr(512 * GiB + 4094), [6, 7, 8, 9]); // straddles two chunks
        Assert.Equal(4, mem.TouchedChunks);

        var buf = new byte[2];
        mem.Read(new PhysAddr(TiB - 2), buf);
        Assert.Equal([4, 5], buf);
        var across = new byte[4];
        mem.Read(new PhysAddr(512 * GiB + 4094), across);
        Assert.Equal([6, 7, 8, 9], across);
    }

    [Fact]
    public void Untouched_memory_reads_zero_and_reading_does_not_allocate()
    {
        var mem = new PhysicalMemory();
        var buf = Enumerable.Repeat((byte)0xaa, 10000).ToArray();
        mem.Read(new PhysAddr(100 * GiB + 123), buf);
        Assert.All(buf, b => Assert.Equal(0, b));
        Assert.Equal(0, mem.TouchedChunks);
    }

    [Fact]
    public void Partial_read_mixes_written_and_zero_chunks()
    {
        var mem = new PhysicalMemory();
        mem.Write(new PhysAddr(0x1ffe), [0x11, 0x22]);
        var buf = new byte[4];
        mem.Read(new PhysAddr(0x1ffe), buf);
        Assert.Equal([0x11, 0x22, 0, 0], buf);
    }

    [Fact]
    public void Copy_moves_bytes_across_chunks()
    {
        var mem = new PhysicalMemory();
        var data = TestMachines.Pattern(1000, 3);
        mem.Write(new PhysAddr(0x3f00), data);
        mem.Copy(new PhysAddr(0x10_0000), new PhysAddr(0x3f00), 1000);
        var back = new byte[1000];
        mem.Read(new PhysAddr(0x10_0000), back);
        Assert.Equal(data, back);
    }
}
