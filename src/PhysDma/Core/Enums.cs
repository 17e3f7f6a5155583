namespace PhysDma.Core;

/// <summary><c>enum dma_data_direction</c>, with the kernel's values.</summary>
public enum DmaDirection
{
    /// <summary><c>DMA_BIDIRECTIONAL</c>: the device may read and write the buffer.</summary>
    Bidirectional = 0,

    /// <summary><c>DMA_TO_DEVICE</c>: the device reads what the CPU wrote.</summary>
    ToDevice = 1,

    /// <summary><c>DMA_FROM_DEVICE</c>: the device writes what the CPU will read.</summary>
    FromDevice = 2,

    /// <summary><c>DMA_NONE</c>: not a valid direction for a mapping (the kernel BUGs on it).</summary>
    None = 3,
}

/// <summary>DMA attributes with the kernel's bit values (6.18).</summary>
[Flags]
public enum DmaAttrs : ulong
{
    /// <summary>No attribute.</summary>
    None = 0,

    /// <summary><c>DMA_ATTR_WEAK_ORDERING</c>: the device's writes may be reordered.</summary>
    WeakOrdering = 1UL << 1,

    /// <summary><c>DMA_ATTR_WRITE_COMBINE</c>: a write-combining CPU mapping for coherent allocations.</summary>
    WriteCombine = 1UL << 2,

    /// <summary><c>DMA_ATTR_NO_KERNEL_MAPPING</c>: a coherent allocation without a kernel virtual mapping.</summary>
    NoKernelMapping = 1UL << 4,

    /// <summary><c>DMA_ATTR_SKIP_CPU_SYNC</c>: map or unmap without the CPU cache maintenance (the driver syncs itself).</summary>
    SkipCpuSync = 1UL << 5,

    /// <summary><c>DMA_ATTR_FORCE_CONTIGUOUS</c>: a coherent allocation physically contiguous even behind an IOMMU.</summary>
    ForceContiguous = 1UL << 6,

    /// <summary><c>DMA_ATTR_ALLOC_SINGLE_PAGES</c>: an IOMMU coherent allocation may use single pages.</summary>
    AllocSinglePages = 1UL << 7,

    /// <summary><c>DMA_ATTR_NO_WARN</c>: no warning when the mapping fails.</summary>
    NoWarn = 1UL << 8,

    /// <summary><c>DMA_ATTR_PRIVILEGED</c>: only privileged device accesses may use the mapping.</summary>
    Privileged = 1UL << 9,

    /// <summary><c>DMA_ATTR_MMIO</c>: the physical address is device memory (a PCI BAR or another MMIO resource), not RAM: no CPU cache maintenance, no bouncing, an MMIO IOMMU mapping.</summary>
    Mmio = 1UL << 10,
}

/// <summary>The errno values the DMA API returns, with Linux's numbers.</summary>
internal enum Errno
{
    None = 0,
    EPERM = 1,
    EIO = 5,
    ENOMEM = 12,
    ENODEV = 19,
    EINVAL = 22,
    EOPNOTSUPP = 95,
    EREMOTEIO = 121,
}

/// <summary>The CPU architecture, which decides the cache hooks and some defaults.</summary>
internal enum Arch
{
    X86_64,
    Arm64,
}

internal static class DmaNames
{
    /// <summary>The name a scenario and a result use for a direction.</summary>
    public static string ScenarioName(this DmaDirection dir) => dir switch
    {
        DmaDirection.Bidirectional => "bidirectional",
        DmaDirection.ToDevice => "to_device",
        DmaDirection.FromDevice => "from_device",
        DmaDirection.None => "none",
        _ => "0x" + ((int)dir).ToString("x", System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>The kernel's name, as dma-debug prints it.</summary>
    public static string KernelName(this DmaDirection dir) => dir switch
    {
        DmaDirection.Bidirectional => "DMA_BIDIRECTIONAL",
        DmaDirection.ToDevice => "DMA_TO_DEVICE",
        DmaDirection.FromDevice => "DMA_FROM_DEVICE",
        DmaDirection.None => "DMA_NONE",
        _ => "DMA_NONE",
    };

    public static bool IsValidForMapping(this DmaDirection dir) =>
        dir is DmaDirection.Bidirectional or DmaDirection.ToDevice or DmaDirection.FromDevice;

    /// <summary>Attribute names in the order of the kernel's table (used by scenarios and traces).</summary>
    public static readonly (DmaAttrs Flag, string Scenario, string Kernel)[] AttrTable =
    [
        (DmaAttrs.WeakOrdering, "weak_ordering", "WEAK_ORDERING"),
        (DmaAttrs.WriteCombine, "write_combine", "WRITE_COMBINE"),
        (DmaAttrs.NoKernelMapping, "no_kernel_mapping", "NO_KERNEL_MAPPING"),
        (DmaAttrs.SkipCpuSync, "skip_cpu_sync", "SKIP_CPU_SYNC"),
        (DmaAttrs.ForceContiguous, "force_contiguous", "FORCE_CONTIGUOUS"),
        (DmaAttrs.AllocSinglePages, "alloc_single_pages", "ALLOC_SINGLE_PAGES"),
        (DmaAttrs.NoWarn, "no_warn", "NO_WARN"),
        (DmaAttrs.Privileged, "privileged", "PRIVILEGED"),
        (DmaAttrs.Mmio, "mmio", "MMIO"),
    ];

    public static List<string> ScenarioNames(this DmaAttrs attrs)
    {
        var list = new List<string>();
        foreach (var (flag, name, _) in AttrTable)
        {
            if ((attrs & flag) != 0)
            {
                list.Add(name);
            }
        }
        return list;
    }
}
