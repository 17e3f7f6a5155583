using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Debug;

/// <summary>err_printk's counting and printing rules, the driver filter, the entry pool and the lookups (spec §6.1, §6.4).</summary>
public class DebugStateTests
{
    private const string Nic = "DMA-API: nic0 0000:03:00.0: ";

    private static void FreeUnknown(DmaApi api, string dev = "nic0") =>
        api.UnmapPhys(api.Dev(dev), new DmaAddr(0x12345000), 64, DmaDirection.ToDevice, DmaAttrs.None);

    private static string[] Warnings(DmaApi api) =>
        [.. api.Log.Lines.Where(l => l.Level == LogLevel.Warn).Select(l => l.Message)];

    [Fact]
    public void By_default_only_the_first_error_is_printed_but_all_are_counted()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        Assert.Equal(1u, d.NumErrors);
        FreeUnknown(api);
        FreeUnknown(api);
        FreeUnknown(api);
        Assert.Equal(3u, d.ErrorCount);
        Assert.Equal(0u, d.NumErrors);
        Assert.Equal([true, false, false], d.Reports.Select(r => r.Printed));
        Assert.Equal([Nic + "device driver tries to free DMA memory it has not allocated [device address=0x0000000012345000] [size=64 bytes]"],
            Warnings(api));
    }

    [Fact]
    public void Num_errors_prints_that_many_more()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        d.NumErrors = 2;
        FreeUnknown(api);
        FreeUnknown(api);
        FreeUnknown(api);
        Assert.Equal([true, true, false], d.Reports.Select(r => r.Printed));
        Assert.Equal(0u, d.NumErrors);
        Assert.Equal(2, Warnings(api).Length);
    }

    [Fact]
    public void All_errors_prints_every_error_and_leaves_num_errors_alone()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        d.AllErrors = true;
        d.NumErrors = 0;
        FreeUnknown(api);
        FreeUnknown(api);
        Assert.Equal([true, true], d.Reports.Select(r => r.Printed));
        Assert.Equal(0u, d.NumErrors);
        Assert.Equal(2u, d.ErrorCount);
    }

    [Fact]
    public void Errors_of_an_entry_print_where_it_was_mapped()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        var dev = api.Dev();
        d.CurrentSite = "step 4 (map)";
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        d.CurrentSite = "step 5 (unmap)";
        api.UnmapPhys(dev, a, 2048, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(
            [
                Nic + "device driver frees DMA memory with different size [device address=0x0000000000100000] [map size=4096 bytes] [unmap size=2048 bytes]",
                "Mapped at:",
                " step 4 (map)",
            ],
            Warnings(api));
        Assert.Equal("step 4 (map)", d.Reports[0].MappedAt);
    }

    [Fact]
    public void Driver_filter_prints_only_that_driver_but_counts_and_uses_up_num_errors_for_all()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        d.DriverFilter = "plat0 trailing words";
        Assert.Equal("plat0", d.DriverFilter);
        Assert.Equal("DMA-API: enable driver filter for driver [plat0]", api.Log.Lines[^1].Message);
        d.NumErrors = 2;
        FreeUnknown(api, "nic0");
        FreeUnknown(api, "plat0");
        FreeUnknown(api, "plat0");
        // nic0's error was filtered out but still used up one of num_errors.
        Assert.Equal([false, true, false], d.Reports.Select(r => r.Printed));
        Assert.Equal(3u, d.ErrorCount);
        Assert.Equal(["DMA-API: plat0 plat0: device driver tries to free DMA memory it has not allocated [device address=0x0000000012345000] [size=64 bytes]"],
            Warnings(api));
    }

    [Fact]
    public void Driver_filter_non_alphanumeric_switches_it_off()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        d.DriverFilter = "nic0";
        d.DriverFilter = " ";
        Assert.Equal("", d.DriverFilter);
        Assert.Equal("DMA-API: switching off dma-debug driver filter", api.Log.Lines[^1].Message);
        var lines = api.Log.Count;
        d.DriverFilter = "-";
        Assert.Equal(lines, api.Log.Count);
    }

    [Fact]
    public void Pool_sized_in_whole_pages_of_entries()
    {
        var api = DebugMachines.X86();
        // 4096-byte pages of 128-byte (cacheline-aligned 112-byte) entries: 32 per page.
        var d = new DmaDebug(api, preallocEntries: 100);
        Assert.Equal(32u, d.DynamicEntries);
        Assert.Equal(128u, d.NrTotalEntries);
        Assert.Equal(128u, d.NumFreeEntries);
        Assert.Equal(1u << 16, api.Dbg().NrTotalEntries);
    }

    [Fact]
    public void Pool_grows_by_a_page_and_says_so_only_when_crossing_a_multiple_of_the_prealloc()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = new DmaDebug(api, preallocEntries: 100);
        for (var i = 0; i < 128; i++)
        {
            d.MapPhys(dev, new PhysAddr(0x100000 + ((ulong)i << 12)), 64, DmaDirection.ToDevice, new DmaAddr(0x100000 + ((ulong)i << 12)), DmaAttrs.None);
        }
        Assert.Equal(0u, d.NumFreeEntries);
        Assert.Equal(0u, d.MinFreeEntries);
        var logged = api.Log.Count;
        for (var i = 128; i < 224 + 1; i++)
        {
            d.MapPhys(dev, new PhysAddr(0x100000 + ((ulong)i << 12)), 64, DmaDirection.ToDevice, new DmaAddr(0x100000 + ((ulong)i << 12)), DmaAttrs.None);
        }
        // 160 and 192 are not within a page past a multiple of 100; 224 is (224 % 100 = 24 < 32).
        Assert.Equal(256u, d.NrTotalEntries);
        Assert.Equal(["DMA-API: dma_debug_entry pool grown to 224 (200%)"],
            api.Log.Lines.Skip(logged).Select(l => l.Message));
        Assert.Equal(225, d.LiveEntries);
        Assert.Equal(31u, d.NumFreeEntries);
    }

    [Fact]
    public void Pool_growth_failure_disables_debugging()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = new DmaDebug(api, preallocEntries: 32) { MaxTotalEntries = 32 };
        for (var i = 0; i < 33; i++)
        {
            d.MapPhys(dev, new PhysAddr(0x100000 + ((ulong)i << 12)), 64, DmaDirection.ToDevice, new DmaAddr(0x100000 + ((ulong)i << 12)), DmaAttrs.None);
        }
        Assert.True(d.Disabled);
        Assert.Equal("DMA-API: debugging out of memory - disabling", api.Log.Lines[^1].Message);
        Assert.Equal(LogLevel.Err, api.Log.Lines[^1].Level);
        Assert.Equal(32, d.LiveEntries);
        // Disabled: nothing is checked any more.
        d.UnmapPhys(dev, new DmaAddr(0xdead000), 64, DmaDirection.ToDevice);
        Assert.Equal(0u, d.ErrorCount);
    }

    [Fact]
    public void Pool_entries_come_back_on_unmap_and_min_free_remembers_the_low_water()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var total = d.NrTotalEntries;
        var a = api.MapChecked(dev, 0x100000, 64, DmaDirection.ToDevice);
        var b = api.MapChecked(dev, 0x200000, 64, DmaDirection.ToDevice);
        Assert.Equal(total - 2, d.NumFreeEntries);
        api.UnmapPhys(dev, a, 64, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(dev, b, 64, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(total, d.NumFreeEntries);
        Assert.Equal(total - 2, d.MinFreeEntries);
        Assert.Equal(0, d.LiveEntries);
    }

    [Fact]
    public void Exact_lookup_perfect_fit_wins_among_same_address_mappings()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        // Without an IOMMU the same buffer mapped twice has one DMA address: the unmap must find its own entry.
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        var b = api.MapChecked(dev, 0x100000, 512, DmaDirection.FromDevice);
        Assert.Equal(a, b);
        api.UnmapPhys(dev, b, 512, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Empty(d.Reports);
        var left = Assert.Single(d.Entries());
        Assert.Equal((4096UL, DmaDirection.ToDevice), (left.Size, left.Direction));
    }

    [Fact]
    public void Exact_lookup_several_matches_without_a_perfect_fit_is_not_found()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        api.MapChecked(dev, 0x100000, 512, DmaDirection.FromDevice);
        api.UnmapPhys(dev, a, 1024, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(["free_not_allocated"], d.Checks());
        Assert.Equal(2, d.LiveEntries);
    }

    [Fact]
    public void Exact_lookup_a_single_imperfect_match_is_used()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        api.UnmapPhys(dev, a, 1024, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(["free_size_mismatch", "free_direction_mismatch"], d.Checks());
        Assert.Equal(0, d.LiveEntries);
    }

    [Fact]
    public void Exact_lookup_is_per_device()
    {
        var api = DebugMachines.X86();
        var a = api.MapChecked(api.Dev("nic0"), 0x100000, 64, DmaDirection.ToDevice);
        api.UnmapPhys(api.Dev("plat0"), a, 64, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(["free_not_allocated"], api.Dbg().Checks());
        Assert.Equal("plat0", api.Dbg().Reports[0].Device);
    }

    [Fact]
    public void Containing_lookup_walks_back_over_buckets()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        // 64 KiB from 0x100000 spans buckets 128..135; a sync at its end is found from bucket 135 back.
        var a = api.MapChecked(dev, 0x100000, 0x10000, DmaDirection.FromDevice);
        var hit = d.FindContaining(dev, a + 0xf000, 0x1000);
        Assert.NotNull(hit);
        Assert.Equal(a, hit.DevAddr);
        Assert.Null(d.FindContaining(dev, a + 0xf000, 0x1001));
        Assert.Null(d.FindContaining(api.Dev("plat0"), a, 64));
        api.SyncSingleForCpu(dev, a + 0xf000, 0x1000, DmaDirection.FromDevice);
        Assert.Empty(d.Reports);
    }

    [Fact]
    public void Mapping_error_marks_only_the_first_unchecked_same_address_entry()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var dma = new DmaAddr(0x100000);
        d.MapPhys(dev, new PhysAddr(0x100000), 64, DmaDirection.ToDevice, dma, DmaAttrs.None);
        Assert.Equal([MapErrType.NotChecked], d.Entries().Select(e => e.MapErrType));
        d.MapPhys(dev, new PhysAddr(0x100000), 128, DmaDirection.ToDevice, dma, DmaAttrs.None);
        Assert.Equal([MapErrType.Checked, MapErrType.NotChecked], d.Entries().Select(e => e.MapErrType));
        api.MappingError(dev, dma);
        Assert.Equal([MapErrType.Checked, MapErrType.Checked], d.Entries().Select(e => e.MapErrType));
    }

    [Fact]
    public void Mapping_the_same_address_again_marks_the_earlier_mapping_checked_as_the_kernel_does()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        d.AllErrors = true;
        var a = api.MapPhys(dev, new PhysAddr(0x100000), 64, DmaDirection.ToDevice, DmaAttrs.None);
        var b = api.MapPhys(dev, new PhysAddr(0x100000), 64, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(a, b);
        Assert.Equal([MapErrType.Checked, MapErrType.NotChecked], d.Entries().Select(e => e.MapErrType));
        api.UnmapPhys(dev, a, 64, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(dev, b, 64, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(["map_error_not_checked"], d.Checks());
    }

    [Fact]
    public void Dump_one_line_per_entry()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, 0x100040, 64, DmaDirection.FromDevice);
        Assert.Equal("nic0 0000:03:00.0 phy idx 128 P=0x0000000000100040 D=100040 L=40 cln=0x0000000000004001 DMA_FROM_DEVICE dma map error checked\n",
            api.Dbg().Dump());
    }

    [Fact]
    public void Disabled_at_run_checks_nothing_and_tracks_nothing()
    {
        var api = DebugMachines.X86();
        var d = api.Dbg();
        d.Disabled = true;
        var dev = api.Dev();
        var a = api.MapPhys(dev, new PhysAddr(0x100000), 64, DmaDirection.FromDevice, DmaAttrs.None);
        api.UnmapPhys(dev, a, 32, DmaDirection.ToDevice, DmaAttrs.None);
        api.MapPhys(dev, new PhysAddr(DebugMachines.BarBase), 64, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Empty(d.Reports);
        Assert.Equal(0, d.LiveEntries);
    }

    [Fact]
    public void Debug_off_machine_has_no_dma_debug()
    {
        var api = DebugMachines.X86(debug: false);
        Assert.Null(api.Debug);
        var dev = api.Dev();
        var a = api.MapPhys(dev, new PhysAddr(0x100000), 64, DmaDirection.FromDevice, DmaAttrs.None);
        api.UnmapPhys(dev, a, 32, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Empty(api.Log.Lines);
    }
}
