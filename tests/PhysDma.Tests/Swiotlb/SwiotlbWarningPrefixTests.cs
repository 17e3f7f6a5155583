using PhysDma.Tests.Scenarios;

namespace PhysDma.Tests.Swiotlb;

/// <summary>swiotlb_tbl_map_single warns with dev_warn_ratelimited: the message carries the driver and the device name.</summary>
public class SwiotlbWarningPrefixTests
{
    [Fact]
    public void Full_pool_warning_names_driver_and_pci_device()
    {
        var r = ScenarioTestKit.Run("""
            machine: { base: x86-noiommu, swiotlb: { size: 256KiB, areas: 1 } }
            steps:
              - { op: alloc, name: a, size: 200KiB, kind: ram, phys: 0x100000000 }
              - { op: alloc, name: b, size: 200KiB, kind: ram, phys: 0x100100000 }
              - { op: map, dev: legacy32, buf: a, dir: to_device, as: ha, expect: { path: swiotlb } }
              - { op: map, dev: legacy32, buf: b, dir: to_device, as: hb, expect: { error: DMA_MAPPING_ERROR } }
            """);
        Assert.True(r.Ok, string.Join("; ", r.Failures.Select(f => f.Message)));
        Assert.Contains(r.Log, l => l.Step == 3 && l.Message ==
            "legacy32 0000:10:00.0: swiotlb buffer is full (sz: 204800 bytes), total 128 (slots), used 100 (slots)");
    }
}
