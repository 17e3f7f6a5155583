using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Iommu;

/// <summary>A device reached memory through an IOTLB entry whose page the domain no longer maps that way.</summary>
internal sealed record StaleIotlbAccess(string Dev, int Domain, DmaAddr Iova, PhysAddr Phys, DmaAccess Access, ulong TimeNs);

/// <summary>A translation fault the IOMMU reported (its fault log, as DMAR/AMD-Vi event logs record them).</summary>
internal sealed record IommuFault(string Dev, int Domain, DmaAddr Iova, DmaAccess Access, FaultReason Reason, ulong TimeNs);

/// <summary>
/// The IOMMU hardware: one IOTLB shared by its domains, the domains it has handed out, which domain each
/// device is attached to, and the device-side translation (IOTLB hit, else page-table walk that fills the
/// IOTLB, else fault). It also keeps the fault log and the list of accesses that went through stale IOTLB
/// entries, which results read per step.
/// </summary>
internal sealed class IommuUnit
{
    private readonly Lock _lock = new();
    private readonly Dictionary<Device, IommuDomain> _attached = [];
    private readonly List<IommuDomain> _domains = [];
    private readonly AppendLog<StaleIotlbAccess> _stale = new();
    private readonly AppendLog<IommuFault> _faults = new();
    private readonly Clock _clock;
    private int _nextDomainId = 1;

    /// <summary>Builds the IOMMU described by <paramref name="config"/>; <paramref name="cpuPageSize"/> bounds the granule.</summary>
    public IommuUnit(IommuConfig config, ulong cpuPageSize, Clock clock)
    {
        Config = config;
        _clock = clock;
        if (config.PageSizes.Count == 0 || config.PageSizes.Any(s => !Sizes.IsPowerOfTwo(s)))
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Iommu)).Then(nameof(IommuConfig.PageSizes)), "the IOMMU page sizes must be a non-empty list of powers of two");
        }
        var granule = config.PageSizes.Min();
        if (granule > cpuPageSize || granule < 4096)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Iommu)).Then(nameof(IommuConfig.PageSizes)),
                $"the smallest IOMMU page ({granule}) must be between 4096 and the CPU page size ({cpuPageSize})");
        }
        GranuleShift = Sizes.Log2(granule);
        if (config.ApertureBits < 32 || config.ApertureBits > 64)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Iommu)).Then(nameof(IommuConfig.ApertureBits)), $"the IOMMU aperture must be between 32 and 64 bits, not {config.ApertureBits}");
        }
        ApertureBits = config.ApertureBits;
        foreach (var s in config.PageSizes)
        {
            var shift = Sizes.Log2(s);
            if (!IoPageTable.IsLevelSize(GranuleShift, shift) || shift >= ApertureBits)
            {
                throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Iommu)).Then(nameof(IommuConfig.PageSizes)),
                    $"page size {s} is not the size of a page-table level for a {granule}-byte granule");
            }
            PgsizeBitmap |= s;
        }
        PageShifts = [.. config.PageSizes.Distinct().Select(Sizes.Log2).OrderBy(x => x)];
        Iotlb = new Iotlb(PageShifts);
    }

    public IommuConfig Config { get; }
    public int GranuleShift { get; }
    public int ApertureBits { get; }

    /// <summary><c>pgsize_bitmap</c>.</summary>
    public ulong PgsizeBitmap { get; }

    public int[] PageShifts { get; }
    public Iotlb Iotlb { get; }

    public IReadOnlyList<IommuDomain> Domains
    {
        get
        {
            lock (_lock)
            {
                return [.. _domains];
            }
        }
    }

    /// <summary><c>iommu_domain_alloc</c> of the given type.</summary>
    public IommuDomain AllocDomain(IommuDomainType type)
    {
        lock (_lock)
        {
            var d = new IommuDomain(this, _nextDomainId++, type);
            _domains.Add(d);
            return d;
        }
    }

    /// <summary>Attaches <paramref name="dev"/> to <paramref name="domain"/>: from now on its DMA goes through it.</summary>
    public void Attach(Device dev, IommuDomain domain)
    {
        lock (_lock)
        {
            _attached[dev] = domain;
        }
        dev.Translation = new DeviceTranslation(this, domain);
    }

    public IommuDomain? DomainOf(Device dev)
    {
        lock (_lock)
        {
            return _attached.TryGetValue(dev, out var d) ? d : null;
        }
    }

    /// <summary>Raised for each access made through a stale IOTLB entry, on the accessing thread (dma-debug listens).</summary>
    public event Action<Device, StaleIotlbAccess>? StaleAccess;

    /// <summary>Every access made through a stale IOTLB entry, in order.</summary>
    public IReadOnlyList<StaleIotlbAccess> StaleAccesses => _stale.Snapshot();

    public int StaleAccessCount => _stale.Count;

    /// <summary>The trace events' destination; null when the iommu events are not traced.</summary>
    public IIommuTraceSink? TraceSink { get; set; }

    public IReadOnlyList<IommuFault> Faults => _faults.Snapshot();

    public int FaultCount => _faults.Count;

    /// <summary>Invalidates the whole IOTLB (every domain).</summary>
    public void FlushAll() => Iotlb.InvalidateAll();

    /// <summary>What the hardware does with one device access.</summary>
    public Translated Translate(IommuDomain domain, Device dev, DmaAddr addr, DmaAccess access)
    {
        var iova = addr.Value;
        switch (domain.Type)
        {
            case IommuDomainType.Identity:
                return new Translated(new PhysAddr(iova), ulong.MaxValue - iova, FaultReason.None);
            case IommuDomainType.Blocked:
                return Fault(domain, dev, addr, access, FaultReason.Unmapped);
        }
        if (iova > domain.ApertureEnd)
        {
            return Fault(domain, dev, addr, access, FaultReason.Unmapped);
        }
        if (!Iotlb.LookupOrWalk(domain, iova, out var entry, out var hit))
        {
            return Fault(domain, dev, addr, access, FaultReason.Unmapped);
        }
        if (!Allowed(entry.Prot, access))
        {
            return Fault(domain, dev, addr, access, FaultReason.Permission);
        }
        // The hardware trusts its cache; the model also looks at the table to tell the user when that trust is misplaced.
        if (hit && (!domain.Walk(iova, out var now) || now != entry))
        {
            var stale = new StaleIotlbAccess(dev.Name, domain.Id, addr, entry.PhysBase + (iova - entry.IovaBase), access, _clock.NowNs);
            _stale.Add(stale);
            StaleAccess?.Invoke(dev, stale);
        }
        return Hit(entry, iova);
    }

    private static Translated Hit(IoPte e, ulong iova)
    {
        var off = iova - e.IovaBase;
        return new Translated(e.PhysBase + off, e.Size - off, FaultReason.None);
    }

    // IOMMU_PRIV marks a mapping for privileged requests; devices here issue unprivileged ones and
    // no format checks it on the way in, so only READ/WRITE gate an access.
    private static bool Allowed(int prot, DmaAccess access) =>
        (prot & (access == DmaAccess.Read ? IommuProt.Read : IommuProt.Write)) != 0;

    private Translated Fault(IommuDomain domain, Device dev, DmaAddr addr, DmaAccess access, FaultReason reason)
    {
        _faults.Add(new IommuFault(dev.Name, domain.Id, addr, access, reason, _clock.NowNs));
        TraceSink?.IoPageFault(dev, addr.Value, access == DmaAccess.Write);
        return new Translated(PhysAddr.Invalid, 0, reason);
    }

    private sealed class DeviceTranslation(IommuUnit unit, IommuDomain domain) : IDeviceTranslation
    {
        public Translated Translate(Device dev, DmaAddr addr, DmaAccess access) => unit.Translate(domain, dev, addr, access);
    }
}
