using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>A range of address space in a machine description.</summary>
internal sealed record AddrRange(ulong Base, ulong Size)
{
    public ulong End => Base + Size;
}

/// <summary>One entry of a device's <c>dma_range_map</c> (<c>struct bus_dma_region</c>).</summary>
internal sealed record DmaRangeConfig(ulong Cpu, ulong Dma, ulong Size);

internal sealed record BarConfig(int Bar, ulong Base, ulong Size, ulong BusBase);

internal sealed record P2PMemConfig(int Bar, ulong Offset, ulong Size);

/// <summary>Boot-time swiotlb parameters (<c>swiotlb=</c> and the arch's defaults).</summary>
internal sealed record SwiotlbConfig(ulong Size, int Areas, bool Force, bool Dynamic, ulong? Base);

internal sealed record FlushQueueConfig(int Entries, int TimeoutMs);

internal enum IommuMode
{
    Strict,
    Lazy,
    Passthrough,
}

internal sealed record IommuConfig(
    IommuMode Mode,
    IReadOnlyList<ulong> PageSizes,
    int ApertureBits,
    bool ForceDac,
    FlushQueueConfig FlushQueue,
    IReadOnlyList<AddrRange> Reserved);

internal enum PciNodeType
{
    HostBridge,
    RootPort,
    Switch,
}

internal sealed record PciNodeConfig(
    string Name,
    PciNodeType Type,
    string? Parent,
    uint Vendor,
    uint DeviceId,
    bool P2PAllowed,
    IReadOnlyList<AddrRange> Windows,
    bool AcsRedirect)
{
    /// <summary>The port's own PCI address (informational; a host bridge's gives its domain and root bus).</summary>
    public string? Bdf { get; init; }

    /// <summary>Firmware marks the port external-facing (Thunderbolt/USB4): every device below it is untrusted.</summary>
    public bool ExternalFacing { get; init; }
}

/// <summary>Which legacy <c>dma_map_ops</c> a device has (a machine file's <c>ops:</c>).</summary>
internal enum DeviceOpsKind
{
    /// <summary>No ops: dma-direct or dma-iommu.</summary>
    None,

    /// <summary>6.18 legacy ops with <c>map_page</c> and <c>map_resource</c>.</summary>
    Legacy,

    /// <summary>6.18 legacy ops with <c>map_page</c> but no <c>map_resource</c>.</summary>
    LegacyNoResource,

    /// <summary>6.19 ops with <c>map_phys</c>.</summary>
    Phys,

    /// <summary>
    /// 6.19 ops whose <c>map_phys</c> refuses <c>DMA_ATTR_MMIO</c> with <c>DMA_MAPPING_ERROR</c>: what ops without
    /// <c>map_resource</c> became in the conversion (x86 GART, sparc IOMMU and others).
    /// </summary>
    PhysNoMmio,
}

internal sealed record DeviceConfig
{
    public required string Name { get; init; }
    public string? Parent { get; init; }
    public string? Bdf { get; init; }
    public IReadOnlyList<BarConfig> Bars { get; init; } = [];
    public P2PMemConfig? P2PMem { get; init; }

    /// <summary>Bits of <c>*dev->dma_mask</c>; null models a device whose <c>dma_mask</c> pointer is NULL.</summary>
    public int? DmaMaskBits { get; init; } = 32;

    public int CoherentDmaMaskBits { get; init; } = 32;

    /// <summary>Null: the architecture's default.</summary>
    public bool? Coherent { get; init; }

    /// <summary>Null: translated when the device is PCI and the machine has an IOMMU.</summary>
    public bool? Iommu { get; init; }

    public bool Untrusted { get; init; }
    public ulong BusDmaLimit { get; init; }
    public IReadOnlyList<DmaRangeConfig> DmaRanges { get; init; } = [];
    public ulong MinAlignMask { get; init; }
    public ulong MaxSegSize { get; init; } = 65536;
    public ulong SegBoundaryMask { get; init; } = 0xffffffff;
    public bool ForceBounce { get; init; }
    public AddrRange? RestrictedPool { get; init; }
    public DeviceOpsKind Ops { get; init; } = DeviceOpsKind.None;
}

/// <summary>Everything a machine is made of; a machine file (docs/machines.md).</summary>
internal sealed record MachineConfig
{
    public string Name { get; init; } = "custom";
    public Arch Arch { get; init; } = Arch.X86_64;
    public ulong PageSize { get; init; } = 4096;
    public ulong CacheLine { get; init; } = 64;
    public ulong DmaMinAlign { get; init; } = 64;
    public bool BounceUnalignedKmalloc { get; init; }
    public int Cpus { get; init; } = 2;
    public bool Debug { get; init; } = true;
    public IReadOnlyList<string> KernelQuirks { get; init; } = [];

    /// <summary>Whether the machine reproduces the <see cref="KernelQuirk"/> <paramref name="name"/>.</summary>
    public bool HasQuirk(string name) => KernelQuirks.Contains(name);
    public IReadOnlyList<AddrRange> Ram { get; init; } = [];
    public ulong? HighmemAbove { get; init; }
    public AddrRange? KernelText { get; init; }
    public SwiotlbConfig? Swiotlb { get; init; }
    public IommuConfig? Iommu { get; init; }

    /// <summary>Memory-encryption bit ORed into DMA addresses of encrypted memory (AMD SME C-bit); 0 = none.</summary>
    public ulong MemEncryptBit { get; init; }

    public IReadOnlyList<PciNodeConfig> Pci { get; init; } = [];
    public IReadOnlyList<DeviceConfig> Devices { get; init; } = [];
}
