using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;
using static PhysDma.Tests.Iova.IovaMachines;

namespace PhysDma.Tests.Iova;

/// <summary>The two-step IOVA API (spec §4.8) and invariants 25–27.</summary>
public class IovaApiTests
{
    private static readonly PhysAddr A = new(0x100000000);
    private static readonly PhysAddr B = new(0x100010000);
    private static readonly PhysAddr C = new(0x100020000);

    [Fact]
    public void Try_alloc_without_dma_iommu_is_false_and_allocates_nothing()
    {
        var (m, api) = X86();
        var dev = m.Device("direct0");
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(m.Device("nic0"), state, A, 4096));
        // A second try on the same state zeroes it first.
        Assert.False(api.IovaTryAlloc(dev, state, A, 4096));
        Assert.False(DmaApi.UseIova(state));
        Assert.Equal(0UL, state.Addr.Value);
        Assert.Equal(0UL, DmaApi.IovaSize(state));
        // Invariant 25: no IOVA for the device without dma-iommu (the nic0 one is still reserved).
        Assert.Equal(1UL, api.Iommu!.IovaPagesInUse);
        // Linking into a state without an IOVA is a driver bug the model refuses.
        Assert.Throws<ModelViolation>(() => api.IovaLink(dev, state, A, 0, 4096, DmaDirection.ToDevice, DmaAttrs.None));
    }

    [Fact]
    public void Try_alloc_keeps_the_first_buffers_offset_and_rejects_bad_sizes()
    {
        var (m, api) = X86();
        var nic = m.Device("nic0");
        var state = new DmaIovaState();
        // 0x200 + 0x2600 spans 3 granules, rounded to a 4-page size-aligned range below 4 GiB.
        Assert.True(api.IovaTryAlloc(nic, state, A + 0x200, 0x2600));
        Assert.True(DmaApi.UseIova(state));
        Assert.Equal(0xffffc200UL, state.Addr.Value);
        Assert.Equal(0x2600UL, DmaApi.IovaSize(state));
        Assert.Equal(4UL, api.Iommu!.IovaPagesInUse);

        var bad = new DmaIovaState();
        Assert.False(api.IovaTryAlloc(nic, bad, A, 0));
        Assert.False(api.IovaTryAlloc(nic, bad, A, 1UL << 63));
        Assert.False(DmaApi.UseIova(bad));
        Assert.Equal(4UL, api.Iommu.IovaPagesInUse);
    }

    [Fact]
    public void Device_reads_each_linked_piece_in_order_after_one_sync()
    {
        var (m, api) = X86(IommuMode.Strict);
        var nic = m.Device("nic0");
        var domain = api.Iommu!.DomainOf(nic)!;
        var a = Seq(0xe00, 1);
        var b = Seq(0x1000, 50);
        var c = Seq(0x800, 99);
        CpuWrite(m, A + 0x200, a);
        CpuWrite(m, B, b);
        CpuWrite(m, C, c);

        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(nic, state, A + 0x200, 0x2600));
        Assert.Equal(Errno.None, api.IovaLink(nic, state, A + 0x200, 0, 0xe00, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(Errno.None, api.IovaLink(nic, state, B, 0xe00, 0x1000, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(Errno.None, api.IovaLink(nic, state, C, 0x1e00, 0x800, DmaDirection.ToDevice, DmaAttrs.None));

        // Invariant 26: linking wrote PTEs but made no iotlb_sync_map call.
        Assert.Equal(3, domain.PteCount);
        Assert.Equal(0, domain.SyncMapCalls);
        Assert.Equal(Errno.None, api.IovaSync(nic, state, 0, 0x2600));
        Assert.Equal(1, domain.SyncMapCalls);
        Assert.Equal((0xffffc000UL, 0x3000UL), domain.LastSyncMap);

        // The PTEs: each piece's page, in IOVA order, read-only and cacheable.
        Assert.True(domain.Walk(0xffffc000, out var p0));
        Assert.True(domain.Walk(0xffffd000, out var p1));
        Assert.True(domain.Walk(0xffffe000, out var p2));
        Assert.Equal([A, B, C], new[] { p0.PhysBase, p1.PhysBase, p2.PhysBase });
        Assert.Equal(IommuProt.Read | IommuProt.Cache, p1.Prot);

        var got = new byte[0x2600];
        Assert.Null(m.DeviceRead(nic, state.Addr, got));
        Assert.Equal([.. a, .. b, .. c], got);

        // Unlink is strict even on a lazy domain: PTEs and IOTLB gone at once, the IOVA kept.
        api.IovaUnlink(nic, state, 0, 0x2600, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0, domain.PteCount);
        Assert.Equal(0, domain.IotlbEntries);
        Assert.Equal(4UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(FaultReason.Unmapped, m.DeviceRead(nic, state.Addr, new byte[4])!.Reason);
        api.IovaFree(nic, state);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
    }

    [Fact]
    public void Only_the_first_link_may_be_unaligned()
    {
        var (m, api) = X86();
        var nic = m.Device("nic0");
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(nic, state, new PhysAddr(0), 0x3000));
        Assert.Equal(Errno.None, api.IovaLink(nic, state, A, 0, 0x1000, DmaDirection.ToDevice, DmaAttrs.None));
        var pteBefore = api.Iommu!.DomainOf(nic)!.PteCount;
        // Invariant 25: an unaligned buffer at offset > 0 is refused with -EIO and maps nothing.
        Assert.Equal(Errno.EIO, api.IovaLink(nic, state, B + 0x10, 0x1000, 0x800, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(pteBefore, api.Iommu.DomainOf(nic)!.PteCount);
        Assert.Contains(m.Log.Lines, l => l.Message.Contains("dma_iova_link"));
        // An unaligned buffer at offset 0 is fine.
        var s2 = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(nic, s2, C + 0x10, 0x800));
        Assert.Equal(Errno.None, api.IovaLink(nic, s2, C + 0x10, 0, 0x800, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(0x10UL, s2.Addr.Value & 0xfff);
    }

    [Fact]
    public void Mmio_that_would_need_a_bounce_is_eperm_and_aligned_mmio_links()
    {
        var (m, api) = X86(IommuMode.Strict);
        var tb = m.Device("tbn0");
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(tb, state, new PhysAddr(BarBase + 0x40), 0x1000));
        // Invariant 25: untrusted + unaligned + MMIO cannot be bounced.
        Assert.Equal(Errno.EPERM, api.IovaLink(tb, state, new PhysAddr(BarBase + 0x40), 0, 0x100, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Equal(0, api.Iommu!.DomainOf(tb)!.PteCount);
        api.IovaFree(tb, state);

        var s2 = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(tb, s2, new PhysAddr(BarBase), 0x2000));
        Assert.Equal(Errno.None, api.IovaLink(tb, s2, new PhysAddr(BarBase), 0, 0x2000, DmaDirection.Bidirectional, DmaAttrs.Mmio));
        Assert.True(api.Iommu.DomainOf(tb)!.Walk(s2.Addr.Value, out var pte));
        Assert.Equal(IommuProt.Read | IommuProt.Write | IommuProt.Mmio, pte.Prot);
        Assert.False(s2.UsesSwiotlb);
        api.IovaDestroy(tb, s2, 0x2000, DmaDirection.Bidirectional, DmaAttrs.Mmio);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0, api.Iommu.DomainOf(tb)!.PteCount);
    }

    [Fact]
    public void Untrusted_unaligned_head_and_tail_bounce_and_come_back_on_unlink()
    {
        var (m, api) = X86(IommuMode.Strict);
        var tb = m.Device("tbn0");
        var domain = api.Iommu!.DomainOf(tb)!;
        var orig = Seq(0x1800, 5);
        CpuWrite(m, A + 0x200, orig);
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(tb, state, A + 0x200, 0x1800));
        Assert.Equal(0xffffe200UL, state.Addr.Value);
        Assert.Equal(Errno.None, api.IovaLink(tb, state, A + 0x200, 0, 0x1800, DmaDirection.Bidirectional, DmaAttrs.None));
        Assert.True(state.UsesSwiotlb);
        Assert.Equal(0x1800UL, DmaApi.IovaSize(state));
        Assert.Equal((1UL << 63) | 0x1800, state.RawSize);
        // Head: 0xe00 bytes (one granule of slots, 2 slots); tail: 0xa00 bytes (2 slots).
        Assert.Equal(4L, api.Swiotlb.SlotsUsed);
        Assert.True(domain.Walk(0xffffe000, out var head));
        Assert.True(domain.Walk(0xfffff000, out var tail));
        Assert.True(api.Swiotlb.IsSwiotlbBuffer(tb, head.PhysBase));
        Assert.True(api.Swiotlb.IsSwiotlbBuffer(tb, tail.PhysBase));
        Assert.Equal(Errno.None, api.IovaSync(tb, state, 0, 0x1800));

        var got = new byte[0x1800];
        Assert.Null(m.DeviceRead(tb, state.Addr, got));
        Assert.Equal(orig, got);
        // The padding an untrusted device can reach around its data is zeroed.
        var pre = new byte[0x200];
        Assert.Null(m.DeviceRead(tb, new DmaAddr(0xffffe000), pre));
        Assert.All(pre, x => Assert.Equal(0, x));
        var post = new byte[0x600];
        Assert.Null(m.DeviceRead(tb, state.Addr + 0x1800, post));
        Assert.All(post, x => Assert.Equal(0, x));

        // The device writes across both bounce slots; unlink copies them back and frees the slots.
        var w = Seq(0x1800, 200);
        Assert.Null(m.DeviceWrite(tb, state.Addr, w));
        api.IovaUnlink(tb, state, 0, 0x1800, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Equal(w, CpuRead(m, A + 0x200, 0x1800));
        api.IovaFree(tb, state);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0, domain.PteCount);
    }

    [Fact]
    public void Destroy_goes_through_the_flush_queue_and_free_never_does()
    {
        var (m, api) = X86(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var cookie = api.Iommu!.CookieOf(nic)!;
        var domain = cookie.Domain;
        CpuWrite(m, A, Seq(0x2000));
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(nic, state, A, 0x2000));
        Assert.Equal(Errno.None, api.IovaLink(nic, state, A, 0, 0x2000, DmaDirection.ToDevice, DmaAttrs.None));
        api.IovaSync(nic, state, 0, 0x2000);
        Assert.Null(m.DeviceRead(nic, state.Addr, new byte[0x2000]));
        var entries = domain.IotlbEntries;
        Assert.True(entries > 0);

        api.IovaDestroy(nic, state, 0x2000, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0, domain.PteCount);
        // Queued: the IOTLB still holds the old translation until the queue is flushed.
        Assert.Equal(2UL, cookie.Fq!.QueuedPages);
        Assert.Equal(entries, domain.IotlbEntries);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        api.Iommu.FlushAll();
        Assert.Equal(0, domain.IotlbEntries);
        Assert.Equal(0UL, cookie.Fq.QueuedPages);

        var s2 = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(nic, s2, A, 0x2000));
        Assert.Equal(Errno.None, api.IovaLink(nic, s2, A, 0, 0x2000, DmaDirection.ToDevice, DmaAttrs.None));
        api.IovaUnlink(nic, s2, 0, 0x2000, DmaDirection.ToDevice, DmaAttrs.None);
        api.IovaFree(nic, s2);
        Assert.Equal(0UL, cookie.Fq.QueuedPages);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
    }

    [Fact]
    public void Destroy_with_zero_mapped_len_frees_the_iova_without_touching_page_tables()
    {
        var (m, api) = X86(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var cookie = api.Iommu!.CookieOf(nic)!;
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(nic, state, A, 0x4000));
        // A link the driver then forgets to count: destroy(0) must leave its PTE alone.
        Assert.Equal(Errno.None, api.IovaLink(nic, state, A, 0, 0x1000, DmaDirection.ToDevice, DmaAttrs.None));
        var ptes = cookie.Domain.PteCount;
        var tables = cookie.Domain.PageTable!.TablePages;
        var invalidations = cookie.Domain.Unit.Iotlb.RangeInvalidations;
        api.IovaDestroy(nic, state, 0, DmaDirection.ToDevice, DmaAttrs.None);
        // Invariant 27.
        Assert.Equal(ptes, cookie.Domain.PteCount);
        Assert.Equal(tables, cookie.Domain.PageTable.TablePages);
        Assert.Equal(invalidations, cookie.Domain.Unit.Iotlb.RangeInvalidations);
        Assert.Equal(0UL, cookie.Fq!.QueuedPages);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
    }

    [Fact]
    public void One_state_linking_mmio_and_ram_is_reported_once()
    {
        var (m, api) = X86(IommuMode.Strict);
        var gpu = m.Device("gpu0");
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(gpu, state, A, 0x3000));
        Assert.Equal(Errno.None, api.IovaLink(gpu, state, A, 0, 0x1000, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Empty(api.Debug!.Reports);
        Assert.Equal(Errno.None, api.IovaLink(gpu, state, new PhysAddr(BarBase), 0x1000, 0x1000, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Equal(Errno.None, api.IovaLink(gpu, state, B, 0x2000, 0x1000, DmaDirection.ToDevice, DmaAttrs.None));
        var r = Assert.Single(api.Debug.Reports);
        Assert.Equal("iova_mixed_mmio_ram", r.Check);
        Assert.Contains("links MMIO [phys=0x0000003800000000] [size=4096 bytes] into the IOVA range at [device address=0x00000000ffffd000] that already holds RAM", r.Message);
        api.IovaUnlink(gpu, state, 0, 0x3000, DmaDirection.ToDevice, DmaAttrs.None);
        api.IovaFree(gpu, state);

        // A fresh state starts clean.
        Assert.True(api.IovaTryAlloc(gpu, state, A, 0x1000));
        Assert.Equal(Errno.None, api.IovaLink(gpu, state, new PhysAddr(BarBase), 0, 0x1000, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Single(api.Debug.Reports);
        api.IovaDestroy(gpu, state, 0x1000, DmaDirection.ToDevice, DmaAttrs.Mmio);
    }

    [Theory]
    [InlineData(false, 0L)]
    [InlineData(true, 1L)]
    public void Unlinking_mmio_on_a_non_coherent_device_does_cache_work_only_with_the_618_quirk(bool quirk, long expectedOpsOnMmio)
    {
        var (m, api) = quirk ? Arm64NonCoherent(IommuMode.Strict, KernelQuirk.IovaUnlinkIgnoresMmio) : Arm64NonCoherent();
        var dev = m.Device("ncdev");
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(dev, state, new PhysAddr(BarBase), 0x1000));
        var before = m.ArchCache.OpsOnNonRam;
        Assert.Equal(Errno.None, api.IovaLink(dev, state, new PhysAddr(BarBase), 0, 0x1000, DmaDirection.FromDevice, DmaAttrs.Mmio));
        // Linking MMIO never cleans the cache, quirk or not.
        Assert.Equal(before, m.ArchCache.OpsOnNonRam);
        api.IovaUnlink(dev, state, 0, 0x1000, DmaDirection.FromDevice, DmaAttrs.Mmio);
        Assert.Equal(before + expectedOpsOnMmio, m.ArchCache.OpsOnNonRam);
        api.IovaFree(dev, state);
    }

    [Fact]
    public void Non_coherent_ram_links_clean_on_link_and_invalidate_on_unlink()
    {
        var (m, api) = Arm64NonCoherent();
        var dev = m.Device("ncdev");
        var log = new List<CacheOp>();
        m.ArchCache.Log = log;
        var data = Seq(0x1000, 9);
        CpuWrite(m, A, data);
        var state = new DmaIovaState();
        Assert.True(api.IovaTryAlloc(dev, state, A, 0x1000));
        Assert.Equal(Errno.None, api.IovaLink(dev, state, A, 0, 0x1000, DmaDirection.Bidirectional, DmaAttrs.None));
        Assert.Equal([new CacheOp(CacheOpKind.Clean, A, 0x1000, true)], log);
        api.IovaSync(dev, state, 0, 0x1000);
        var got = new byte[0x1000];
        Assert.Null(m.DeviceRead(dev, state.Addr, got));
        Assert.Equal(data, got);
        var w = Seq(0x1000, 77);
        Assert.Null(m.DeviceWrite(dev, state.Addr, w));
        api.IovaUnlink(dev, state, 0, 0x1000, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(new CacheOp(CacheOpKind.Invalidate, A, 0x1000, true), log[^1]);
        Assert.Equal(w, CpuRead(m, A, 0x1000));
        api.IovaFree(dev, state);
    }

    [Fact]
    public void Unlinking_everything_leaves_every_structure_empty()
    {
        var (m, api) = X86(IommuMode.Lazy);
        var devs = new[] { m.Device("nic0"), m.Device("tbn0") };
        var states = new List<(Device, DmaIovaState)>();
        foreach (var d in devs)
        {
            for (var i = 0; i < 5; i++)
            {
                var s = new DmaIovaState();
                var p = A + (ulong)(i * 0x3000) + (ulong)(i * 0x40);
                Assert.True(api.IovaTryAlloc(d, s, p, 0x2100));
                Assert.Equal(Errno.None, api.IovaLink(d, s, p, 0, 0x2100, DmaDirection.FromDevice, DmaAttrs.None));
                api.IovaSync(d, s, 0, 0x2100);
                states.Add((d, s));
            }
        }
        Assert.True(api.Swiotlb.SlotsUsed > 0);
        foreach (var (d, s) in states)
        {
            api.IovaDestroy(d, s, 0x2100, DmaDirection.FromDevice, DmaAttrs.None);
        }
        api.Iommu!.FlushAll();
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Equal(0, api.Iommu.IotlbEntries);
        foreach (var d in devs)
        {
            Assert.Equal(0, api.Iommu.DomainOf(d)!.PteCount);
        }
        Assert.Equal(0, api.Debug!.LiveEntries);
        Assert.Empty(api.Debug.Reports);
    }
}
