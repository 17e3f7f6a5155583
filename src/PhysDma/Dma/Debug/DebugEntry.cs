using PhysDma.Core;

namespace PhysDma.Dma;

/// <summary>One report: a dma-debug error (<c>err_printk</c>) or one of PhysDma's own checks.</summary>
/// <param name="Check">The check's name in results (docs/checks.md).</param>
/// <param name="Message">The full line, with its <c>DMA-API: </c> (kernel) or <c>PhysDma: </c> (ours) prefix.</param>
/// <param name="Printed">Whether the kernel would have printed it; always false for our own checks.</param>
/// <param name="Device">The device's name.</param>
/// <param name="Kernel">True for a check the kernel makes (counted in <c>error_count</c>).</param>
/// <param name="MappedAt">Where the mapping the report is about was made (the kernel's "Mapped at:" stack), if known.</param>
public sealed record DebugReport(string Check, string Message, bool Printed, string Device, bool Kernel, string? MappedAt);

/// <summary>A mapping dma-debug tracks (<c>struct dma_debug_entry</c>), as tests and dumps see it.</summary>
internal sealed record DebugEntryInfo(
    string Device, DmaAddr DevAddr, ulong Size, DebugEntryType Type, DmaDirection Direction,
    int SgCallEnts, int SgMappedEnts, PhysAddr Paddr, MapErrType MapErrType, DmaAttrs Attrs, bool DeviceOwns, string? MappedAt);

/// <summary>
/// One segment of a scatterlist as dma-debug reads it: the CPU side (<c>sg_phys</c>, <c>length</c>) and, for
/// the first <c>mapped_ents</c> segments, the DMA side (<c>sg_dma_address</c>, <c>sg_dma_len</c>).
/// </summary>
internal readonly record struct DebugSg(PhysAddr Phys, ulong Length, DmaAddr DmaAddress, ulong DmaLength);

/// <summary>What a tracked mapping was made by (the kernel's <c>dma_debug_*</c> type, with its numbers).</summary>
internal enum DebugEntryType
{
    /// <summary>Only the type of the reference record a single sync builds; no mapping has it since 6.18.</summary>
    Single = 0,
    ScatterGather = 1,
    Coherent = 2,

    /// <summary>Every <c>dma_map_phys</c> mapping: single, page and resource alike.</summary>
    Phy = 3,
}

/// <summary>Whether the driver called <c>dma_mapping_error</c> on a mapping (<c>enum map_err_types</c>).</summary>
internal enum MapErrType
{
    NotApplicable = 0,
    NotChecked = 1,
    Checked = 2,
}
