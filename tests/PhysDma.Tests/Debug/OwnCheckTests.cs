using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using PhysDma.Tests.Iommu;

using PhysDma.Tests.Scenarios;

namespace PhysDma.Tests.Debug;

/// <summary>PhysDma's own checks, beyond the kernel's: never counted in error_count, never printed.</summary>
public class OwnCheckTests
{
    private static DebugReport Own(DmaDebug d, string check)
    {
        var r = Assert.Single(d.Reports);
        Assert.Equal(check, r.Check);
        Assert.False(r.Kernel);
        Assert.False(r.Printed);
        Assert.Equal(0u, d.ErrorCount);
        return r;
    }

    [Fact]
    public void Mmio_without_attr()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        d.CurrentSite = "step 3";
        api.MapChecked(api.Dev(), DebugMachines.BarBase + 0x1000, 256, DmaDirection.ToDevice);
        var r = Own(d, "mmio_without_attr");
        Assert.Equal("PhysDma: nic0: maps device memory as RAM: [phys=0x0000003800001000] [size=256 bytes] lies in 'nic0 BAR 0' " +
            "but the mapping has no DMA_ATTR_MMIO, so the DMA layer may do cache maintenance, bounce it or take a kernel mapping of it", r.Message);
        Assert.Equal("step 3", r.MappedAt);
        Assert.Empty(api.Log.Lines);
    }

    [Fact]
    public void Mmio_with_attr_and_ram_without_are_fine()
    {
        var api = DebugMachines.X86();
        api.MapChecked(api.Dev(), DebugMachines.BarBase, 256, DmaDirection.ToDevice, DmaAttrs.Mmio);
        api.MapChecked(api.Dev(), 0x100000, 256, DmaDirection.ToDevice);
        Assert.Empty(api.Dbg().Reports);
    }

    [Fact]
    public void Ram_with_mmio_attr()
    {
        var api = DebugMachines.X86();
        api.MapChecked(api.Dev(), 0x100000, 4096, DmaDirection.FromDevice, DmaAttrs.Mmio);
        var r = Own(api.Dbg(), "ram_with_mmio_attr");
        Assert.StartsWith("PhysDma: nic0: maps RAM as MMIO: [phys=0x0000000000100000] [size=4096 bytes] lies in '", r.Message);
        Assert.EndsWith("but the mapping has DMA_ATTR_MMIO, so it gets no cache maintenance and no bounce buffer", r.Message);
    }

    [Fact]
    public void Cache_op_on_mmio_a_sync_of_an_mmio_mapping_on_a_non_coherent_device()
    {
        var api = DebugMachines.Arm64();
        var dev = api.Dev("dev0");
        var d = api.Dbg();
        var a = api.MapChecked(dev, DebugMachines.BarBase, 128, DmaDirection.FromDevice, DmaAttrs.Mmio);
        Assert.Empty(d.Reports);
        api.SyncSingleForCpu(dev, a, 128, DmaDirection.FromDevice);
        var r = Own(d, "cache_op_on_mmio");
        Assert.Equal("PhysDma: dev0: sync for cpu of [device address=0x0000003800000000] [size=128 bytes] did 1 CPU cache maintenance " +
            "operation(s) on memory that is not RAM (a mapping made with DMA_ATTR_MMIO): syncs carry no attributes", r.Message);
    }

    [Fact]
    public void Cache_op_on_mmio_a_sync_sg_of_a_host_bridge_P2P_segment_names_that_segment()
    {
        // dma-direct maps the host-bridge P2P segment as RAM; the syncs then clean/invalidate the GPU's BAR.
        var file = Path.Combine(ScenarioTestKit.RepoRoot, "tests", "PhysDma.Tests", "Misuse", "cache_op_on_mmio.arm64.p2p-sg-synced.yaml");
        var r = ScenarioTestKit.Run(File.ReadAllText(file), file);
        var debug = r.Json["debug"]!.AsArray().Select(e => (Step: e!["step"]!.GetValue<int>(), Message: e["message"]!.GetValue<string>())).ToList();
        Assert.Equal(
            [
                (3, "PhysDma: nic0: sync_sg for cpu of [device address=0x0000000040000000] [size=8192 bytes] did 1 CPU cache maintenance " +
                    "operation(s) on memory that is not RAM (a mapping made without DMA_ATTR_MMIO): syncs carry no attributes"),
                (4, "PhysDma: nic0: sync_sg for device of [device address=0x0000000040000000] [size=8192 bytes] did 1 CPU cache maintenance " +
                    "operation(s) on memory that is not RAM (a mapping made without DMA_ATTR_MMIO): syncs carry no attributes"),
            ],
            debug);
    }

    [Fact]
    public void Cpu_read_while_device_owns_every_segment_of_a_merged_iommu_list_follows_syncs_and_unmap()
    {
        // Two CPU segments merged into one IOVA segment: dma-debug has one entry (CPU segment 0 paired with
        // the merged DMA segment); the second CPU segment is still the device's until the sync or unmap.
        var r = ScenarioTestKit.Run("""
            machine: default
            steps:
              - { op: alloc, name: a, size: 4KiB, kind: ram }
              - { op: alloc, name: b, size: 4KiB, kind: ram, phys: 0x200000 }
              - { op: map_sg, dev: nvme0, segments: [{ buf: a, size: 4096 }, { buf: b, size: 4096 }], dir: from_device, as: req, expect: { nents: 1 } }
              - { op: cpu_read, buf: b, offset: 512, len: 16 }
              - { op: sync_sg, handle: req, for: cpu }
              - { op: cpu_read, buf: b, offset: 512, len: 16 }
              - { op: sync_sg, handle: req, for: device }
              - { op: cpu_read, buf: b, len: 4096 }
              - { op: unmap_sg, handle: req }
              - { op: cpu_read, buf: b, len: 4096 }
              - { op: map_sg, dev: nvme0, segments: [{ buf: a, size: 4096 }, { buf: b, size: 4096 }], dir: to_device, as: again }
              - { op: cpu_read, buf: b, len: 16 }
              - { op: unmap_sg, handle: again }
            """);
        var debug = r.Json["debug"]!.AsArray().Select(e => (Step: e!["step"]!.GetValue<int>(), Check: e["check"]!.GetValue<string>(),
            Message: e["message"]!.GetValue<string>())).ToList();
        Assert.Equal([3, 7], debug.Select(d => d.Step));
        Assert.All(debug, d => Assert.Equal("cpu_read_while_device_owns", d.Check));
        Assert.Equal("PhysDma: nvme0: CPU reads [phys=0x0000000000200200] [len=16] while the device owns it: [device address=0x00000000bfffe000] " +
            "[size=8192 bytes] is mapped DMA_FROM_DEVICE as scatter-gather and was not synced for the cpu or unmapped first", debug[0].Message);
    }

    [Fact]
    public void Cache_op_on_mmio_not_on_a_coherent_device()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, DebugMachines.BarBase, 128, DmaDirection.FromDevice, DmaAttrs.Mmio);
        api.SyncSingleForCpu(dev, a, 128, DmaDirection.FromDevice);
        Assert.Empty(api.Dbg().Reports);
    }

    [Fact]
    public void Cpu_read_while_device_owns_from_map_to_sync_for_cpu()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        d.CurrentSite = "rx map";
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.FromDevice);
        Assert.Equal(1, d.CheckCpuAccess(new PhysAddr(0x100ff0), 32, write: false));
        var r = Own(d, "cpu_read_while_device_owns");
        Assert.Equal("PhysDma: nic0: CPU reads [phys=0x0000000000100ff0] [len=32] while the device owns it: [device address=0x0000000000100000] " +
            "[size=4096 bytes] is mapped DMA_FROM_DEVICE as phy and was not synced for the cpu or unmapped first", r.Message);
        Assert.Equal("rx map", r.MappedAt);

        // Outside the buffer: nothing.
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0x101000), 64, write: false));
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0xfffc0), 64, write: false));

        // Synced for the CPU: the CPU owns it; synced back for the device: the device does again.
        api.SyncSingleForCpu(dev, a, 4096, DmaDirection.FromDevice);
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0x100000), 4096, write: false));
        api.SyncSingleForDevice(dev, a, 4096, DmaDirection.FromDevice);
        Assert.Equal(1, d.CheckCpuAccess(new PhysAddr(0x100000), 1, write: false));

        // Unmapped: the CPU's.
        api.UnmapPhys(dev, a, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0x100000), 4096, write: false));
        Assert.Equal(2, d.ReportCount);
    }

    [Fact]
    public void Cpu_read_while_device_owns_bidirectional_and_scatter_gather()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        api.MapChecked(dev, 0x100000, 4096, DmaDirection.Bidirectional);
        var sgt = new SgTable([new ScatterEntry(new PhysAddr(0x300000), 512), new ScatterEntry(new PhysAddr(0x500000), 512)]);
        api.MapSgtable(dev, sgt, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(1, d.CheckCpuAccess(new PhysAddr(0x100000), 8, write: false));
        Assert.Equal(1, d.CheckCpuAccess(new PhysAddr(0x5001f8), 8, write: false));
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0x500200), 8, write: false));
        Assert.Equal(["cpu_read_while_device_owns", "cpu_read_while_device_owns"], d.Checks());
        Assert.Contains("is mapped DMA_FROM_DEVICE as scatter-gather", d.Reports[1].Message);
    }

    [Fact]
    public void Cpu_read_of_a_to_device_buffer_is_fine_but_a_write_is_not()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0x100000), 64, write: false));
        Assert.Equal(1, d.CheckCpuAccess(new PhysAddr(0x100000), 64, write: true));
        var r = Own(d, "cpu_write_while_device_owns");
        Assert.StartsWith("PhysDma: nic0: CPU writes [phys=0x0000000000100000] [len=64] while the device owns it:", r.Message);
        api.SyncSingleForCpu(dev, a, 4096, DmaDirection.ToDevice);
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0x100000), 64, write: true));
    }

    [Fact]
    public void Cpu_access_mmio_and_coherent_buffers_are_not_tracked()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        api.MapChecked(dev, DebugMachines.BarBase, 4096, DmaDirection.FromDevice, DmaAttrs.Mmio);
        d.AllocCoherent(dev, 4096, new DmaAddr(0x200000), api.Machine.Kmap.PhysToVirt(new PhysAddr(0x200000)), DmaAttrs.None);
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(DebugMachines.BarBase), 64, write: false));
        Assert.Equal(0, d.CheckCpuAccess(new PhysAddr(0x200000), 64, write: true));
        Assert.Empty(d.Reports);
    }

    [Fact]
    public void Stale_iotlb_access_is_reported_when_the_lazy_iommu_lets_the_device_through()
    {
        var (m, api) = IommuMachines.Build(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var d = api.Dbg();
        var buf = new PhysAddr(0x100000000);
        var a = api.MapPhys(nic, buf, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(Errno.None, api.MappingError(nic, a));
        Assert.Null(m.DeviceWrite(nic, a + 0x10, new byte[16]));
        api.UnmapPhys(nic, a, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Empty(d.Reports);

        d.CurrentSite = "step 9";
        Assert.Null(m.DeviceWrite(nic, a + 0x10, new byte[16]));
        var r = Own(d, "stale_iotlb_access");
        Assert.Equal($"PhysDma: nic0: device wrote [device address={Hex.Padded16((a + 0x10).Value)}] through a stale IOTLB entry to " +
            "[phys=0x0000000100000010]: the range was unmapped but the IOTLB was not yet flushed, so the device still reached the old memory",
            r.Message);
        Assert.Equal("step 9", r.MappedAt);
        Assert.Equal(1, api.Iommu!.Unit.StaleAccessCount);
    }

    [Fact]
    public void Stale_iotlb_access_never_in_strict_mode()
    {
        var (m, api) = IommuMachines.Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var a = api.MapPhys(nic, new PhysAddr(0x100000000), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.MappingError(nic, a);
        Assert.Null(m.DeviceRead(nic, a, new byte[16]));
        api.UnmapPhys(nic, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.NotNull(m.DeviceRead(nic, a, new byte[16]));
        Assert.Empty(api.Dbg().Reports);
    }

    [Fact]
    public void Iova_mixed_mmio_ram_message()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        d.ReportIovaMixed(api.Dev(), new DmaAddr(0xfff00000), new PhysAddr(DebugMachines.BarBase), 4096, linkIsMmio: true);
        var r = Own(d, "iova_mixed_mmio_ram");
        Assert.Equal("PhysDma: nic0: links MMIO [phys=0x0000003800000000] [size=4096 bytes] into the IOVA range at " +
            "[device address=0x00000000fff00000] that already holds RAM: one IOVA range must be all MMIO or all RAM", r.Message);
    }
}
