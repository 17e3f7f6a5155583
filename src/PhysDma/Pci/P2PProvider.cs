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

    /// <summary>Where the provider is in its removal (a scenario's <c>faults: remove_p2p_provider</c>).</summary>
    public P2PProviderState State { get; internal set; }
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

/// <summary>A provider's life: live; torn down but waiting for its pages; gone.</summary>
internal enum P2PProviderState
{
    Live,

    /// <summary>
    /// <c>memunmap_pages</c> killed the pgmap's reference and waits (<c>wait_for_completion</c>) for the pages
    /// still referenced to be freed: new <c>pci_alloc_p2pmem</c> fails, the BAR is still decoded.
    /// </summary>
    Dying,

    /// <summary><c>pci_p2pdma_release</c> ran (<c>pdev->p2pdma</c> is NULL) and the BAR no longer decodes.</summary>
    Removed,
}

/// <summary>A step of a provider's removal: begun (<c>Blocked</c> while pages are referenced) or completed.</summary>
internal sealed record P2PRemovalEvent(string Owner, int Bar, bool Completed, int PagesHeld);
