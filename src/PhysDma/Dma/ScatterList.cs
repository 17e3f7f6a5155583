using PhysDma.Core;

namespace PhysDma.Dma;

/// <summary>
/// One <c>struct scatterlist</c> entry: the CPU side (page + offset + length, as a physical address) and the
/// DMA side the mapping fills in (<c>dma_address</c>, <c>dma_length</c>, the bus-address mark).
/// </summary>
internal sealed class ScatterEntry(PhysAddr phys, uint length)
{
    /// <summary><c>sg_phys(sg)</c>.</summary>
    public PhysAddr Phys { get; set; } = phys;

    /// <summary><c>sg->length</c>.</summary>
    public uint Length { get; set; } = length;

    /// <summary><c>sg_dma_address(sg)</c>; left as it was by paths that do not set it.</summary>
    public DmaAddr DmaAddress { get; set; }

    /// <summary><c>sg_dma_len(sg)</c>.</summary>
    public uint DmaLength { get; set; }

    /// <summary><c>sg_dma_is_bus_address</c>: a P2P bus address the IOMMU never saw.</summary>
    public bool IsBusAddress { get; set; }

    /// <summary>dma-iommu's "swiotlb" mark on the list head: every entry was mapped on its own.</summary>
    public bool UsedSwiotlb { get; set; }
}

/// <summary><c>struct sg_table</c>: the entries, how many the CPU side has and how many DMA segments resulted.</summary>
internal sealed class SgTable(IReadOnlyList<ScatterEntry> entries)
{
    public IReadOnlyList<ScatterEntry> Sgl { get; } = entries;

    /// <summary><c>orig_nents</c>.</summary>
    public int OrigNents => Sgl.Count;

    /// <summary><c>nents</c>: DMA segments after mapping.</summary>
    public int Nents { get; set; }
}
