using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>map_sg / sync_sg / unmap_sg through dma-direct: per-segment addresses, cache maintenance and bytes.</summary>
public class SgScenarioTests
{
    [Fact]
    public void Direct_sg_keeps_one_entry_per_segment_at_its_physical_address()
    {
        var r = Run("""
            machine: x86-noiommu
            steps:
              - { op: alloc, name: a, size: 8KiB, kind: ram }
              - { op: alloc, name: b, size: 4KiB, kind: ram }
              - { op: map_sg, id: m, dev: nic0, segments: [{ buf: a, size: 8192 }, { buf: b, offset: 16, size: 100 }], dir: to_device, as: s }
              - { op: sync_sg, id: y, handle: s, for: device }
              - { op: unmap_sg, id: u, handle: s }
            """);
        Assert.True(r.Ok, r.ToJson());
        var m = Step(r, "m");
        Assert.Equal(2, m["nents"]!.GetValue<int>());
        var segs = m["segments"]!.AsArray();
        // dma-direct never merges: each entry keeps its own address, and the second starts 16 bytes into b.
        Assert.Equal("0x1000", Str(segs[0]!["dma_addr"]));
        Assert.Equal(8192L, segs[0]!["len"]!.GetValue<long>());
        Assert.Equal("0x3010", Str(segs[1]!["dma_addr"]));
        Assert.Equal(100L, segs[1]!["len"]!.GetValue<long>());
        Assert.Equal("direct", Str(m["path"]));
        Assert.Empty(m["cache_ops"]!.AsArray());
        Assert.Equal(0, r.Json["final"]!["live_mappings"]!.GetValue<long>());
    }

    [Fact]
    public void Non_coherent_sg_cleans_at_map_and_invalidates_at_sync_for_cpu()
    {
        var r = Run("""
            machine: arm64-noncoherent
            steps:
              - { op: alloc, name: a, size: 8KiB, kind: ram }
              - { op: alloc, name: b, size: 4KiB, kind: ram }
              - { op: cpu_read, buf: b, offset: 16, len: 2 }
              - { op: map_sg, id: m, dev: nic0, segments: [{ buf: a, size: 8192 }, { buf: b, offset: 16, size: 100 }], dir: from_device, as: s }
              - { op: dev_write, dev: nic0, addr: 0x80002010, data: "aa bb" }
              - { op: cpu_read, id: stale, buf: b, offset: 16, len: 2 }
              - { op: sync_sg, id: y, handle: s, for: cpu }
              - { op: cpu_read, id: fresh, buf: b, offset: 16, len: 2 }
              - { op: unmap_sg, id: u, handle: s }
            """);
        Assert.True(r.Ok, r.ToJson());
        var ops = Step(r, "m")["cache_ops"]!.AsArray().Select(o => o!.ToJsonString()).ToArray();
        Assert.Equal(2, ops.Length);
        Assert.Contains("clean", ops[0], StringComparison.Ordinal);
        Assert.Contains("0x80002010", ops[1], StringComparison.Ordinal);
        // The line was cached before the map and the device wrote behind the cache: the CPU sees the old bytes...
        Assert.Equal("00 00", Str(Step(r, "stale")["data"]));
        // ...until sync_sg for the CPU invalidates every segment.
        Assert.Equal(2, Step(r, "y")["cache_ops"]!.AsArray().Count);
        Assert.Equal("aa bb", Str(Step(r, "fresh")["data"]));
    }

    [Fact]
    public void Unmap_sg_of_a_scatter_handle_with_plain_unmap_is_a_bad_input()
    {
        var (exit, _, err, file) = RunCli("""
            machine: x86-noiommu
            steps:
              - { op: alloc, name: a, size: 4KiB, kind: ram }
              - { op: map_sg, dev: nic0, segments: [{ buf: a, size: 64 }], dir: to_device, as: s }
              - { op: unmap, handle: s }
            """);
        Assert.Equal(2, exit);
        Assert.Contains($"{file}:5:", err, StringComparison.Ordinal);
        Assert.Contains("scatter-gather mapping", err, StringComparison.Ordinal);
    }
}
