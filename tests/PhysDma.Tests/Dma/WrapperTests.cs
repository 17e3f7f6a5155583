using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>dma_map_page_attrs, dma_map_single_attrs, dma_map_resource and the dispatch of dma_map_phys around them.</summary>
public sealed class WrapperTests
{
    private static Page PageOf(Rig r, PhysAddr p) => new(p.Pfn(r.Machine.PageShift));

    [Fact]
    public void Map_page_ram_is_map_phys_of_page_plus_offset()
    {
        var r = X86();
        var a = r.Api.MapPage(r.Dev, PageOf(r, new PhysAddr(0x12_3000)), 0x45, 100, DmaDirection.Bidirectional, DmaAttrs.WeakOrdering);
        Assert.Equal(new DmaAddr(0x12_3045), a);
        Assert.Equal("nic0 dir=BIDIRECTIONAL dma_addr=123045 size=100 phys_addr=123045 attrs=WEAK_ORDERING", r.Api.Trace.Records.Single().Payload);
    }

    [Fact]
    public void Map_page_with_mmio_returns_error_no_trace_no_log_no_counters()
    {
        var r = X86();
        var before = r.Counters.Snapshot();
        var a = r.Api.MapPage(r.Dev, PageOf(r, new PhysAddr(0x12_3000)), 0, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio);

        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Empty(r.Api.Trace.Records);
        Assert.Empty(r.LogText);
        Assert.Equal(default, r.Counters.Snapshot() - before);
    }

    [Fact]
    public void Unmap_page_with_mmio_changes_nothing()
    {
        var r = Arm64();
        var log = r.CacheLog();
        var a = r.Api.MapPage(r.Dev, PageOf(r, new PhysAddr(0x9000_0000)), 0, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(new DmaAddr(0x9000_0000), a);
        log.Clear();
        var traces = r.Api.Trace.Count;
        var before = r.Counters.Snapshot();

        r.Api.UnmapPage(r.Dev, a, 4096, DmaDirection.FromDevice, DmaAttrs.Mmio);

        Assert.Empty(log);
        Assert.Equal(traces, r.Api.Trace.Count);
        Assert.Equal(default, r.Counters.Snapshot() - before);

        // The same unmap without MMIO invalidates for the CPU and is traced.
        r.Api.UnmapPage(r.Dev, a, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal([new CacheOp(CacheOpKind.Invalidate, new PhysAddr(0x9000_0000), 4096, true)], log);
        Assert.Equal("nic0 dir=FROM_DEVICE dma_addr=90000000 size=4096 attrs=", r.Api.Trace.Records[^1].Payload);
    }

    [Fact]
    public void Map_resource_adds_mmio_same_as_map_phys_with_mmio()
    {
        var r = X86Nic(d => d with { DmaRanges = [new DmaRangeConfig(0, 0x8000_0000, 2 * GiB)] });
        var viaResource = r.Api.MapResource(r.Dev, X86Bar + 0x100, 64, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync);
        var viaPhys = r.Api.MapPhys(r.Dev, X86Bar + 0x100, 64, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync | DmaAttrs.Mmio);

        Assert.Equal(new DmaAddr(0xd000_0100), viaResource);
        Assert.Equal(viaResource, viaPhys);
        var recs = r.Api.Trace.Records;
        Assert.Equal(2, recs.Count);
        Assert.Equal("nic0 dir=FROM_DEVICE dma_addr=d0000100 size=64 phys_addr=d0000100 attrs=SKIP_CPU_SYNC|MMIO", recs[0].Payload);
        Assert.Equal(recs[0].Payload, recs[1].Payload);
        Assert.All(recs, t => Assert.Equal("dma_map_phys", t.Event));

        r.Api.UnmapResource(r.Dev, viaResource, 64, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal("nic0 dir=FROM_DEVICE dma_addr=d0000100 size=64 attrs=MMIO", r.Api.Trace.Records[^1].Payload);
        Assert.Equal("dma_unmap_phys", r.Api.Trace.Records[^1].Event);
    }

    [Fact]
    public void Map_resource_of_ram_with_debug_fails_with_warn_no_trace()
    {
        var r = X86();
        Assert.True(r.Machine.Config.Debug);
        var a = r.Api.MapResource(r.Dev, new PhysAddr(0x20_0000), 4096, DmaDirection.ToDevice, DmaAttrs.None);

        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Equal(["WARNING: nic0: dma_map_resource: pfn_valid(PHYS_PFN(phys_addr))"], r.LogText);
        Assert.Empty(r.Api.Trace.Records);
    }

    [Fact]
    public void Map_resource_of_ram_without_debug_maps_it_as_mmio()
    {
        var r = Build(X86Config() with { Debug = false });
        var before = r.Counters.Snapshot();
        Assert.Equal(new DmaAddr(0x20_0000), r.Api.MapResource(r.Dev, new PhysAddr(0x20_0000), 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(0, (r.Counters.Snapshot() - before).PfnValid);
        Assert.EndsWith("attrs=MMIO", r.Api.Trace.Records.Single().Payload, StringComparison.Ordinal);
    }

    [Fact]
    public void Map_resource_of_bar_with_debug_asks_pfn_valid_once()
    {
        var r = X86();
        var before = r.Counters.Snapshot();
        Assert.Equal(new DmaAddr(0xd000_0000), r.Api.MapResource(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(new CounterSnapshot(0, 0, 1, 0, 0), r.Counters.Snapshot() - before);
    }

    [Fact]
    public void Map_single_vmalloc_is_refused()
    {
        var r = X86();
        var va = r.Machine.Kmap.Vmap([new PhysAddr(0x30_0000)], cached: true);
        Assert.True(r.Machine.Kmap.IsVmallocAddr(va));

        var a = r.Api.MapSingle(r.Dev, va + 0x10, 64, DmaDirection.ToDevice, DmaAttrs.None);

        Assert.Equal(DmaAddr.MappingError, a);
        Assert.Equal(["WARNING: nic0: rejecting DMA map of vmalloc memory"], r.LogText);
        Assert.Empty(r.Api.Trace.Records);
    }

    [Fact]
    public void Map_single_ioremap_is_vmalloc_too()
    {
        var r = X86();
        var va = r.Machine.Kmap.Ioremap(X86Bar, 4096);
        Assert.True(r.Api.MapSingle(r.Dev, va, 64, DmaDirection.ToDevice, DmaAttrs.None).IsError);
        Assert.Contains("rejecting DMA map of vmalloc memory", r.LogText.Single(), StringComparison.Ordinal);
    }

    [Fact]
    public void Map_single_linear_address_maps_its_phys()
    {
        var r = X86();
        var va = r.Machine.Kmap.PhysToVirt(new PhysAddr(0x1_2345_6789));
        Assert.Equal(new KernelVirt(0xffff_8881_2345_6789), va);
        Assert.Equal(new DmaAddr(0x1_2345_6789), r.Api.MapSingle(r.Dev, va, 32, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Contains("phys_addr=123456789 ", r.Api.Trace.Records.Single().Payload, StringComparison.Ordinal);
        Assert.Empty(r.LogText);
    }

    [Fact]
    public void Map_single_with_mmio_is_error_like_map_page()
    {
        var r = X86();
        var va = r.Machine.Kmap.PhysToVirt(new PhysAddr(0x40_0000));
        Assert.True(r.Api.MapSingle(r.Dev, va, 32, DmaDirection.ToDevice, DmaAttrs.Mmio).IsError);
        Assert.Empty(r.Api.Trace.Records);
    }

    [Fact]
    public void Map_page_zone_device_page_with_debug_is_refused()
    {
        var r = X86();
        r.Machine.MemMap.AddDevicePages(X86Bar, 1 * MiB, "gpu0-p2p");
        var a = r.Api.MapPage(r.Dev, PageOf(r, X86Bar), 0, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.True(a.IsError);
        Assert.Equal(["WARNING: nic0: dma_map_page_attrs: is_zone_device_page(page)"], r.LogText);
        Assert.Empty(r.Api.Trace.Records);
    }

    [Theory]
    [InlineData(ulong.MaxValue, Errno.ENOMEM)]
    [InlineData(ulong.MaxValue - 1, Errno.None)]
    [InlineData(0UL, Errno.None)]
    [InlineData(0x8000_0000UL, Errno.None)]
    public void Mapping_error_is_enomem_only_for_the_error_cookie(ulong addr, object expectedArg)
    {
        var expected = (Errno)expectedArg; // xunit theories are public; the type is internal to PhysDma
        var r = X86();
        Assert.Equal(expected, r.Api.MappingError(r.Dev, new DmaAddr(addr)));
    }

    [Fact]
    public void Null_dma_mask_map_phys_error_without_hooks_or_backend()
    {
        var r = X86Nic(d => d with { DmaMaskBits = null });
        var log = r.CacheLog();
        var before = r.Counters.Snapshot();

        Assert.Equal(DmaAddr.MappingError, r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(DmaAddr.MappingError, r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Equal(DmaAddr.MappingError, r.Api.MapResource(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.None));

        Assert.Empty(r.Api.Trace.Records);
        Assert.Empty(log);
        Assert.Equal(["WARNING: nic0: dma_map_phys: dev->dma_mask is NULL"], r.LogText);
        Assert.Equal(0, (r.Counters.Snapshot() - before).PhysToVirt);
    }

    [Fact]
    public void Null_dma_mask_set_mask_fails_with_eio()
    {
        var r = X86Nic(d => d with { DmaMaskBits = null });
        Assert.False(r.Dev.HasDmaMask);
        Assert.Equal(Errno.EIO, r.Api.SetMask(r.Dev, DmaBitMask(64)));
        Assert.Throws<KernelBug>(() => r.Dev.DmaMask);
    }

    [Theory]
    [InlineData(DmaDirection.None)]
    [InlineData((DmaDirection)7)]
    public void Invalid_direction_is_kernel_bug_even_before_the_mask_check(DmaDirection dir)
    {
        var r = X86();
        Assert.Throws<KernelBug>(() => r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, dir, DmaAttrs.None));
        Assert.Throws<KernelBug>(() => r.Api.UnmapPhys(r.Dev, new DmaAddr(0x1000), 4096, dir, DmaAttrs.None));
        Assert.Throws<KernelBug>(() => r.Api.SyncSingleForCpu(r.Dev, new DmaAddr(0x1000), 4096, dir));
        Assert.Throws<KernelBug>(() => r.Api.SyncSingleForDevice(r.Dev, new DmaAddr(0x1000), 4096, dir));
        Assert.Empty(r.Api.Trace.Records);

        var nullMask = X86Nic(d => d with { DmaMaskBits = null });
        Assert.Throws<KernelBug>(() => nullMask.Api.MapPhys(nullMask.Dev, new PhysAddr(0x1000), 4096, dir, DmaAttrs.None));
        Assert.Empty(nullMask.LogText);
    }

    [Fact]
    public void Every_map_that_passed_the_mask_check_emits_one_record_every_unmap_one()
    {
        var r = X86Nic(d => d with { DmaMaskBits = 32 });
        var ok = r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        var bad = r.Api.MapPhys(r.Dev, new PhysAddr(8 * GiB), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        r.Api.UnmapPhys(r.Dev, ok, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.True(bad.IsError);
        Assert.Equal(["dma_map_phys", "dma_map_phys", "dma_unmap_phys"], r.Api.Trace.Records.Select(t => t.Event));
        Assert.Equal("nic0 dir=TO_DEVICE dma_addr=ffffffffffffffff size=4096 phys_addr=200000000 attrs=", r.Api.Trace.Records[1].Payload);
    }
}
