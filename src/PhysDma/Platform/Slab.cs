using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>The kmalloc size classes, which decide both slab placement and the kmalloc-bounce rule.</summary>
internal static class Slab
{
    private static readonly ulong[] Classes = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];

    /// <summary>
    /// <c>kmalloc_size_roundup</c>: the object size kmalloc really hands out. <paramref name="minAlign"/> is
    /// the smallest kmalloc alignment (ARCH_KMALLOC_MINALIGN: 8 when unaligned kmalloc buffers may be
    /// bounced, else ARCH_DMA_MINALIGN), which removes the smaller caches. Above the largest cache the page
    /// allocator serves the request, rounded to a power-of-two number of pages.
    /// </summary>
    public static ulong KmallocSizeRoundup(ulong size, ulong minAlign, ulong pageSize)
    {
        if (size == 0)
        {
            return 0;
        }
        foreach (var c in Classes)
        {
            if (c < minAlign || (c % minAlign) != 0)
            {
                continue;
            }
            if (size <= c)
            {
                return c;
            }
        }
        return Sizes.RoundUpPowerOfTwo(Sizes.AlignUp(size, pageSize) / pageSize) * pageSize;
    }

    public static ulong LargestCache => Classes[^1];
}
