using PhysDma.Core;

namespace PhysDma.Platform;

internal enum Zone
{
    Dma,
    Dma32,
    Normal,
    HighMem,
    Device,
}

/// <summary>A <c>struct page *</c>: a handle. Turning it into a physical address is arithmetic, not a read.</summary>
internal readonly record struct Page(Pfn Pfn)
{
    public PhysAddr ToPhys(int pageShift) => Pfn.ToPhys(pageShift);
}

/// <summary>What reading a <c>struct page</c> tells.</summary>
internal readonly record struct PageDesc(Pfn Pfn, Zone Zone, bool IsHighMem, string? Pgmap)
{
    /// <summary><c>is_zone_device_page</c>.</summary>
    public bool IsZoneDevice => Zone == Zone.Device;

    /// <summary><c>is_pci_p2pdma_page</c>: ZONE_DEVICE with a P2PDMA pgmap.</summary>
    public bool IsP2PDma => Pgmap is not null;
}

/// <summary>
/// The memory map of <c>struct page</c>s (vmemmap): one for every RAM page and for ZONE_DEVICE memory that
/// a driver registered. Every read is counted, so "this path never touches struct page" is measured.
/// </summary>
internal sealed class MemMap
{
    private readonly MemoryMap _map;
    private readonly ModelCounters _counters;
    private readonly Func<PhysAddr, Zone> _zoneOf;
    private readonly List<(PhysAddr Base, ulong Size, string Pgmap)> _deviceRanges = [];

    public MemMap(MemoryMap map, ModelCounters counters, int pageShift, Func<PhysAddr, Zone> zoneOf)
    {
        _map = map;
        _counters = counters;
        PageShift = pageShift;
        _zoneOf = zoneOf;
    }

    public int PageShift { get; }

    /// <summary>Registers ZONE_DEVICE pages (a P2PDMA pool, <c>devm_memremap_pages</c>).</summary>
    public void AddDevicePages(PhysAddr @base, ulong size, string pgmap) => _deviceRanges.Add((@base, size, pgmap));

    private bool HasStructPage(PhysAddr p, out string? pgmap)
    {
        foreach (var (b, s, pg) in _deviceRanges)
        {
            if (p >= b && p.Value - b.Value < s)
            {
                pgmap = pg;
                return true;
            }
        }
        pgmap = null;
        return _map.IsRam(p);
    }

    /// <summary><c>pfn_valid</c>: does this frame have a struct page?</summary>
    public bool PfnValid(Pfn pfn)
    {
        _counters.CountPfnValid();
        return HasStructPage(pfn.ToPhys(PageShift), out _);
    }

    /// <summary><c>phys_to_page</c>. A frame without struct page has no valid page pointer: a model violation.</summary>
    public Page PhysToPage(PhysAddr p)
    {
        _counters.CountPhysToPage();
        if (!HasStructPage(p, out _))
        {
            throw new ModelViolation($"phys_to_page({p}): no struct page for this address (not RAM, not ZONE_DEVICE)");
        }
        return new Page(p.Pfn(PageShift));
    }

    /// <summary>Reads a struct page (counted).</summary>
    public PageDesc Read(Page page)
    {
        _counters.CountPageRead();
        var phys = page.ToPhys(PageShift);
        if (!HasStructPage(phys, out var pgmap))
        {
            throw new ModelViolation($"read of struct page for pfn {page.Pfn}: no struct page exists there");
        }
        if (pgmap is not null)
        {
            return new PageDesc(page.Pfn, Zone.Device, false, pgmap);
        }
        var zone = _zoneOf(phys);
        return new PageDesc(page.Pfn, zone, zone == Zone.HighMem, null);
    }
}
