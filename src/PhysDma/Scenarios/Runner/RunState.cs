using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>What every mapping a step made by its <c>as:</c> name has: the device, direction and attributes.</summary>
internal abstract class MappingHandle
{
    public required string Name { get; init; }
    public required Device Dev { get; init; }
    public required DmaDirection Dir { get; init; }
    public required DmaAttrs Attrs { get; init; }
    public bool Unmapped { get; set; }
}

/// <summary>A mapping a <c>map</c>, <c>p2p_map</c> or <c>alloc_coherent</c> step made.</summary>
internal sealed class Handle : MappingHandle
{
    public required Buffer Buf { get; init; }
    public required PhysAddr Phys { get; init; }
    public required ulong Size { get; init; }
    public required MapApi Api { get; init; }
    public required DmaAddr Addr { get; init; }

    /// <summary>Set for handles made by <c>p2p_map</c>: what the importer decided.</summary>
    public P2PMapping? P2P { get; init; }

    /// <summary>Whether this handle holds a DMA-API mapping (bus addresses and failures do not).</summary>
    public bool IsDmaMapping => !Addr.IsError && P2P is not { Type: P2PMapType.BusAddr };
}

/// <summary>A scatterlist a <c>map_sg</c> step made.</summary>
internal sealed class SgHandle : MappingHandle
{
    public required SgTable Table { get; init; }
    public required bool Mapped { get; init; }
}

/// <summary>An IOVA state an <c>iova_alloc</c> step made.</summary>
internal sealed class IovaHandle
{
    public required Device Dev { get; init; }
    public required DmaIovaState State { get; init; }
    public bool Done { get; set; }

    /// <summary>The state has no IOVA and the scenario said to map each link with <c>dma_map_phys</c> instead.</summary>
    public bool Fallback { get; init; }

    /// <summary>The fallback's mappings, one per link.</summary>
    public List<FallbackLink> Links { get; } = [];

    /// <summary>The device address of an offset into the state: the IOVA, or the fallback mapping that covers it.</summary>
    public DmaAddr Target(ulong offset)
    {
        if (!Fallback)
        {
            return State.Addr + offset;
        }
        var l = Links.FirstOrDefault(l => !l.Unmapped && offset >= l.At && offset - l.At < l.Size);
        return l is null || l.Addr.IsError ? DmaAddr.MappingError : l.Addr + (offset - l.At);
    }
}

/// <summary>One link of an IOVA state made by the fallback: an ordinary streaming mapping.</summary>
internal sealed record FallbackLink(ulong At, PhysAddr Phys, ulong Size, DmaDirection Dir, DmaAttrs Attrs, DmaAddr Addr)
{
    public bool Unmapped { get; set; }
}

/// <summary>
/// Everything a run's steps share: the machine and its DMA API, the buffers and handles steps made by name,
/// and the measuring scope put around every kernel call.
/// </summary>
internal sealed class RunState(Scenario scenario, Machine machine, DmaApi api)
{
    private readonly List<CacheOp> _cacheOps = [];

    public Scenario Scenario { get; } = scenario;
    public Machine M { get; } = machine;
    public DmaApi Api { get; } = api;
    public BufferAllocator Alloc { get; } = new(machine, api);
    public P2PImport Importer { get; } = new(api);
    public DmaRecorder Recorder { get; } = new() { Why = [] };
    public Dictionary<string, Buffer> Buffers { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, Handle> Handles { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, SgHandle> Sg { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, IovaHandle> Iova { get; } = new(StringComparer.Ordinal);

    /// <summary>Starts recording what the DMA layers do (path, bounce, prot, cache operations).</summary>
    public void Attach()
    {
        Api.Recorder = Recorder;
        M.ArchCache.Log = _cacheOps;
    }

    public void Detach()
    {
        Api.Recorder = null;
        M.ArchCache.Log = null;
    }

    public ScenarioError Error(Step step, string field, string message) => new(Scenario.File, step.Line, field, message);

    /// <summary>
    /// Measures the kernel call made inside the scope: on dispose, the step's result gets the cache operations,
    /// struct page reads and kernel mappings the call made. The recorder starts clean for the call.
    /// </summary>
    public CallScope Measure(IMeasured result)
    {
        Recorder.Reset();
        _cacheOps.Clear();
        return new CallScope(this, result, M.Counters.Snapshot());
    }

    public readonly struct CallScope(RunState s, IMeasured result, CounterSnapshot before) : IDisposable
    {
        public void Dispose()
        {
            var d = s.M.Counters.Snapshot() - before;
            result.CacheOps = [.. s._cacheOps.Select(op => new CacheOpResult(op.Name, new HexAddr(op.Phys.Value), op.Size))];
            result.PageTouches = d.PageReads;
            result.KernelMappings = d.KernelMappings;
        }
    }

    /// <summary>An offset and length inside a buffer, or bad input naming the field.</summary>
    public void CheckRange(Step s, Buffer b, ulong offset, ulong len, string field)
    {
        if (offset > b.Size || len > b.Size - offset)
        {
            throw Error(s, field, $"offset {offset} + length {len} runs past buffer '{b.Name}' ({b.Size} bytes)");
        }
    }

    /// <summary>The IOVA state a step names, which must still hold an IOVA.</summary>
    public IovaHandle IovaState(Step s, string name)
    {
        var h = Iova[name];
        if (!h.State.UseIova && !h.Fallback)
        {
            // dma_iova_try_alloc said no (no IOMMU, identity domain, ...): a driver maps page by page instead.
            throw Error(s, "state", $"IOVA state '{name}' has no IOVA on this machine (iova_alloc gave use_iova: false; a driver falls back to map)");
        }
        if (h.Done)
        {
            throw Error(s, "state", $"IOVA state '{name}' was already freed or destroyed");
        }
        return h;
    }

    /// <summary>The device address a device access targets: a raw address, or a handle's first address plus an offset.</summary>
    public DmaAddr Target(string? handle, ulong? addr, ulong offset) =>
        handle is null ? new DmaAddr(addr!.Value + offset)
        : Sg.TryGetValue(handle, out var sg) ? sg.Table.Sgl[0].DmaAddress + offset
        : Iova.TryGetValue(handle, out var iova) ? iova.Target(offset)
        : Handles[handle].Addr + offset;

    /// <summary>How many bytes a handle covers on the device side.</summary>
    public ulong HandleSize(string handle) =>
        Sg.TryGetValue(handle, out var sg) ? sg.Table.Sgl.Take(Math.Max(1, sg.Table.Nents)).Aggregate(0UL, (a, e) => a + e.DmaLength)
        : Iova.TryGetValue(handle, out var iova) ? iova.State.Size
        : Handles[handle].Size;

    /// <summary>How many DMA-API mappings are still live.</summary>
    public long LiveMappings =>
        Handles.Values.Count(h => !h.Unmapped && h.IsDmaMapping) + Sg.Values.Count(h => h.Mapped && !h.Unmapped)
        + Iova.Values.Sum(h => h.Fallback ? h.Links.Count(l => !l.Unmapped && !l.Addr.IsError) : h.Done ? 0 : 1);
}

/// <summary>Handlers of the ops, by step type: each op family registers its own.</summary>
internal sealed class OpTable
{
    private readonly Dictionary<Type, Action<Step, StepResult>> _handlers = [];

    public void On<TStep, TResult>(Action<TStep, TResult> handler)
        where TStep : Step
        where TResult : StepResult => _handlers.Add(typeof(TStep), (s, r) => handler((TStep)s, (TResult)r));

    public void Execute(Step step, StepResult result)
    {
        if (!_handlers.TryGetValue(step.GetType(), out var h))
        {
            throw new InvalidOperationException($"op '{step.Op}' has no handler");
        }
        h(step, result);
    }
}
