using PhysDma.Tests.Scenarios;

namespace PhysDma.Tests.Platform;

/// <summary>
/// arm64's arch_sync_dma_for_device / arch_sync_dma_for_cpu name the range by its linear-map address
/// (phys_to_virt, arithmetic): arm64 has no highmem and no kmap, so the cache maintenance makes no kernel mapping.
/// </summary>
public class Arm64LinearMapTests
{
    [Fact]
    public void Cache_maintenance_for_a_non_coherent_map_and_unmap_counts_no_kernel_mapping()
    {
        var r = ScenarioTestKit.Run("""
            machine: arm64-noncoherent
            steps:
              - { op: alloc, name: rx, size: 4KiB, kind: ram }
              - { op: map, id: m, dev: nic0, buf: rx, dir: from_device, as: h }
              - { op: unmap, id: u, handle: h }
            """);
        foreach (var (id, op) in new[] { ("m", "clean"), ("u", "invalidate") })
        {
            var step = ScenarioTestKit.Step(r, id);
            var cacheOp = Assert.Single(step["cache_ops"]!.AsArray())!;
            Assert.Equal(op, ScenarioTestKit.Str(cacheOp["op"]));
            Assert.Equal("0x80000000", ScenarioTestKit.Str(cacheOp["phys"]));
            Assert.Equal(0L, step["kernel_mappings"]!.GetValue<long>());
        }
    }
}
