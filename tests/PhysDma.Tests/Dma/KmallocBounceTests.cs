using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>dma_kmalloc_needs_bounce (spec §2.3) on arm64 with ARCH_DMA_MINALIGN 128.</summary>
public sealed class KmallocBounceTests
{
    private static Rig ArmWithSwiotlb(bool coherent = false) =>
        Build(Arm64Config(Nic64 with { Coherent = coherent }, Gpu(ArmBar)) with { Swiotlb = Swiotlb64M });

    [Theory]
    // size, dir, needs bounce. kmalloc caches 8..8192 (8-byte minimum alignment), cache alignment 128.
    [InlineData(1UL, DmaDirection.FromDevice, true)] // kmalloc-8
    [InlineData(64UL, DmaDirection.FromDevice, true)] // kmalloc-64
    [InlineData(96UL, DmaDirection.Bidirectional, true)] // kmalloc-96
    [InlineData(128UL, DmaDirection.FromDevice, false)] // kmalloc-128: a multiple of 128
    [InlineData(129UL, DmaDirection.FromDevice, true)] // kmalloc-192
    [InlineData(192UL, DmaDirection.Bidirectional, true)]
    [InlineData(200UL, DmaDirection.FromDevice, false)] // kmalloc-256
    [InlineData(255UL, DmaDirection.FromDevice, false)]
    [InlineData(256UL, DmaDirection.FromDevice, false)] // >= 2 * ARCH_DMA_MINALIGN
    [InlineData(64UL, DmaDirection.ToDevice, false)] // TO_DEVICE is always safe
    [InlineData(129UL, DmaDirection.ToDevice, false)]
    public void Decision_NonCoherent(ulong size, DmaDirection dir, bool bounce)
    {
        var r = ArmWithSwiotlb();
        Assert.Equal(bounce, r.Api.Direct.KmallocNeedsBounce(r.Dev, size, dir));
    }

    [Fact]
    public void Coherent_device_never_bounces()
    {
        var r = ArmWithSwiotlb(coherent: true);
        Assert.False(r.Api.Direct.KmallocNeedsBounce(r.Dev, 8, DmaDirection.FromDevice));
        Assert.Equal(new DmaAddr(0x9000_0008), r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0008), 8, DmaDirection.FromDevice, DmaAttrs.None));
    }

    [Fact]
    public void Without_bounce_unaligned_kmalloc_never_bounces()
    {
        var r = X86();
        Assert.False(r.Api.Direct.KmallocNeedsBounce(r.Dev, 8, DmaDirection.FromDevice));
        var arm = Build(Arm64Config() with { BounceUnalignedKmalloc = false, Swiotlb = Swiotlb64M });
        Assert.False(arm.Api.Direct.KmallocNeedsBounce(arm.Dev, 8, DmaDirection.FromDevice));
    }

    [Fact]
    [Trait("needs", "swiotlb-pool")]
    public void Kmalloc_bounce_is_decided_before_the_cache_clean()
    {
        var r = ArmWithSwiotlb();
        var log = r.CacheLog();
        // 256 bytes: aligned size, no bounce, mapped in place with a clean.
        Assert.Equal(new DmaAddr(0x9000_0100), r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0100), 256, DmaDirection.FromDevice, DmaAttrs.None));
        // 64 bytes TO_DEVICE: safe, mapped in place with a clean.
        Assert.Equal(new DmaAddr(0x9000_0040), r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0040), 64, DmaDirection.ToDevice, DmaAttrs.None));
        // 64 bytes FROM_DEVICE: bounces; the clean is of the slot, never of the kmalloc line shared with others.
        var bounced = r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0040), 64, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.True(r.Api.Swiotlb.IsSwiotlbBuffer(r.Dev, new PhysAddr(bounced.Value)));
        Assert.Equal(
            [
                new CacheOp(CacheOpKind.Clean, new PhysAddr(0x9000_0100), 256, true),
                new CacheOp(CacheOpKind.Clean, new PhysAddr(0x9000_0040), 64, true),
                new CacheOp(CacheOpKind.Clean, new PhysAddr(bounced.Value), 64, true),
            ],
            log);
    }

    [Fact]
    public void Without_swiotlb_kmalloc_is_dma_aligned_so_small_buffers_map_in_place()
    {
        // __kmalloc_minalign(): with no swiotlb allocated, kmalloc keeps ARCH_DMA_MINALIGN alignment, so
        // kmalloc_size_roundup(64) is 128 and no bounce is needed (arm64 mem_init always allocates one for
        // this reason; a machine with `swiotlb: off` gets aligned kmalloc caches instead).
        var r = Arm64();
        Assert.Equal(128UL, r.Api.KmallocMinAlign);
        Assert.False(r.Api.Direct.KmallocNeedsBounce(r.Dev, 64, DmaDirection.FromDevice));
        Assert.Equal(new DmaAddr(0x9000_0080), r.Api.MapPhys(r.Dev, new PhysAddr(0x9000_0080), 64, DmaDirection.FromDevice, DmaAttrs.None));
        Assert.Equal(8UL, ArmWithSwiotlb().Api.KmallocMinAlign);
    }

    [Theory]
    [InlineData(1UL, 8UL, 8UL)]
    [InlineData(9UL, 8UL, 16UL)]
    [InlineData(65UL, 8UL, 96UL)]
    [InlineData(97UL, 8UL, 128UL)]
    [InlineData(129UL, 8UL, 192UL)]
    [InlineData(1UL, 128UL, 128UL)]
    [InlineData(129UL, 128UL, 256UL)] // no kmalloc-192 when the minimum alignment is 128
    [InlineData(8192UL, 8UL, 8192UL)]
    [InlineData(8193UL, 8UL, 16384UL)] // page allocator: 3 pages round to 4
    [InlineData(12289UL, 8UL, 16384UL)]
    [InlineData(20000UL, 8UL, 32768UL)]
    public void Kmalloc_size_roundup(ulong size, ulong minAlign, ulong expected) =>
        Assert.Equal(expected, Slab.KmallocSizeRoundup(size, minAlign, 4096));
}
