using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;

namespace PhysDma.Tests.Iommu;

/// <summary>The IOVAs iommu_dma_alloc_iova hands out: granule offset, size alignment, 32-bit first.</summary>
public class IovaAllocationTests
{
    private static readonly PhysAddr P4G = new(0x100000000);

    [Theory]
    [InlineData(IommuMode.Lazy)]
    [InlineData(IommuMode.Strict)]
    public void First_maps_of_a_64bit_pci_device_are_top_down_below_4g_and_size_aligned(object modeArg)
    {
        var mode = (IommuMode)modeArg; // xunit theories are public; the type is internal to PhysDma
        var (m, api) = Build(mode);
        var nic = m.Device("nic0");

        var a = api.MapPhys(nic, P4G, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        var b = api.MapPhys(nic, new PhysAddr(0x100000123), 0x100, DmaDirection.ToDevice, DmaAttrs.None);
        var c = api.MapPhys(nic, new PhysAddr(0x100000123), 4096, DmaDirection.ToDevice, DmaAttrs.None);

        Assert.Equal(0xfffff000UL, a.Value);
        Assert.Equal(0xffffe123UL, b.Value);
        // 4 KiB at offset 0x123 spans two granules: a two-page IOVA aligned to two pages.
        Assert.Equal(0xffffc123UL, c.Value);
        Assert.True(nic.Pci32BitWorkaround);
    }

    [Fact]
    public void A_host_bridge_window_reaching_4g_pushes_the_first_iova_below_it()
    {
        // The window 0xc0000000 + 1 GiB covers 0xc0000000-0xffffffff: the kernel reserves it whole.
        var (m, api) = Build(IommuMode.Lazy, windowSize: FullWindowSize);
        var nic = m.Device("nic0");
        var a = api.MapPhys(nic, P4G, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0xbffff000UL, a.Value);
        var cookie = api.Iommu!.CookieOf(nic)!;
        Assert.Contains((0xc0000UL, 0xfffffUL), cookie.Iovad.ReservedRanges());
    }

    [Fact]
    public void Offset_is_kept_and_the_range_is_whole_granules()
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var domain = api.Iommu!.DomainOf(nic)!;
        foreach (var (phys, size) in new[] { (0x100000123UL, 0x100UL), (0x100000ff0UL, 0x20UL), (0x100000000UL, 0x5001UL), (0x100000800UL, 0x3000UL) })
        {
            var a = api.MapPhys(nic, new PhysAddr(phys), size, DmaDirection.Bidirectional, DmaAttrs.None);
            Assert.Equal(phys & 0xfff, a.Value & 0xfff);
            var len = Sizes.AlignUp(size + (phys & 0xfff), 4096);
            var start = a.Value & ~0xfffUL;
            for (var off = 0UL; off < len; off += 4096)
            {
                Assert.Equal(phys - (phys & 0xfff) + off, domain.IovaToPhys(start + off).Value);
            }
            Assert.Equal(0UL, domain.IovaToPhys(start + len).Value);
            Assert.Equal(0UL, domain.IovaToPhys(start - 4096).Value);
            api.UnmapPhys(nic, a, size, DmaDirection.Bidirectional, DmaAttrs.None);
            Assert.Equal(0, domain.PteCount);
        }
    }

    [Fact]
    public void Iovas_are_never_zero_reserved_or_beyond_the_mask()
    {
        var (m, api) = Build(IommuMode.Strict, windowSize: FullWindowSize);
        var nic = m.Device("nic0");
        var dev32 = m.Device("dev32");
        var cookie = api.Iommu!.CookieOf(nic)!;
        Assert.Equal(1UL, cookie.Iovad.StartPfn);
        var reserved = cookie.Iovad.ReservedRanges();
        // The MSI range lies inside the window here; the window and the MSI range are both covered.
        Assert.Contains(reserved, r => r.Lo <= 0xc0000 && r.Hi >= 0xfffff);
        var (m2, api2) = Build(IommuMode.Strict);
        Assert.Contains((MsiBase >> 12, (MsiBase + Sizes.MiB - 1) >> 12), api2.Iommu!.CookieOf(m2.Device("nic0"))!.Iovad.ReservedRanges());

        // Exhaust a domain's 32-bit space with 128 KiB maps and check each range.
        var n = 0;
        while (true)
        {
            var a = api.MapPhys(dev32, P4G, 128 * Sizes.KiB, DmaDirection.FromDevice, DmaAttrs.None);
            if (a.IsError)
            {
                break;
            }
            n++;
            var pfn = a.Value >> 12;
            Assert.True(pfn >= 1);
            Assert.True(a.Value + (128 * Sizes.KiB) - 1 <= 0xffffffffUL);
            Assert.Equal(0UL, a.Value % (128 * Sizes.KiB));
            foreach (var (lo, hi) in api.Iommu!.CookieOf(dev32)!.Iovad.ReservedRanges())
            {
                Assert.False(pfn <= hi && pfn + 31 >= lo, $"IOVA {a} overlaps reserved [{lo:x},{hi:x}]");
            }
        }
        // 3 GiB below the window, minus the pfn-0 block of 32 pages.
        Assert.Equal((int)((3 * Sizes.GiB / (128 * Sizes.KiB)) - 1), n);
    }

    [Fact]
    public void After_the_32bit_space_is_exhausted_the_device_uses_48bit_iovas_for_good()
    {
        var (m, api) = Build(IommuMode.Strict);
        var nic = m.Device("nic0");
        var cookie = api.Iommu!.CookieOf(nic)!;
        // Fill everything below 4 GiB except what the first map needs... by mapping 1 GiB chunks (not cached, not rounded).
        var live = new List<DmaAddr>();
        while (true)
        {
            var a = api.MapPhys(nic, P4G, 256 * Sizes.MiB, DmaDirection.ToDevice, DmaAttrs.None);
            Assert.False(a.IsError);
            live.Add(a);
            if (a.Value >= 1UL << 32)
            {
                break;
            }
        }
        var switched = live[^1];
        Assert.False(nic.Pci32BitWorkaround);
        Assert.Equal((1UL << 48) - (256 * Sizes.MiB), switched.Value);
        Assert.Contains(api.Log.Lines, l => l.Level == LogLevel.Notice && l.Message == "nic0 0000:01:00.0: Using 48-bit DMA addresses");

        // Free everything below 4 GiB: the device still does not go back.
        foreach (var a in live.Take(live.Count - 1))
        {
            api.UnmapPhys(nic, a, 256 * Sizes.MiB, DmaDirection.ToDevice, DmaAttrs.None);
        }
        var next = api.MapPhys(nic, P4G, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.True(next.Value > 0xffffffffUL, $"got {next}");
        Assert.Single(api.Log.Lines, l => l.Message.Contains("-bit DMA addresses", StringComparison.Ordinal));
        Assert.Null(cookie.Iovad.CheckConsistency());
    }

    [Fact]
    public void Forcedac_and_platform_devices_skip_the_32bit_attempt()
    {
        var (m, api) = Build(IommuMode.Strict, forceDac: true);
        var a = api.MapPhys(m.Device("nic0"), P4G, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal((1UL << 48) - 4096, a.Value);

        var (m2, api2) = Build(IommuMode.Strict);
        var b = api2.MapPhys(m2.Device("plat0"), P4G, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal((1UL << 48) - 4096, b.Value);
    }

    [Fact]
    public void A_32bit_device_never_gets_an_iova_above_4g()
    {
        var (m, api) = Build(IommuMode.Lazy);
        var a = api.MapPhys(m.Device("dev32"), P4G, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0xfffff000UL, a.Value);
    }

    [Fact]
    public void Small_sizes_round_to_a_power_of_two_and_large_ones_do_not()
    {
        var iovad = new IovaDomain(4096, 1, 1, new Clock());
        var limit = (1UL << 36) - 1;
        var p3 = iovad.AllocIovaFast(3, limit, true);
        Assert.Equal(0UL, p3 % 4);
        Assert.Equal(4UL, iovad.TreePages);
        var p33 = iovad.AllocIovaFast(33, limit, true);
        Assert.Equal(37UL, iovad.TreePages);
        // Size-aligned to 64 pages, though only 33 are taken.
        Assert.Equal(0UL, p33 % 64);
    }

    [Fact]
    public void The_32bit_hint_fails_fast_until_something_below_4g_is_freed()
    {
        var iovad = new IovaDomain(4096, 1, 1, new Clock());
        var lim32 = 0xfffffUL;
        // Leave only 8 pages free below 4 GiB.
        iovad.ReserveIova(1, 0xfffff - 8);
        var small = iovad.AllocIova(8, lim32, true);
        Assert.Equal(0xffff8UL, small);
        Assert.Equal(0UL, iovad.AllocIova(16, lim32, true));
        Assert.Equal(16UL, iovad.Max32AllocSize);
        // A smaller request still searches; a larger one fails without looking.
        Assert.Equal(0UL, iovad.AllocIova(32, lim32, true));
        Assert.Equal(16UL, iovad.Max32AllocSize);
        iovad.FreeIova(small);
        Assert.Equal(iovad.Dma32BitPfn, iovad.Max32AllocSize);
        Assert.Equal(0xffff8UL, iovad.AllocIova(8, lim32, true));
    }

    [Fact]
    public void A_failed_allocation_drains_the_caches_and_retries_once()
    {
        var iovad = new IovaDomain(4096, 1, 2, new Clock());
        iovad.ReserveIova(1, 0xfffff - 2);
        var limit = 0xfffffUL;
        var a = iovad.AllocIovaFast(1, limit, true);
        var b = iovad.AllocIovaFast(1, limit, true);
        Assert.NotEqual(0UL, a);
        Assert.NotEqual(0UL, b);
        iovad.FreeIovaFast(a, 1);
        iovad.FreeIovaFast(b, 1);
        Assert.Equal(2UL, iovad.CachedPages);
        // Two pages free only as cached single pages: a two-page request fails without flush...
        Assert.Equal(0UL, iovad.AllocIovaFast(2, limit, false));
        // ...and succeeds once the caches go back to the tree.
        Assert.Equal(0xffffeUL, iovad.AllocIovaFast(2, limit, true));
        Assert.Equal(0UL, iovad.CachedPages);
    }

    [Fact]
    public void Freeing_at_or_above_the_cached_node_moves_it_up_so_the_hole_is_found_again()
    {
        var iovad = new IovaDomain(4096, 1, 1, new Clock());
        var limit = 0xfffffUL;
        var a = iovad.AllocIova(1, limit, true);
        var b = iovad.AllocIova(1, limit, true);
        var c = iovad.AllocIova(1, limit, true);
        Assert.Equal([0xfffffUL, 0xffffeUL, 0xffffdUL], [a, b, c]);
        iovad.FreeIova(a);
        Assert.Equal(0xfffffUL, iovad.AllocIova(1, limit, true));
        Assert.Equal(0xffffcUL, iovad.AllocIova(1, limit, true));
    }

    [Fact]
    public void A_search_starts_below_the_cached_node_even_for_a_higher_limit()
    {
        // One IOVA space, two limits: the 64-bit cached node left by a 40-bit request steers a 48-bit one below it.
        var iovad = new IovaDomain(4096, 1, 1, new Clock());
        var x = iovad.AllocIova(1, (1UL << 28) - 1, true);
        Assert.Equal((1UL << 28) - 1, x);
        Assert.Equal((1UL << 28) - 2, iovad.AllocIova(1, (1UL << 36) - 1, true));
        // Nothing aligned fits below it: the retry looks above the cached node, up to the limit.
        var big = iovad.AllocIova(1UL << 27, (1UL << 36) - 1, true);
        Assert.Equal((1UL << 36) - (1UL << 27), big);
    }
    [Fact]
    public void Removing_a_node_whose_only_child_is_on_the_right_keeps_the_gap_search_exact()
    {
        // Found by the property test: when the removed node had only a right child, that child (its
        // successor) got the removed node's gap but not the subtree maximum, so a search skipped it.
        var t = new IovaTree();
        t.Insert(ulong.MaxValue, ulong.MaxValue, reserved: true);
        t.Insert(100, 100);
        t.Insert(300, 300);
        t.Insert(200, 200);
        // Shape: 300 at the root, 100 on its left with 200 as its right child, the anchor on the right.
        Assert.Null(t.Check());
        t.Remove(t.FindContaining(100));
        Assert.Null(t.Check());
        // 150 free pages fit in [1, 200) only now that 100 is gone.
        Assert.Equal(50UL, t.FindHighestFit(1, 200, 150, ~0UL));
    }
}
