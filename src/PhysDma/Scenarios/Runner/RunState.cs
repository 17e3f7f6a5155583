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
internal sealed class RunState
{
    private readonly List<CacheOp> _cacheOps = [];

    public RunState(Scenario scenario, Machine machine, DmaApi api)
    {
        Scenario = scenario;
        M = machine;
        Api = api;
        Alloc = new(machine, api);
        Importer = new(api);
        foreach (var t in new INameTable[] { Buffers, Handles, Sg, Iova })
        {
            t.Bind(scenario.File, () => Current);
        }
    }

    public Scenario Scenario { get; }
    public Machine M { get; }
    public DmaApi Api { get; }
    public BufferAllocator Alloc { get; }
    public P2PImport Importer { get; }
    public DmaRecorder Recorder { get; } = new() { Why = [] };
    public NameTable<Buffer> Buffers { get; } = new("buf", "buffer");
    public NameTable<Handle> Handles { get; } = new("handle", "handle");
    public NameTable<SgHandle> Sg { get; } = new("handle", "scatterlist");
    public NameTable<IovaHandle> Iova { get; } = new("state", "IOVA state");

    /// <summary>The step running now: a name a step looks up that no earlier step made is bad input at its line.</summary>
    public Step? Current { get; set; }

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

    /// <summary>The most host memory the modelled bytes may take (<c>--max-memory</c>).</summary>
    public ulong MaxMemory { get; set; } = ScenarioRunner.DefaultMaxMemory;

    /// <summary>Host bytes the machine's memory and cache hold now.</summary>
    public ulong HeldBytes => M.Memory.HeldBytes + M.Cache.HeldBytes;

    /// <summary>
    /// A step that would make the modelled bytes exceed <see cref="MaxMemory"/> stops the run with a clear
    /// message before it allocates (<paramref name="more"/>: the most bytes the step can add).
    /// </summary>
    public void CheckMemory(Step s, string field, ulong more)
    {
        var held = HeldBytes;
        if (more > MaxMemory || held > MaxMemory - more)
        {
            throw Error(s, field, $"the run would hold {held} + {more} bytes of modelled memory, more than the budget of {MaxMemory} bytes (--max-memory)");
        }
    }

    /// <summary>A read prints its bytes: longer than <see cref="Values.MaxReadLength"/> is bad input.</summary>
    public void CheckReadLength(Step s, ulong len)
    {
        if (len > Values.MaxReadLength)
        {
            throw Error(s, "len", $"a read prints every byte it reads: at most {Values.MaxReadLength} bytes per step, not {len}");
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

/// <summary>
/// The buffers or handles steps made, by name. A step registers a name only when it succeeded, so a later
/// step naming one whose maker failed (an <c>alloc_coherent</c> that gave -ENOMEM, say) gets a clean error
/// at its own line rather than a lookup failure.
/// </summary>
internal interface INameTable
{
    void Bind(string file, Func<Step?> current);
}

internal sealed class NameTable<T>(string field, string what) : INameTable, IEnumerable<KeyValuePair<string, T>>
    where T : class
{
    private readonly Dictionary<string, T> _items = new(StringComparer.Ordinal);
    private Func<Step?>? _current;
    private string _file = "";

    public void Bind(string file, Func<Step?> current)
    {
        _file = file;
        _current = current;
    }

    public T this[string name]
    {
        get => _items.TryGetValue(name, out var v) ? v : throw Missing(name);
        set => _items[name] = value;
    }

    public bool TryGetValue(string name, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out T value) => _items.TryGetValue(name, out value);

    public bool ContainsKey(string name) => _items.ContainsKey(name);

    public IEnumerable<T> Values => _items.Values;

    public IEnumerator<KeyValuePair<string, T>> GetEnumerator() => _items.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    private ScenarioError Missing(string name) =>
        new(_file, _current?.Invoke()?.Line ?? 0, field,
            $"no {what} named '{name}' exists at this step: the step that makes it failed (or made another kind of object)");
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
