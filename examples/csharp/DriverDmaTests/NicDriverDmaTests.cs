using PhysDma.Core;
using PhysDma.Platform;
using PhysDma.Scenarios;

namespace DriverDmaTests;

/// <summary>
/// A NIC driver's transmit and receive paths, tested against the modelled DMA API the way a driver author would:
/// map, let the device read or write, sync, unmap, and check the bytes, dma-debug and the IOMMU.
/// </summary>
public class NicDriverDmaTests
{
    private static byte[] Frame(int length) => [.. Enumerable.Range(0, length).Select(i => (byte)(0x10 + i))];

    [Fact]
    public void Transmit_frame_reaches_the_nic_through_the_iommu()
    {
        var model = DmaModel.Create("default");
        var nic = model.Device("nic0");
        var tx = model.AllocRam(4096);
        model.CpuWrite(tx, 0, Frame(64));

        var dma = model.Map(nic, tx, 0, 64, DmaDirection.ToDevice);
        Assert.False(model.MappingError(nic, dma));
        Assert.Equal(new DmaAddr(0xbffff000), dma); // the first IOVA below the host bridge's window

        Assert.Equal(Frame(64), model.DeviceRead(nic, dma, 64, out var fault));
        Assert.Null(fault);
        model.Unmap(nic, dma, 64, DmaDirection.ToDevice);
        Assert.Empty(model.DebugReports);
    }

    [Fact]
    public void Receive_without_sync_for_cpu_reads_stale_bytes_on_a_non_coherent_machine()
    {
        var model = DmaModel.Create("arm64-noncoherent");
        var nic = model.Device("nic0");
        var rx = model.AllocRam(2048);
        model.CpuWrite(rx, 0, new byte[8]); // the driver clears the buffer: the zeros sit in the CPU cache

        var dma = model.Map(nic, rx, 0, 2048, DmaDirection.FromDevice);
        Assert.False(model.MappingError(nic, dma));
        Assert.Null(model.DeviceWrite(nic, dma, [0xde, 0xad, 0xbe, 0xef]));

        // Reading before dma_sync_single_for_cpu: no invalidate happened, so this comes from the cache,
        // and PhysDma's own dma-debug check says the device still owns the buffer.
        Assert.Equal(new byte[4], model.CpuRead(rx, 0, 4));
        Assert.Equal("cpu_read_while_device_owns", Assert.Single(model.DebugReports).Check);
        model.SyncForCpu(nic, dma, 2048, DmaDirection.FromDevice);
        Assert.Equal(new byte[] { 0xde, 0xad, 0xbe, 0xef }, model.CpuRead(rx, 0, 4));
        model.Unmap(nic, dma, 2048, DmaDirection.FromDevice);
    }

    [Fact]
    public void Unmapping_with_the_wrong_size_is_reported_by_dma_debug()
    {
        var model = DmaModel.Create("x86-noiommu");
        var nic = model.Device("nic0");
        var buf = model.AllocRam(4096);
        var dma = model.Map(nic, buf, 0, 4096, DmaDirection.ToDevice);
        Assert.False(model.MappingError(nic, dma));

        model.Unmap(nic, dma, 2048, DmaDirection.ToDevice);

        var report = Assert.Single(model.DebugReports);
        Assert.Equal("free_size_mismatch", report.Check);
        Assert.StartsWith("DMA-API: nic0 0000:01:00.0: device driver frees DMA memory with different size ", report.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Device_access_after_a_strict_unmap_faults()
    {
        var model = DmaModel.Create("x86-iommu-strict");
        var nic = model.Device("nic0");
        var buf = model.AllocRam(4096);
        var dma = model.Map(nic, buf, 0, 4096, DmaDirection.ToDevice);
        model.DeviceRead(nic, dma, 4, out _);
        model.Unmap(nic, dma, 4096, DmaDirection.ToDevice);

        model.DeviceRead(nic, dma, 4, out var fault);

        Assert.NotNull(fault);
        Assert.Equal(FaultReason.Unmapped, fault.Reason);
        Assert.Equal(dma, Assert.Single(model.Faults).Addr);
    }

    [Fact]
    public void A_machine_file_with_base_overrides_a_device_mask()
    {
        var dir = Directory.CreateTempSubdirectory("physdma-example-").FullName;
        var path = Path.Combine(dir, "my-board.yaml");
        File.WriteAllText(path, "base: x86-noiommu\ndevices:\n  - { name: nic0, dma_mask: 32 }\n");

        var model = DmaModel.Create(path);

        Assert.Equal("my-board", model.Name);
        Assert.Equal(0xffffffffUL, model.Device("nic0").DmaMask);
        Assert.Equal(65536UL, model.Device("nic0").MaxSegSize); // kept from the base machine
    }
}
