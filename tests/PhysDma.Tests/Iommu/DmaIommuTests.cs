using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;

namespace PhysDma.Tests.Iommu;

/// <summary>dma-iommu map/unmap/sync (iommu_dma_map_phys, iommu_dma_unmap_phys, iommu_dma_sync_*), device DMA through the IOMMU, prot bits, untrusted bouncing.</summary>
public class DmaIommuTests
{
    private static readonly PhysAddr Buf = new(0x100000000);

    public static TheoryData<DmaDirection, DmaAttrs, int> ProtCases => new()
    {
        { DmaDirection.ToDevice, DmaAttrs.None, IommuProt.Read | IommuProt.Cache },
        { DmaDirection.FromDevice, DmaAttrs.None, IommuProt.Write | IommuProt.Cache },
        { DmaDirection.Bidirectional, DmaAttrs.None, IommuProt.Read | IommuProt.Write | IommuProt.Cache },
        { DmaDirection.ToDevice, DmaAttrs.Privileged, IommuProt.Read | IommuProt.Cache | IommuProt.Priv },
        { DmaDirection.ToDevice, DmaAttrs.Mmio, IommuProt.Read | IommuProt.Mmio },
        { DmaDirection.FromDevice, DmaAttrs.Mmio, IommuProt.Write | IommuProt.Mmio },
        { DmaDirection.Bidirectional, DmaAttrs.Mmio | DmaAttrs.Privileged, IommuProt.Read | IommuProt.Write | IommuProt.Mmio | IommuProt.Priv },
    };

    [Theory]
    [MemberData(nameof(ProtCases))]
    public void Pte_prot_follows_dma_info_to_prot(DmaDirection dir, DmaAttrs attrs, int expected)
    {
        var (m, api) = Build(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var rec = new DmaRecorder();
        api.Recorder = rec;
        var phys = (attrs & DmaAttrs.Mmio) != 0 ? new PhysAddr(0x3800000000) : Buf;
        var before = m.Counters.Snapshot();
        var a = api.MapPhys(nic, phys, 4096, dir, attrs);

        Assert.False(a.IsError);
        Assert.True(api.Iommu!.DomainOf(nic)!.Walk(a.Value, out var pte));
        Assert.Equal(expected, pte.Prot);
        Assert.Equal(expected, rec.IommuProt);
        Assert.Equal(DmaPath.Iommu, rec.Path);
        Assert.Null(rec.Bounce);
        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            // MMIO gets IOMMU_MMIO, never IOMMU_CACHE, and no kernel mapping, no struct page.
            Assert.Equal(0, pte.Prot & IommuProt.Cache);
            var d = m.Counters.Snapshot() - before;
            Assert.Equal(0, d.KernelMappings);
            Assert.Equal(0, d.PageReads);
            Assert.Equal(0, d.PfnValid);
        }
        Assert.Equal(expected, DmaIommu.InfoToProt(dir, coherent: true, attrs));
    }

    [Fact]
    public void Prot_names_and_the_non_coherent_and_none_rows()
    {
        Assert.Equal(["READ", "CACHE"], IommuProt.Names(IommuProt.Read | IommuProt.Cache));
        Assert.Equal(IommuProt.Write, DmaIommu.InfoToProt(DmaDirection.FromDevice, coherent: false, DmaAttrs.None));
        Assert.Equal(0, DmaIommu.InfoToProt(DmaDirection.None, coherent: true, DmaAttrs.Privileged));
        Assert.Equal(IommuProt.Read | IommuProt.Mmio, DmaIommu.InfoToProt(DmaDirection.ToDevice, coherent: false, DmaAttrs.Mmio));
    }

    [Fact]
    public void Device_reads_and_writes_reach_the_buffer_through_the_page_table()
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var data = Seq(300, 3);
        CpuWrite(m, Buf + 0x123, data);
        var a = api.MapPhys(nic, Buf + 0x123, 300, DmaDirection.ToDevice, DmaAttrs.None);
        var got = new byte[300];
        Assert.Null(m.DeviceRead(nic, a, got));
        Assert.Equal(data, got);
        Assert.Equal(1, api.Iommu!.IotlbEntries);

        // The same device may not write a TO_DEVICE mapping.
        var f = m.DeviceWrite(nic, a, new byte[4]);
        Assert.Equal(FaultReason.Permission, f!.Reason);

        var b = api.MapPhys(nic, Buf + 0x10000, 8192, DmaDirection.FromDevice, DmaAttrs.None);
        var incoming = Seq(8192, 99);
        Assert.Null(m.DeviceWrite(nic, b, incoming));
        api.UnmapPhys(nic, b, 8192, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(incoming, CpuRead(m, Buf + 0x10000, 8192));

        // Nothing maps this IOVA.
        var g = m.DeviceRead(nic, new DmaAddr(0x12345000), new byte[4]);
        Assert.Equal(FaultReason.Unmapped, g!.Reason);
        Assert.Equal(2, m.FaultCount);
        Assert.Equal(2, api.Iommu.Unit.FaultCount);
    }

    [Fact]
    public void Strict_unmap_invalidates_the_iotlb_before_returning()
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var a = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Null(m.DeviceRead(nic, a, new byte[64]));
        Assert.Equal(1, api.Iommu!.IotlbEntries);
        api.UnmapPhys(nic, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0, api.Iommu.IotlbEntries);
        var f = m.DeviceRead(nic, a, new byte[64]);
        Assert.Equal(FaultReason.Unmapped, f!.Reason);
        Assert.Equal(0, api.Iommu.Unit.StaleAccessCount);
        // Strict frees at once: the same IOVA comes straight back from the CPU's cache.
        Assert.Equal(a, api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None));
    }

    [Fact]
    public void Lazy_unmap_leaves_a_stale_window_until_the_flush_queue_timer_fires()
    {
        var (m, api) = Build(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var cookie = api.Iommu!.CookieOf(nic)!;
        var data = Seq(64, 42);
        CpuWrite(m, Buf, data);
        var a = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        var got = new byte[64];
        Assert.Null(m.DeviceRead(nic, a, got));
        api.UnmapPhys(nic, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);

        // The page table no longer maps it, but the IOTLB still does: the device gets through.
        Assert.Equal(0UL, cookie.Domain.IovaToPhys(a.Value).Value);
        Array.Clear(got);
        Assert.Null(m.DeviceRead(nic, a, got));
        Assert.Equal(data, got);
        Assert.Equal(1, api.Iommu.Unit.StaleAccessCount);
        var stale = api.Iommu.Unit.StaleAccesses[0];
        Assert.Equal(("nic0", a, Buf), (stale.Dev, stale.Iova, stale.Phys));

        // Not reused while queued.
        Assert.True(cookie.Fq!.IsQueued(a.Value >> 12));
        for (var i = 0; i < 10; i++)
        {
            Assert.NotEqual(a, api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None));
        }

        m.Clock.Advance(9_000_000);
        Assert.Null(m.DeviceRead(nic, a, got));
        m.Clock.Advance(1_000_000);
        Assert.Equal(FaultReason.Unmapped, m.DeviceRead(nic, a, got)!.Reason);
        Assert.Equal(2, api.Iommu.Unit.StaleAccessCount);
        Assert.False(cookie.Fq.IsQueued(a.Value >> 12));
        Assert.Equal(1, cookie.Fq.StartCount);
        Assert.Equal(1, cookie.Fq.FinishCount);
    }

    [Fact]
    public void A_full_ring_flushes_without_waiting_for_the_timer()
    {
        var (m, api) = Build(IommuMode.Lazy, fqEntries: 4);
        var nic = m.Device("nic0");
        var cookie = api.Iommu!.CookieOf(nic)!;
        var first = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Null(m.DeviceRead(nic, first, new byte[8]));
        api.UnmapPhys(nic, first, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        for (var i = 0; i < 2; i++)
        {
            var x = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
            api.UnmapPhys(nic, x, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        }
        // Three entries: the ring (capacity size - 1) is full; the device still gets through.
        Assert.Equal(3, cookie.Fq!.QueuedEntries);
        Assert.Null(m.DeviceRead(nic, first, new byte[8]));
        var y = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(nic, y, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(1, cookie.Fq.FinishCount);
        Assert.Equal(1, cookie.Fq.QueuedEntries);
        Assert.Equal(FaultReason.Unmapped, m.DeviceRead(nic, first, new byte[8])!.Reason);
    }

    [Fact]
    public void An_explicit_flush_ends_the_window_and_frees_the_queue()
    {
        var (m, api) = Build(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var a = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Null(m.DeviceRead(nic, a, new byte[8]));
        api.UnmapPhys(nic, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(1, api.Iommu!.IotlbEntries);
        api.Iommu.FlushAll();
        Assert.Equal(0, api.Iommu.IotlbEntries);
        Assert.Equal(0, api.Iommu.CookieOf(nic)!.Fq!.QueuedEntries);
        Assert.Equal(FaultReason.Unmapped, m.DeviceRead(nic, a, new byte[8])!.Reason);
        Assert.Equal(a, api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None));
    }

    [Theory]
    [InlineData(IommuMode.Lazy)]
    [InlineData(IommuMode.Passthrough)]
    public void Untrusted_devices_always_get_a_strict_dma_domain(object modeArg)
    {
        var mode = (IommuMode)modeArg; // xunit theories are public; the type is internal to PhysDma
        var (m, api) = Build(mode);
        var tb = m.Device("tb0");
        Assert.Equal(IommuDomainType.Dma, api.Iommu!.DomainOf(tb)!.Type);
        Assert.Null(api.Iommu.CookieOf(tb)!.Fq);
        Assert.True(tb.DmaIommu);
        // An aligned buffer needs no bounce even for an untrusted device.
        var rec = new DmaRecorder();
        api.Recorder = rec;
        var a = api.MapPhys(tb, Buf, 8192, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0xffffe000UL, a.Value);
        Assert.Equal(DmaPath.Iommu, rec.Path);
    }

    [Fact]
    public void Untrusted_unaligned_mmio_fails_silently()
    {
        var (m, api) = Build(IommuMode.Strict);
        var tb = m.Device("tb0");
        var lines = api.Log.Count;
        var a = api.MapPhys(tb, new PhysAddr(0x3800000010), 64, DmaDirection.ToDevice, DmaAttrs.Mmio);
        Assert.True(a.IsError);
        Assert.Equal(lines, api.Log.Count);
        Assert.Equal(0UL, api.Iommu!.IovaPagesInUse);
    }

    [Fact]
    public void Passthrough_uses_dma_direct_and_an_identity_domain()
    {
        var (m, api) = Build(IommuMode.Passthrough);
        var nic = m.Device("nic0");
        Assert.False(nic.DmaIommu);
        Assert.Equal(IommuDomainType.Identity, api.Iommu!.DomainOf(nic)!.Type);
        var data = Seq(32);
        CpuWrite(m, Buf, data);
        var a = api.MapPhys(nic, Buf, 32, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(Buf.Value, a.Value);
        var got = new byte[32];
        Assert.Null(m.DeviceRead(nic, a, got));
        Assert.Equal(data, got);
    }

    [Fact]
    public void Size_and_mask_queries()
    {
        var (m, api) = Build(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var tb = m.Device("tb0");
        Assert.Equal(ulong.MaxValue, api.MaxMappingSize(nic));
        Assert.Equal(128 * Sizes.KiB, api.OptMappingSize(nic));
        Assert.Equal(api.Swiotlb.MaxMappingSize(tb), api.MaxMappingSize(tb));
        Assert.Equal(Math.Min(api.Swiotlb.MaxMappingSize(tb), 128 * Sizes.KiB), api.OptMappingSize(tb));
        Assert.Equal(Sizes.DmaBitMask(32), api.GetRequiredMask(nic));
        Assert.Equal(0xfffUL, api.Iommu!.MergeBoundary(nic));
        Assert.True(api.NeedSync(nic, new DmaAddr(0x1000)) == api.DevNeedSync(nic));
    }

    [Fact]
    public void A_min_align_mask_wider_than_the_granule_is_refused_with_a_warning()
    {
        var (m, api) = Build(IommuMode.Strict, extraDevices:
            [new DeviceConfig { Name = "wide", Parent = "rp0", Bdf = "0000:06:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64, MinAlignMask = 0x1fff }]);
        var a = api.MapPhys(m.Device("wide"), Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.True(a.IsError);
        Assert.Contains(api.Log.Lines, l => l.Message.Contains("Unsupported alignment constraint", StringComparison.Ordinal));
    }

    [Fact]
    public void A_double_unmap_warns_and_changes_nothing()
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var a = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(nic, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        var cached = api.Iommu!.CookieOf(nic)!.Iovad.CachedPages;
        api.UnmapPhys(nic, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Contains(api.Log.Lines, l => l.Message.Contains("WARN_ON(!phys)", StringComparison.Ordinal));
        Assert.Equal(cached, api.Iommu.CookieOf(nic)!.Iovad.CachedPages);
    }

    [Fact]
    public void Mmio_unmap_touches_neither_translation_lookup_nor_swiotlb_and_everything_returns_to_empty()
    {
        var (m, api) = Build(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var mmio = new PhysAddr(0x3800000000);
        var a = api.MapPhys(nic, mmio, 0x3000, DmaDirection.Bidirectional, DmaAttrs.Mmio);
        var b = api.MapPhys(nic, Buf + 8, 100, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(4UL + 1, api.Iommu!.IovaPagesInUse);
        var before = m.Counters.Snapshot();
        api.UnmapPhys(nic, a, 0x3000, DmaDirection.Bidirectional, DmaAttrs.Mmio);
        Assert.Equal(0, (m.Counters.Snapshot() - before).KernelMappings);
        api.UnmapPhys(nic, b, 100, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0, api.Iommu.DomainOf(nic)!.PteCount);
        m.Clock.Advance(10_000_000);
        Assert.Equal(0, api.Iommu.CookieOf(nic)!.Fq!.QueuedEntries);
        Assert.Null(api.Iommu.CookieOf(nic)!.Iovad.CheckConsistency());
    }

    [Fact]
    public void Large_aligned_buffers_get_2mib_pages()
    {
        var (m, api) = Build(IommuMode.Strict, forceDac: true);
        var nic = m.Device("nic0");
        var a = api.MapPhys(nic, new PhysAddr(0x200000000), 4 * Sizes.MiB, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0UL, a.Value % (4 * Sizes.MiB));
        var d = api.Iommu!.DomainOf(nic)!;
        Assert.True(d.Walk(a.Value + Sizes.MiB, out var pte));
        Assert.Equal(21, pte.SizeShift);
        Assert.Equal(2, d.PteCount);
        api.UnmapPhys(nic, a, 4 * Sizes.MiB, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0, d.PteCount);
    }
}
