using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;

namespace PhysDma.Tests.Iommu;

/// <summary>
/// What dma-iommu guarantees (prot bits, IOVA alignment and size, the 32-bit-first rule, lazy reuse after a flush, rcache bounds, untrusted bouncing), one test (or theory) each, with exact addresses and the
/// bytes the device and the CPU see.
/// </summary>
public class IommuInvariantTests
{
    private static readonly PhysAddr Buf = new(0x100000000);
    private static readonly PhysAddr Bar = new(0x3800000000);

    private static DeviceConfig UntrustedNvme => new()
    {
        Name = "tbnvme",
        Parent = "rp0",
        Bdf = "0000:07:00.0",
        DmaMaskBits = 64,
        CoherentDmaMaskBits = 64,
        MinAlignMask = 0xfff,
        Untrusted = true,
    };

    private static DeviceConfig NonCoherent => new()
    {
        Name = "nc0",
        Parent = "rp0",
        Bdf = "0000:08:00.0",
        DmaMaskBits = 64,
        CoherentDmaMaskBits = 64,
        Coherent = false,
    };

    [Theory]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    [InlineData(DmaDirection.Bidirectional)]
    public void Inv17_mmio_ptes_carry_mmio_never_cache_and_ram_ptes_on_coherent_devices_carry_cache(DmaDirection dir)
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var d = api.Iommu!.DomainOf(nic)!;
        var mmio = api.MapPhys(nic, Bar + 0x40, 0x2000, dir, DmaAttrs.Mmio);
        var ram = api.MapPhys(nic, Buf + 0x40, 0x2000, dir, DmaAttrs.None);
        // Every granule of each span, not just the first.
        for (var off = 0UL; off < 0x3000; off += 0x1000)
        {
            Assert.True(d.Walk((mmio.Value & ~0xfffUL) + off, out var pm));
            Assert.Equal(IommuProt.Mmio, pm.Prot & (IommuProt.Mmio | IommuProt.Cache));
            Assert.Equal(Bar.Value + off, pm.PhysBase.Value);
            Assert.True(d.Walk((ram.Value & ~0xfffUL) + off, out var pr));
            Assert.Equal(IommuProt.Cache, pr.Prot & (IommuProt.Mmio | IommuProt.Cache));
        }
    }

    [Fact]
    public void Inv17_a_non_coherent_device_gets_neither_cache_nor_mmio_for_ram()
    {
        var m = new Machine(Config(IommuMode.Strict, extraDevices: [NonCoherent]) with { Arch = Arch.Arm64 });
        var api = new DmaApi(m);
        var nc = m.Device("nc0");
        var rec = new DmaRecorder();
        api.Recorder = rec;
        var a = api.MapPhys(nc, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.True(api.Iommu!.DomainOf(nc)!.Walk(a.Value, out var pte));
        Assert.Equal(IommuProt.Read, pte.Prot);
        Assert.Equal(IommuProt.Read, rec.IommuProt);
    }

    [Theory]
    [InlineData(DmaDirection.ToDevice, DmaAttrs.None, true, false)]
    [InlineData(DmaDirection.FromDevice, DmaAttrs.None, false, true)]
    [InlineData(DmaDirection.Bidirectional, DmaAttrs.None, true, true)]
    [InlineData(DmaDirection.ToDevice, DmaAttrs.Privileged, true, false)]
    [InlineData(DmaDirection.FromDevice, DmaAttrs.Privileged, false, true)]
    [InlineData(DmaDirection.FromDevice, DmaAttrs.Privileged | DmaAttrs.Mmio, false, true)]
    [InlineData(DmaDirection.Bidirectional, DmaAttrs.Mmio, true, true)]
    public void Inv18_pte_permissions_decide_what_the_device_may_do(DmaDirection dir, DmaAttrs attrs, bool read, bool write)
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var phys = (attrs & DmaAttrs.Mmio) != 0 ? Bar : Buf;
        var a = api.MapPhys(nic, phys, 4096, dir, attrs);
        Assert.True(api.Iommu!.DomainOf(nic)!.Walk(a.Value, out var pte));
        Assert.Equal(read, (pte.Prot & IommuProt.Read) != 0);
        Assert.Equal(write, (pte.Prot & IommuProt.Write) != 0);
        Assert.Equal((attrs & DmaAttrs.Privileged) != 0, (pte.Prot & IommuProt.Priv) != 0);

        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            // No BAR backs this address in the test machine; the PTE bits are what counts.
            return;
        }
        // The device's accesses follow the bits: a forbidden one faults with "permission" in both logs.
        var rf = m.DeviceRead(nic, a, new byte[16]);
        var wf = m.DeviceWrite(nic, a, new byte[16]);
        Assert.Equal(read ? null : FaultReason.Permission, rf?.Reason);
        Assert.Equal(write ? null : FaultReason.Permission, wf?.Reason);
        var expected = (read ? 0 : 1) + (write ? 0 : 1);
        Assert.Equal(expected, m.Faults.Count(f => f.Reason == FaultReason.Permission && f.Dev == "nic0" && f.Addr == a));
        Assert.Equal(expected, api.Iommu.Unit.Faults.Count(f => f.Reason == FaultReason.Permission));
    }

    [Theory]
    [InlineData(0x100000000UL, 1UL, 0x1000UL)]
    [InlineData(0x100000fffUL, 2UL, 0x2000UL)]
    [InlineData(0x100000123UL, 0x1000UL, 0x2000UL)]
    [InlineData(0x100000800UL, 0x2800UL, 0x3000UL)]
    [InlineData(0x100000001UL, 0x3000UL, 0x4000UL)]
    public void Inv19_offset_is_carried_and_the_span_is_whole_granules(ulong phys, ulong size, ulong span)
    {
        var (m, api) = Build(IommuMode.Strict, forceDac: true);
        var nic = m.Device("nic0");
        var d = api.Iommu!.DomainOf(nic)!;
        var a = api.MapPhys(nic, new PhysAddr(phys), size, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(phys & 0xfff, a.Value & 0xfff);
        Assert.Equal((long)(span >> 12), d.PteCount);
        // 3 pages round up to a 4-page, 4-page-aligned IOVA at the top of the 48-bit space.
        var pages = IovaDomain.FastAllocSize(span >> 12);
        Assert.Equal((1UL << 48) - (pages << 12), a.Value & ~0xfffUL);
        Assert.Equal(pages, api.Iommu.IovaPagesInUse);
    }

    [Fact]
    public void Inv20_small_ranges_are_size_aligned_powers_of_two_and_stay_within_limits()
    {
        var (m, api) = Build(IommuMode.Strict, extraDevices:
            [new DeviceConfig { Name = "lim", Parent = "rp0", Bdf = "0000:09:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64, BusDmaLimit = 0x3fffffff }]);
        var lim = m.Device("lim");
        var cookie = api.Iommu!.CookieOf(lim)!;
        for (var pages = 1UL; pages <= 40; pages++)
        {
            var a = api.MapPhys(lim, Buf, pages << 12, DmaDirection.ToDevice, DmaAttrs.None);
            var pfn = a.Value >> 12;
            var node = cookie.Iovad.AllocatedRanges().Single(r => r.Lo == pfn);
            var taken = node.Hi - node.Lo + 1;
            if (pages <= 32)
            {
                Assert.True(Sizes.IsPowerOfTwo(taken));
                Assert.Equal(0UL, pfn % taken);
            }
            else
            {
                Assert.Equal(pages, taken);
                Assert.Equal(0UL, pfn % 64);
            }
            Assert.True(pfn >= 1);
            // bus_dma_limit (1 GiB) is lower than the 64-bit mask: min_not_zero picks it.
            Assert.True(a.Value + (pages << 12) - 1 <= 0x3fffffffUL, $"{pages} pages at {a}");
        }
    }

    [Fact]
    public void Inv21_the_32bit_workaround_stays_off_after_the_first_failure()
    {
        var (m, api) = Build(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var cookie = api.Iommu!.CookieOf(nic)!;
        // Leave exactly two free pages below 4 GiB.
        cookie.Iovad.ReserveIova(1, 0xfffff - 2);
        var a = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        var b = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal([0xfffff000UL, 0xffffe000UL], [a.Value, b.Value]);
        Assert.True(nic.Pci32BitWorkaround);
        var c = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal((1UL << 48) - 0x1000, c.Value);
        Assert.False(nic.Pci32BitWorkaround);
        Assert.Equal("nic0 0000:01:00.0: Using 48-bit DMA addresses", Assert.Single(api.Log.Lines, l => l.Level == LogLevel.Notice).Message);

        // Room below 4 GiB again (after the flush queue drains), yet the device stays 48-bit.
        api.UnmapPhys(nic, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(nic, b, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.Iommu.FlushAll();
        // The freed IOVAs sit in the CPU's magazine, which serves any limit: the newest comes back even
        // for a 48-bit request (no 32-bit attempt is made).
        var d = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0xffffe000UL, d.Value);
        for (var cpu = 0; cpu < m.Cpus; cpu++)
        {
            cookie.Iovad.FreeCpuCachedIovas(cpu);
        }
        // From the tree: below the 48-bit cached node, not in the free page below 4 GiB.
        var e = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal((1UL << 48) - 0x2000, e.Value);
        Assert.False(nic.Pci32BitWorkaround);
        Assert.Single(api.Log.Lines, l => l.Level == LogLevel.Notice);
        // Another PCI device of the same machine keeps its own flag.
        Assert.True(m.Device("nvme0").Pci32BitWorkaround);
    }

    [Fact]
    public void Inv22_lazy_reuses_an_iova_only_after_a_flush_that_completed_after_its_unmap()
    {
        var (m, api) = Build(IommuMode.Lazy, cpus: 1, fqEntries: 8);
        var nic = m.Device("nic0");
        var fq = api.Iommu!.CookieOf(nic)!.Fq!;
        var first = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(nic, first, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        var finishedAtUnmap = fq.FinishCount;
        var seen = new List<ulong>();
        // Map and unmap one page at a time: each unmap queues; the 8th fills the ring (capacity 7) and flushes.
        for (var i = 0; i < 8; i++)
        {
            var x = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
            seen.Add(x.Value);
            if (x == first)
            {
                Assert.True(fq.FinishCount > finishedAtUnmap, $"map {i} reused {first} before any flush finished");
            }
            api.UnmapPhys(nic, x, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        }
        // Seven fresh IOVAs; the 7th unmap found the ring full (first, then six more): it flushed and
        // freed those seven into the CPU's magazine, and the 8th map popped the newest.
        Assert.Equal([0xffffe000UL, 0xffffd000UL, 0xffffc000UL, 0xffffb000UL, 0xffffa000UL, 0xffff9000UL, 0xffff8000UL, 0xffff9000UL], seen);
        Assert.Equal(1, fq.FinishCount);
        Assert.True(fq.IsQueued(0xffff8));
        // Six more maps drain the magazine newest first; the last is the very first IOVA, now safe.
        var more = new List<ulong>();
        for (var i = 0; i < 6; i++)
        {
            var x = api.MapPhys(nic, Buf, 4096, DmaDirection.ToDevice, DmaAttrs.None);
            if (x == first)
            {
                Assert.True(fq.FinishCount > finishedAtUnmap);
            }
            more.Add(x.Value);
        }
        Assert.Equal([0xffffa000UL, 0xffffb000UL, 0xffffc000UL, 0xffffd000UL, 0xffffe000UL, 0xfffff000UL], more);
        Assert.Equal(0, api.Iommu.Unit.StaleAccessCount);
    }

    [Fact]
    public void Inv22_strict_invalidates_before_unmap_returns()
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var a = api.MapPhys(nic, Buf, 0x3000, DmaDirection.Bidirectional, DmaAttrs.None);
        for (var off = 0UL; off < 0x3000; off += 0x1000)
        {
            Assert.Null(m.DeviceRead(nic, a + off, new byte[4]));
        }
        Assert.Equal(3, api.Iommu!.IotlbEntries);
        var before = api.Iommu.Unit.Iotlb.RangeInvalidations;
        api.UnmapPhys(nic, a, 0x3000, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(before + 1, api.Iommu.Unit.Iotlb.RangeInvalidations);
        Assert.Equal(0, api.Iommu.IotlbEntries);
        Assert.Equal(FaultReason.Unmapped, m.DeviceWrite(nic, a + 0x2000, new byte[4])!.Reason);
    }

    [Fact]
    public void Inv23_magazines_hold_at_most_127_the_depot_only_full_ones_and_trim_brings_it_down_to_the_cpu_count()
    {
        var clock = new Clock();
        var iovad = new IovaDomain(4096, 1, 2, clock);
        const ulong Limit = (1UL << 36) - 1;
        var pfns = new List<ulong>();
        for (var i = 0; i < 6 * IovaDomain.MagSize + 5; i++)
        {
            pfns.Add(iovad.AllocIovaFast(1, Limit, true));
        }
        foreach (var p in pfns)
        {
            iovad.FreeIovaFast(p, 1);
        }
        var snap = iovad.SnapshotRcaches()[0];
        // prev filled first, then every 127 frees pushed a full loaded magazine to the depot: 5 of them,
        // and the last 5 pfns sit in a fresh loaded one.
        Assert.Equal(5, snap.Cpus[0].Loaded.Length);
        Assert.Equal(IovaDomain.MagSize, snap.Cpus[0].Prev.Length);
        Assert.Equal(5, snap.Depot.Count);
        Assert.All(snap.Depot, mag => Assert.Equal(IovaDomain.MagSize, mag.Length));
        Assert.Null(iovad.CheckConsistency());
        var total = (ulong)pfns.Count;
        Assert.Equal(total, iovad.TreePages);

        // The trim work runs 100 ms after the first depot push and frees one magazine per run while the
        // depot holds more than the two CPUs.
        clock.Advance(99_999_999);
        Assert.Equal(5, iovad.SnapshotRcaches()[0].Depot.Count);
        clock.Advance(1);
        Assert.Equal(4, iovad.SnapshotRcaches()[0].Depot.Count);
        Assert.Equal(total - 127, iovad.TreePages);
        clock.Advance(100_000_000);
        Assert.Equal(3, iovad.SnapshotRcaches()[0].Depot.Count);
        clock.Advance(1_000_000_000);
        Assert.Equal(2, iovad.SnapshotRcaches()[0].Depot.Count);
        Assert.Equal(0, clock.PendingTimers);
        Assert.Equal(total - (3 * 127), iovad.TreePages);
        Assert.Equal(total - (3 * 127), iovad.CachedPages);
        Assert.Null(iovad.CheckConsistency());
    }

    [Fact]
    public void Inv24_untrusted_bounce_zeroes_the_padding_and_the_device_sees_only_the_data()
    {
        var (m, api) = Build(IommuMode.Strict, extraDevices: [UntrustedNvme]);
        var dev = m.Device("tbnvme");
        var pool = api.Swiotlb.DefaultMem.DefPool!;
        // Old kernel data in the bounce pool.
        var junk = Enumerable.Repeat((byte)0xaa, 0x10000).ToArray();
        CpuWrite(m, pool.Start, junk);
        var data = Seq(0x100, 5);
        CpuWrite(m, Buf + 0x123, data);
        var rec = new DmaRecorder();
        api.Recorder = rec;

        var a = api.MapPhys(dev, Buf + 0x123, 0x100, DmaDirection.ToDevice, DmaAttrs.None);

        // min_align_mask 0xfff keeps the offset in the bounce slot, and so in the IOVA.
        Assert.Equal(0xfffff123UL, a.Value);
        Assert.Equal(DmaPath.IommuSwiotlb, rec.Path);
        Assert.Equal(pool.Start + 0x123, rec.Bounce);
        Assert.Equal(IommuProt.Read | IommuProt.Cache, rec.IommuProt);
        Assert.Equal(pool.Start, api.Iommu!.DomainOf(dev)!.IovaToPhys(0xfffff000));
        var page = new byte[0x1000];
        Assert.Null(m.DeviceRead(dev, new DmaAddr(0xfffff000), page));
        var expected = new byte[0x1000];
        data.CopyTo(expected, 0x123);
        Assert.Equal(expected, page);
        // Beyond the granule nothing is mapped: the device cannot reach the rest of the pool.
        Assert.Equal(FaultReason.Unmapped, m.DeviceRead(dev, new DmaAddr(0x100000000), new byte[1])!.Reason);

        api.UnmapPhys(dev, a, 0x100, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
    }

    [Fact]
    public void Inv24_untrusted_bidirectional_copies_back_only_the_data_and_the_padding_never_reaches_the_buffer()
    {
        var (m, api) = Build(IommuMode.Strict);
        var tb = m.Device("tb0");
        var pool = api.Swiotlb.DefaultMem.DefPool!;
        CpuWrite(m, pool.Start, Enumerable.Repeat((byte)0xaa, 0x2000).ToArray());
        var around = Seq(0x1000, 77);
        CpuWrite(m, Buf, around);

        var a = api.MapPhys(tb, Buf + 0x200, 0x80, DmaDirection.Bidirectional, DmaAttrs.None);
        // No min_align_mask: the data starts the granule-aligned slot, so the offset is not kept.
        Assert.Equal(0xfffff000UL, a.Value);
        var seen = new byte[0x1000];
        // The original is bounced in at map, then the rest of the granule is zeroed.
        Assert.Null(m.DeviceRead(tb, a, seen));
        var expectSeen = new byte[0x1000];
        Array.Copy(around, 0x200, expectSeen, 0, 0x80);
        Assert.Equal(expectSeen, seen);

        // The device writes the data and, being hostile, the padding too.
        var incoming = Seq(0x1000, 200);
        Assert.Null(m.DeviceWrite(tb, a, incoming));
        api.UnmapPhys(tb, a, 0x80, DmaDirection.Bidirectional, DmaAttrs.None);
        var after = CpuRead(m, Buf, 0x1000);
        var expectAfter = (byte[])around.Clone();
        Array.Copy(incoming, 0, expectAfter, 0x200, 0x80);
        Assert.Equal(expectAfter, after);
    }

    [Fact]
    public void Inv24_untrusted_aligned_buffers_are_not_bounced_and_unaligned_mmio_fails()
    {
        var (m, api) = Build(IommuMode.Strict);
        var tb = m.Device("tb0");
        var rec = new DmaRecorder();
        api.Recorder = rec;
        var a = api.MapPhys(tb, Buf + 0x1000, 0x2000, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(DmaPath.Iommu, rec.Path);
        Assert.Equal(Buf + 0x1000, api.Iommu!.DomainOf(tb)!.IovaToPhys(a.Value));
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.True(api.MapPhys(tb, Bar + 8, 0x1000, DmaDirection.ToDevice, DmaAttrs.Mmio).IsError);
        // Aligned MMIO needs no bounce and maps.
        var b = api.MapPhys(tb, Bar, 0x1000, DmaDirection.ToDevice, DmaAttrs.Mmio);
        Assert.Equal(Bar, api.Iommu.DomainOf(tb)!.IovaToPhys(b.Value));
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
    }
}
