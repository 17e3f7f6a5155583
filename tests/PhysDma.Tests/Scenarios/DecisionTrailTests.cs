using System.Text.Json.Nodes;
using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>Decision trails: every step's <c>why</c>, the kernel decisions with the values they compared.</summary>
public class DecisionTrailTests
{
    private static string[] Why(RunResult r, string id) => [.. Step(r, id)["why"]!.AsArray().Select(w => w!.GetValue<string>())];

    private static RunResult RunExample(string name, string? machine = null) =>
        ScenarioRunner.Run(ScenarioParser.ParseFile(Example(name), machine));

    [Fact]
    public void Ram_behind_the_iommu_names_the_dispatch_the_iova_and_the_prot()
    {
        var r = RunExample("four-cases.yaml");
        Assert.Equal(
        [
            "dma_map_phys: dev->dma_iommu → iommu_dma_map_phys",
            "dma_info_to_prot: coherent and not MMIO → READ|CACHE",
            "iommu_dma_alloc_iova: PCI device, 32-bit first: limit 0xffffffff → 0xbffff000",
        ], Why(r, "ram-to-nic"));
    }

    [Fact]
    public void Switch_local_p2p_names_the_shared_bridge()
    {
        var r = RunExample("four-cases.yaml");
        Assert.Equal(["pci_p2pdma_map_type: gpu0 and nvme0 share upstream bridge sw0, no ACS redirect → BUS_ADDR → pci_p2pdma_bus_addr_map"],
            Why(r, "vram-to-nvme"));
    }

    [Fact]
    public void Refused_p2p_names_the_host_bridge_and_the_reason()
    {
        var r = RunExample("four-cases-refused.yaml");
        var p2p = r.Json["steps"]!.AsArray().Select(s => s!.AsObject()).First(s => (string?)s["op"] == "p2p_map" && (string?)s["error"] == "EREMOTEIO");
        Assert.Equal(["pci_p2pdma_map_type: no shared switch; host bridge 1234:5678 not whitelisted → NOT_SUPPORTED → -EREMOTEIO"],
            p2p["why"]!.AsArray().Select(w => w!.GetValue<string>()));
    }

    [Fact]
    public void A_32_bit_device_bounces_because_the_end_is_above_its_mask()
    {
        var r = RunExample("bounce-32bit.yaml");
        Assert.Equal(
        [
            "dma_map_phys: no IOMMU DMA domain, no dma_map_ops → dma_direct_map_phys",
            "dma_capable: end 0x10000003f > dma_mask 0xffffffff → swiotlb_map",
            "swiotlb_tbl_map_single: 64 B from 0x100000000 → slot 0xbc000000",
        ], Why(r, "map-tx"));
        Assert.Equal(
        [
            "dma_map_phys: no IOMMU DMA domain, no dma_map_ops → dma_direct_map_phys",
            "dma_capable: end 0x10000003f <= dma_mask 0xffffffffffffffff → direct at 0x100000000",
        ], Why(r, "nic-in-place"));
    }

    [Fact]
    public void A_confidential_guest_bounces_because_memory_is_encrypted()
    {
        var r = RunExample("four-cases-coco.yaml");
        Assert.Equal(
        [
            "dma_map_phys: no IOMMU DMA domain, no dma_map_ops → dma_direct_map_phys",
            "is_swiotlb_force_bounce: memory encryption active → bounce",
            "swiotlb_tbl_map_single: 64 B from 0x1000 → slot 0xbc000000",
        ], Why(r, "ram-to-nic"));
    }

    [Fact]
    public void An_untrusted_device_bounces_a_buffer_that_is_not_granule_aligned()
    {
        var r = Run("""
            machine: x86-iommu-strict
            steps:
              - { op: alloc, name: b, size: 4KiB, kind: ram }
              - { op: map, id: m, dev: tbt0, buf: b, offset: 0x234, size: 64, dir: to_device, as: h }
            """);
        var why = Why(r, "m");
        Assert.Equal("dma_map_phys: dev->dma_iommu → iommu_dma_map_phys", why[0]);
        Assert.Equal("dev_use_swiotlb: untrusted and phys 0x1234+0x40 not granule-aligned (0x1000) → bounce", why[1]);
    }

    [Fact]
    public void Steps_no_kernel_code_decided_have_an_empty_trail()
    {
        var r = RunExample("quickstart.yaml");
        Assert.Empty(Step(r, 0)["why"]!.AsArray());
        Assert.All(r.Json["steps"]!.AsArray(), s => Assert.IsType<JsonArray>(s!["why"]));
    }

    [Fact]
    public void Explain_shows_the_trails_in_the_table()
    {
        var (exit, o, _) = CliArgs("run", Example("four-cases.yaml"), "--explain");
        Assert.Equal(0, exit);
        var lines = o.Split('\n');
        var at = Array.FindIndex(lines, l => l == "  step 2 map (ram-to-nic):");
        Assert.True(at > 0, o);
        Assert.Equal("    dma_map_phys: dev->dma_iommu → iommu_dma_map_phys", lines[at + 1]);
        Assert.Equal("    dma_info_to_prot: coherent and not MMIO → READ|CACHE", lines[at + 2]);
        Assert.Equal("    iommu_dma_alloc_iova: PCI device, 32-bit first: limit 0xffffffff → 0xbffff000", lines[at + 3]);
        var (_, plain, _) = CliArgs("run", Example("four-cases.yaml"));
        Assert.DoesNotContain("dma_info_to_prot", plain);
    }

    [Fact]
    public void A_run_without_a_recorder_collects_no_trail()
    {
        var m = new PhysDma.Platform.Machine(PhysDma.Scenarios.Profiles.TryGet("x86-noiommu", out var c) ? c : throw new InvalidOperationException());
        var api = new PhysDma.Dma.DmaApi(m) { Recorder = new PhysDma.Dma.DmaRecorder() };
        var dev = m.Device("legacy32");
        var addr = api.MapPhys(dev, new PhysDma.Core.PhysAddr(0x100000000), 64, PhysDma.Core.DmaDirection.ToDevice, PhysDma.Core.DmaAttrs.None);
        Assert.Equal(0xbc000000UL, addr.Value);
        Assert.Null(api.Recorder.Why);
    }
}
