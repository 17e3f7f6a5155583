using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>A parsed scenario: its machine and its steps, all checked before anything runs.</summary>
internal sealed record Scenario(string Name, string File, MachineConfig Machine, IReadOnlyList<Step> Steps, IReadOnlyList<Expectation> FinalExpect)
{
    /// <summary>The <c>faults:</c> section, if any.</summary>
    public FaultSpec? Faults { get; init; }
}

/// <summary>One <c>expect:</c> entry: a result field and the value it must have, with where it was written.</summary>
/// <remarks><c>On</c> names the machine of an <c>expect_on:</c> entry (null for a plain <c>expect:</c>).</remarks>
internal sealed record Expectation(string Field, YNode Value)
{
    public string? On { get; init; }
}

internal enum BufferKind
{
    Ram,
    Kmalloc,
    Stack,
    Vmalloc,
    P2PMem,
    Bar,
    Resource,

    /// <summary>The CPU side of a coherent allocation (<c>alloc_coherent</c>).</summary>
    Coherent,

    /// <summary>An object inside the kernel image (its text or read-only data).</summary>
    KernelText,
}

internal enum MapApi
{
    Phys,
    Page,
    Single,
    Resource,
}

/// <summary>A step: the op's own fields plus the common ones (<c>id</c>, <c>cpu</c>, <c>expect</c>).</summary>
internal abstract record Step
{
    public required int Index { get; init; }
    public required string Op { get; init; }
    public string? Id { get; init; }
    public int Cpu { get; init; }
    public required int Line { get; init; }
    public IReadOnlyList<Expectation> Expect { get; init; } = [];
}

internal sealed record AllocStep(string Name, ulong Size, BufferKind Kind, ulong? Align, Zone? Zone, string? From, int? Bar, ulong Offset, ulong? Phys) : Step;

internal sealed record FreeStep(string Name) : Step;

internal sealed record CpuWriteStep(string Buf, ulong Offset, DataSpec Data, ulong? Len) : Step;

internal sealed record CpuReadStep(string Buf, ulong Offset, ulong Len) : Step;

internal sealed record MapStep(string Dev, string Buf, ulong Offset, ulong? Size, DmaDirection Dir, DmaAttrs Attrs, MapApi Api, string As) : Step
{
    /// <summary>For <c>api: single</c>: pass a <c>kmap_local_page</c> address instead of the buffer's own.</summary>
    public bool Kmap { get; init; }
}

internal sealed record UnmapStep(string Handle, ulong? Size, DmaDirection? Dir, DmaAttrs? Attrs, MapApi? Api) : Step;

internal sealed record MappingErrorStep(string Handle) : Step;

internal sealed record SyncStep(string Handle, bool ForCpu, ulong Offset, ulong? Size, DmaDirection? Dir) : Step;

internal sealed record DevReadStep(string Dev, string? Handle, ulong? Addr, ulong Offset, ulong Len) : Step;

internal sealed record DevWriteStep(string Dev, string? Handle, ulong? Addr, ulong Offset, DataSpec Data, ulong? Len) : Step;

internal sealed record TickStep(ulong Ms) : Step;

internal sealed record IommuFlushStep : Step;

internal sealed record AllocCoherentStep(string Dev, ulong Size, DmaAttrs Attrs, string As) : Step;

internal sealed record FreeCoherentStep(string Handle, ulong CpuOffset) : Step;

internal sealed record IovaAllocStep(string Dev, ulong Size, string? PhysOf, ulong PhysOfOffset, string As) : Step
{
    /// <summary>
    /// <c>fallback: map_phys</c>: what the driver does when <c>dma_iova_try_alloc</c> says no (no IOMMU, identity
    /// domain, a confidential guest): each link is a <c>dma_map_phys</c>, each unlink a <c>dma_unmap_phys</c>.
    /// </summary>
    public bool FallbackMapPhys { get; init; }
}

internal sealed record IovaLinkStep(string State, string Buf, ulong Offset, ulong Size, ulong At, DmaDirection Dir, DmaAttrs Attrs) : Step, IIovaStateStep;

internal sealed record IovaSyncStep(string State, ulong At, ulong Size) : Step, IIovaStateStep;

internal sealed record IovaUnlinkStep(string State, ulong At, ulong Size, DmaDirection Dir, DmaAttrs Attrs) : Step, IIovaStateStep;

internal sealed record IovaFreeStep(string State) : Step, IIovaStateStep;

internal sealed record IovaDestroyStep(string State, ulong MappedLen, DmaDirection Dir, DmaAttrs Attrs) : Step, IIovaStateStep;

internal sealed record RemoveDeviceStep(string Dev) : Step;

internal sealed record P2PMapStep(string Dev, string Buf, ulong Offset, ulong? Size, DmaDirection Dir, DmaAttrs Attrs, string As) : Step;

internal sealed record SgSegmentSpec(string Buf, ulong Offset, ulong Size);

internal sealed record MapSgStep(string Dev, IReadOnlyList<SgSegmentSpec> Segments, DmaDirection Dir, DmaAttrs Attrs, string As) : Step;

internal sealed record UnmapSgStep(string Handle, DmaDirection? Dir, DmaAttrs? Attrs, int? Nents) : Step;

internal sealed record SyncSgStep(string Handle, bool ForCpu, DmaDirection? Dir, int? Nents) : Step;

/// <summary>A step on an IOVA state an earlier <c>iova_alloc</c> made.</summary>
internal interface IIovaStateStep
{
    string State { get; }
}
