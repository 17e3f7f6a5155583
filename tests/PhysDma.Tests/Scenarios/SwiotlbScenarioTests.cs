using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>swiotlb through scenarios: dynamic pools, restricted pools, bytes that move only at sync or unmap.</summary>
public class SwiotlbScenarioTests
{
    [Fact]
    public void Dynamic_swiotlb_makes_a_transient_pool_at_once_and_grows_a_new_pool_in_the_background()
    {
        var r = Run("""
            machine:
              base: x86-noiommu
              swiotlb: { size: 256KiB, areas: 1, dynamic: true }
            steps:
              - { op: alloc, name: big, size: 512KiB, kind: ram, phys: 0x100000000 }
              - { op: map, id: m1, dev: legacy32, buf: big, size: 200KiB, dir: to_device, as: h1 }
              - { op: mapping_error, handle: h1 }
              # The 256 KiB pool cannot hold a second 200 KiB mapping: a transient pool is made for it.
              - { op: map, id: m2, dev: legacy32, buf: big, offset: 204800, size: 200KiB, dir: to_device, as: h2 }
              - { op: mapping_error, handle: h2 }
              - { op: tick, ms: 1 }
              # By now the background work has added a pool, and the next mapping comes from it.
              - { op: map, id: m3, dev: legacy32, buf: big, size: 100KiB, dir: to_device, as: h3 }
              - { op: mapping_error, handle: h3 }
              - { op: unmap, handle: h2 }
              - { op: unmap, handle: h1 }
              - { op: unmap, handle: h3 }
            expect:
              swiotlb_slots_used: 0
              debug: []
            """);
        Assert.True(r.Ok, r.ToJson());
        var addrs = new[] { "m1", "m2", "m3" }.Select(id => Str(Step(r, id)["bounce"])).ToArray();
        Assert.Equal(["0xbffc0000", "0x40000", "0x80000"], addrs);
        Assert.All(new[] { "m1", "m2", "m3" }, id => Assert.Equal("swiotlb", Str(Step(r, id)["path"])));
    }

    [Fact]
    public void Restricted_pool_bounces_every_mapping_and_copies_back_only_at_unmap()
    {
        var r = Run("""
            machine:
              base: arm64-noncoherent
              devices:
                - { name: nic0, restricted_pool: { base: 0xf0000000, size: 1MiB } }
            steps:
              - { op: alloc, name: buf, size: 4KiB, kind: ram }
              - { op: cpu_write, buf: buf, data: "11 22 33 44" }
              - { op: map, id: m, dev: nic0, buf: buf, size: 4096, dir: bidirectional, as: h,
                  expect: { path: swiotlb, dma_addr: "0xf0000000", bounce: "0xf0000000" } }
              - { op: mapping_error, handle: h }
              - { op: dev_read, id: r, dev: nic0, handle: h, len: 4, expect: { data: "11 22 33 44" } }
              - { op: dev_write, dev: nic0, handle: h, data: "aa" }
              - { op: cpu_read, id: before, buf: buf, len: 1, expect: { data: "11" } }
              - { op: unmap, id: u, handle: h }
              - { op: cpu_read, id: after, buf: buf, len: 1, expect: { data: "aa" } }
            """);
        Assert.True(r.Ok, r.ToJson());
        // Non-coherent: the slot (not the original) is cleaned at map and invalidated before the copy-back.
        var clean = Assert.Single(Step(r, "m")["cache_ops"]!.AsArray());
        Assert.Equal("clean", Str(clean!["op"]));
        Assert.Equal("0xf0000000", Str(clean["phys"]));
        var inval = Assert.Single(Step(r, "u")["cache_ops"]!.AsArray());
        Assert.Equal("invalidate", Str(inval!["op"]));
        Assert.Equal("0xf0000000", Str(inval["phys"]));
    }

    [Fact]
    public void Coco_bounce_addresses_carry_no_encryption_bit_and_unbounced_ram_would_carry_it()
    {
        var r = Run("""
            machine: coco
            steps:
              - { op: alloc, name: buf, size: 4KiB, kind: ram, phys: 0x100000000 }
              - { op: map, id: m, dev: nic0, buf: buf, size: 512, dir: to_device, as: h,
                  expect: { path: swiotlb, dma_addr: "0xbc000000" } }
              - { op: mapping_error, handle: h }
              - { op: unmap, handle: h }
            """);
        Assert.True(r.Ok, r.ToJson());
        var off = Run("""
            machine: { base: coco, swiotlb: { force: false }, devices: [{ name: nic0, force_bounce: false }] }
            steps:
              - { op: alloc, name: buf, size: 4KiB, kind: ram, phys: 0x100000000 }
              - { op: map, id: m, dev: nic0, buf: buf, size: 512, dir: to_device, as: h }
            """);
        // The C-bit (bit 47) is set on a direct RAM address of an encrypted guest.
        Assert.Equal("0x800100000000", Str(Step(off, "m")["dma_addr"]));
    }
}
