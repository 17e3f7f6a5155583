using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>
/// dma_direct_map_phys, spec §2.4, one test (or theory) per row, in the table's order; rows that end in
/// swiotlb_map land in the boot pool (exact slots are SwiotlbSlotTests' business).
/// </summary>
public sealed class DirectMapTableTests
{

    private const string NoPool = "Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer";

    private static string OverflowText(string dev, ulong dma, ulong size, ulong mask, ulong busLimit) =>
        $"{dev}: DMA addr 0x{dma:x16}+{size} overflow (mask {mask:x}, bus limit {busLimit:x}).";

    // Row 1: force_bounce, MMIO => ERROR through the overflow WARN, swiotlb never asked.
    [Fact]
    public void Row1_force_bounce_mmio_fails_with_overflow_warn_without_swiotlb()
    {
        var r = X86Nic(d => d with { ForceBounce = true });
        var a = r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio);

        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Equal([OverflowText(Nic, 0, 4096, ulong.MaxValue, 0)], r.LogText);
        Assert.DoesNotContain(r.Api.Trace.Records, t => t.Event == "swiotlb_bounced");
        // The failed map still passed the mask check, so its trace record is there.
        var rec = Assert.Single(r.Api.Trace.Records);
        Assert.Equal("nic0 dir=TO_DEVICE dma_addr=ffffffffffffffff size=4096 phys_addr=d0000000 attrs=MMIO", rec.Payload);
    }

    // Row 2: force_bounce, RAM => swiotlb_map. With swiotlb off there is no pool: ERROR with the no-pool message.
    [Fact]
    public void Row2_force_bounce_ram_goes_to_swiotlb_no_pool_fails()
    {
        var r = X86Nic(d => d with { ForceBounce = true });
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x10_0000), 512, DmaDirection.FromDevice, DmaAttrs.None);

        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Equal([$"nic0: {NoPool}"], r.LogText);
        Assert.Equal(["swiotlb_bounced", "dma_map_phys"], r.Api.Trace.Records.Select(t => t.Event));
        Assert.Equal("dev_name: nic0 dma_mask=ffffffffffffffff dev_addr=100000 size=512 FORCE", r.Api.Trace.Records[0].Payload);
    }

    [Fact]
    public void Row2_machine_wide_force_also_bounces()
    {
        var r = Build(X86Config() with { Swiotlb = Swiotlb64M with { Force = true } });
        Assert.True(r.Api.Swiotlb.IsForceBounce(r.Dev));
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x10_0000), 512, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.True(r.Api.Swiotlb.IsSwiotlbBuffer(r.Dev, new PhysAddr(a.Value)));
        Assert.NotEqual(new DmaAddr(0x10_0000), a);
    }

    // Row 3: MMIO, capable (is_ram = false) => dma = phys, no cache sync, kmalloc bouncing ignored.
    [Theory]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    [InlineData(DmaDirection.Bidirectional)]
    public void Row3_mmio_capable_is_phys_verbatim_no_cache_ops_on_non_coherent_device(DmaDirection dir)
    {
        var r = Arm64();
        var log = r.CacheLog();
        // 64 bytes FROM_DEVICE would need a kmalloc bounce if it were RAM: MMIO ignores that rule.
        var a = r.Api.MapPhys(r.Dev, ArmBar + 0x40, 64, dir, DmaAttrs.Mmio);

        Assert.Equal(new DmaAddr(0x4000_0040), a);
        Assert.Empty(log);
        Assert.Empty(r.LogText);
    }

    [Fact]
    public void Row3_mmio_capable_at_exact_mask_boundary()
    {
        // 32-bit mask: [0xfffff000, 0xffffffff] is capable, one more byte is not.
        var r = X86Nic(d => d with { DmaMaskBits = 32 });
        Assert.Equal(new DmaAddr(0xffff_f000), r.Api.MapPhys(r.Dev, new PhysAddr(0xffff_f000), 0x1000, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.True(r.Api.MapPhys(r.Dev, new PhysAddr(0xffff_f000), 0x1001, DmaDirection.ToDevice, DmaAttrs.Mmio).IsError);
    }

    // Row 4: MMIO, not capable => overflow WARN, ERROR, swiotlb never tried (even with a swiotlb configured).
    [Fact]
    public void Row4_mmio_not_capable_fails_without_trying_swiotlb()
    {
        var r = Build(X86Config(Nic64 with { DmaMaskBits = 32 }, Gpu(X86Bar)) with { Swiotlb = Swiotlb64M });
        var a = r.Api.MapPhys(r.Dev, HighBar, 4096, DmaDirection.FromDevice, DmaAttrs.Mmio);

        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Equal([OverflowText(Nic, 0x10_0000_0000, 4096, 0xffff_ffff, 0)], r.LogText);
        Assert.Equal(["dma_map_phys"], r.Api.Trace.Records.Select(t => t.Event));
        Assert.Equal(0L, r.Api.Swiotlb.SlotsUsed);
    }

    [Fact]
    public void Row4_mmio_bus_dma_limit_also_binds()
    {
        var r = X86Nic(d => d with { BusDmaLimit = 0xffff_ffff });
        Assert.True(r.Api.MapPhys(r.Dev, HighBar, 4096, DmaDirection.FromDevice, DmaAttrs.Mmio).IsError);
        Assert.Equal([OverflowText(Nic, 0x10_0000_0000, 4096, ulong.MaxValue, 0xffff_ffff)], r.LogText);
    }

    [Fact]
    public void Overflow_warn_is_once_per_call_site()
    {
        var r = X86Nic(d => d with { DmaMaskBits = 32 });
        Assert.True(r.Api.MapPhys(r.Dev, HighBar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio).IsError);
        Assert.True(r.Api.MapPhys(r.Dev, new PhysAddr(5 * GiB), 4096, DmaDirection.ToDevice, DmaAttrs.None).IsError);
        Assert.Single(r.LogText);
        Assert.Equal(2, r.Api.Trace.Count);
    }

    // Row 5: RAM, capable, no kmalloc bounce => phys_to_dma, arch_sync_dma_for_device iff non-coherent and no SKIP_CPU_SYNC.
    [Fact]
    public void Row5_ram_capable_coherent_is_phys_to_dma_no_cache_ops()
    {
        var r = X86();
        var log = r.CacheLog();
        Assert.Equal(new DmaAddr(0x2_0000_1234), r.Api.MapPhys(r.Dev, new PhysAddr(0x2_0000_1234), 100, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Empty(log);
        Assert.Empty(r.LogText);
    }

    [Theory]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    [InlineData(DmaDirection.Bidirectional)]
    public void Row5_ram_capable_non_coherent_cleans_exact_range(DmaDirection dir)
    {
        var r = Arm64();
        var log = r.CacheLog();
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0100), 4096, dir, DmaAttrs.None);

        Assert.Equal(new DmaAddr(0x9000_0100), a);
        Assert.Equal([new CacheOp(CacheOpKind.Clean, new PhysAddr(0x9000_0100), 4096, true)], log);
    }

    [Fact]
    public void Row5_ram_capable_non_coherent_skip_cpu_sync_no_cache_ops()
    {
        var r = Arm64();
        var log = r.CacheLog();
        Assert.Equal(new DmaAddr(0x9000_0000), r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0000), 4096, DmaDirection.ToDevice, DmaAttrs.SkipCpuSync));
        Assert.Empty(log);
    }

    [Fact]
    public void Row5_ram_with_dma_ranges_adds_bus_offset()
    {
        var r = Arm64Nic(d => d with { DmaRanges = [new DmaRangeConfig(0x8000_0000, 0, 4 * GiB)] });
        var log = r.CacheLog();
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0100), 256, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(new DmaAddr(0x1000_0100), a);
        // The clean names the CPU physical address, not the bus address.
        Assert.Equal([new CacheOp(CacheOpKind.Clean, new PhysAddr(0x9000_0100), 256, true)], log);
    }

    [Fact]
    public void Row6_ram_not_capable_bounces_below_the_mask()
    {
        var r = Build(X86Config(Nic64 with { DmaMaskBits = 32 }, Gpu(X86Bar)) with { Swiotlb = Swiotlb64M });
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(4 * GiB), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        // Not forced: the trace says so; the slot is the pool's first, below 4 GiB.
        Assert.Equal(new DmaAddr(0xbc00_0000), a);
        Assert.Empty(r.LogText);
        Assert.Equal("dev_name: nic0 dma_mask=ffffffff dev_addr=100000000 size=4096 NORMAL", r.Api.Trace.Records[0].Payload);
        Assert.Equal(2L, r.Api.Swiotlb.SlotsUsed);
    }

    [Fact]
    public void Row6_kmalloc_bounce_non_coherent_small_from_device_bounces()
    {
        var r = Build(Arm64Config() with { Swiotlb = Swiotlb64M });
        var log = r.CacheLog();
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0040), 64, DmaDirection.FromDevice, DmaAttrs.None);
        // min_align_mask 0: the bounce keeps no offset; the slot is cleaned (not the original).
        Assert.True(r.Api.Swiotlb.IsSwiotlbBuffer(r.Dev, new PhysAddr(a.Value)));
        Assert.Equal([new CacheOp(CacheOpKind.Clean, new PhysAddr(a.Value), 64, true)], log);
        Assert.Empty(r.LogText);
    }

    // Row 7: RAM, not capable (or kmalloc bounce), no swiotlb => overflow WARN, ERROR, no cache ops.
    [Fact]
    public void Row7_ram_not_capable_no_swiotlb_overflow_warn()
    {
        var r = X86Nic(d => d with { DmaMaskBits = 32 });
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(4 * GiB), 4096, DmaDirection.ToDevice, DmaAttrs.None);

        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Equal([OverflowText(Nic, 0x1_0000_0000, 4096, 0xffff_ffff, 0)], r.LogText);
        Assert.Equal("nic0 dir=TO_DEVICE dma_addr=ffffffffffffffff size=4096 phys_addr=100000000 attrs=", r.Api.Trace.Records.Single().Payload);
    }

    [Fact]
    public void Row7_ram_last_capable_byte()
    {
        var r = X86Nic(d => d with { DmaMaskBits = 32 });
        // 3 GiB of low RAM ends at 0xc0000000: a map ending at 0xbfffffff is capable under a 32-bit mask.
        Assert.Equal(new DmaAddr(0xbfff_f000), r.Api.MapPhys(r.Dev, new PhysAddr(0xbfff_f000), 0x1000, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Empty(r.LogText);
    }

    [Fact]
    public void Row7_ram_bus_dma_limit_with_wide_mask()
    {
        var r = X86Nic(d => d with { BusDmaLimit = 0xffff_ffff });
        Assert.Equal(new DmaAddr(0xbfff_f000), r.Api.MapPhys(r.Dev, new PhysAddr(0xbfff_f000), 0x1000, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.True(r.Api.MapPhys(r.Dev, new PhysAddr(4 * GiB), 8, DmaDirection.ToDevice, DmaAttrs.None).IsError);
        Assert.Equal([OverflowText(Nic, 0x1_0000_0000, 8, ulong.MaxValue, 0xffff_ffff)], r.LogText);
    }

    [Fact]
    public void Row7_ram_outside_every_dma_range_is_not_capable()
    {
        // __phys_to_dma gives DMA_MAPPING_ERROR for a phys no range covers, and dma_capable refuses that.
        var r = X86Nic(d => d with { DmaRanges = [new DmaRangeConfig(0, 0x8000_0000, 2 * GiB)] });
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x8000_0000), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Equal([OverflowText(Nic, ulong.MaxValue, 4096, ulong.MaxValue, 0)], r.LogText);
    }

    [Fact]
    public void Row7_not_capable_swiotlb_off_overflow_warn_no_cache_ops()
    {
        var r = Build(Arm64Config(Nic64 with { DmaMaskBits = 32 }) with { Swiotlb = null });
        var log = r.CacheLog();
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x1_0000_0000), 64, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Empty(log);
        Assert.Equal([OverflowText(Nic, 0x1_0000_0000, 64, 0xffff_ffff, 0)], r.LogText);
    }

    [Fact]
    public void Mmio_ignores_dma_ranges_and_encryption_bit_ram_gets_both()
    {
        var r = Build(X86Config(Nic64 with { DmaRanges = [new DmaRangeConfig(0, 0x8000_0000, 2 * GiB)] }, Gpu(X86Bar))
            with
        { MemEncryptBit = 1UL << 47 });
        Assert.Equal(new DmaAddr(0x8000_8000_1000), r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(new DmaAddr(0x1000), r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
    }
}
