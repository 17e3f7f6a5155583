using PhysDma.Core;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>need_sync / skip-sync (dma_need_sync, dma_set_mask), masks and max mapping size (dma_max_mapping_size).</summary>
public sealed class QueryTests
{
    [Fact]
    public void Coherent_skips_sync_unless_debug_is_built_in()
    {
        var off = Build(X86Config() with { Debug = false });
        Assert.True(off.Dev.DmaSkipSync);
        Assert.False(off.Api.DevNeedSync(off.Dev));
        Assert.False(off.Api.NeedSync(off.Dev, new DmaAddr(0x1000)));
        Assert.False(off.Api.NeedUnmap(off.Dev));

        var on = X86();
        Assert.True(on.Dev.DmaSkipSync);
        Assert.True(on.Api.DevNeedSync(on.Dev));
        // Debug makes the slow path run, but dma-direct still says a coherent, unbounced address needs no sync.
        Assert.False(on.Api.NeedSync(on.Dev, new DmaAddr(0x1000)));
        Assert.True(on.Api.NeedUnmap(on.Dev));
    }

    [Fact]
    public void Non_coherent_always_needs_sync()
    {
        var r = Build(Arm64Config() with { Debug = false });
        Assert.False(r.Dev.DmaSkipSync);
        Assert.True(r.Api.DevNeedSync(r.Dev));
        Assert.True(r.Api.NeedSync(r.Dev, new DmaAddr(0x9000_0000)));
        Assert.True(r.Api.NeedUnmap(r.Dev));
    }

    [Fact]
    public void Skipped_sync_does_not_trace()
    {
        var r = Build(X86Config() with { Debug = false });
        r.Api.SyncSingleForCpu(r.Dev, new DmaAddr(0x1000), 64, DmaDirection.FromDevice);
        r.Api.SyncSingleForDevice(r.Dev, new DmaAddr(0x1000), 64, DmaDirection.ToDevice);
        Assert.Empty(r.Api.Trace.Records);
        // ... and an invalid direction is not even looked at on the fast path.
        r.Api.SyncSingleForCpu(r.Dev, new DmaAddr(0x1000), 64, DmaDirection.None);
    }

    [Fact]
    public void Reset_need_sync_is_one_way()
    {
        var r = Build(X86Config() with { Debug = false });
        r.Api.ResetNeedSync(r.Dev);
        Assert.True(r.Api.DevNeedSync(r.Dev));
        r.Api.SyncSingleForDevice(r.Dev, new DmaAddr(0x1000), 64, DmaDirection.ToDevice);
        Assert.Equal("nic0 dir=TO_DEVICE dma_addr=1000 size=64", r.Api.Trace.Records.Single().Payload);
    }

    [Fact]
    public void Set_mask_changes_capability()
    {
        var r = X86();
        Assert.Equal(new DmaAddr(8 * GiB), r.Api.MapPhys(r.Dev, new PhysAddr(8 * GiB), 64, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(Errno.None, r.Api.SetMask(r.Dev, DmaBitMask(32)));
        Assert.Equal(0xffff_ffffUL, r.Dev.DmaMask);
        Assert.True(r.Api.MapPhys(r.Dev, new PhysAddr(8 * GiB), 64, DmaDirection.ToDevice, DmaAttrs.None).IsError);
    }

    [Theory]
    [InlineData(24, Errno.None)] // reaches ZONE_DMA (16 MiB) on x86_64
    [InlineData(23, Errno.EIO)]
    [InlineData(32, Errno.None)]
    [InlineData(64, Errno.None)]
    public void Set_mask_small_masks_must_reach_zone_dma(int bits, object expectedArg)
    {
        var expected = (Errno)expectedArg; // xunit theories are public; the type is internal to PhysDma
        var r = X86();
        var old = r.Dev.DmaMask;
        Assert.Equal(expected, r.Api.SetMask(r.Dev, DmaBitMask(bits)));
        Assert.Equal(expected == Errno.None ? DmaBitMask(bits) : old, r.Dev.DmaMask);
    }

    [Fact]
    public void Required_mask_and_addressing_limited()
    {
        var r = X86();
        // Highest RAM byte is 17 GiB - 1 = 0x43fffffff: 35 bits.
        Assert.Equal(DmaBitMask(35), r.Api.GetRequiredMask(r.Dev));
        Assert.False(r.Api.AddressingLimited(r.Dev));
        var r32 = X86Nic(d => d with { DmaMaskBits = 32 });
        Assert.True(r32.Api.AddressingLimited(r32.Dev));
        var arm = Arm64();
        Assert.Equal(DmaBitMask(33), arm.Api.GetRequiredMask(arm.Dev));
    }

    [Fact]
    public void Max_mapping_size_without_swiotlb_is_unlimited()
    {
        var r = X86Nic(d => d with { DmaMaskBits = 32 });
        Assert.Equal(ulong.MaxValue, r.Api.MaxMappingSize(r.Dev));
        var arm = Arm64();
        Assert.Equal(ulong.MaxValue, arm.Api.MaxMappingSize(arm.Dev));
    }
}
