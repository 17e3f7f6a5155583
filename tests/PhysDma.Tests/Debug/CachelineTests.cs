using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Debug;

/// <summary>Cacheline overlap tracking (spec §6.3).</summary>
public class CachelineTests
{
    [Fact]
    public void Key_is_the_first_cacheline_counted_per_page()
    {
        var d = DebugMachines.X86().Dbg();
        // 4096-byte pages, 64-byte lines: 64 lines per page.
        Assert.Equal(0x100UL * 64 + 0, d.CachelineNumber(new PhysAddr(0x100000)));
        Assert.Equal(0x100UL * 64 + 1, d.CachelineNumber(new PhysAddr(0x100040)));
        Assert.Equal(0x100UL * 64 + 63, d.CachelineNumber(new PhysAddr(0x100fff)));
    }

    [Fact]
    public void Only_the_first_line_is_keyed_so_overlaps_further_in_are_not_seen()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 256, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100080, 64, DmaDirection.FromDevice);
        Assert.Empty(api.Dbg().Reports);
        Assert.Equal(2, api.Dbg().ActiveCachelines);
    }

    [Fact]
    public void To_device_is_not_tracked()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.ToDevice);
        api.MapChecked(dev, 0x100000, 32, DmaDirection.ToDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice);
        Assert.Empty(api.Dbg().Reports);
        Assert.Equal(0, api.Dbg().CachelineOverlap(new PhysAddr(0x100000)));
    }

    [Fact]
    public void Skip_cpu_sync_is_exempt_from_the_report_but_still_counted()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync);
        Assert.Empty(api.Dbg().Reports);
        Assert.Equal(1, api.Dbg().CachelineOverlap(new PhysAddr(0x100000)));
    }

    [Fact]
    public void Kmalloc_bouncing_with_an_active_swiotlb_is_exempt()
    {
        var api = DebugMachines.X86(bounceKmalloc: true, swiotlb: new SwiotlbConfig(Sizes.MiB, 1, false, false, null));
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice);
        Assert.Empty(api.Dbg().Reports);
    }

    [Fact]
    public void Kmalloc_bouncing_without_a_swiotlb_is_not_exempt()
    {
        var api = DebugMachines.X86(bounceKmalloc: true);
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice);
        Assert.Equal(["cacheline_overlap"], api.Dbg().Checks());
    }

    [Fact]
    public void Counter_stops_at_seven_warns_once_and_unmaps_drop_the_line_early()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        d.AllErrors = true;
        var cl = new PhysAddr(0x100000);
        for (var i = 0; i < 10; i++)
        {
            api.MapChecked(dev, 0x100000, 8, DmaDirection.FromDevice);
            Assert.Equal(Math.Min(i, 7), d.CachelineOverlap(cl));
        }
        Assert.Equal(9, d.Reports.Count(r => r.Check == "cacheline_overlap"));
        Assert.Single(api.Log.Lines, l => l.Message == "DMA-API: exceeded 7 overlapping mappings of cacheline 0x0000000000004000");
        // Ten mappings but a count of 7: the eighth unmap removes the line, the last two find nothing to drop.
        for (var i = 0; i < 10; i++)
        {
            api.UnmapPhys(dev, new DmaAddr(0x100000), 8, DmaDirection.FromDevice, DmaAttrs.None);
            Assert.Equal(i < 7 ? 6 - i : null, d.CachelineOverlap(cl));
        }
        Assert.Equal(0, d.ActiveCachelines);
        Assert.Equal(0, d.LiveEntries);
    }

    [Fact]
    public void Mmio_mappings_are_tracked_too()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, DebugMachines.BarBase, 64, DmaDirection.FromDevice, DmaAttrs.Mmio);
        api.MapChecked(dev, DebugMachines.BarBase, 64, DmaDirection.FromDevice, DmaAttrs.Mmio);
        Assert.Equal(["cacheline_overlap"], api.Dbg().Checks());
    }
}
