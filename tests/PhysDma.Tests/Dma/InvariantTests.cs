using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>Spec §10 invariants 1, 2, 5, 6, 7 and 10, and DESIGN invariants 1 and 2 (measured with counters).</summary>
public sealed class InvariantTests
{
    // Invariant 1: dma_map_page_attrs with MMIO is ERROR with no trace; dma_unmap_page_attrs with MMIO changes nothing.
    [Fact]
    public void Inv1_map_page_mmio_error_unmap_page_mmio_no_op()
    {
        var r = Arm64();
        var log = r.CacheLog();
        var page = new Page(new PhysAddr(0x9000_0000).Pfn(r.Machine.PageShift));
        Assert.Equal(DmaAddr.MappingError, r.Api.MapPage(r.Dev, page, 0x80, 64, DmaDirection.FromDevice, DmaAttrs.Mmio));
        r.Api.UnmapPage(r.Dev, new DmaAddr(0x9000_0080), 64, DmaDirection.FromDevice, DmaAttrs.Mmio);
        Assert.Empty(r.Api.Trace.Records);
        Assert.Empty(log);
        Assert.Empty(r.LogText);
    }

    // Invariant 2: dma_map_resource(p) == dma_map_phys(p, attrs | MMIO), trace attrs contain MMIO.
    [Theory]
    [InlineData(0xd000_0000UL, 32)]
    [InlineData(0x10_0000_0000UL, 64)]
    [InlineData(0x10_0000_0000UL, 32)]
    public void Inv2_map_resource_is_map_phys_with_mmio(ulong bar, int maskBits)
    {
        var r1 = X86Nic(d => d with { DmaMaskBits = maskBits });
        var r2 = X86Nic(d => d with { DmaMaskBits = maskBits });
        var a1 = r1.Api.MapResource(r1.Dev, new PhysAddr(bar), 8192, DmaDirection.Bidirectional, DmaAttrs.None);
        var a2 = r2.Api.MapPhys(r2.Dev, new PhysAddr(bar), 8192, DmaDirection.Bidirectional, DmaAttrs.Mmio);
        Assert.Equal(a2, a1);
        Assert.Equal(r2.Api.Trace.Records.Single().Payload, r1.Api.Trace.Records.Single().Payload);
        Assert.EndsWith(" attrs=MMIO", r1.Api.Trace.Records.Single().Payload, StringComparison.Ordinal);
        Assert.Equal(r2.LogText, r1.LogText);
    }

    // Invariant 5: dma_mask == NULL gives ERROR with no backend call.
    [Fact]
    public void Inv5_null_mask_no_backend_call()
    {
        var r = Arm64Nic(d => d with { DmaMaskBits = null });
        var log = r.CacheLog();
        r.Api.Recorder = new DmaRecorder();
        var before = r.Counters.Snapshot();
        Assert.Equal(DmaAddr.MappingError, r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0000), 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(DmaPath.None, r.Api.Recorder.Path);
        Assert.Empty(log);
        Assert.Empty(r.Api.Trace.Records);
        Assert.Equal(default, r.Counters.Snapshot() - before);
    }

    // Invariant 6: an MMIO mapping via dma-direct is exactly phys (no offset, no encryption bit) or ERROR.
    [Theory]
    [InlineData(0x1000UL)]
    [InlineData(0xd000_0000UL)]
    [InlineData(0xd000_0ff8UL)]
    [InlineData(0x10_0000_0000UL)]
    public void Inv6_mmio_is_phys_verbatim_despite_ranges_and_encryption(ulong phys)
    {
        var r = Build(X86Config(Nic64 with { DmaRanges = [new DmaRangeConfig(0, 0x8000_0000, 2 * GiB)] }, Gpu(X86Bar))
            with
        { MemEncryptBit = 1UL << 47 });
        Assert.Equal(new DmaAddr(phys), r.Api.MapPhys(r.Dev, new PhysAddr(phys), 8, DmaDirection.ToDevice, DmaAttrs.Mmio));
    }

    [Fact]
    public void Inv6_the_issue_example_ram_gets_offset_mmio_does_not()
    {
        var r = X86Nic(d => d with { DmaRanges = [new DmaRangeConfig(0, 0x8000_0000, 2 * GiB)] });
        Assert.Equal(new DmaAddr(0x8000_1000), r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(new DmaAddr(0x1000), r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Equal(new PhysAddr(0x1000), r.Api.Direct.DmaToPhys(r.Dev, new DmaAddr(0x8000_1000)));
        Assert.Equal(PhysAddr.Invalid, r.Api.Direct.DmaToPhys(r.Dev, new DmaAddr(0x1000)));
    }

    [Fact]
    public void Inv6_mmio_with_force_bounce_is_error_never_a_swiotlb_address()
    {
        var r = Build(X86Config(Nic64 with { ForceBounce = true }, Gpu(X86Bar)) with { Swiotlb = Swiotlb64M });
        Assert.Equal(DmaAddr.MappingError, r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.DoesNotContain(r.LogText, l => l.Contains("SWIOTLB", StringComparison.Ordinal));
    }

    // Invariant 7 and DESIGN invariant 1: no MMIO map or unmap calls an arch cache hook, swiotlb, or the kernel mappings.
    [Theory]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    [InlineData(DmaDirection.Bidirectional)]
    public void Inv7_mmio_map_unmap_non_coherent_no_cache_hook_no_swiotlb_no_kernel_mappings(DmaDirection dir)
    {
        var r = Build(Arm64Config() with { Swiotlb = Swiotlb64M });
        var log = r.CacheLog();
        var before = r.Counters.Snapshot();

        var a = r.Api.MapPhys(r.Dev, ArmBar + 0x1000, 4096, dir, DmaAttrs.Mmio);
        Assert.Equal(Errno.None, r.Api.MappingError(r.Dev, a));
        r.Api.UnmapPhys(r.Dev, a, 4096, dir, DmaAttrs.Mmio);
        var b = r.Api.MapResource(r.Dev, HighBar, 64, dir, DmaAttrs.None);
        Assert.Equal(Errno.None, r.Api.MappingError(r.Dev, b));
        r.Api.UnmapResource(r.Dev, b, 64, dir, DmaAttrs.None);

        Assert.Equal(new DmaAddr(0x4000_1000), a);
        Assert.Equal(new DmaAddr(0x10_0000_0000), b);
        Assert.Empty(log);
        Assert.Equal(0, r.Machine.ArchCache.OpsOnNonRam);
        Assert.DoesNotContain(r.Api.Trace.Records, t => t.Event == "swiotlb_bounced");
        Assert.Empty(r.LogText);
        var d = r.Counters.Snapshot() - before;
        // The only struct page look-up is dma_map_resource's own pfn_valid (debug build), outside the inner path.
        Assert.Equal(new CounterSnapshot(0, 0, 1, 0, 0), d);
    }

    [Fact]
    public void Inv1_design_mmio_map_unmap_sync_coherent_device_touches_no_kernel_mapping_or_struct_page()
    {
        var r = X86();
        var before = r.Counters.Snapshot();
        var a = r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.Bidirectional, DmaAttrs.Mmio);
        r.Api.SyncSingleForCpu(r.Dev, a, 4096, DmaDirection.Bidirectional);
        r.Api.SyncSingleForDevice(r.Dev, a, 4096, DmaDirection.Bidirectional);
        r.Api.UnmapPhys(r.Dev, a, 4096, DmaDirection.Bidirectional, DmaAttrs.Mmio);
        Assert.Equal(new DmaAddr(0xd000_0000), a);
        Assert.Equal(default, r.Counters.Snapshot() - before);
    }

    [Fact]
    public void Inv1_design_a_kernel_mapping_of_the_mmio_address_would_throw()
    {
        var r = X86();
        Assert.Equal(new DmaAddr(0xd000_0000), r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
        var e = Assert.Throws<ModelViolation>(() => r.Machine.Kmap.PhysToVirt(X86Bar));
        Assert.Contains("not RAM", e.Message, StringComparison.Ordinal);
        Assert.Throws<ModelViolation>(() => r.Machine.Kmap.KmapLocalPfn(X86Bar.Pfn(r.Machine.PageShift)));
        Assert.Throws<ModelViolation>(() => r.Machine.MemMap.PhysToPage(X86Bar));
        Assert.False(r.Machine.MemMap.PfnValid(X86Bar.Pfn(r.Machine.PageShift)));
    }

    [Fact]
    public void Sync_of_an_mmio_mapping_on_non_coherent_device_does_cache_ops_on_non_ram()
    {
        // Syncs carry no attrs (spec §1.6): dma-direct cannot know the address is MMIO. The model counts it.
        var r = Arm64();
        var log = r.CacheLog();
        var a = r.Api.MapPhys(r.Dev, ArmBar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio);
        r.Api.SyncSingleForDevice(r.Dev, a, 4096, DmaDirection.ToDevice);
        Assert.Equal([new CacheOp(CacheOpKind.Clean, ArmBar, 4096, false)], log);
        Assert.Equal(1, r.Machine.ArchCache.OpsOnNonRam);
    }

    // DESIGN invariant 2 / issue: the common path reads no struct page and makes no kernel mapping.
    [Theory]
    [InlineData(0x1000UL, DmaDirection.ToDevice)]
    [InlineData(0x4_0000_0000UL, DmaDirection.FromDevice)]
    [InlineData(0xbfff_f000UL, DmaDirection.Bidirectional)]
    public void Inv2_design_common_path_zero_page_touches_zero_kernel_mappings(ulong phys, DmaDirection dir)
    {
        var r = X86();
        var before = r.Counters.Snapshot();
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(phys), 4096, dir, DmaAttrs.None);
        var afterMap = r.Counters.Snapshot();
        r.Api.UnmapPhys(r.Dev, a, 4096, dir, DmaAttrs.None);
        var afterUnmap = r.Counters.Snapshot();

        Assert.Equal(new DmaAddr(phys), a);
        Assert.Equal(default, afterMap - before);
        Assert.Equal(default, afterUnmap - afterMap);
        Assert.Equal(0, afterUnmap.PageReads - before.PageReads);
        Assert.Equal(0, afterUnmap.KernelMappings - before.KernelMappings);
    }

    [Fact]
    public void Inv2_design_common_path_coherent_arm64_device_also_zero()
    {
        var r = Arm64Nic(d => d with { Coherent = true });
        var before = r.Counters.Snapshot();
        var a = r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0000), 4096, DmaDirection.FromDevice, DmaAttrs.None);
        r.Api.SyncSingleForCpu(r.Dev, a, 4096, DmaDirection.FromDevice);
        r.Api.UnmapPhys(r.Dev, a, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(default, r.Counters.Snapshot() - before);
    }

    // Invariant 10: non-coherent map(TO_DEVICE) syncs for the device at the address it will read;
    // unmap(FROM_DEVICE) invalidates (before any copy-back).
    [Fact]
    public void Inv10_non_coherent_map_to_device_cleans_unmap_from_device_invalidates()
    {
        var r = Arm64Nic(d => d with { DmaRanges = [new DmaRangeConfig(0x8000_0000, 0x1_0000_0000, 4 * GiB)] });
        var log = r.CacheLog();
        var tx = r.Api.MapPhys(r.Dev, new PhysAddr(0x8800_0040), 1500, DmaDirection.ToDevice, DmaAttrs.None);
        var rx = r.Api.MapPhys(r.Dev, new PhysAddr(0x8900_0000), 2048, DmaDirection.FromDevice, DmaAttrs.None);
        r.Api.UnmapPhys(r.Dev, rx, 2048, DmaDirection.FromDevice, DmaAttrs.None);

        Assert.Equal(new DmaAddr(0x1_0800_0040), tx);
        Assert.Equal(new DmaAddr(0x1_0900_0000), rx);
        Assert.Equal(
            [
                new CacheOp(CacheOpKind.Clean, new PhysAddr(0x8800_0040), 1500, true),
                new CacheOp(CacheOpKind.Clean, new PhysAddr(0x8900_0000), 2048, true),
                new CacheOp(CacheOpKind.Invalidate, new PhysAddr(0x8900_0000), 2048, true),
            ],
            log);
    }
}
