using PhysDma.Core;

namespace PhysDma.Pci;

/// <summary>
/// A P2PDMA provider: one BAR of a PCI function that peers may DMA to (6.19's <c>struct p2pdma_provider</c>,
/// created without struct pages). <see cref="Pgmap"/> is set when a <c>p2pmem</c> pool with ZONE_DEVICE
/// pages sits on top of it.
/// </summary>
internal sealed record P2PProvider(string Owner, int Bar, PhysAddr CpuBase, ulong Size, ulong BusOffset)
{
    public string? Pgmap { get; internal set; }
}

/// <summary><c>enum pci_p2pdma_map_type</c> (6.18 values).</summary>
internal enum P2PMapType
{
    Unknown = 0,
    None = 1,
    NotSupported = 2,
    BusAddr = 3,
    ThruHostBridge = 4,
}
