using System.Text.Json.Serialization;

namespace PhysDma.Scenarios;

/// <summary>
/// What one step did, as the result's <c>steps[]</c> entry. Every op has its own record; its properties, in
/// order, are the step's JSON fields (snake_case), and they are also exactly what the step's <c>expect:</c> may
/// name (see <see cref="ResultCatalogue"/>): a new result field is one new property here.
/// </summary>
[JsonDerivedType(typeof(AllocResult))]
[JsonDerivedType(typeof(FreeResult))]
[JsonDerivedType(typeof(CpuWriteResult))]
[JsonDerivedType(typeof(CpuReadResult))]
[JsonDerivedType(typeof(MapResult))]
[JsonDerivedType(typeof(UnmapResult))]
[JsonDerivedType(typeof(MappingErrorResult))]
[JsonDerivedType(typeof(SyncResult))]
[JsonDerivedType(typeof(DevReadResult))]
[JsonDerivedType(typeof(DevWriteResult))]
[JsonDerivedType(typeof(TickResult))]
[JsonDerivedType(typeof(IommuFlushResult))]
[JsonDerivedType(typeof(AllocCoherentResult))]
[JsonDerivedType(typeof(FreeCoherentResult))]
[JsonDerivedType(typeof(IovaAllocResult))]
[JsonDerivedType(typeof(IovaLinkResult))]
[JsonDerivedType(typeof(IovaSyncResult))]
[JsonDerivedType(typeof(IovaUnlinkResult))]
[JsonDerivedType(typeof(IovaFreeResult))]
[JsonDerivedType(typeof(IovaDestroyResult))]
[JsonDerivedType(typeof(RemoveDeviceResult))]
[JsonDerivedType(typeof(MapSgResult))]
[JsonDerivedType(typeof(UnmapSgResult))]
[JsonDerivedType(typeof(SyncSgResult))]
internal abstract record StepResult
{
    [JsonPropertyOrder(-3)]
    public int Index { get; set; }

    [JsonPropertyOrder(-2)]
    public string Op { get; set; } = "";

    [JsonPropertyOrder(-1)]
    public string? Id { get; set; }

    /// <summary>
    /// The decision trail: the kernel decisions that produced the step's outcome, in order, each naming the
    /// function and the values it compared (empty for steps no kernel code decided).
    /// </summary>
    [JsonPropertyOrder(49)]
    public List<string> Why { get; set; } = [];

    /// <summary>The dma-debug checks that reported during the step, in order; absent when there were none.</summary>
    [JsonPropertyOrder(50)]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<string>? Debug { get; set; }

    /// <summary>
    /// The step's error: the API's own (<c>DMA_MAPPING_ERROR</c>, an errno name, <c>fault</c>), or <c>BUG</c> /
    /// <c>model_violation</c> when the run stopped here. Each op places it where its JSON has always had it.
    /// </summary>
    public abstract string? Error { get; set; }

    /// <summary>Whether every expectation of the step held.</summary>
    [JsonPropertyOrder(100)]
    public bool Ok { get; set; }
}

/// <summary>The cost of a kernel call, measured around it: cache maintenance, struct page reads, kernel mappings.</summary>
internal interface IMeasured
{
    List<CacheOpResult> CacheOps { get; set; }

    long PageTouches { get; set; }

    long KernelMappings { get; set; }
}

/// <summary>A step around one kernel call whose cost ends its fields.</summary>
internal abstract record MeasuredResult : StepResult, IMeasured
{
    [JsonPropertyOrder(40)]
    public List<CacheOpResult> CacheOps { get; set; } = [];

    [JsonPropertyOrder(41)]
    public long PageTouches { get; set; }

    [JsonPropertyOrder(42)]
    public long KernelMappings { get; set; }
}

/// <summary>One CPU cache maintenance operation on a physical range.</summary>
internal sealed record CacheOpResult(string Op, HexAddr Phys, ulong Size);

/// <summary>One mapped segment of a scatterlist, as the device sees it.</summary>
internal sealed record SegmentResult(HexAddr DmaAddr, ulong Len);

internal sealed record AllocResult : StepResult
{
    public string? Buf { get; set; }
    public string? Kind { get; set; }
    public HexAddr? Phys { get; set; }
    public ulong? Size { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record FreeResult : StepResult
{
    public string? Buf { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record CpuWriteResult : StepResult
{
    public string? Buf { get; set; }
    public ulong? Offset { get; set; }
    public ulong? Len { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record CpuReadResult : StepResult
{
    public string? Buf { get; set; }
    public ulong? Offset { get; set; }
    public ulong? Len { get; set; }
    public ByteDump? Data { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

/// <summary><c>map</c> and <c>p2p_map</c>.</summary>
internal sealed record MapResult : MeasuredResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public HexAddr? Phys { get; set; }
    public ulong? Size { get; set; }
    public string? Dir { get; set; }
    public FlagSet? Attrs { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public override string? Error { get; set; }
    public string? Path { get; set; }
    public string? P2p { get; set; }
    public HexAddr? Bounce { get; set; }
    public FlagSet? IommuProt { get; set; }
}

internal sealed record UnmapResult : MeasuredResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public ulong? Size { get; set; }
    public string? Dir { get; set; }
    public FlagSet? Attrs { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record MappingErrorResult : StepResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public long? Ret { get; set; }
    public override string? Error { get; set; }
}

internal sealed record SyncResult : MeasuredResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public ulong? Size { get; set; }
    public string? Dir { get; set; }
    public string? For { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record DevReadResult : StepResult
{
    public string? Dev { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public ulong? Len { get; set; }
    public ByteDump? Data { get; set; }
    public override string? Error { get; set; }
}

internal sealed record DevWriteResult : StepResult
{
    public string? Dev { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public ulong? Len { get; set; }
    public override string? Error { get; set; }
}

internal sealed record TickResult : StepResult
{
    public ulong? Ms { get; set; }
    public ulong? NowMs { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record IommuFlushResult : StepResult
{
    public long? IotlbEntries { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

/// <summary>
/// <c>alloc_coherent</c>: measured like a mapping, but its cost comes before the address. Its cache operations are
/// <c>arch_dma_prep_coherent</c>'s clean and invalidate of the new pages on a non-coherent device (empty elsewhere).
/// </summary>
internal sealed record AllocCoherentResult : StepResult, IMeasured
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public ulong? Size { get; set; }
    public FlagSet? Attrs { get; set; }
    public List<CacheOpResult> CacheOps { get; set; } = [];
    public long PageTouches { get; set; }
    public long KernelMappings { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public HexAddr? Phys { get; set; }
    public string? Path { get; set; }
    public FlagSet? IommuProt { get; set; }
    public override string? Error { get; set; }
}

internal sealed record FreeCoherentResult : StepResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public ulong? Size { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record IovaAllocResult : StepResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public ulong? Size { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public bool? UseIova { get; set; }
    public override string? Error { get; set; }
}

internal sealed record IovaLinkResult : MeasuredResult, IIovaStateResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public HexAddr? Phys { get; set; }
    public ulong? Size { get; set; }
    public ulong? At { get; set; }
    public string? Dir { get; set; }
    public FlagSet? Attrs { get; set; }
    public HexAddr? DmaAddr { get; set; }
    public long? Ret { get; set; }
    public override string? Error { get; set; }
    public HexAddr? Bounce { get; set; }
    public FlagSet? IommuProt { get; set; }

    /// <summary>Set when the state has no IOVA and the scenario's fallback mapped the link instead (<c>dma_map_phys</c>).</summary>
    public string? Fallback { get; set; }

    /// <summary>The fallback mapping's path.</summary>
    public string? Path { get; set; }
}

internal sealed record IovaSyncResult : StepResult, IIovaStateResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public ulong? At { get; set; }
    public ulong? Size { get; set; }
    public long? Ret { get; set; }
    public override string? Error { get; set; }
}

internal sealed record IovaUnlinkResult : MeasuredResult, IIovaStateResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public ulong? At { get; set; }
    public ulong? Size { get; set; }
    public string? Dir { get; set; }
    public FlagSet? Attrs { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record IovaFreeResult : StepResult, IIovaStateResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record IovaDestroyResult : MeasuredResult, IIovaStateResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public ulong? MappedLen { get; set; }
    public string? Dir { get; set; }
    public FlagSet? Attrs { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record RemoveDeviceResult : StepResult
{
    public string? Dev { get; set; }
    public long? Leaked { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record MapSgResult : MeasuredResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public string? Dir { get; set; }
    public FlagSet? Attrs { get; set; }
    public int? Nents { get; set; }
    public List<SegmentResult>? Segments { get; set; }
    public override string? Error { get; set; }
    public string? Path { get; set; }
}

internal sealed record UnmapSgResult : MeasuredResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public string? Dir { get; set; }
    public FlagSet? Attrs { get; set; }
    public int? Nents { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

internal sealed record SyncSgResult : MeasuredResult
{
    public string? Handle { get; set; }
    public string? Dev { get; set; }
    public string? Dir { get; set; }
    public string? For { get; set; }
    public int? Nents { get; set; }

    [JsonPropertyOrder(60)]
    public override string? Error { get; set; }
}

/// <summary>What every step on an existing IOVA state reports first: the state's name and its device.</summary>
internal interface IIovaStateResult
{
    string? Handle { get; set; }
    string? Dev { get; set; }
}
