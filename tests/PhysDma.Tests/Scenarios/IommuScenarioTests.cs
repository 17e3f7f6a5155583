using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>The IOMMU machines through scenarios: lazy vs strict unmap, faults, iommu_flush, finals.</summary>
public class IommuScenarioTests
{
    private const string StaleSteps = """
        steps:
          - { op: alloc, name: a, size: 4KiB, kind: ram }
          - { op: cpu_write, buf: a, data: "aa bb cc dd" }
          - { op: map, id: m, dev: nic0, buf: a, dir: to_device, as: h }
          - { op: mapping_error, handle: h }
          - { op: dev_read, id: fills-iotlb, dev: nic0, handle: h, len: 4 }
          - { op: unmap, handle: h }
          - { op: dev_read, id: after-unmap, dev: nic0, addr: 0xbffff000, len: 4 }
          - { op: map, id: m2, dev: nic0, buf: a, dir: to_device, as: h2 }
          - { op: mapping_error, handle: h2 }
          - { op: unmap, handle: h2 }
          - { op: tick, ms: 10 }
          - { op: dev_read, id: after-tick, dev: nic0, addr: 0xbffff000, len: 4 }
        """;

    [Fact]
    public void Lazy_unmap_leaves_the_iotlb_entry_until_the_queue_flushes_and_does_not_reuse_the_iova()
    {
        var r = Run("machine: default\n" + StaleSteps);
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal("0xbffff000", Str(Step(r, "m")["dma_addr"]));
        // The device still reaches the page through the translation it cached before the unmap.
        Assert.Equal("aa bb cc dd", Str(Step(r, "after-unmap")["data"]));
        // The IOVA waits in the flush queue: the next map takes the one below.
        Assert.Equal("0xbfffe000", Str(Step(r, "m2")["dma_addr"]));
        Assert.Equal("fault", Str(Step(r, "after-tick")["error"]));
        var fault = Assert.Single(r.Json["faults"]!.AsArray());
        Assert.Equal(11, fault!["step"]!.GetValue<int>());
        Assert.Equal("unmapped", Str(fault["reason"]));
        Assert.Equal(0, r.Json["final"]!["iotlb_entries"]!.GetValue<long>());
        Assert.Equal(0, r.Json["final"]!["iova_pages_in_use"]!.GetValue<long>());
    }

    [Fact]
    public void Strict_unmap_faults_at_once_and_reuses_the_iova()
    {
        var r = Run("machine: x86-iommu-strict\n" + StaleSteps);
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal("fault", Str(Step(r, "after-unmap")["error"]));
        Assert.Equal("0xbffff000", Str(Step(r, "m2")["dma_addr"]));
        var faults = r.Json["faults"]!.AsArray();
        Assert.Equal([6, 11], faults.Select(f => f!["step"]!.GetValue<int>()));
        Assert.All(faults, f => Assert.Equal("0xbffff000", Str(f!["addr"])));
    }

    [Fact]
    public void Iommu_flush_empties_the_iotlb_and_the_flush_queues_at_once()
    {
        var r = Run("""
            machine: default
            steps:
              - { op: alloc, name: a, size: 4KiB, kind: ram }
              - { op: map, dev: nic0, buf: a, dir: bidirectional, as: h }
              - { op: mapping_error, handle: h }
              - { op: dev_write, dev: nic0, handle: h, data: "01" }
              - { op: unmap, handle: h }
              - { op: iommu_flush, id: flush, expect: { iotlb_entries: 0 } }
              - { op: dev_read, id: gone, dev: nic0, addr: 0xbffff000, len: 1, expect: { error: fault } }
              - { op: map, id: again, dev: nic0, buf: a, dir: bidirectional, as: h2, expect: { dma_addr: "0xbffff000", iommu_prot: [READ, WRITE, CACHE] } }
              - { op: mapping_error, handle: h2 }
              - { op: unmap, handle: h2 }
            """);
        Assert.True(r.Ok, r.ToJson());
    }

    [Fact]
    public void Remove_device_reports_the_leak_once()
    {
        var r = Run("""
            machine: x86-iommu-strict
            steps:
              - { op: alloc, name: a, size: 4KiB, kind: ram }
              - { op: map, dev: nvme0, buf: a, offset: 0x123, size: 0x100, dir: from_device, as: h }
              - { op: mapping_error, handle: h }
              - { op: remove_device, id: rm, dev: nvme0, expect: { leaked: 1 } }
            expect:
              live_mappings: 1
              iova_pages_in_use: 1
            """);
        Assert.True(r.Ok, r.ToJson());
        var d = Assert.Single(r.Json["debug"]!.AsArray());
        Assert.Equal(3, d!["step"]!.GetValue<int>());
        Assert.Equal("leak_on_unbind", Str(d["check"]));
        Assert.StartsWith("DMA-API: nvme0 0000:05:00.0: device driver has pending DMA allocations while released from device [count=1]", Str(d["message"]), StringComparison.Ordinal);
        Assert.Contains("[device address=0x00000000bffff123] [size=256 bytes] [mapped with DMA_FROM_DEVICE]", Str(d["message"]), StringComparison.Ordinal);
    }

    [Fact]
    public void Machines_lists_every_built_in_profile()
    {
        var (exit, stdout, _) = CliArgs("machines");
        Assert.Equal(0, exit);
        foreach (var name in new[] { "default", "x86-iommu-lazy", "x86-iommu-strict", "x86-noiommu", "arm64-noncoherent", "coco" })
        {
            Assert.Contains(name, stdout, StringComparison.Ordinal);
        }
        var (exit2, show, _) = CliArgs("machines", "show", "x86-iommu-strict");
        Assert.Equal(0, exit2);
        Assert.Contains("mode: strict", show, StringComparison.Ordinal);
        Assert.Contains("untrusted: true", show, StringComparison.Ordinal);
    }
}
