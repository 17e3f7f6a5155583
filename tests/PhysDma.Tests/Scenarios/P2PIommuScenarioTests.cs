using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>
/// MMIO behind the IOMMU (spec §10 invariant 17, §9.4's rejected configurations under an IOMMU) and
/// the fix the series made: peer memory reached through the host bridge is mapped IOMMU_MMIO, never
/// IOMMU_CACHE, even on a coherent device.
/// </summary>
public class P2PIommuScenarioTests
{
    private static string Prot(System.Text.Json.Nodes.JsonObject step) =>
        string.Join(',', step["iommu_prot"]!.AsArray().Select(p => Str(p)));

    [Theory]
    [InlineData("to_device", "READ,MMIO", "READ,CACHE")]
    [InlineData("from_device", "WRITE,MMIO", "WRITE,CACHE")]
    [InlineData("bidirectional", "READ,WRITE,MMIO", "READ,WRITE,CACHE")]
    public void Mmio_never_gets_cache_and_ram_on_a_coherent_device_always_does(string dir, string mmioProt, string ramProt)
    {
        var r = Run($$"""
            machine: x86-iommu-strict
            steps:
              - { op: alloc, name: bar, size: 64KiB, kind: bar, from: gpu0, bar: 1, offset: 0x40000000 }
              - { op: alloc, name: pm, size: 4KiB, kind: p2pmem, from: gpu0 }
              - { op: alloc, name: ram, size: 4KiB, kind: ram }
              - { op: map, id: bar, dev: nic0, buf: bar, size: 4096, dir: {{dir}}, attrs: [mmio], as: h1 }
              - { op: p2p_map, id: p2pmem, dev: nic0, buf: pm, size: 4096, dir: {{dir}}, as: h2 }
              - { op: map, id: resource, dev: nic0, buf: bar, offset: 0x1000, size: 4, dir: {{dir}}, api: resource, as: h3 }
              - { op: map, id: ram, dev: nic0, buf: ram, dir: {{dir}}, as: h4 }
            """);
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal(mmioProt, Prot(Step(r, "bar")));
        Assert.Equal(mmioProt, Prot(Step(r, "p2pmem")));
        Assert.Equal("thru_host_bridge", Str(Step(r, "p2pmem")["p2p"]));
        Assert.Equal(mmioProt, Prot(Step(r, "resource")));
        Assert.Equal(ramProt, Prot(Step(r, "ram")));
        // Top-down, size-aligned IOVAs below the host-bridge window; the sub-page resource keeps its offset.
        Assert.Equal(["0xbffff000", "0xbfffe000", "0xbfffd000", "0xbfffc000"],
            new[] { "bar", "p2pmem", "resource", "ram" }.Select(id => Str(Step(r, id)["dma_addr"])));
        foreach (var id in new[] { "bar", "p2pmem", "resource" })
        {
            Assert.Equal(0, Step(r, id)["kernel_mappings"]!.GetValue<long>());
            Assert.Empty(Step(r, id)["cache_ops"]!.AsArray());
        }
    }

    [Fact]
    public void Untrusted_device_unaligned_mmio_fails_where_ram_would_bounce()
    {
        var r = Run("""
            machine: default
            steps:
              - { op: alloc, name: bar, size: 64KiB, kind: bar, from: gpu0, bar: 1, offset: 0x40000000 }
              - { op: map, id: unaligned-mmio, dev: tbt0, buf: bar, offset: 0x10, size: 256, dir: to_device, attrs: [mmio], as: h1,
                  expect: { error: DMA_MAPPING_ERROR, path: none, bounce: null } }
              - { op: map, id: aligned-mmio, dev: tbt0, buf: bar, size: 4096, dir: to_device, attrs: [mmio], as: h2,
                  expect: { path: iommu, dma_addr: "0xbffff000", iommu_prot: [READ, MMIO] } }
              - { op: alloc, name: ram, size: 4KiB, kind: ram }
              - { op: cpu_write, buf: ram, data: { fill: 0xee }, len: 4096 }
              - { op: map, id: unaligned-ram, dev: tbt0, buf: ram, offset: 0x10, size: 256, dir: to_device, as: h3,
                  expect: { path: iommu+swiotlb, dma_addr: "0xbfffe000", bounce: "0xbc000000", iommu_prot: [READ, CACHE] } }
              - { op: dev_read, id: payload, dev: tbt0, handle: h3, len: 4, expect: { data: "ee ee ee ee" } }
              # The rest of the bounce granule is zeroed, so the device cannot see what else was in the slot.
              - { op: dev_read, id: padding, dev: tbt0, handle: h3, offset: 256, len: 4, expect: { data: "00 00 00 00" } }
            """);
        Assert.True(r.Ok, r.ToJson());
        // The failed map is silent: the kernel's -EPERM-like refusal prints nothing.
        Assert.Empty(r.Json["log"]!.AsArray());
    }

    [Fact]
    public void Switch_local_bus_address_creates_no_iommu_entry()
    {
        var r = Run("""
            machine: x86-iommu-strict
            steps:
              - { op: alloc, name: vram, size: 8KiB, kind: p2pmem, from: gpu0 }
              - { op: p2p_map, id: bus, dev: nvme0, buf: vram, offset: 0x1000, size: 4096, dir: bidirectional, as: h,
                  expect: { p2p: bus_addr, path: bus_addr, dma_addr: "0x800001000", iommu_prot: null } }
              - { op: dev_write, dev: nvme0, handle: h, data: "42" }
              - { op: cpu_read, id: seen, buf: vram, offset: 0x1000, len: 1, expect: { data: "42" } }
            expect:
              iova_pages_in_use: 0
              iotlb_entries: 0
              faults: []
            """);
        Assert.True(r.Ok, r.ToJson());
    }
}
