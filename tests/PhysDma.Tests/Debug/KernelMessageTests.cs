using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Debug;

/// <summary>Every report of spec §6.4, with the kernel's text, verbatim.</summary>
public class KernelMessageTests
{
    private const string Nic = "DMA-API: nic0 0000:03:00.0: ";
    private const string Plat = "DMA-API: plat0 plat0: ";

    private static DebugReport Single(DmaDebug d, string check)
    {
        var r = Assert.Single(d.Reports);
        Assert.Equal(check, r.Check);
        Assert.True(r.Kernel);
        return r;
    }

    [Fact]
    public void Free_invalid_address()
    {
        var api = DebugMachines.X86();
        api.UnmapPhys(api.Dev(), DmaAddr.MappingError, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        var r = Single(api.Dbg(), "free_invalid_address");
        Assert.Equal(Nic + "device driver tries to free an invalid DMA memory address", r.Message);
        Assert.Equal("nic0", r.Device);
    }

    [Fact]
    public void Free_not_allocated()
    {
        var api = DebugMachines.X86();
        api.UnmapPhys(api.Dev(), new DmaAddr(0x12345000), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(Nic + "device driver tries to free DMA memory it has not allocated [device address=0x0000000012345000] [size=4096 bytes]",
            Single(api.Dbg(), "free_not_allocated").Message);
    }

    [Fact]
    public void Free_size_mismatch()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        api.UnmapPhys(dev, a, 2048, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(Nic + "device driver frees DMA memory with different size [device address=0x0000000000100000] [map size=4096 bytes] [unmap size=2048 bytes]",
            Single(api.Dbg(), "free_size_mismatch").Message);
    }

    [Fact]
    public void Free_type_mismatch()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.Bidirectional);
        api.Dbg().FreeCoherent(dev, 4096, api.Machine.Kmap.PhysToVirt(new PhysAddr(0x100000)), a);
        Assert.Equal(Nic + "device driver frees DMA memory with wrong function [device address=0x0000000000100000] [size=4096 bytes] [mapped as phy] [unmapped as coherent]",
            Single(api.Dbg(), "free_type_mismatch").Message);
    }

    [Fact]
    public void Free_cpu_address_mismatch_keeps_the_kernels_double_prefix()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var kmap = api.Machine.Kmap;
        d.AllocCoherent(dev, 8192, new DmaAddr(0x200000), kmap.PhysToVirt(new PhysAddr(0x200000)), DmaAttrs.None);
        d.FreeCoherent(dev, 8192, kmap.PhysToVirt(new PhysAddr(0x300000)), new DmaAddr(0x200000));
        Assert.Equal(Nic + "device driver frees DMA memory with different CPU address [device address=0x0000000000200000] [size=8192 bytes] [cpu alloc address=0x0x0000000000200000] [cpu free address=0x0x0000000000300000]",
            Single(d, "free_cpu_address_mismatch").Message);
        Assert.Equal(0, d.LiveEntries);
    }

    [Fact]
    public void Free_sg_count_mismatch()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        DebugSg[] sg =
        [
            new(new PhysAddr(0x100000), 4096, new DmaAddr(0x100000), 4096),
            new(new PhysAddr(0x300000), 4096, new DmaAddr(0x300000), 4096),
        ];
        d.MapSg(dev, sg, 2, 2, DmaDirection.ToDevice, DmaAttrs.None);
        d.UnmapSg(dev, sg.AsSpan(0, 1), 1, DmaDirection.ToDevice);
        Assert.Equal(Nic + "device driver frees DMA sg list with different entry count [map count=2] [unmap count=1]",
            Single(d, "free_sg_count_mismatch").Message);
    }

    [Fact]
    public void Free_direction_mismatch()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        api.UnmapPhys(dev, a, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(Nic + "device driver frees DMA memory with different direction [device address=0x0000000000100000] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [unmapped with DMA_FROM_DEVICE]",
            Single(api.Dbg(), "free_direction_mismatch").Message);
    }

    [Fact]
    public void Map_error_not_checked_has_no_space_before_the_bracket()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapPhys(dev, new PhysAddr(0x100000), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(Nic + "device driver failed to check map error[device address=0x0000000000100000] [size=4096 bytes] [mapped as phy]",
            Single(api.Dbg(), "map_error_not_checked").Message);
    }

    [Fact]
    public void Unmap_order_size_type_direction_map_error()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapPhys(dev, new PhysAddr(0x100000), 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.UnmapPhys(dev, a, 512, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(["free_size_mismatch", "free_direction_mismatch", "map_error_not_checked"], api.Dbg().Checks());
    }

    [Fact]
    public void Map_from_stack_vmapped_stack_prints_the_probable_address()
    {
        var api = DebugMachines.X86();
        api.Machine.Stacks.Register(new PhysAddr(0x200000), new KernelVirt(0xffffc90000004000));
        api.MapChecked(api.Dev(), 0x200010, 64, DmaDirection.FromDevice);
        Assert.Equal(Nic + "device driver maps memory from stack [probable addr=ffffc90000004010]",
            Single(api.Dbg(), "map_from_stack").Message);
    }

    [Fact]
    public void Map_from_kernel_text()
    {
        var api = DebugMachines.X86();
        api.MapChecked(api.Dev(), 0x1000100, 64, DmaDirection.ToDevice);
        Assert.Equal(Nic + "device driver maps memory from kernel text or rodata [addr=ffff888001000100] [len=64]",
            Single(api.Dbg(), "map_from_kernel_text").Message);
    }

    [Fact]
    public void Mmio_skips_the_stack_and_text_checks()
    {
        var api = DebugMachines.X86();
        api.Machine.Stacks.Register(new PhysAddr(0x200000), new KernelVirt(0xffffc90000004000));
        api.Dbg().MapPhys(api.Dev(), new PhysAddr(0x200000), 64, DmaDirection.FromDevice, new DmaAddr(0x200000), DmaAttrs.Mmio);
        api.Dbg().MapPhys(api.Dev(), new PhysAddr(0x1000000), 64, DmaDirection.ToDevice, new DmaAddr(0x1000000), DmaAttrs.Mmio);
        Assert.DoesNotContain(api.Dbg().Reports, r => r.Kernel);
    }

    [Fact]
    public void Map_invalid_area()
    {
        var api = DebugMachines.X86();
        var kmapVa = new KernelVirt(api.Machine.Kmap.KmapStart + 0x40);
        api.Dbg().MapSingle(api.Dev(), kmapVa, 16);
        Assert.Equal(Nic + "device driver maps memory from invalid area [addr=ffffffffff000040] [len=16]",
            Single(api.Dbg(), "map_invalid_area").Message);
    }

    [Fact]
    public void Map_vmalloc_is_also_an_invalid_area()
    {
        var api = DebugMachines.X86();
        var va = api.Machine.Kmap.Vmap([new PhysAddr(0x400000)], cached: true);
        api.Dbg().MapSingle(api.Dev(), va, 128);
        var d = api.Dbg();
        Assert.Equal(["map_invalid_area", "map_vmalloc"], d.Checks());
        Assert.Equal(Nic + "device driver maps memory from vmalloc area [addr=ffffc90000000000] [len=128]", d.Reports[1].Message);
    }

    [Fact]
    public void Dma_map_single_refuses_vmalloc_before_debug_sees_it()
    {
        var api = DebugMachines.X86();
        var va = api.Machine.Kmap.Vmap([new PhysAddr(0x400000)], cached: true);
        Assert.True(api.MapSingle(api.Dev(), va, 128, DmaDirection.ToDevice, DmaAttrs.None).IsError);
        Assert.Empty(api.Dbg().Reports);
    }

    [Fact]
    public void Sync_not_allocated()
    {
        var api = DebugMachines.X86();
        api.SyncSingleForCpu(api.Dev(), new DmaAddr(0x500000), 64, DmaDirection.FromDevice);
        Assert.Equal(Nic + "device driver tries to sync DMA memory it has not allocated [device address=0x0000000000500000] [size=64 bytes]",
            Single(api.Dbg(), "sync_not_allocated").Message);
    }

    [Fact]
    public void Sync_past_the_end_is_not_allocated_as_in_the_kernel()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.FromDevice);
        api.SyncSingleForCpu(dev, a + 4000, 200, DmaDirection.FromDevice);
        Assert.Equal(["sync_not_allocated"], api.Dbg().Checks());
    }

    [Fact]
    public void Sync_out_of_range_only_reachable_when_the_range_wraps()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        var top = new DmaAddr(0xffffffffffffe000);
        d.MapPhys(dev, new PhysAddr(0x100000), 4096, DmaDirection.Bidirectional, top, DmaAttrs.None);
        d.SyncSingleForCpu(dev, top, 0xfffffffffffff000, DmaDirection.Bidirectional);
        Assert.Equal(Nic + "device driver syncs DMA memory outside allocated range [device address=0xffffffffffffe000] [allocation size=4096 bytes] [sync offset+size=18446744073709547520]",
            Single(d, "sync_out_of_range").Message);
    }

    [Fact]
    public void Sync_direction_mismatch()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.FromDevice);
        api.SyncSingleForCpu(dev, a + 64, 64, DmaDirection.ToDevice);
        Assert.Equal(Nic + "device driver syncs DMA memory with different direction [device address=0x0000000000100040] [size=4096 bytes] [mapped with DMA_FROM_DEVICE] [synced with DMA_TO_DEVICE]",
            Single(api.Dbg(), "sync_direction_mismatch").Message);
    }

    [Fact]
    public void Sync_read_only_for_cpu()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        api.SyncSingleForCpu(dev, a, 4096, DmaDirection.ToDevice);
        Assert.Empty(api.Dbg().Reports);
        api.SyncSingleForCpu(dev, a, 4096, DmaDirection.Bidirectional);
        var d = api.Dbg();
        Assert.Equal(["sync_direction_mismatch", "sync_readonly_for_cpu"], d.Checks());
        Assert.Equal(Nic + "device driver syncs device read-only DMA memory for cpu [device address=0x0000000000100000] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_BIDIRECTIONAL]",
            d.Reports[1].Message);
    }

    [Fact]
    public void Sync_write_only_for_device()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.FromDevice);
        api.SyncSingleForDevice(dev, a, 4096, DmaDirection.FromDevice);
        Assert.Empty(api.Dbg().Reports);
        api.SyncSingleForDevice(dev, a, 4096, DmaDirection.Bidirectional);
        var d = api.Dbg();
        Assert.Equal(["sync_direction_mismatch", "sync_writeonly_for_device"], d.Checks());
        Assert.Equal(Nic + "device driver syncs device write-only DMA memory to device [device address=0x0000000000100000] [size=4096 bytes] [mapped with DMA_FROM_DEVICE] [synced with DMA_BIDIRECTIONAL]",
            d.Reports[1].Message);
    }

    [Fact]
    public void Sync_sg_count_mismatch_and_bidirectional_skips_it()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        DebugSg[] sg =
        [
            new(new PhysAddr(0x100000), 4096, new DmaAddr(0x100000), 4096),
            new(new PhysAddr(0x300000), 4096, new DmaAddr(0x300000), 4096),
        ];
        d.MapSg(dev, sg, 2, 2, DmaDirection.FromDevice, DmaAttrs.None);
        d.SyncSg(dev, sg.AsSpan(0, 1), 1, DmaDirection.FromDevice, toCpu: true);
        Assert.Equal(Nic + "device driver syncs DMA sg list with different entry count [map count=2] [sync count=1]",
            Single(d, "sync_sg_count_mismatch").Message);
        d.UnmapSg(dev, sg, 2, DmaDirection.FromDevice);
        Assert.Equal(0, d.LiveEntries);
    }

    [Fact]
    public void Sync_sg_of_an_unknown_list_checks_nothing()
    {
        var api = DebugMachines.X86();
        DebugSg[] sg = [new(new PhysAddr(0x100000), 4096, new DmaAddr(0x100000), 4096)];
        api.Dbg().SyncSg(api.Dev(), sg, 1, DmaDirection.FromDevice, toCpu: true);
        Assert.Empty(api.Dbg().Reports);
    }

    [Fact]
    public void Sg_segment_too_long_and_across_boundary()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev("plat0");
        var d = api.Dbg();
        DebugSg[] sg =
        [
            new(new PhysAddr(0x100000), 0x20000, new DmaAddr(0x100000), 0x20000),
            new(new PhysAddr(0x20f000), 0x2000, new DmaAddr(0x20f000), 0x2000),
        ];
        d.MapSg(dev, sg, 2, 2, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(["sg_segment_too_long", "sg_segment_crosses_boundary", "sg_segment_crosses_boundary"], d.Checks());
        Assert.Equal(Plat + "mapping sg segment longer than device claims to support [len=131072] [max=65536]", d.Reports[0].Message);
        Assert.Equal(Plat + "mapping sg segment across boundary [start=0x000000000020f000] [end=0x0000000000210fff] [boundary=0x000000000000ffff]",
            d.Reports[2].Message);
    }

    [Fact]
    public void Sg_map_checks_stack_on_every_cpu_segment()
    {
        var api = DebugMachines.X86();
        api.Machine.Stacks.Register(new PhysAddr(0x300000), new KernelVirt(0xffffc90000010000));
        DebugSg[] sg =
        [
            new(new PhysAddr(0x100000), 4096, new DmaAddr(0x100000), 8192),
            new(new PhysAddr(0x300000), 4096, default, 0),
        ];
        api.Dbg().MapSg(api.Dev(), sg, 2, 1, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(["map_from_stack"], api.Dbg().Checks());
        Assert.Equal(1, api.Dbg().LiveEntries);
    }

    [Fact]
    public void Cacheline_overlap()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        api.MapChecked(dev, 0x100000, 32, DmaDirection.FromDevice);
        api.MapChecked(dev, 0x100020, 32, DmaDirection.FromDevice);
        Assert.Equal(Nic + "cacheline tracking EEXIST, overlapping mappings aren't supported",
            Single(api.Dbg(), "cacheline_overlap").Message);
    }

    [Fact]
    public void Leak_on_unbind_reports_count_and_the_last_entry_in_bucket_order()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var d = api.Dbg();
        d.CurrentSite = "step 1";
        api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        d.CurrentSite = "step 2";
        api.MapChecked(dev, 0x40000000, 8192, DmaDirection.FromDevice);
        d.CurrentSite = "step 3";
        api.MapChecked(api.Dev("plat0"), 0x500000, 64, DmaDirection.ToDevice);
        d.RemoveDevice(dev);
        // The walk goes bucket by bucket and keeps the last match: 0x40000000 hashes to bucket 0 and
        // 0x100000 to bucket 128, so the entry reported is the one mapped first.
        var r = Single(d, "leak_on_unbind");
        Assert.Equal(Nic + "device driver has pending DMA allocations while released from device [count=2]\n" +
            "One of leaked entries details: [device address=0x0000000000100000] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [mapped as phy]",
            r.Message);
        Assert.Equal("step 1", r.MappedAt);
        Assert.Equal(3, d.LiveEntries);
    }

    [Fact]
    public void No_leak_report_when_everything_was_unmapped()
    {
        var api = DebugMachines.X86();
        var dev = api.Dev();
        var a = api.MapChecked(dev, 0x100000, 4096, DmaDirection.ToDevice);
        api.UnmapPhys(dev, a, 4096, DmaDirection.ToDevice, DmaAttrs.None);
        api.Dbg().RemoveDevice(dev);
        Assert.Empty(api.Dbg().Reports);
    }
}
