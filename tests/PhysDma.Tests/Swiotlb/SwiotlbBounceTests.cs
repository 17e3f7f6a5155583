using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Swiotlb.SwiotlbMachines;

namespace PhysDma.Tests.Swiotlb;

/// <summary>
/// Bytes through bounce buffers (swiotlb_tbl_map_single, swiotlb_bounce, swiotlb_tbl_unmap_single): the device sees only the bounce
/// slot, the original changes only at sync-for-cpu or unmap, and direction decides which copies happen.
/// </summary>
public class SwiotlbBounceTests
{
    private const int Len = 256;

    private sealed record Rig(Machine M, DmaApi Api, Device Dev, PhysAddr Phys, KernelVirt Va);

    /// <summary>A 32-bit NIC and a buffer above 4 GiB it cannot reach: dma-direct must bounce.</summary>
    private static Rig Nic(MachineConfig? cfg = null, ulong offset = 0x40)
    {
        var (m, api) = Build(cfg ?? X86());
        var dev = m.Devices.First();
        var (p, va) = SwiotlbMachines.Buffer(m, 2 * 4096);
        return new Rig(m, api, dev, p + offset, va + offset);
    }

    [Fact]
    public void To_device_copies_in_at_map_and_the_device_reads_the_bounce_slot()
    {
        var r = Nic();
        var data = Seq(Len, 7);
        r.M.Cpu.Write(r.Va, data);
        r.Api.Recorder = new DmaRecorder();
        var dma = r.Api.MapPhys(r.Dev, r.Phys, Len, DmaDirection.ToDevice, 0);

        Assert.Equal(X86PoolStart, dma.Value);
        Assert.Equal(DmaPath.Swiotlb, r.Api.Recorder.Path);
        Assert.Equal(new PhysAddr(X86PoolStart), r.Api.Recorder.Bounce);
        Assert.Equal(data, DevRead(r.M, r.Dev, dma, Len));
        Assert.Equal(1L, r.Api.Swiotlb.SlotsUsed);

        // The device scribbling on a TO_DEVICE bounce buffer never reaches the original.
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, new byte[Len]));
        r.Api.UnmapPhys(r.Dev, dma, Len, DmaDirection.ToDevice, 0);
        Assert.Equal(data, CpuRead(r.M, r.Va, Len));
        Assert.Equal(0L, r.Api.Swiotlb.SlotsUsed);
    }

    [Fact]
    public void Invariant15_from_device_also_copies_in_so_unwritten_bytes_survive()
    {
        var r = Nic();
        var before = Seq(Len, 0x40);
        r.M.Cpu.Write(r.Va, before);
        var dma = r.Api.MapPhys(r.Dev, r.Phys, Len, DmaDirection.FromDevice, 0);
        Assert.Equal(before, DevRead(r.M, r.Dev, dma, Len));

        // The device fills only the first half.
        var half = Enumerable.Repeat((byte)0xAA, Len / 2).ToArray();
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, half));
        Assert.Equal(before, CpuRead(r.M, r.Va, Len));

        r.Api.UnmapPhys(r.Dev, dma, Len, DmaDirection.FromDevice, 0);
        Assert.Equal([.. half, .. before[(Len / 2)..]], CpuRead(r.M, r.Va, Len));
    }

    [Fact]
    public void From_device_reaches_the_original_at_sync_for_cpu_and_at_unmap_only()
    {
        var r = Nic();
        r.M.Cpu.Write(r.Va, new byte[Len]);
        var dma = r.Api.MapPhys(r.Dev, r.Phys, Len, DmaDirection.FromDevice, 0);

        var first = Seq(Len, 1);
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, first));
        Assert.Equal(new byte[Len], CpuRead(r.M, r.Va, Len));
        r.Api.SyncSingleForCpu(r.Dev, dma, Len, DmaDirection.FromDevice);
        Assert.Equal(first, CpuRead(r.M, r.Va, Len));

        r.Api.SyncSingleForDevice(r.Dev, dma, Len, DmaDirection.FromDevice);
        var second = Seq(Len, 99);
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, second));
        Assert.Equal(first, CpuRead(r.M, r.Va, Len));
        r.Api.UnmapPhys(r.Dev, dma, Len, DmaDirection.FromDevice, 0);
        Assert.Equal(second, CpuRead(r.M, r.Va, Len));
    }

    [Fact]
    public void Invariant15_unmap_with_skip_cpu_sync_copies_nothing_back()
    {
        var r = Nic();
        var before = Seq(Len, 3);
        r.M.Cpu.Write(r.Va, before);
        var dma = r.Api.MapPhys(r.Dev, r.Phys, Len, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync);
        // The copy-in is not a CPU sync: it happens even with SKIP_CPU_SYNC.
        Assert.Equal(before, DevRead(r.M, r.Dev, dma, Len));
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, Seq(Len, 200)));
        r.Api.UnmapPhys(r.Dev, dma, Len, DmaDirection.FromDevice, DmaAttrs.SkipCpuSync);
        Assert.Equal(before, CpuRead(r.M, r.Va, Len));
        Assert.Equal(0L, r.Api.Swiotlb.SlotsUsed);
    }

    [Fact]
    public void Bidirectional_copies_in_at_map_and_back_at_unmap()
    {
        var r = Nic();
        var data = Seq(Len, 11);
        r.M.Cpu.Write(r.Va, data);
        var dma = r.Api.MapPhys(r.Dev, r.Phys, Len, DmaDirection.Bidirectional, 0);
        Assert.Equal(data, DevRead(r.M, r.Dev, dma, Len));
        var reply = Seq(Len, 0x80);
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, reply));
        Assert.Equal(data, CpuRead(r.M, r.Va, Len));
        r.Api.UnmapPhys(r.Dev, dma, Len, DmaDirection.Bidirectional, 0);
        Assert.Equal(reply, CpuRead(r.M, r.Va, Len));
    }

    [Fact]
    public void Sync_for_device_refreshes_the_bounce_slot_from_the_original()
    {
        var r = Nic();
        r.M.Cpu.Write(r.Va, Seq(Len, 1));
        var dma = r.Api.MapPhys(r.Dev, r.Phys, Len, DmaDirection.ToDevice, 0);
        var updated = Seq(Len, 50);
        r.M.Cpu.Write(r.Va, updated);
        Assert.Equal(Seq(Len, 1), DevRead(r.M, r.Dev, dma, Len));
        r.Api.SyncSingleForDevice(r.Dev, dma, Len, DmaDirection.ToDevice);
        Assert.Equal(updated, DevRead(r.M, r.Dev, dma, Len));
        r.Api.UnmapPhys(r.Dev, dma, Len, DmaDirection.ToDevice, 0);
    }

    [Fact]
    public void Partial_sync_inside_the_mapping_copies_just_that_part()
    {
        var r = Nic();
        r.M.Cpu.Write(r.Va, new byte[Len]);
        var dma = r.Api.MapPhys(r.Dev, r.Phys, Len, DmaDirection.FromDevice, 0);
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, Seq(Len, 1)));
        r.Api.SyncSingleForCpu(r.Dev, dma + 100, 16, DmaDirection.FromDevice);
        var got = CpuRead(r.M, r.Va, Len);
        Assert.Equal(Seq(Len, 1)[100..116], got[100..116]);
        Assert.Equal(new byte[100], got[..100]);
        Assert.Equal(new byte[Len - 116], got[116..]);
    }

    [Fact]
    public void Overflowing_sync_is_clamped_to_the_allocation_and_reported()
    {
        var r = Nic();
        r.M.Cpu.Write(r.Va, new byte[4096]);
        var dma = r.Api.MapPhys(r.Dev, r.Phys, 100, DmaDirection.FromDevice, 0);
        Assert.Null(r.M.DeviceWrite(r.Dev, dma, Enumerable.Repeat((byte)0x5A, 2048).ToArray()));

        r.Api.SyncSingleForCpu(r.Dev, dma, 2000, DmaDirection.FromDevice);
        Assert.Contains(r.Api.Log.Lines, l => l.Message == "nic0 nic0: Buffer overflow detected. Allocation size: 100. Mapping size: 2000.");
        var got = CpuRead(r.M, r.Va, 2000);
        Assert.All(got[..100], b => Assert.Equal(0x5A, b));
        Assert.All(got[100..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void Invariant9_forced_bouncing_per_device_and_machine_wide()
    {
        var cfg = X86(null, 0, Dev("nvme0", maskBits: 64, forceBounce: true), Dev("nic1", maskBits: 64));
        var (m, api) = Build(cfg);
        var (p, va) = SwiotlbMachines.Buffer(m, 4096, lo: 0x100000);
        m.Cpu.Write(va, Seq(64, 9));

        var forced = api.MapPhys(m.Device("nvme0"), p, 64, DmaDirection.ToDevice, 0);
        Assert.NotNull(api.Swiotlb.FindPool(m.Device("nvme0"), api.Direct.DmaToPhys(m.Device("nvme0"), forced)));
        Assert.Equal(Seq(64, 9), DevRead(m, m.Device("nvme0"), forced, 64));

        var direct = api.MapPhys(m.Device("nic1"), p, 64, DmaDirection.ToDevice, 0);
        Assert.Equal(p.Value, direct.Value);

        var all = X86(new SwiotlbConfig(64 * Sizes.MiB, 2, true, false, null), 0, Dev("nic1", maskBits: 64));
        (m, api) = Build(all);
        var dev = m.Device("nic1");
        Assert.True(api.Swiotlb.IsForceBounce(dev));
        var (p2, _) = SwiotlbMachines.Buffer(m, 4096, lo: 0x100000);
        for (var i = 0; i < 5; i++)
        {
            var a = api.MapPhys(dev, p2 + ((ulong)i * 512), 300, DmaDirection.Bidirectional, 0);
            Assert.True(api.Swiotlb.IsSwiotlbBuffer(dev, api.Direct.DmaToPhys(dev, a)));
        }
        // MMIO is never bounced: on a forced device it fails (dma_direct_map_phys returns DMA_MAPPING_ERROR for MMIO where it would bounce).
        Assert.Equal(DmaAddr.MappingError, api.MapPhys(dev, new PhysAddr(0xfe000000), 64, DmaDirection.ToDevice, DmaAttrs.Mmio));
    }

    [Fact]
    public void Memory_encryption_bounces_decrypted_and_says_so_once()
    {
        const ulong cbit = 1UL << 47;
        var cfg = X86(new SwiotlbConfig(64 * Sizes.MiB, 2, true, false, null), cbit, Dev("nic0", maskBits: 48));
        var (m, api) = Build(cfg);
        var dev = m.Device("nic0");
        var (p, va) = SwiotlbMachines.Buffer(m, 4096);
        m.Cpu.Write(va, Seq(32, 4));
        var a = api.MapPhys(dev, p, 32, DmaDirection.ToDevice, 0);
        var b = api.MapPhys(dev, p + 64, 32, DmaDirection.ToDevice, 0);
        Assert.Equal(X86PoolStart, a.Value);
        Assert.Equal(0UL, b.Value & cbit);
        Assert.Equal(Seq(32, 4), DevRead(m, dev, a, 32));
        Assert.Single(api.Log.Lines, l => l.Message == "software IO TLB: Memory encryption is active and system is using DMA bounce buffers");
    }

    [Fact]
    public void First_bounce_turns_syncs_back_on_for_a_coherent_device()
    {
        var r = Nic();
        Assert.True(r.Dev.DmaSkipSync);
        var dma = r.Api.MapPhys(r.Dev, r.Phys, 64, DmaDirection.ToDevice, 0);
        Assert.False(r.Dev.DmaSkipSync);
        r.Api.UnmapPhys(r.Dev, dma, 64, DmaDirection.ToDevice, 0);
        Assert.False(r.Dev.DmaSkipSync);
    }

    [Fact]
    public void A_bounce_slot_the_device_cannot_reach_is_given_back_with_a_warning()
    {
        // A 24-bit device (ISA-like) cannot reach a pool just below 3 GiB.
        var (m, api) = Build(X86(null, 0, Dev("isa0", maskBits: 24)));
        var dev = m.Device("isa0");
        var (p, _) = SwiotlbMachines.Buffer(m, 4096, lo: 0x2000000);
        Assert.Equal(DmaAddr.MappingError, api.MapPhys(dev, p, 64, DmaDirection.ToDevice, 0));
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Contains(api.Log.Lines, l => l.Message == "isa0 isa0: swiotlb addr 0x00000000bc000000+64 overflow (mask ffffff, bus limit 0).");
    }

    [Fact]
    public void Trace_records_swiotlb_bounced_with_the_original_dma_address()
    {
        var r = Nic();
        r.Api.Trace.Enabled = true;
        r.Api.MapPhys(r.Dev, r.Phys, 64, DmaDirection.ToDevice, 0);
        var rec = Assert.Single(r.Api.Trace.Records, t => t.Event == "swiotlb_bounced");
        Assert.Equal($"dev_name: nic0 dma_mask=ffffffff dev_addr={Hex.Llx(r.Phys.Value)} size=64 NORMAL", rec.Payload);
    }

    [Fact]
    public void Non_coherent_arm64_bounce_is_cleaned_for_the_device_and_invalidated_before_copy_back()
    {
        var (m, api) = Build(Arm64());
        var dev = m.Device("dev0");
        var (p, va) = SwiotlbMachines.Buffer(m, 4096, lo: 0x800000000);
        var data = Seq(Len, 21);
        m.Cpu.Write(va, data);
        m.ArchCache.Log = [];

        var dma = api.MapPhys(dev, p, Len, DmaDirection.Bidirectional, 0);
        var pool = api.Swiotlb.DefaultMem.DefPool!;
        Assert.Equal(pool.Start.Value, dma.Value);
        // The copy-in went through the CPU cache; the clean is what lets the device see it.
        Assert.Equal([new CacheOp(CacheOpKind.Clean, pool.Start, Len, true)], m.ArchCache.Log);
        Assert.Equal(data, DevRead(m, dev, dma, Len));

        var reply = Seq(Len, 0x90);
        Assert.Null(m.DeviceWrite(dev, dma, reply));
        m.ArchCache.Log.Clear();
        api.UnmapPhys(dev, dma, Len, DmaDirection.Bidirectional, 0);
        Assert.Equal([new CacheOp(CacheOpKind.Invalidate, pool.Start, Len, true)], m.ArchCache.Log);
        Assert.Equal(reply, CpuRead(m, va, Len));
    }

    [Fact]
    public void Highmem_originals_are_copied_page_by_page_through_kmap_local()
    {
        var cfg = X86() with { HighmemAbove = FourGiB };
        var (m, api) = Build(cfg);
        var dev = m.Device("nic0");
        var p = m.Allocator.Alloc(2 * 4096, 4096, FourGiB)!.Value + 0xf00;
        var data = Seq(600, 17);
        // CPU access to highmem goes through temporary mappings too.
        var k0 = m.Kmap.KmapLocalPfn(p.Pfn(m.PageShift));
        var k1 = m.Kmap.KmapLocalPfn(new Pfn(p.Pfn(m.PageShift).Value + 1));
        m.Cpu.Write(k0 + 0xf00, data[..256]);
        m.Cpu.Write(k1, data[256..]);

        var before = m.Counters.Snapshot();
        var dma = api.MapPhys(dev, p, 600, DmaDirection.Bidirectional, 0);
        var delta = m.Counters.Snapshot() - before;
        Assert.Equal(2, delta.KmapLocal);
        Assert.Equal(0, delta.PhysToVirt);
        Assert.Equal(1, delta.PageReads);
        Assert.Equal(data, DevRead(m, dev, dma, 600));

        Assert.Null(m.DeviceWrite(dev, dma, Seq(600, 77)));
        api.UnmapPhys(dev, dma, 600, DmaDirection.Bidirectional, 0);
        var got = new byte[600];
        m.Cpu.Read(k0 + 0xf00, got.AsSpan(0, 256));
        m.Cpu.Read(k1, got.AsSpan(256));
        Assert.Equal(Seq(600, 77), got);
    }
}
