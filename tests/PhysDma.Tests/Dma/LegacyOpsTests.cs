using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>Routes (c), (d) and (e) of spec §1.3: devices with their own dma_map_ops.</summary>
public sealed class LegacyOpsTests
{
    private static Rig WithOps(DeviceOpsKind kind) => X86Nic(d => d with { Ops = kind });

    [Fact]
    public void Route_d_mmio_without_map_resource_error_without_hooks()
    {
        var r = WithOps(DeviceOpsKind.LegacyNoResource);
        var before = r.Counters.Snapshot();

        Assert.Equal(DmaAddr.MappingError, r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Equal(DmaAddr.MappingError, r.Api.MapResource(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.None));

        Assert.Empty(r.Api.Trace.Records);
        Assert.Empty(r.LogText);
        // No phys_to_page for MMIO, even on the legacy route (only the wrapper's pfn_valid ran).
        Assert.Equal(new CounterSnapshot(0, 0, 1, 0, 0), r.Counters.Snapshot() - before);
    }

    [Fact]
    public void Route_d_mmio_with_map_resource_is_phys_traced()
    {
        var r = WithOps(DeviceOpsKind.Legacy);
        r.Api.Recorder = new DmaRecorder();
        var before = r.Counters.Snapshot();

        Assert.Equal(new DmaAddr(0xd000_0000), r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));

        Assert.Equal(DmaPath.Ops, r.Api.Recorder.Path);
        Assert.Equal("nic0 dir=TO_DEVICE dma_addr=d0000000 size=4096 phys_addr=d0000000 attrs=MMIO", r.Api.Trace.Records.Single().Payload);
        Assert.Equal(default, r.Counters.Snapshot() - before);
    }

    [Fact]
    public void Route_d_map_resource_checks_capability()
    {
        var r = X86Nic(d => d with { Ops = DeviceOpsKind.Legacy, DmaMaskBits = 32 });
        Assert.True(r.Api.MapPhys(r.Dev, HighBar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio).IsError);
        // ops->map_resource failed: the hooks still ran (route d with a callback is not the hook-less path).
        Assert.Single(r.Api.Trace.Records);
    }

    [Fact]
    public void Route_e_ram_goes_through_map_page_counting_phys_to_page()
    {
        var r = WithOps(DeviceOpsKind.LegacyNoResource);
        r.Api.Recorder = new DmaRecorder();
        var before = r.Counters.Snapshot();

        Assert.Equal(new DmaAddr(0x1_0000_0800), r.Api.MapPhys(r.Dev, new PhysAddr(0x1_0000_0800), 512, DmaDirection.FromDevice, DmaAttrs.None));

        Assert.Equal(DmaPath.Ops, r.Api.Recorder.Path);
        Assert.Equal(new CounterSnapshot(0, 1, 0, 0, 0), r.Counters.Snapshot() - before);
    }

    [Fact]
    public void Route_e_map_page_adds_bus_offset()
    {
        var r = X86Nic(d => d with { Ops = DeviceOpsKind.Legacy, DmaRanges = [new DmaRangeConfig(0, 0x8000_0000, 2 * GiB)] });
        Assert.Equal(new DmaAddr(0x8000_1000), r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(new DmaAddr(0xd000_0000), r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
    }

    [Fact]
    public void Route_c_phys_ops_no_phys_to_page_mmio_is_phys()
    {
        var r = WithOps(DeviceOpsKind.Phys);
        var before = r.Counters.Snapshot();
        Assert.Equal(new DmaAddr(0x5000), r.Api.MapPhys(r.Dev, new PhysAddr(0x5000), 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(new DmaAddr(0xd000_0000), r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Equal(default, r.Counters.Snapshot() - before);
        Assert.Equal(2, r.Api.Trace.Count);
    }

    [Fact]
    public void Unmap_mmio_on_ops_without_unmap_resource_does_nothing_but_is_traced()
    {
        var r = Arm64Nic(d => d with { Ops = DeviceOpsKind.LegacyNoResource });
        var log = r.CacheLog();
        r.Api.UnmapPhys(r.Dev, new DmaAddr(ArmBar.Value), 4096, DmaDirection.FromDevice, DmaAttrs.Mmio);
        Assert.Empty(log);
        Assert.Equal("nic0 dir=FROM_DEVICE dma_addr=40000000 size=4096 attrs=MMIO", r.Api.Trace.Records.Single().Payload);
    }

    [Fact]
    public void Ops_non_coherent_map_cleans_unmap_invalidates()
    {
        var r = Arm64Nic(d => d with { Ops = DeviceOpsKind.Legacy });
        var log = r.CacheLog();
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0000), 4096, DmaDirection.FromDevice, DmaAttrs.None);
        r.Api.UnmapPhys(r.Dev, a, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(
            [
                new CacheOp(CacheOpKind.Clean, new PhysAddr(0x9000_0000), 4096, true),
                new CacheOp(CacheOpKind.Invalidate, new PhysAddr(0x9000_0000), 4096, true),
            ],
            log);
    }

    [Fact]
    public void Ops_always_need_unmap_and_sync()
    {
        var r = Build(X86Config(Nic64 with { Ops = DeviceOpsKind.Legacy }) with { Debug = false });
        Assert.True(r.Api.NeedUnmap(r.Dev));
        // Ops with sync callbacks: dma_skip_sync stays false even for a coherent device.
        Assert.False(r.Dev.DmaSkipSync);
        Assert.True(r.Api.NeedSync(r.Dev, new DmaAddr(0x1000)));
        Assert.Equal(ulong.MaxValue, r.Api.MaxMappingSize(r.Dev));
    }
}
