using PhysDma.Core;

namespace PhysDma.Platform;

internal enum MemKind
{
    /// <summary>System RAM: has struct page, a linear mapping, is cacheable.</summary>
    Ram,

    /// <summary>RAM holding the kernel image (text and rodata); still RAM with struct page.</summary>
    KernelText,

    /// <summary>A device's BAR (or other device-local memory): MMIO, no linear mapping.</summary>
    DeviceMemory,

    /// <summary>Other MMIO (platform registers, a resource a driver ioremaps).</summary>
    Mmio,
}

/// <summary>One range of the physical address space.</summary>
internal sealed record MemRegion(PhysAddr Base, ulong Size, MemKind Kind, string Name, string? Owner = null, int Bar = -1)
{
    public PhysAddr End => Base + Size;
    public bool Contains(PhysAddr p) => p >= Base && p.Value - Base.Value < Size;
    public bool Contains(PhysAddr p, ulong size) => Contains(p) && size <= Size - (p.Value - Base.Value);
    public bool IsRam => Kind is MemKind.Ram or MemKind.KernelText;
}

/// <summary>
/// The machine's physical memory map (what firmware and PCI enumeration say exists where): RAM, the
/// kernel image, device BARs and other MMIO. Lookups are binary searches over sorted, disjoint ranges.
/// </summary>
internal sealed class MemoryMap
{
    private MemRegion[] _regions = [];

    public IReadOnlyList<MemRegion> Regions => _regions;

    /// <summary>Adds a region. Kernel text may sit inside RAM (it splits the RAM range); anything else must not overlap.</summary>
    public void Add(MemRegion region)
    {
        if (region.Size == 0)
        {
            throw new ArgumentException($"memory region '{region.Name}' has size 0");
        }
        if (region.Base.Value + region.Size < region.Base.Value)
        {
            throw new ArgumentException($"memory region '{region.Name}' wraps around the address space");
        }
        var list = new List<MemRegion>(_regions);
        if (region.Kind == MemKind.KernelText)
        {
            var host = list.FirstOrDefault(r => r.Kind == MemKind.Ram && r.Contains(region.Base, region.Size))
                ?? throw new ArgumentException($"kernel text {region.Base}+{Hex.Format(region.Size)} is not inside RAM");
            list.Remove(host);
            if (region.Base > host.Base)
            {
                list.Add(host with { Size = region.Base - host.Base });
            }
            if (region.End < host.End)
            {
                list.Add(host with { Base = region.End, Size = host.End - region.End });
            }
        }
        else
        {
            foreach (var r in list)
            {
                if (region.Base < r.End && r.Base < region.End)
                {
                    throw new ArgumentException(
                        $"'{region.Name}' {region.Base}+{Hex.Format(region.Size)} overlaps '{r.Name}' {r.Base}+{Hex.Format(r.Size)}");
                }
            }
        }
        list.Add(region);
        list.Sort((a, b) => a.Base.CompareTo(b.Base));
        _regions = [.. list];
    }

    /// <summary>The region containing <paramref name="p"/>, or null for a hole.</summary>
    public MemRegion? Find(PhysAddr p)
    {
        var regions = _regions;
        int lo = 0, hi = regions.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >>> 1;
            var r = regions[mid];
            if (p < r.Base)
            {
                hi = mid - 1;
            }
            else if (p >= r.End)
            {
                lo = mid + 1;
            }
            else
            {
                return r;
            }
        }
        return null;
    }

    /// <summary>True if every byte of [p, p+size) is RAM (the kernel's <c>page_is_ram</c> over a range).</summary>
    public bool IsRam(PhysAddr p, ulong size = 1)
    {
        var a = p;
        var end = p.Value + size;
        while (a.Value < end)
        {
            var r = Find(a);
            if (r is null || !r.IsRam)
            {
                return false;
            }
            a = r.End;
        }
        return true;
    }

    public bool IsDeviceMemory(PhysAddr p) => Find(p) is { Kind: MemKind.DeviceMemory or MemKind.Mmio };

    public IEnumerable<MemRegion> Ram => _regions.Where(r => r.IsRam);

    /// <summary>One past the last RAM byte (<c>max_pfn &lt;&lt; PAGE_SHIFT</c>).</summary>
    public PhysAddr RamEnd => _regions.Where(r => r.IsRam).Select(r => r.End).DefaultIfEmpty(new PhysAddr(0)).Max();

    /// <summary>First RAM byte (<c>min_low_pfn &lt;&lt; PAGE_SHIFT</c>).</summary>
    public PhysAddr RamStart => _regions.Where(r => r.IsRam).Select(r => r.Base).DefaultIfEmpty(new PhysAddr(0)).Min();
}
