using PhysDma.Core;

namespace PhysDma.Iommu;

/// <summary>The kernel's <c>IOMMU_DOMAIN_*</c> types a default domain can have.</summary>
internal enum IommuDomainType
{
    /// <summary>Every access faults.</summary>
    Blocked,

    /// <summary>Passthrough: IOVA = physical address.</summary>
    Identity,

    /// <summary>Translated, strict invalidation.</summary>
    Dma,

    /// <summary>Translated, lazy invalidation through a flush queue.</summary>
    DmaFq,
}

/// <summary>
/// <c>struct iommu_iotlb_gather</c>: the IOVA range an unmap touched, invalidated together by
/// <see cref="IommuDomain.IotlbSync"/>; <see cref="Queued"/> says the caller defers invalidation to a flush queue.
/// </summary>
internal struct IotlbGather
{
    public ulong Start;
    public ulong End;
    public bool Queued;

    public static IotlbGather Init() => new() { Start = ulong.MaxValue, End = 0 };

    public readonly bool IsEmpty => Start > End;

    public void Add(ulong iova, ulong size)
    {
        Start = Math.Min(Start, iova);
        End = Math.Max(End, iova + size - 1);
    }
}

/// <summary>
/// An IOMMU domain (<c>struct iommu_domain</c>): a type, and for paging types an IO page table whose
/// translations the IOMMU's IOTLB caches under this domain's ID. Map and unmap change the table only;
/// the IOTLB forgets an entry only through <see cref="IotlbSync"/> or <see cref="FlushIotlbAll"/>.
/// </summary>
internal sealed partial class IommuDomain
{
    // Guards only the sync-map statistics: page-table updates take no lock, as in io-pgtable.
    private readonly KernelSpinLock _ptLock = new();

    internal IommuDomain(IommuUnit unit, int id, IommuDomainType type)
    {
        Unit = unit;
        Id = id;
        Type = type;
        if (IsPaging)
        {
            PageTable = new IoPageTable(unit.GranuleShift, unit.ApertureBits, unit.PgsizeBitmap);
        }
    }

    public IommuUnit Unit { get; }
    public int Id { get; }
    public IommuDomainType Type { get; }
    public bool IsPaging => Type is IommuDomainType.Dma or IommuDomainType.DmaFq;
    public IoPageTable? PageTable { get; }

    public int GranuleShift => Unit.GranuleShift;
    public ulong Granule => 1UL << Unit.GranuleShift;

    /// <summary><c>geometry.aperture_start</c>.</summary>
    public ulong ApertureStart => 0;

    /// <summary><c>geometry.aperture_end</c>.</summary>
    public ulong ApertureEnd => Sizes.DmaBitMask(Unit.ApertureBits);

    /// <summary><c>geometry.force_aperture</c>: IOVAs beyond the aperture are never handed out.</summary>
    public bool ForceAperture => true;

    /// <summary>IOTLB entries this domain has (results' <c>iotlb_entries</c>).</summary>
    public int IotlbEntries => Unit.Iotlb.CountFor(Id);

    /// <summary>
    /// <c>iommu_map</c>: maps [iova, iova+size) to phys with the largest pages that fit. Fails with EINVAL
    /// for misalignment, a non-paging domain or something already mapped there (the kernel's
    /// EEXIST), undoing what it mapped.
    /// </summary>
    public Errno Map(ulong iova, PhysAddr phys, ulong size, int prot)
    {
        var pt = PageTable;
        if (pt is null || size == 0 || ((iova | phys.Value | size) & (Granule - 1)) != 0)
        {
            return Errno.EINVAL;
        }
        // No lock, as in io-pgtable: concurrent maps and unmaps touch disjoint ranges.
        var done = 0UL;
        while (done < size)
        {
            var shift = pt.PickPageShift(iova + done, phys + done, size - done);
            if (!pt.MapOne(iova + done, phys + done, shift, prot))
            {
                UnmapLocked(pt, iova, done);
                return Errno.EINVAL;
            }
            done += 1UL << shift;
        }
        Unit.TraceSink?.Map(iova, phys.Value, size);
        // iotlb_sync_map: nothing to do, an IOTLB never caches a non-present entry here.
        return Errno.None;
    }

    /// <summary>
    /// <c>iommu_unmap_fast</c>: clears the PTEs of [iova, iova+size) and adds the range to
    /// <paramref name="gather"/> without invalidating the IOTLB. Returns the bytes unmapped (it stops at
    /// the first hole).
    /// </summary>
    public ulong UnmapFast(ulong iova, ulong size, ref IotlbGather gather)
    {
        var pt = PageTable;
        if (pt is null)
        {
            return 0;
        }
        var unmapped = UnmapLocked(pt, iova, size);
        Unit.TraceSink?.Unmap(iova, size, unmapped);
        if (unmapped != 0)
        {
            gather.Add(iova, unmapped);
        }
        return unmapped;
    }

    private static ulong UnmapLocked(IoPageTable pt, ulong iova, ulong size)
    {
        var done = 0UL;
        while (done < size)
        {
            var n = pt.UnmapOne(iova + done);
            if (n == 0)
            {
                break;
            }
            done += n;
        }
        return done;
    }

    /// <summary><c>iommu_unmap</c>: unmap, then invalidate the range at once.</summary>
    public ulong Unmap(ulong iova, ulong size)
    {
        var gather = IotlbGather.Init();
        var n = UnmapFast(iova, size, ref gather);
        IotlbSync(ref gather);
        return n;
    }

    /// <summary><c>iommu_iotlb_sync</c>: invalidates the gathered range.</summary>
    public void IotlbSync(ref IotlbGather gather)
    {
        if (!gather.IsEmpty)
        {
            Unit.Iotlb.InvalidateRange(Id, gather.Start, gather.End);
        }
        gather = IotlbGather.Init();
    }

    /// <summary><c>iommu_flush_iotlb_all</c>: the domain's whole IOTLB.</summary>
    public void FlushIotlbAll() => Unit.Iotlb.InvalidateDomain(Id);

    /// <summary><c>iommu_iova_to_phys</c>: the physical address, or 0 when nothing is mapped (as the kernel reports it).</summary>
    public PhysAddr IovaToPhys(ulong iova)
    {
        if (Type == IommuDomainType.Identity)
        {
            return new PhysAddr(iova);
        }
        return Walk(iova, out var leaf) ? leaf.PhysBase + (iova - leaf.IovaBase) : new PhysAddr(0);
    }

    /// <summary>The page-table walk the hardware does on an IOTLB miss.</summary>
    public bool Walk(ulong iova, out IoPte leaf)
    {
        var pt = PageTable;
        if (pt is null)
        {
            leaf = default;
            return false;
        }
        return pt.Walk(iova, out leaf);
    }

    /// <summary>Leaf PTEs present now.</summary>
    public long PteCount
    {
        get
        {
            return PageTable?.LeafCount ?? 0;
        }
    }

    public override string ToString() => $"domain {Id} ({Type})";
}
