using PhysDma.Core;
using PhysDma.Dma;

namespace PhysDma.Tests.Debug;

/// <summary>dma-debug's bucket, pool, cacheline and ownership locks under maps and unmaps from several CPUs.</summary>
public class DebugConcurrencyTests
{
    [Fact]
    public void Many_cpus_map_and_unmap_everything_returns_to_the_pool()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var total = d.NrTotalEntries;
        var threads = new Thread[2];
        Exception? failure = null;
        for (var t = 0; t < threads.Length; t++)
        {
            var cpu = t;
            threads[t] = new Thread(() =>
            {
                try
                {
                    using var _ = api.Machine.OnCpu(cpu);
                    var held = new DmaAddr[16];
                    for (var round = 0; round < 200; round++)
                    {
                        for (var i = 0; i < held.Length; i++)
                        {
                            // Each CPU its own 64 KiB region, one page per mapping: no overlaps, no shared lines.
                            var phys = 0x10000000UL + ((ulong)cpu << 20) + ((ulong)i << 12);
                            held[i] = api.MapPhys(dev, new PhysAddr(phys), 256, DmaDirection.FromDevice, DmaAttrs.None);
                            api.MappingError(dev, held[i]);
                        }
                        for (var i = 0; i < held.Length; i++)
                        {
                            api.SyncSingleForCpu(dev, held[i], 256, DmaDirection.FromDevice);
                            api.UnmapPhys(dev, held[i], 256, DmaDirection.FromDevice, DmaAttrs.None);
                        }
                    }
                }
                catch (Exception e)
                {
                    failure = e;
                }
            });
            threads[t].Start();
        }
        foreach (var th in threads)
        {
            th.Join();
        }
        Assert.Null(failure);
        Assert.Empty(d.Reports);
        Assert.Equal(0, d.LiveEntries);
        Assert.Equal(0, d.ActiveCachelines);
        Assert.Equal(total, d.NumFreeEntries);
        // 16 live per CPU at most; how many at once depends on how the threads interleave.
        Assert.InRange(d.MinFreeEntries, total - 32, total - 16);
    }
}
