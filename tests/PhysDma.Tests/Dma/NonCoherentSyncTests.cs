using PhysDma.Core;
using PhysDma.Dma.Trace;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>
/// arm64 non-coherent: the cache operations per direction (spec §2.5) and what the device and the CPU see
/// when a driver does or skips the syncs.
/// </summary>
public sealed class NonCoherentSyncTests
{
    private static readonly PhysAddr Buf = new(0x9000_0000);
    private const int Len = 1024;

    private static CacheOp Clean(PhysAddr p, ulong n) => new(CacheOpKind.Clean, p, n, true);

    private static CacheOp Inval(PhysAddr p, ulong n) => new(CacheOpKind.Invalidate, p, n, true);

    [Theory]
    [InlineData(DmaDirection.ToDevice, true, false)]
    [InlineData(DmaDirection.FromDevice, true, true)]
    [InlineData(DmaDirection.Bidirectional, true, true)]
    public void Map_cleans_unmap_invalidates_unless_to_device(DmaDirection dir, bool mapCleans, bool unmapInvalidates)
    {
        var r = Arm64();
        var log = r.CacheLog();
        var p = new PhysAddr(0x9123_4540);
        var a = r.Api.MapPhys(r.Dev, p, 3000, dir, DmaAttrs.None);
        Assert.Equal(mapCleans ? [Clean(p, 3000)] : Array.Empty<CacheOp>(), log);
        log.Clear();
        r.Api.UnmapPhys(r.Dev, a, 3000, dir, DmaAttrs.None);
        Assert.Equal(unmapInvalidates ? [Inval(p, 3000)] : Array.Empty<CacheOp>(), log);
    }

    [Theory]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    [InlineData(DmaDirection.Bidirectional)]
    public void Unmap_with_skip_cpu_sync_does_no_cache_op(DmaDirection dir)
    {
        var r = Arm64();
        var log = r.CacheLog();
        var a = r.Api.MapPhys(r.Dev, Buf, Len, dir, DmaAttrs.SkipCpuSync);
        r.Api.UnmapPhys(r.Dev, a, Len, dir, DmaAttrs.SkipCpuSync);
        Assert.Empty(log);
    }

    [Theory]
    [InlineData(DmaDirection.ToDevice, 1, 0)]
    [InlineData(DmaDirection.FromDevice, 1, 1)]
    [InlineData(DmaDirection.Bidirectional, 1, 1)]
    public void Syncs_for_device_cleans_for_cpu_invalidates_at_the_cpu_phys_of_the_bus_address(DmaDirection dir, int cleans, int invals)
    {
        var r = Arm64Nic(d => d with { DmaRanges = [new DmaRangeConfig(0x8000_0000, 0, 4 * GiB)] });
        var a = r.Api.MapPhys(r.Dev, Buf + 0x80, 512, dir, DmaAttrs.None);
        Assert.Equal(new DmaAddr(0x1000_0080), a);
        var log = r.CacheLog();
        r.Api.SyncSingleForDevice(r.Dev, a, 512, dir);
        r.Api.SyncSingleForCpu(r.Dev, a, 512, dir);
        Assert.Equal(cleans, log.Count(o => o == Clean(Buf + 0x80, 512)));
        Assert.Equal(invals, log.Count(o => o == Inval(Buf + 0x80, 512)));
        Assert.Equal(cleans + invals, log.Count);
        Assert.Equal(
            ["dma_map_phys", "dma_sync_single_for_device", "dma_sync_single_for_cpu"],
            r.Api.Trace.Records.Select(t => t.Event));
        Assert.Equal($"nic0 dir={DmaTrace.Dir(dir)} dma_addr=10000080 size=512", r.Api.Trace.Records[1].Payload);
    }

    // TO_DEVICE: the CPU fills the buffer, the device must read exactly those bytes.
    [Fact]
    public void To_device_done_right_device_reads_cpu_bytes()
    {
        var r = Arm64();
        var data = Pattern(Len, 1);
        r.CpuWrite(Buf, data);
        var a = r.Api.MapPhys(r.Dev, Buf, Len, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(data, r.DevRead(a, Len));
        r.Api.UnmapPhys(r.Dev, a, Len, DmaDirection.ToDevice, DmaAttrs.None);
    }

    [Fact]
    public void To_device_skipped_clean_device_reads_old_bytes()
    {
        var r = Arm64();
        // The driver maps with SKIP_CPU_SYNC and never syncs for the device: the clean is missed.
        var data = Pattern(Len, 1);
        r.CpuWrite(Buf, data);
        var a = r.Api.MapPhys(r.Dev, Buf, Len, DmaDirection.ToDevice, DmaAttrs.SkipCpuSync);
        Assert.Equal(new byte[Len], r.DevRead(a, Len));
        // The bytes are in the CPU cache, dirty.
        Assert.True(r.Machine.Cache.IsDirty(Buf));
        Assert.Equal(data, r.CpuRead(Buf, Len));
        // The late sync for the device repairs it.
        r.Api.SyncSingleForDevice(r.Dev, a, Len, DmaDirection.ToDevice);
        Assert.Equal(data, r.DevRead(a, Len));
    }

    [Fact]
    public void To_device_reused_buffer_without_sync_for_device_device_sees_previous_packet()
    {
        var r = Arm64();
        var first = Pattern(Len, 1);
        var second = Pattern(Len, 100);
        r.CpuWrite(Buf, first);
        var a = r.Api.MapPhys(r.Dev, Buf, Len, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(first, r.DevRead(a, Len));

        // The CPU writes the next packet into the still-mapped buffer and forgets sync_single_for_device.
        r.CpuWrite(Buf, second);
        Assert.Equal(first, r.DevRead(a, Len));

        // Done right: the sync cleans the new bytes to memory.
        r.Api.SyncSingleForDevice(r.Dev, a, Len, DmaDirection.ToDevice);
        Assert.Equal(second, r.DevRead(a, Len));
    }

    // FROM_DEVICE: the device fills the buffer, the CPU must read exactly those bytes.
    [Fact]
    public void From_device_done_right_cpu_reads_device_bytes()
    {
        var r = Arm64();
        r.CpuWrite(Buf, new byte[Len]); // the driver zeroed it: lines now in the cache
        var a = r.Api.MapPhys(r.Dev, Buf, Len, DmaDirection.FromDevice, DmaAttrs.None);
        var data = Pattern(Len, 7);
        r.DevWrite(a, data);
        r.Api.UnmapPhys(r.Dev, a, Len, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(data, r.CpuRead(Buf, Len));
    }

    [Fact]
    public void From_device_missed_invalidate_cpu_reads_stale_cached_bytes()
    {
        var r = Arm64();
        var old = Pattern(Len, 50);
        r.CpuWrite(Buf, old);
        var a = r.Api.MapPhys(r.Dev, Buf, Len, DmaDirection.FromDevice, DmaAttrs.None);
        var data = Pattern(Len, 7);
        r.DevWrite(a, data);

        // The driver reads the buffer without sync_single_for_cpu (or unmap): stale cache lines win.
        Assert.Equal(old, r.CpuRead(Buf, Len));

        r.Api.SyncSingleForCpu(r.Dev, a, Len, DmaDirection.FromDevice);
        Assert.Equal(data, r.CpuRead(Buf, Len));
    }

    [Fact]
    public void From_device_unmap_with_skip_cpu_sync_leaves_stale_bytes()
    {
        var r = Arm64();
        var old = Pattern(Len, 50);
        r.CpuWrite(Buf, old);
        var a = r.Api.MapPhys(r.Dev, Buf, Len, DmaDirection.FromDevice, DmaAttrs.None);
        r.DevWrite(a, Pattern(Len, 7));
        r.Api.UnmapPhys(r.Dev, a, Len, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync);
        Assert.Equal(old, r.CpuRead(Buf, Len));
    }

    [Fact]
    public void From_device_map_without_clean_dirty_lines_later_overwrite_device_data()
    {
        // SKIP_CPU_SYNC on map leaves dirty lines; the unmap's invalidate then has nothing to do with
        // them... except at partial edges. Whole lines are dropped, so the device's bytes win.
        var r = Arm64();
        r.CpuWrite(Buf, Pattern(Len, 50));
        var a = r.Api.MapPhys(r.Dev, Buf, Len, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync);
        var data = Pattern(Len, 7);
        r.DevWrite(a, data);
        r.Api.UnmapPhys(r.Dev, a, Len, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(data, r.CpuRead(Buf, Len));
    }

    [Fact]
    public void Bidirectional_round_trip_done_right()
    {
        var r = Arm64();
        var req = Pattern(256, 3);
        r.CpuWrite(Buf, req);
        var a = r.Api.MapPhys(r.Dev, Buf, 256, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(req, r.DevRead(a, 256));
        var resp = Pattern(256, 200);
        r.DevWrite(a, resp);
        r.Api.UnmapPhys(r.Dev, a, 256, DmaDirection.Bidirectional, DmaAttrs.None);
        Assert.Equal(resp, r.CpuRead(Buf, 256));
    }

    [Fact]
    public void Coherent_no_syncs_needed_never_stale()
    {
        var r = X86();
        var p = new PhysAddr(0x2_0000_0000);
        var tx = Pattern(Len, 9);
        r.CpuWrite(p, tx);
        var a = r.Api.MapPhys(r.Dev, p, Len, DmaDirection.Bidirectional, DmaAttrs.SkipCpuSync);
        Assert.Equal(tx, r.DevRead(a, Len)); // snooped from the dirty cache
        var second = Pattern(Len, 90);
        r.CpuWrite(p, second);
        Assert.Equal(second, r.DevRead(a, Len));
        var rx = Pattern(Len, 33);
        r.DevWrite(a, rx);
        Assert.Equal(rx, r.CpuRead(p, Len));
    }

    [Fact]
    public void Device_with_dma_ranges_reads_through_the_range_map()
    {
        var r = Arm64Nic(d => d with { DmaRanges = [new DmaRangeConfig(0x8000_0000, 0, 4 * GiB)] });
        var data = Pattern(64, 5);
        r.CpuWrite(Buf, data);
        var a = r.Api.MapPhys(r.Dev, Buf, 64, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(new DmaAddr(0x1000_0000), a);
        Assert.Equal(data, r.DevRead(a, 64));
        // The CPU physical address is not a bus address for this device: that read lands elsewhere.
        var other = new byte[64];
        Assert.Null(r.Machine.DeviceRead(r.Dev, new DmaAddr(Buf.Value), other));
        Assert.Equal(new byte[64], other);
    }

    [Fact]
    public void Peer_mmio_device_reads_the_bar_through_its_mmio_mapping()
    {
        var r = Arm64();
        var bar = r.Machine.Kmap.Ioremap(ArmBar, 4096);
        var data = Pattern(128, 17);
        r.Machine.Cpu.Write(bar + 0x100, data); // uncached: straight to the BAR
        var a = r.Api.MapResource(r.Dev, ArmBar + 0x100, 128, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(new DmaAddr(0x4000_0100), a);
        Assert.Equal(data, r.DevRead(a, 128));
        Assert.Equal(0, r.Machine.Cache.LineCount);
    }
}
