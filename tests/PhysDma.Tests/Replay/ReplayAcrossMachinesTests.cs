using PhysDma.Replay;
using static PhysDma.Tests.Replaying.ReplayKit;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Replaying;

/// <summary>A trace captured on one machine replayed on another: the model's own addresses, bounces, faults and cache work.</summary>
public sealed class ReplayAcrossMachinesTests
{
    [Fact]
    public void Default_to_arm64_noncoherent_relocates_pages_and_cleans_and_invalidates()
    {
        var (_, trace) = RunTraced(Example("quickstart.yaml"), "default");
        var (_, r) = ReplayOn(trace, "arm64-noncoherent", relocate: true, ("0000:02:00.0", "nic0"));

        Assert.Equal(PhysPolicy.Relocate, r.Policy);
        Assert.Equal([(13L, 0xbffff000UL, 0x80000000UL), (15L, 0xbfffe000UL, 0x80001000UL)],
            r.Calls!.Select(c => (c.Line, c.TracedDma, c.ModelDma)));
        // TO_DEVICE map: clean; FROM_DEVICE map: clean; FROM_DEVICE unmap: invalidate.
        Assert.Equal((2L, 1L, 0L), (r.CacheCleans, r.CacheInvalidates, r.CacheFlushes));
        Assert.Empty(r.DebugReports);
        Assert.Empty(r.Failures);
        Assert.Equal(0, r.PeakIovaPages);
    }

    [Fact]
    public void Default_to_arm64_without_relocate_names_the_line_that_is_not_ram_there()
    {
        var (_, trace) = RunTraced(Example("quickstart.yaml"), "default");
        var e = Assert.Throws<TraceFormatException>(() => ReplayOn(trace, "arm64-noncoherent", false, ("0000:02:00.0", "nic0")));
        Assert.Equal(13, e.Line);
        Assert.Contains("phys_addr 0x1000 (size 64) is not RAM on machine arm64-noncoherent", e.Message, StringComparison.Ordinal);
        Assert.Contains("--relocate", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("dma_map_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=bffff000 size=64 phys_addr=1000 attrs=", e.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Default_to_coco_bounces_ram_and_refuses_mmio()
    {
        var (_, trace) = RunTraced(Example("four-cases.yaml"), "default");
        var (_, r) = ReplayOn(trace, "coco");

        Assert.Equal(PhysPolicy.AsTraced, r.Policy);
        Assert.Equal([(13L, 0xbffff000UL, 0xbc000000UL), (14L, 0xbfffe000UL, ulong.MaxValue), (15L, 0xbffe0000UL, ulong.MaxValue), (16L, 0xbffff000UL, ulong.MaxValue)],
            r.Calls!.Select(c => (c.Line, c.TracedDma, c.ModelDma)));
        Assert.Equal([14L, 15L, 16L], r.Failures.Select(f => f.Line));
        Assert.Equal("nic0: DMA addr 0x0000000000000000+4096 overflow (mask ffffffffffffffff, bus limit 0).", r.Failures[0].Reason);
        // The driver saw the maps fail there, so their unmaps are not made.
        Assert.Equal(3, r.Skipped["unmap of a mapping that failed on the model"]);
        Assert.Equal(1, r.PeakSwiotlbSlots);
        Assert.Equal([13L], r.PeakSwiotlbHolders);
        Assert.Equal(64UL, r.BytesBounced);
        Assert.Empty(r.DebugReports);
        Assert.Equal(4, r.AddressesDiffering);
    }

    [Fact]
    public void X86_noiommu_to_x86_iommu_strict_maps_through_the_iommu_and_stops_bouncing()
    {
        var (_, trace) = RunTraced(Example("bounce-32bit.yaml"), "x86-noiommu");
        var (_, r) = ReplayOn(trace, "x86-iommu-strict", false, ("0000:10:00.0", "legacy32"), ("0000:01:00.0", "nic0"));

        // Strict mode frees each IOVA at unmap, so the next map gets the same page again.
        Assert.Equal([(13L, 0xbc000000UL, 0xbffff000UL), (15L, 0xbc000800UL, 0xbffff000UL), (18L, 0x100000000UL, 0xbffff000UL)],
            r.Calls!.Select(c => (c.Line, c.TracedDma, c.ModelDma)));
        Assert.Equal(["legacy32", "nic0"], r.Devices.Select(d => d.Model));
        Assert.Equal(0, r.PeakSwiotlbSlots);
        Assert.Equal(0UL, r.BytesBounced);
        Assert.Equal(1, r.PeakIovaPages);
        Assert.Empty(r.DebugReports);
        Assert.Empty(r.Leaks);
    }

    [Fact]
    public void An_unmatched_traced_device_is_an_error_naming_it()
    {
        var (_, trace) = RunTraced(Example("bounce-32bit.yaml"), "x86-noiommu");
        var e = Assert.Throws<TraceFormatException>(() => ReplayOn(trace, "x86-iommu-strict"));
        Assert.Equal(13, e.Line);
        Assert.StartsWith("traced device '0000:10:00.0' matches no device of machine x86-iommu-strict", e.Message, StringComparison.Ordinal);
        Assert.Contains("--device 0000:10:00.0=NAME", e.Message, StringComparison.Ordinal);
    }
}
