using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Debug;

/// <summary>Cacheline overlap tracking (active_cacheline_insert, active_cacheline_remove).</summary>
public class CachelineTests
{
    [Fact]
    public void Key_IsTheFirstCachelineCountedPerPage()
    {
        var d = DebugMachines.X86().Dbg();
        // 4096-byte pages, 64-byte lines: 64 lines per page.
        Assert.Equal(0x100UL * 64 + 0, d.CachelineNumber(new PhysAddr(0x100000)));
        Assert.Equal(0x100UL * 64 + 1, d.CachelineNumber(new PhysAddr(0x100040)));
        Assert.Equal(0x100UL * 64 + 63, d.CachelineNumber(new PhysAddr(0x100fff)));
    }

    [Fact]
    public void OnlyTheFirstLineIsKeyed_SoOverlapsFurtherInAreNotSeen()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 256, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100080, 64, DmaDirection.FromDevice);
        Assert.Empty(api.Dbg().Reports);
        Assert.Equal(2, api.Dbg().ActiveCachelines);
    }

    [Fact]
    public void ToDevice_IsNotTracked()
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
    public void SkipCpuSync_IsExemptFromTheReport_ButStillCounted()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync);
        Assert.Empty(api.Dbg().Reports);
        Assert.Equal(1, api.Dbg().CachelineOverlap(new PhysAddr(0x100000)));
    }

    [Fact]
    public void KmallocBouncing_WithAnActiveSwiotlb_IsExempt()
    {
        var api = DebugMachines.X86(bounceKmalloc: true, swiotlb: new SwiotlbConfig(Sizes.MiB, 1, false, false, null));
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice);
        Assert.Empty(api.Dbg().Reports);
    }

    [Fact]
    public void KmallocBouncing_WithoutASwiotlb_IsNotExempt()
    {
        var api = DebugMachines.X86(bounceKmalloc: true);
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice);
        Assert.Equal(["cacheline_overlap"], api.Dbg().Checks());
    }

    [Fact]
    public void Counter_StopsAtSeven_WarnsOnce_AndUnmapsDropTheLineEarly()
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
    public void MmioMappingsAreTrackedToo()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, DebugMachines.BarBase, 64, DmaDirection.FromDevice, DmaAttrs.Mmio);
        api.MapChecked(dev, DebugMachines.BarBase, 64, DmaDirection.FromDevice, DmaAttrs.Mmio);
        Assert.Equal(["cacheline_overlap"], api.Dbg().Checks());
    }
}
