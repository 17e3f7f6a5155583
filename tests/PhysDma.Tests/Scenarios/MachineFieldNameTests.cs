using PhysDma.Platform;
using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>
/// Lower layers name the config property that was wrong; the machine-file reader turns it into the file's
/// field, so the user's error names what they wrote.
/// </summary>
public class MachineFieldNameTests
{
    [Theory]
    [InlineData("PageSize", "page_size")]
    [InlineData("DmaMinAlign", "dma_minalign")]
    [InlineData("Ram[1]", "ram[1]")]
    [InlineData("Devices[1].Bars[0]", "devices[1].bars[0]")]
    [InlineData("Devices[2].P2PMem.Bar", "devices[2].p2pmem.bar")]
    [InlineData("Devices[0].DmaMaskBits", "devices[0].dma_mask")]
    [InlineData("Devices[3].RestrictedPool", "devices[3].restricted_pool")]
    [InlineData("Iommu.FlushQueue.TimeoutMs", "iommu.flush_queue.timeout_ms")]
    [InlineData("Iommu.PageSizes", "iommu.page_sizes")]
    [InlineData("Swiotlb.Base", "swiotlb.base")]
    public void Config_property_maps_to_the_machine_file_field(string property, string field) =>
        Assert.Equal(field, MachineFieldNames.FieldOf(new ConfigProperty(property)));

    private static void AssertMachineError(string machine, string fieldAndText)
    {
        var (exit, stdout, stderr, file) = RunCli("machine:\n" + machine + "steps: []\n");
        Assert.Equal(2, exit);
        Assert.Equal("", stdout);
        Assert.Equal($"physdma: {file}:1: machine.{fieldAndText}\n", stderr);
    }

    [Fact]
    public void Flush_queue_entries_error_names_the_file_field() =>
        AssertMachineError("  base: x86-iommu-lazy\n  iommu: { flush_queue: { entries: 3 } }\n",
            "iommu.flush_queue.entries: flush queue entries must be a power of two of at least 2, not 3");

    [Fact]
    public void Page_size_error_names_the_file_field() =>
        AssertMachineError("  base: x86-noiommu\n  page_size: 2048\n",
            "page_size: the page size must be a power of two of at least 4096, not 2048");

    [Fact]
    public void Mask_below_zone_dma_names_the_device_field() =>
        AssertMachineError("  base: x86-noiommu\n  devices:\n    - { name: legacy32, dma_mask: 20 }\n",
            "devices[1].dma_mask: device 'legacy32': dma_set_mask(0xfffff) fails with -EIO: the mask cannot reach ZONE_DMA");
}
