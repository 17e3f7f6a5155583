using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>One entry of <c>dev->dma_range_map</c>.</summary>
internal readonly record struct DmaRange(PhysAddr CpuStart, DmaAddr DmaStart, ulong Size);

/// <summary>
/// A device as <c>struct device</c> describes it to the DMA layer (masks, limits, coherency, range map,
/// segment parameters) plus the state the DMA layer keeps in it. The DMA layers own the meaning of the
/// state fields; this class only holds them.
/// </summary>
public sealed class Device
{
    private ulong _dmaMask;

    internal Device(DeviceConfig config, bool coherent, bool isPci, bool translatedByIommu)
    {
        Config = config;
        Name = config.Name;
        IsPci = isPci;
        Coherent = coherent;
        HasDmaMask = config.DmaMaskBits is not null;
        _dmaMask = config.DmaMaskBits is { } bits ? Sizes.DmaBitMask(bits) : 0;
        CoherentDmaMask = Sizes.DmaBitMask(config.CoherentDmaMaskBits);
        BusDmaLimit = config.BusDmaLimit;
        DmaRanges = config.DmaRanges.Count == 0
            ? null
            : [.. config.DmaRanges.Select(r => new DmaRange(new PhysAddr(r.Cpu), new DmaAddr(r.Dma), r.Size))];
        MinAlignMask = config.MinAlignMask;
        MaxSegSize = config.MaxSegSize;
        SegBoundaryMask = config.SegBoundaryMask;
        Untrusted = config.Untrusted;
        DmaIommu = translatedByIommu;
        Pci32BitWorkaround = isPci;
    }

    internal DeviceConfig Config { get; }

    /// <summary>The device's number on its machine (0, 1, ... in configuration order): the DMA layers' per-device arrays use it.</summary>
    internal int Index { get; init; }
    /// <summary>The device's name in the machine (<c>nic0</c>, <c>nvme0</c>, ...), as scenarios and results name it.</summary>
    public string Name { get; }
    internal bool IsPci { get; }

    /// <summary>
    /// What <c>dev_printk</c> (<c>dev_err</c>, <c>dev_warn</c>, ...) puts before a message: the driver's name, then
    /// <c>dev_name</c> (the PCI address of a PCI function). The model names the driver after the device.
    /// </summary>
    internal string PrintkPrefix => $"{Name} {Config.Bdf ?? Name}";

    /// <summary><c>dev_is_dma_coherent</c>: whether the device's accesses snoop the CPU caches (no cache maintenance needed).</summary>
    public bool Coherent { get; }

    /// <summary>False models <c>dev->dma_mask == NULL</c>.</summary>
    internal bool HasDmaMask { get; }

    /// <summary><c>*dev->dma_mask</c>: the bus addresses the device can reach for streaming mappings. Reading it when the pointer is NULL is a kernel oops.</summary>
    public ulong DmaMask
    {
        get => HasDmaMask ? _dmaMask : throw new KernelBug($"{Name}: NULL pointer dereference of dev->dma_mask");
        internal set => _dmaMask = value;
    }

    /// <summary><c>dev->coherent_dma_mask</c>: what coherent allocations must stay below.</summary>
    public ulong CoherentDmaMask { get; internal set; }
    internal ulong BusDmaLimit { get; set; }
    internal IReadOnlyList<DmaRange>? DmaRangeMap => DmaRanges;

    /// <summary>The same map as an array, for the hot paths: indexing it boxes no enumerator.</summary>
    internal DmaRange[]? DmaRanges { get; }
    internal ulong MinAlignMask { get; }
    /// <summary><c>dma_get_max_seg_size</c>: the longest segment the device takes in one scatterlist entry.</summary>
    public ulong MaxSegSize { get; }
    internal ulong SegBoundaryMask { get; }
    internal bool Untrusted { get; }

    /// <summary><c>dev->dma_iommu</c> (<c>use_dma_iommu</c>).</summary>
    internal bool DmaIommu { get; set; }

    /// <summary><c>dev->dma_skip_sync</c>.</summary>
    internal bool DmaSkipSync { get; set; }

    /// <summary><c>dev->iommu->pci_32bit_workaround</c>.</summary>
    internal bool Pci32BitWorkaround { get; set; }

    /// <summary><c>dev->dma_uses_io_tlb</c> (dynamic swiotlb).</summary>
    internal volatile bool DmaUsesIoTlb;

    /// <summary>How the device's own bus addresses reach memory: the bus range map, or an IOMMU.</summary>
    internal IDeviceTranslation? Translation { get; set; }

    /// <summary>The device's name (<see cref="Name"/>).</summary>
    public override string ToString() => Name;
}

/// <summary>Which way a device access goes.</summary>
public enum DmaAccess
{
    /// <summary>The device reads memory (a DMA read: data flows to the device).</summary>
    Read,

    /// <summary>The device writes memory.</summary>
    Write,
}

/// <summary>Why a device access was refused, or <see cref="None"/> when it went through.</summary>
public enum FaultReason
{
    /// <summary>No fault: the access was translated.</summary>
    None,

    /// <summary>The IOMMU has no translation for the address (an IOMMU page fault).</summary>
    Unmapped,

    /// <summary>The IOMMU mapping does not allow this direction (a write to a read-only mapping, or a read of a write-only one).</summary>
    Permission,

    /// <summary>A peer-to-peer access the PCI fabric does not route (ACS redirects it upstream and nothing maps it there).</summary>
    P2PBlocked,

    /// <summary>Without an IOMMU: the bus address is outside every DMA range of the device, or it translates to a physical address where nothing answers.</summary>
    OutOfRange,

    /// <summary>The access reached a BAR whose provider was removed: Unsupported Request (reads give all-ones, writes are dropped).</summary>
    BarRemoved,
}

/// <summary>What a device's bus address turned into.</summary>
internal readonly record struct Translated(PhysAddr Phys, ulong Contiguous, FaultReason Fault)
{
    public bool Ok => Fault == FaultReason.None;
}

/// <summary>A device's view of the bus: turns a DMA address into a physical address, or a fault.</summary>
internal interface IDeviceTranslation
{
    /// <summary>Translates <paramref name="addr"/>; <c>Contiguous</c> tells how many bytes from there translate linearly.</summary>
    Translated Translate(Device dev, DmaAddr addr, DmaAccess access);
}

/// <summary>
/// Translation without an IOMMU: the memory-encryption bit is stripped and the device's bus range map
/// (the same table <c>dma_to_phys</c> uses) is applied. An address outside every range reaches device
/// memory at the same address (fabric routing of peer MMIO, which dma-direct maps with dma = phys) and
/// nothing else.
/// </summary>
internal sealed class BusTranslation(ulong memEncryptBit, MemoryMap map) : IDeviceTranslation
{
    public Translated Translate(Device dev, DmaAddr addr, DmaAccess access)
    {
        var a = addr.Value & ~memEncryptBit;
        var ranges = dev.DmaRanges;
        if (ranges is null)
        {
            return new Translated(new PhysAddr(a), ulong.MaxValue - a, FaultReason.None);
        }
        foreach (ref readonly var r in ranges.AsSpan())
        {
            if (a >= r.DmaStart.Value && a - r.DmaStart.Value < r.Size)
            {
                var off = a - r.DmaStart.Value;
                return new Translated(r.CpuStart + off, r.Size - off, FaultReason.None);
            }
        }
        if (map.Find(new PhysAddr(a)) is { Kind: MemKind.DeviceMemory or MemKind.Mmio } region)
        {
            return new Translated(new PhysAddr(a), region.End.Value - a, FaultReason.None);
        }
        return new Translated(PhysAddr.Invalid, 0, FaultReason.OutOfRange);
    }
}
