using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Debug;

/// <summary>dma-debug reached through <c>dma_map_sgtable</c> and friends (the DmaApi scatter-gather hooks).</summary>
public class ScatterGatherDebugTests
{
    private const string Nic = "DMA-API: nic0 0000:03:00.0: ";
    private const string Plat = "DMA-API: plat0 plat0: ";

    private static SgTable Table(params (ulong Phys, uint Len)[] segs) =>
        new([.. segs.Select(s => new ScatterEntry(new PhysAddr(s.Phys), s.Len))]);

    [Fact]
    public void Map_sgtable_tracks_one_entry_per_segment_and_unmap_forgets_them()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var sgt = Table((0x100000, 4096), (0x300000, 512));
        Assert.Equal(0, api.MapSgtable(dev, sgt, DmaDirection.FromDevice, DmaAttrs.None));
        var e = d.Entries(dev);
        Assert.Equal(2, e.Count);
        Assert.All(e, x => Assert.Equal((DebugEntryType.ScatterGather, 2, 2, MapErrType.NotApplicable),
            (x.Type, x.SgCallEnts, x.SgMappedEnts, x.MapErrType)));
        Assert.Equal([(0x100000UL, 4096UL), (0x300000UL, 512UL)], e.Select(x => (x.DevAddr.Value, x.Size)));
        api.SyncSgForCpu(dev, sgt.Sgl, sgt.OrigNents, DmaDirection.FromDevice);
        api.SyncSgForDevice(dev, sgt.Sgl, sgt.OrigNents, DmaDirection.FromDevice);
        api.UnmapSgtable(dev, sgt, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Empty(d.Reports);
        Assert.Equal(0, d.LiveEntries);
        Assert.Equal(0, d.ActiveCachelines);
    }

    [Fact]
    public void Sync_sg_with_the_wrong_count()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var sgt = Table((0x100000, 4096), (0x300000, 4096));
        api.MapSgtable(dev, sgt, DmaDirection.FromDevice, DmaAttrs.None);
        api.SyncSgForCpu(dev, sgt.Sgl, 1, DmaDirection.FromDevice);
        var r = Assert.Single(d.Reports);
        Assert.Equal("sync_sg_count_mismatch", r.Check);
        Assert.Equal(Nic + "device driver syncs DMA sg list with different entry count [map count=2] [sync count=1]", r.Message);
    }

    [Fact]
    public void Sync_sg_with_the_wrong_direction_checks_every_mapped_segment()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        d.AllErrors = true;
        var sgt = Table((0x100000, 4096), (0x300000, 4096));
        api.MapSgtable(dev, sgt, DmaDirection.ToDevice, DmaAttrs.None);
        api.SyncSgForDevice(dev, sgt.Sgl, 2, DmaDirection.FromDevice);
        Assert.Equal(["sync_direction_mismatch", "sync_direction_mismatch"], d.Checks());
        Assert.Equal(Nic + "device driver syncs DMA memory with different direction [device address=0x0000000000300000] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]",
            d.Reports[1].Message);
    }

    [Fact]
    public void Unmap_sg_with_the_wrong_count_and_direction()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var sgt = Table((0x100000, 4096), (0x300000, 4096), (0x500000, 4096));
        api.MapSgtable(dev, sgt, DmaDirection.FromDevice, DmaAttrs.None);
        api.UnmapSgAttrs(dev, sgt.Sgl, 2, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(["free_sg_count_mismatch", "free_direction_mismatch", "free_sg_count_mismatch", "free_direction_mismatch"], d.Checks());
        Assert.Equal(Nic + "device driver frees DMA sg list with different entry count [map count=3] [unmap count=2]", d.Reports[0].Message);
        Assert.Equal(Nic + "device driver frees DMA memory with different direction [device address=0x0000000000100000] [size=4096 bytes] [mapped with DMA_FROM_DEVICE] [unmapped with DMA_BIDIRECTIONAL]",
            d.Reports[1].Message);
        // The third segment was never unmapped.
        var left = Assert.Single(d.Entries());
        Assert.Equal(0x500000UL, left.DevAddr.Value);
    }

    [Fact]
    public void Unmap_sg_of_a_list_unmapped_as_single_is_the_wrong_function()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var sgt = Table((0x100000, 4096));
        api.MapSgtable(dev, sgt, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(dev, sgt.Sgl[0].DmaAddress, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(Nic + "device driver frees DMA memory with wrong function [device address=0x0000000000100000] [size=4096 bytes] [mapped as scatter-gather] [unmapped as phy]",
            Assert.Single(d.Reports).Message);
    }

    [Fact]
    public void Segment_limits_are_checked_on_the_mapped_segments()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev("plat0");
        var d = api.Dbg();
        d.AllErrors = true;
        // plat0: max_seg_size 64 KiB, boundary 0xffff. dma-direct maps the list as given.
        var sgt = Table((0x100000, 0x11000), (0x20f800, 0x1000));
        Assert.Equal(0, api.MapSgtable(dev, sgt, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(["sg_segment_too_long", "sg_segment_crosses_boundary", "sg_segment_crosses_boundary"], d.Checks());
        Assert.Equal(
            [
                Plat + "mapping sg segment longer than device claims to support [len=69632] [max=65536]",
                Plat + "mapping sg segment across boundary [start=0x0000000000100000] [end=0x0000000000110fff] [boundary=0x000000000000ffff]",
                Plat + "mapping sg segment across boundary [start=0x000000000020f800] [end=0x00000000002107ff] [boundary=0x000000000000ffff]",
            ],
            d.Reports.Select(r => r.Message));
    }

    [Fact]
    public void Map_sg_from_the_stack()
    {
        var api = DebugMachines.X86();
        api.Machine.Stacks.Register(new PhysAddr(0x300000), new KernelVirt(0xffffc90000010000));
        var sgt = Table((0x100000, 4096), (0x300100, 256));
        api.MapSgtable(api.Dev(), sgt, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(Nic + "device driver maps memory from stack [probable addr=ffffc90000010100]",
            Assert.Single(api.Dbg().Reports).Message);
    }

    [Fact]
    public void Sg_steady_state_allocates_nothing()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var sgt = Table((0x100000, 4096), (0x300000, 4096));
        void Cycle()
        {
            api.MapSgtable(dev, sgt, DmaDirection.FromDevice, DmaAttrs.None);
            api.SyncSgForCpu(dev, sgt.Sgl, 2, DmaDirection.FromDevice);
            api.UnmapSgtable(dev, sgt, DmaDirection.FromDevice, DmaAttrs.None);
        }
        Assert.Equal(0, SteadyState.AllocatedBytes(Cycle, warmup: 50, perWindow: 50));
        Assert.Equal(0, api.Dbg().ReportCount);
    }
}
