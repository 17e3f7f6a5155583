using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Sg;

/// <summary>dma-iommu scatter-gather (spec §4.7) on fresh domains: exact DMA segments, padding, P2P, errors.</summary>
public class IommuSgTests
{
    /// <summary>
    /// hb0 (allowlisted) - rp0 - sw0 - { gpu0 (P2P provider), nvme0 }
    ///                   - rp1 - { nic0, seg0 (8 KiB segments), tb0 (untrusted) }
    /// hb1 (not allowlisted) - rp2 - nic2
    /// </summary>
    private const string Topology = """
        base: x86-noiommu
        kernel_quirks: [QUIRKS]
        iommu:
          mode: strict
          page_sizes: [4KiB, 2MiB, 1GiB]
          aperture_bits: 48
          forcedac: false
          flush_queue: { entries: 256, timeout_ms: 10 }
          reserved: [{ base: 0xfee00000, size: 1MiB }]
        pci:
          - { name: hb0, type: host_bridge, vendor: 0x8086, device: 0x2020, p2p_allowed: true, windows: [{ base: 0x3800000000, size: 64GiB }] }
          - { name: hb1, type: host_bridge, vendor: 0x1234, device: 0x0002, p2p_allowed: false, windows: [] }
          - { name: rp0, type: root_port, parent: hb0 }
          - { name: rp1, type: root_port, parent: hb0 }
          - { name: rp2, type: root_port, parent: hb1 }
          - { name: sw0, type: switch, parent: rp0 }
        devices:
          - name: gpu0
            parent: sw0
            bdf: "0000:05:00.0"
            bars: [{ bar: 1, base: 0x3800000000, size: 1GiB, bus_base: 0x800000000 }]
            p2pmem: { bar: 1, offset: 0, size: 256MiB }
            dma_mask: 64
          - { name: nvme0, parent: sw0, bdf: "0000:06:00.0", dma_mask: 64 }
          - { name: nic0, parent: rp1, bdf: "0000:01:00.0", dma_mask: 64 }
          - { name: seg0, parent: rp1, bdf: "0000:02:00.0", dma_mask: 64, max_seg_size: 0x2000, seg_boundary_mask: 0x1fff }
          - { name: tb0, parent: rp1, bdf: "0000:03:00.0", dma_mask: 64, untrusted: true }
          - { name: nic2, parent: rp2, bdf: "0001:01:00.0", dma_mask: 64 }
          - { name: tiny0, parent: rp1, bdf: "0000:04:00.0", dma_mask: 13 }
        """;

    private static (Machine M, DmaApi Api) Build(params string[] quirks)
    {
        // Set in code: the scenario parser's list of known quirks is the lead's to extend.
        var yaml = Topology.Replace("QUIRKS", "", StringComparison.Ordinal);
        var m = new Machine(MachineParser.Parse(YNode.Load(yaml, "sg.yaml"), ".") with { KernelQuirks = quirks });
        return (m, new DmaApi(m));
    }

    private const ulong R = 0x1_0000_0000;

    private static SgTable Table(params (ulong Phys, uint Len)[] e) => new([.. e.Select(x => new ScatterEntry(new PhysAddr(x.Phys), x.Len))]);

    private static (ulong, uint)[] Segs(SgTable t) =>
        [.. t.Sgl.Take(t.Nents).Select(s => (s.DmaAddress.Value, s.DmaLength))];

    private static byte[] Seq(int n, int seed)
    {
        var b = new byte[n];
        for (var i = 0; i < n; i++)
        {
            b[i] = (byte)(seed + i);
        }
        return b;
    }

    private static void AssertEmpty(DmaApi api, Machine m, params string[] devs)
    {
        api.Iommu!.FlushAll();
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        foreach (var d in devs)
        {
            Assert.Equal(0, api.Iommu.DomainOf(m.Device(d))!.PteCount);
        }
        Assert.Equal(0, api.Debug!.LiveEntries);
    }

    [Fact]
    public void Entries_merge_into_segments_in_one_iova_and_the_device_reads_them_in_order()
    {
        var (m, api) = Build();
        var nic = m.Device("nic0");
        var t = Table((R + 0x800, 0x800), (R + 0x5000, 0x1000), (R + 0x9000, 0x2000), (R + 0x10100, 0x100));
        var data = new List<byte>();
        foreach (var (s, i) in t.Sgl.Select((s, i) => (s, i)))
        {
            var d = Seq((int)s.Length, i * 40);
            m.Cpu.Write(m.Kmap.PhysToVirt(s.Phys), d);
            data.AddRange(d);
        }
        Assert.Equal(0, api.MapSgtable(nic, t, DmaDirection.ToDevice, DmaAttrs.None));
        // 0x1000 + 0x1000 + 0x2000 + 0x1000 of IOVA: 5 pages, allocated as 8, size aligned below 4 GiB.
        Assert.Equal(2, t.Nents);
        Assert.Equal([(0xffff8800UL, 0x3800u), (0xffffc100UL, 0x100u)], Segs(t));
        // The CPU side is restored.
        Assert.Equal(new PhysAddr(R + 0x800), t.Sgl[0].Phys);
        Assert.Equal(0x800u, t.Sgl[0].Length);
        Assert.Equal(new PhysAddr(R + 0x10100), t.Sgl[3].Phys);
        Assert.Equal(1, api.Iommu!.DomainOf(nic)!.SyncMapCalls);

        var first = new byte[0x3800];
        Assert.Null(m.DeviceRead(nic, new DmaAddr(0xffff8800), first));
        var second = new byte[0x100];
        Assert.Null(m.DeviceRead(nic, new DmaAddr(0xffffc100), second));
        Assert.Equal(data, [.. first, .. second]);
        Assert.Equal(2, api.Debug!.LiveEntries);

        api.UnmapSgtable(nic, t, DmaDirection.ToDevice, DmaAttrs.None);
        AssertEmpty(api, m, "nic0");
        Assert.Empty(api.Debug.Reports);
    }

    [Fact]
    public void Max_seg_size_and_the_segment_boundary_split_and_pad()
    {
        var (m, api) = Build();
        var seg = m.Device("seg0");
        var domain = api.Iommu!.DomainOf(seg)!;
        // max_seg_size 0x2000: the third entry no longer fits behind the first two.
        var t = Table((R + 0x800, 0x800), (R + 0x5000, 0x1000), (R + 0x9000, 0x2000), (R + 0x10100, 0x100));
        Assert.Equal(0, api.MapSgtable(seg, t, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal([(0xffff8800UL, 0x1800u), (0xffffa000UL, 0x2000u), (0xffffc100UL, 0x100u)], Segs(t));
        api.UnmapSgtable(seg, t, DmaDirection.ToDevice, DmaAttrs.None);
        api.Iommu.FlushAll();

        // An 8 KiB entry after a 4 KiB one would cross an 8 KiB boundary: the first entry is padded by a page.
        var t2 = Table((R, 0x1000), (R + 0x20000, 0x2000), (R + 0x30000, 0x1000));
        Assert.Equal(0, api.MapSgtable(seg, t2, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal([(0xffff8000UL, 0x1000u), (0xffffa000UL, 0x2000u), (0xffffc000UL, 0x1000u)], Segs(t2));
        // The padding is mapped: the page after the first buffer.
        Assert.True(domain.Walk(0xffff9000, out var pad));
        Assert.Equal(new PhysAddr(R + 0x1000), pad.PhysBase);
        Assert.Equal(0x1000u, t2.Sgl[0].Length);
        api.UnmapSgtable(seg, t2, DmaDirection.ToDevice, DmaAttrs.None);
        AssertEmpty(api, m, "seg0");
        // dma-debug saw no segment over max_seg_size and none across the boundary.
        Assert.Empty(api.Debug!.Reports);
    }

    [Theory]
    [InlineData(false, 0x800u)]
    [InlineData(true, 0x1000u)]
    public void Bus_address_entries_take_their_own_slot_and_no_pte(bool quirk, uint busLen)
    {
        var (m, api) = quirk ? Build(KernelQuirk.IommuSgBusAddrHeadLen) : Build();
        var nvme = m.Device("nvme0");
        var domain = api.Iommu!.DomainOf(nvme)!;
        var p2p = api.P2P.AllocP2PMem("gpu0", 4096)!.Value;
        var t = Table((R, 0x1000), (p2p.Value, 0x800), (R + 0x3000, 0x1000));
        Assert.Equal(0, api.MapSgtable(nvme, t, DmaDirection.FromDevice, DmaAttrs.None));
        Assert.Equal(3, t.Nents);
        // BUS_ADDR: the BAR's bus address (CPU 0x3800000000 is bus 0x800000000); the RAM entries get 2 pages of IOVA.
        Assert.Equal([(0xffffe000UL, 0x1000u), (0x800000000UL + (p2p.Value - 0x3800000000), busLen), (0xfffff000UL, 0x1000u)], Segs(t));
        Assert.True(t.Sgl[1].IsBusAddress);
        Assert.Equal(2, domain.PteCount);
        api.UnmapSgtable(nvme, t, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.False(t.Sgl[1].IsBusAddress);
        AssertEmpty(api, m, "nvme0");
    }

    [Theory]
    [InlineData(false, IommuProt.Read | IommuProt.Mmio)]
    [InlineData(true, IommuProt.Read | IommuProt.Cache)]
    public void Host_bridge_p2p_entries_are_mapped_as_mmio(bool quirk, int expectedProt)
    {
        var (m, api) = quirk ? Build(KernelQuirk.IommuSgHostBridgeCache) : Build();
        var nic = m.Device("nic0");
        var domain = api.Iommu!.DomainOf(nic)!;
        var p2p = api.P2P.AllocP2PMem("gpu0", 4096)!.Value;
        var t = Table((R, 0x1000), (p2p.Value, 0x1000));
        Assert.Equal(0, api.MapSgtable(nic, t, DmaDirection.ToDevice, DmaAttrs.None));
        // Both in one IOVA, merged into one segment.
        Assert.Equal([(0xffffe000UL, 0x2000u)], Segs(t));
        Assert.True(domain.Walk(0xffffe000, out var ram));
        Assert.Equal(IommuProt.Read | IommuProt.Cache, ram.Prot);
        Assert.True(domain.Walk(0xfffff000, out var bar));
        Assert.Equal(p2p, bar.PhysBase);
        Assert.Equal(expectedProt, bar.Prot);
        api.UnmapSgtable(nic, t, DmaDirection.ToDevice, DmaAttrs.None);
        AssertEmpty(api, m, "nic0");
    }

    [Fact]
    public void Not_supported_p2p_fails_with_eremoteio_and_leaves_nothing()
    {
        var (m, api) = Build();
        var nic2 = m.Device("nic2");
        var p2p = api.P2P.AllocP2PMem("gpu0", 4096)!.Value;
        var t = Table((R + 0x100, 0x1000), (p2p.Value, 0x1000));
        Assert.Equal(-(int)Errno.EREMOTEIO, api.MapSgtable(nic2, t, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(0, api.MapSgAttrs(nic2, t.Sgl, 2, DmaDirection.ToDevice, DmaAttrs.None));
        // The list is as the driver built it.
        Assert.Equal(new PhysAddr(R + 0x100), t.Sgl[0].Phys);
        Assert.Equal(0x1000u, t.Sgl[0].Length);
        AssertEmpty(api, m, "nic2");
    }

    [Fact]
    public void Untrusted_devices_map_each_entry_on_its_own_through_swiotlb()
    {
        var (m, api) = Build();
        var tb = m.Device("tb0");
        var t = Table((R + 0x100, 0x200), (R + 0x2000, 0x1000));
        m.Cpu.Write(m.Kmap.PhysToVirt(new PhysAddr(R + 0x100)), Seq(0x200, 1));
        Assert.Equal(0, api.MapSgtable(tb, t, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(2, t.Nents);
        Assert.True(t.Sgl[0].UsedSwiotlb);
        // The unaligned entry bounced (its IOVA keeps no offset: the slot is granule aligned), the aligned one did not.
        Assert.Equal(2L, api.Swiotlb.SlotsUsed);
        Assert.Equal([(0xfffff000UL, 0x200u), (0xffffe000UL, 0x1000u)], Segs(t));
        var got = new byte[0x200];
        Assert.Null(m.DeviceRead(tb, t.Sgl[0].DmaAddress, got));
        Assert.Equal(Seq(0x200, 1), got);
        api.UnmapSgtable(tb, t, DmaDirection.ToDevice, DmaAttrs.None);
        AssertEmpty(api, m, "tb0");
    }

    [Fact]
    public void No_iova_is_needed_when_every_entry_is_a_bus_address()
    {
        var (m, api) = Build();
        var nvme = m.Device("nvme0");
        var p2p = api.P2P.AllocP2PMem("gpu0", 8192)!.Value;
        var t = Table((p2p.Value, 0x1000), (p2p.Value + 0x1000, 0x1000));
        Assert.Equal(0, api.MapSgtable(nvme, t, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(2, t.Nents);
        Assert.Equal(0UL, api.Iommu!.IovaPagesInUse);
        api.UnmapSgtable(nvme, t, DmaDirection.ToDevice, DmaAttrs.None);
        AssertEmpty(api, m, "nvme0");
    }

    [Fact]
    public void No_iova_below_the_mask_is_enomem_from_sgtable_and_zero_from_map_sg_attrs()
    {
        var (m, api) = Build();
        var tiny = m.Device("tiny0");
        // A 13-bit mask leaves IOVA pfn 1 only (pfn 0 is never handed out); two pages do not fit.
        var t = Table((R, 0x1000), (R + 0x4000, 0x1000));
        Assert.Equal(-(int)Errno.ENOMEM, api.MapSgtable(tiny, t, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(0, api.MapSgAttrs(tiny, t.Sgl, 2, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(new PhysAddr(R + 0x4000), t.Sgl[1].Phys);
        // One page does.
        var one = Table((R + 0x10, 0x100));
        Assert.Equal(1, api.MapSgAttrs(tiny, one.Sgl, 1, DmaDirection.ToDevice, DmaAttrs.None));
        Assert.Equal(0x1010UL, one.Sgl[0].DmaAddress.Value);
        api.UnmapSgAttrs(tiny, one.Sgl, 1, DmaDirection.ToDevice, DmaAttrs.None);
        AssertEmpty(api, m, "tiny0");
    }

    [Fact]
    public void Untrusted_entry_that_cannot_bounce_is_eio()
    {
        var yaml = Topology.Replace("QUIRKS", "", StringComparison.Ordinal) + "\nswiotlb: off\n";
        var m = new Machine(MachineParser.Parse(YNode.Load(yaml, "sg.yaml"), "."));
        var api = new DmaApi(m);
        var tb = m.Device("tb0");
        var t = Table((R, 0x1000), (R + 0x2100, 0x100));
        Assert.Equal(-(int)Errno.EIO, api.MapSgtable(tb, t, DmaDirection.ToDevice, DmaAttrs.None));
        // The aligned first entry was mapped and unmapped again.
        Assert.Equal(0UL, api.Iommu!.IovaPagesInUse);
        Assert.Equal(0, api.Iommu.DomainOf(tb)!.PteCount);
        Assert.Equal(0, api.Debug!.LiveEntries);
    }

    [Fact]
    public void Non_coherent_device_gets_clean_before_and_invalidate_after_and_sees_the_bytes()
    {
        var (m, api) = PhysDma.Tests.Iova.IovaMachines.Arm64NonCoherent();
        var dev = m.Device("ncdev");
        var log = new List<CacheOp>();
        m.ArchCache.Log = log;
        var t = Table((R, 0x1000), (R + 0x3000, 0x800));
        Assert.Equal(0, api.MapSgtable(dev, t, DmaDirection.FromDevice, DmaAttrs.None));
        Assert.Equal([(0xffff_ffff_e000UL, 0x1800u)], Segs(t));
        Assert.Equal([new CacheOp(CacheOpKind.Clean, new PhysAddr(R), 0x1000, true), new CacheOp(CacheOpKind.Clean, new PhysAddr(R + 0x3000), 0x800, true)], log);
        Assert.True(api.Iommu!.DomainOf(dev)!.Walk(0xffff_ffff_e000, out var pte));
        Assert.Equal(IommuProt.Write, pte.Prot);
        var w = Seq(0x1800, 33);
        Assert.Null(m.DeviceWrite(dev, new DmaAddr(0xffff_ffff_e000), w));
        log.Clear();
        api.UnmapSgtable(dev, t, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal([new CacheOp(CacheOpKind.Invalidate, new PhysAddr(R), 0x1000, true), new CacheOp(CacheOpKind.Invalidate, new PhysAddr(R + 0x3000), 0x800, true)], log);
        var got = new byte[0x1800];
        m.Cpu.Read(m.Kmap.PhysToVirt(new PhysAddr(R)), got.AsSpan(0, 0x1000));
        m.Cpu.Read(m.Kmap.PhysToVirt(new PhysAddr(R + 0x3000)), got.AsSpan(0x1000, 0x800));
        Assert.Equal(w, got);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
    }

    [Fact]
    public void Unmapping_with_another_entry_count_is_reported_by_dma_debug()
    {
        var (m, api) = Build();
        var nic = m.Device("nic0");
        var t = Table((R, 0x1000), (R + 0x2000, 0x1000));
        Assert.Equal(0, api.MapSgtable(nic, t, DmaDirection.ToDevice, DmaAttrs.None));
        api.UnmapSgAttrs(nic, t.Sgl, 1, DmaDirection.ToDevice, DmaAttrs.None);
        var r = Assert.Single(api.Debug!.Reports);
        Assert.Equal("free_sg_count_mismatch", r.Check);
    }
}
