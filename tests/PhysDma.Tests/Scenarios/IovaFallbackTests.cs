using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary><c>iova_alloc fallback: map_phys</c>: a driver that maps link by link when there is no IOVA to link into.</summary>
public class IovaFallbackTests
{
    private const string Steps = """
        steps:
          - { op: alloc, name: ring, size: 8KiB, kind: ram, phys: 0x100000000 }
          - { op: cpu_write, buf: ring, data: { seq: 0x20 }, len: 8192 }
          - { op: iova_alloc, dev: legacy32, size: 8KiB, phys_of: ring, as: st, fallback: map_phys }
          - { op: iova_link, state: st, buf: ring, size: 4KiB, at: 0, dir: to_device }
          - { op: iova_link, state: st, buf: ring, offset: 4KiB, size: 4KiB, at: 4KiB, dir: to_device }
          - { op: iova_sync, state: st, at: 0, size: 8KiB }
          - { op: dev_read, dev: legacy32, handle: st, offset: 4094, len: 4 }
          - { op: iova_destroy, state: st, mapped_len: 8KiB, dir: to_device }
        """;

    [Fact]
    public void Without_an_iommu_each_link_is_a_dma_map_phys_mapping()
    {
        var r = Run("machine: x86-noiommu\n" + Steps);
        Assert.True(r.Ok, r.ToJson());
        Assert.False(Step(r, 2)["use_iova"]!.GetValue<bool>());
        // Above the 32-bit mask: each link bounces into its own swiotlb slots, one page apart.
        Assert.Equal("dma_map_phys", Str(Step(r, 3)["fallback"]));
        Assert.Equal("swiotlb", Str(Step(r, 3)["path"]));
        Assert.Equal("0xbc000000", Str(Step(r, 3)["dma_addr"]));
        Assert.Equal("0xbc001000", Str(Step(r, 4)["dma_addr"]));
        Assert.Equal(0, Step(r, 5)["ret"]!.GetValue<long>());
        // The device reads across the two links: the last two bytes of the first, the first two of the second.
        Assert.Equal("1e 1f 20 21", Str(Step(r, 6)["data"]));
        Assert.Equal(0, r.Json["final"]!["live_mappings"]!.GetValue<long>());
        Assert.Equal(0, r.Json["final"]!["swiotlb_slots_used"]!.GetValue<long>());
        Assert.Empty(r.Json["debug"]!.AsArray());
    }

    [Fact]
    public void Behind_an_iommu_the_state_links_into_one_iova_range()
    {
        var r = Run("machine: x86-iommu-strict\n" + Steps);
        Assert.True(r.Ok, r.ToJson());
        Assert.True(Step(r, 2)["use_iova"]!.GetValue<bool>());
        Assert.Null(Step(r, 3)["fallback"]);
        Assert.Equal("0xbfffe000", Str(Step(r, 3)["dma_addr"]));
        Assert.Equal("0xbffff000", Str(Step(r, 4)["dma_addr"]));
        Assert.Equal("1e 1f 20 21", Str(Step(r, 6)["data"]));
    }

    [Fact]
    public void Without_the_fallback_a_link_on_a_state_with_no_iova_is_bad_input()
    {
        var (exit, _, err, _) = RunCli("machine: x86-noiommu\n" + Steps.Replace(", fallback: map_phys", "", StringComparison.Ordinal));
        Assert.Equal(2, exit);
        Assert.Contains("IOVA state 'st' has no IOVA on this machine", err);
    }
}
