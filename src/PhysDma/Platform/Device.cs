using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>One entry of <c>dev->dma_range_map</c>.</summary>
public readonly record struct DmaRange(PhysAddr CpuStart, DmaAddr DmaStart, ulong Size);

/// <summary>
/// A device as <c>struct device</c> describes it to the DMA layer (masks, limits, coherency, range map,
/// segment parameters) plus the state the DMA layer keeps in it. The DMA layers own the meaning of the
/// state fields; this class only holds them.
/// </summary>
public sealed class Device
{
    private ulong _dmaMask;

    public Device(DeviceConfig config, bool coherent, bool isPci, bool translatedByIommu)
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

    public DeviceConfig Config { get; }

    /// <summary>The device's number on its machine (0, 1, ... in configuration order): the DMA layers' per-device arrays use it.</summary>
    public int Index { get; init; }
    public string Name { get; }
    public bool IsPci { get; }

    /// <summary>
    /// What <c>dev_printk</c> (<c>dev_err</c>, <c>dev_warn</c>, ...) puts before a message: the driver's name, then
    /// <c>dev_name</c> (the PCI address of a PCI function). The model names the driver after the device.
    /// </summary>
    public string PrintkPrefix => $"{Name} {Config.Bdf ?? Name}";

    /// <summary><c>dev_is_dma_coherent</c>.</summary>
    public bool Coherent { get; }

    /// <summary>False models <c>dev->dma_mask == NULL</c>.</summary>
    public bool HasDmaMask { get; }

    /// <summary><c>*dev->dma_mask</c>; reading it when the pointer is NULL is a kernel oops.</summary>
    public ulong DmaMask
    {
        get => HasDmaMask ? _dmaMask : throw new KernelBug($"{Name}: NULL pointer dereference of dev->dma_mask");
        set => _dmaMask = value;
    }

    public ulong CoherentDmaMask { get; set; }
    public ulong BusDmaLimit { get; set; }
    public IReadOnlyList<DmaRange>? DmaRangeMap => DmaRanges;

    /// <summary>The same map as an array, for the hot paths: indexing it boxes no enumerator.</summary>
    internal DmaRange[]? DmaRanges { get; }
    public ulong MinAlignMask { get; }
    public ulong MaxSegSize { get; }
    public ulong SegBoundaryMask { get; }
    public bool Untrusted { get; }

    /// <summary><c>dev->dma_iommu</c> (<c>use_dma_iommu</c>).</summary>
    public bool DmaIommu { get; set; }

    /// <summary><c>dev->dma_skip_sync</c>.</summary>
    public bool DmaSkipSync { get; set; }

    /// <summary><c>dev->iommu->pci_32bit_workaround</c>.</summary>
    public bool Pci32BitWorkaround { get; set; }

    /// <summary><c>dev->dma_uses_io_tlb</c> (dynamic swiotlb).</summary>
    public volatile bool DmaUsesIoTlb;

    /// <summary>How the device's own bus addresses reach memory: the bus range map, or an IOMMU.</summary>
    public IDeviceTranslation? Translation { get; set; }

    public override string ToString() => Name;
}

public enum DmaAccess
{
    Read,
    Write,
}

public enum FaultReason
{
    None,
    Unmapped,
    Permission,
    P2PBlocked,
    OutOfRange,

    /// <summary>The access reached a BAR whose provider was removed: Unsupported Request (reads give all-ones, writes are dropped).</summary>
    BarRemoved,
}

/// <summary>What a device's bus address turned into.</summary>
public readonly record struct Translated(PhysAddr Phys, ulong Contiguous, FaultReason Fault)
{
    public bool Ok => Fault == FaultReason.None;
}

/// <summary>A device's view of the bus: turns a DMA address into a physical address, or a fault.</summary>
public interface IDeviceTranslation
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
public sealed class BusTranslation(ulong memEncryptBit, MemoryMap map) : IDeviceTranslation
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
