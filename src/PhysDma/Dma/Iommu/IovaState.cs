using PhysDma.Core;

namespace PhysDma.Dma;

/// <summary>
/// <c>struct dma_iova_state</c>: the IOVA range one <see cref="DmaApi.IovaTryAlloc"/> reserved (its address,
/// which keeps the first buffer's in-granule offset, and the requested size), plus the swiotlb bit the
/// kernel keeps in the top bit of the size. A driver owns one per request and may reuse it: every
/// <see cref="DmaApi.IovaTryAlloc"/> zeroes it first.
/// </summary>
internal sealed class DmaIovaState
{
    /// <summary><c>DMA_IOVA_USE_SWIOTLB</c>: some link bounced through swiotlb, so unlinks take the slow path.</summary>
    public const ulong UseSwiotlbBit = 1UL << 63;

    /// <summary><c>state->addr</c>: the DMA address of offset 0 of the range.</summary>
    public DmaAddr Addr { get; internal set; }

    /// <summary><c>state->__size</c>: the size with <see cref="UseSwiotlbBit"/> folded in.</summary>
    public ulong RawSize { get; internal set; }

    /// <summary><c>dma_iova_size</c>.</summary>
    public ulong Size => RawSize & ~UseSwiotlbBit;

    /// <summary><c>dma_use_iova</c>: an IOVA was allocated (false means: map with <c>dma_map_phys</c> instead).</summary>
    public bool UseIova => RawSize != 0;

    /// <summary>Whether some link bounced through swiotlb.</summary>
    public bool UsesSwiotlb => (RawSize & UseSwiotlbBit) != 0;

    // PhysDma's own bookkeeping for iova_mixed_mmio_ram (not in the kernel's struct).
    internal bool LinkedMmio;
    internal bool LinkedRam;

    internal void Reset()
    {
        Addr = default;
        RawSize = 0;
        LinkedMmio = false;
        LinkedRam = false;
    }

    public override string ToString() => $"iova state {Addr}+{Hex.Format(Size)}{(UsesSwiotlb ? " swiotlb" : "")}";
}
