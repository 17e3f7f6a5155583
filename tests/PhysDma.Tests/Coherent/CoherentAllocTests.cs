using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Iommu;
using PhysDma.Platform;
using PhysDma.Tests.Iova;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Coherent;

/// <summary><c>dma_alloc_attrs</c>/<c>dma_free_attrs</c> on dma-direct and dma-iommu.</summary>
public class CoherentAllocTests
{
    /// <summary>The CPU writes through the returned address and the device reads it, then the other way round, with no syncs.</summary>
    private static void AssertSharedWithoutSyncs(Machine m, Device dev, KernelVirt va, DmaAddr handle, int n)
    {
        var fromCpu = Pattern(n, 3);
        m.Cpu.Write(va, fromCpu);
        var seen = new byte[n];
        Assert.Null(m.DeviceRead(dev, handle, seen));
        Assert.Equal(fromCpu, seen);

        var fromDev = Pattern(n, 101);
        Assert.Null(m.DeviceWrite(dev, handle, fromDev));
        var cpu = new byte[n];
        m.Cpu.Read(va, cpu);
        Assert.Equal(fromDev, cpu);
    }

    public static TheoryData<int, ulong, object> X86Zones => new()
    {
        // 64-bit coherent mask: ZONE_NORMAL, the first page above 4 GiB.
        { 64, 0x1_0000_0000, Zone.Normal },
        // 32-bit: ZONE_DMA32, the first free page after the kernel image (16 MiB + 32 MiB).
        { 32, 0x300_0000, Zone.Dma32 },
        // 24-bit: ZONE_DMA; page 0 belongs to the firmware, and the 8 KiB block is naturally aligned.
        { 24, 0x2000, Zone.Dma },
    };

    [Theory]
    [MemberData(nameof(X86Zones))]
    public void X86_direct_alloc_comes_from_the_zone_the_coherent_mask_needs(int bits, ulong expected, object zoneArg)
    {
        var zone = (Zone)zoneArg; // xunit theories are public; the type is internal to PhysDma
        var rig = X86Nic(n => n with { CoherentDmaMaskBits = bits });
        var (m, api, nic) = (rig.Machine, rig.Api, rig.Dev);
        var va = api.AllocCoherent(nic, 8192, out var handle);
        Assert.NotNull(va);
        Assert.Equal(expected, handle.Value);
        Assert.Equal(zone, m.ZoneOf(new PhysAddr(handle.Value)));
        // Coherent x86: the linear map address of the pages.
        Assert.Equal(m.Kmap.PhysToVirt(new PhysAddr(expected)), va!.Value);
        // Zeroed.
        var z = new byte[8192];
        m.Cpu.Read(va.Value, z);
        Assert.All(z, b => Assert.Equal(0, b));
        AssertSharedWithoutSyncs(m, nic, va.Value, handle, 8192);

        var info = Assert.Single(api.Debug!.Entries(nic));
        Assert.Equal(DebugEntryType.Coherent, info.Type);
        api.FreeCoherent(nic, 8192, va.Value, handle);
        Assert.Equal(0, api.Debug.LiveEntries);
        Assert.Empty(api.Debug.Reports);
        // The pages are free again: the next allocation gets the same address.
        Assert.Equal(va, api.AllocCoherent(nic, 8192, out var again));
        Assert.Equal(handle, again);
    }

    [Fact]
    public void Arm64_non_coherent_gets_an_uncached_remap_and_no_syncs_are_needed()
    {
        var rig = Arm64();
        var (m, api, nic) = (rig.Machine, rig.Api, rig.Dev);
        var log = rig.CacheLog();
        var phys = new PhysAddr(0x1_0000_0000);
        // A dirty line of the cacheable alias, left from an earlier owner of the page.
        m.Cpu.Write(m.Kmap.PhysToVirt(phys), new byte[] { 0xde, 0xad });

        var va = api.AllocCoherent(nic, 4096, out var handle);
        Assert.NotNull(va);
        Assert.Equal(phys.Value, handle.Value);
        Assert.True(m.Kmap.IsVmallocAddr(va!.Value));
        Assert.False(m.Kmap.Translate(va.Value).Cached);
        // arch_dma_prep_coherent wrote back and dropped the alias's lines before the uncached use.
        Assert.Equal([new CacheOp(CacheOpKind.Flush, phys, 4096, true)], log);
        Assert.False(m.Cache.IsCached(phys));
        var first = new byte[2];
        Assert.Null(m.DeviceRead(nic, handle, first));
        Assert.Equal(new byte[2], first);

        AssertSharedWithoutSyncs(m, nic, va.Value, handle, 4096);
        // No cache maintenance was needed for any of it, and the CPU never cached the buffer.
        Assert.Single(log);
        Assert.False(m.Cache.IsCached(phys));

        api.FreeCoherent(nic, 4096, va.Value, handle);
        Assert.Throws<ModelViolation>(() => m.Cpu.Read(va.Value, new byte[1]));
        Assert.Equal(0, api.Debug!.LiveEntries);
    }

    [Fact]
    public void Arm64_32_bit_coherent_mask_takes_the_dma_zone()
    {
        var rig = Arm64Nic(n => n with { CoherentDmaMaskBits = 32 });
        var va = rig.Api.AllocCoherent(rig.Dev, 4096, out var handle);
        Assert.NotNull(va);
        // arm64's ZONE_DMA is the 32-bit range; RAM starts at 2 GiB.
        Assert.Equal(0x8000_0000UL, handle.Value);
        Assert.Equal(Zone.Dma, rig.Machine.ZoneOf(new PhysAddr(handle.Value)));
    }

    [Fact]
    public void Co_co_guest_buffers_are_decrypted_and_addressed_without_the_encryption_bit()
    {
        const ulong cbit = 1UL << 47;
        var cfg = X86Config() with { MemEncryptBit = cbit, Swiotlb = Swiotlb64M with { Force = true } };
        var rig = Build(cfg);
        var (m, api, nic) = (rig.Machine, rig.Api, rig.Dev);
        Assert.True(api.ForceDmaUnencrypted(nic));
        var va = api.AllocCoherent(nic, 4096, out var handle);
        Assert.NotNull(va);
        Assert.Equal(0x1_0000_0000UL, handle.Value);
        Assert.True(api.IsDecrypted(new PhysAddr(0x1_0000_0000)));
        AssertSharedWithoutSyncs(m, nic, va!.Value, handle, 4096);
        api.FreeCoherent(nic, 4096, va.Value, handle);
        Assert.False(api.IsDecrypted(new PhysAddr(0x1_0000_0000)));
    }

    [Fact]
    public void Sme_host_with_a_64_bit_device_keeps_the_encryption_bit()
    {
        const ulong cbit = 1UL << 47;
        var rig = Build(X86Config() with { MemEncryptBit = cbit });
        Assert.False(rig.Api.ForceDmaUnencrypted(rig.Dev));
        var va = rig.Api.AllocCoherent(rig.Dev, 4096, out var handle);
        Assert.NotNull(va);
        Assert.Equal(0x1_0000_0000UL | cbit, handle.Value);
        Assert.False(rig.Api.IsDecrypted(new PhysAddr(0x1_0000_0000)));
        AssertSharedWithoutSyncs(rig.Machine, rig.Dev, va!.Value, handle, 4096);
    }

    [Fact]
    public void A_restricted_pool_serves_coherent_allocations()
    {
        var pool = new AddrRange(0x4000_0000, 4 * MiB);
        var rig = X86Nic(n => n with { RestrictedPool = pool });
        var (m, api, nic) = (rig.Machine, rig.Api, rig.Dev);
        var va = api.AllocCoherent(nic, 8192, out var handle);
        Assert.NotNull(va);
        Assert.Equal(pool.Base, handle.Value);
        Assert.True(api.Swiotlb.IsSwiotlbBuffer(nic, new PhysAddr(handle.Value)));
        AssertSharedWithoutSyncs(m, nic, va!.Value, handle, 8192);
        var used = api.Swiotlb.Mem(nic)!.TotalUsed;
        Assert.Equal(4L, used);
        api.FreeCoherent(nic, 8192, va.Value, handle);
        Assert.Equal(0L, api.Swiotlb.Mem(nic)!.TotalUsed);
    }

    [Fact]
    public void Iommu_alloc_maps_scattered_pages_at_one_iova_with_the_coherent_prot()
    {
        var (m, api) = IovaMachines.X86(IommuMode.Lazy);
        var nic = m.Device("nic0");
        var va = api.AllocCoherent(nic, 3 * 4096, out var handle);
        Assert.NotNull(va);
        // 3 pages round up to a 4-page size-aligned IOVA below 4 GiB (PCI devices try 32 bits first).
        Assert.Equal(0xffffc000UL, handle.Value);
        var domain = api.Iommu!.DomainOf(nic)!;
        Assert.True(domain.Walk(handle.Value, out var pte));
        Assert.Equal(IommuProt.Read | IommuProt.Write | IommuProt.Cache, pte.Prot);
        // The lowest free pages (page 0 is the firmware's).
        Assert.Equal(new PhysAddr(0x1000), pte.PhysBase);
        Assert.True(domain.Walk(handle.Value + 0x2000, out var pte2));
        Assert.Equal(new PhysAddr(0x3000), pte2.PhysBase);
        Assert.True(m.Kmap.IsVmallocAddr(va!.Value));
        Assert.Equal(1, domain.SyncMapCalls);
        AssertSharedWithoutSyncs(m, nic, va.Value, handle, 3 * 4096);

        api.FreeCoherent(nic, 3 * 4096, va.Value, handle);
        Assert.Equal(0, domain.PteCount);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0, api.Debug!.LiveEntries);
        // Lazy domain: the IOVA (as allocated: 4 pages) waits in the flush queue.
        Assert.Equal(4UL, api.Iommu.CookieOf(nic)!.Fq!.QueuedPages);
    }

    [Fact]
    public void Iommu_alloc_for_a_non_coherent_arm64_device_is_uncached_without_iommu_cache()
    {
        var (m, api) = IovaMachines.Arm64NonCoherent();
        var dev = m.Device("ncdev");
        var va = api.AllocCoherent(dev, 4096, out var handle);
        Assert.NotNull(va);
        // A platform device: no 32-bit first try, the top of the 48-bit aperture.
        Assert.Equal(0xffff_ffff_f000UL, handle.Value);
        Assert.True(api.Iommu!.DomainOf(dev)!.Walk(handle.Value, out var pte));
        Assert.Equal(IommuProt.Read | IommuProt.Write, pte.Prot);
        Assert.False(m.Kmap.Translate(va!.Value).Cached);
        AssertSharedWithoutSyncs(m, dev, va.Value, handle, 4096);
        Assert.False(m.Cache.IsCached(pte.PhysBase));
        api.FreeCoherent(dev, 4096, va.Value, handle);
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
    }
}
