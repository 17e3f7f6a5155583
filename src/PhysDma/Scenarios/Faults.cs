using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// A scenario's <c>faults:</c> section: which kernel calls fail (the Nth <c>alloc_iova_fast</c>, swiotlb slot
/// search, <c>iommu_map</c>, coherent allocation, counted over the run from 1), a swiotlb pool shrunk to N
/// slots, and dma-debug's entry pool limited to N free entries that cannot grow.
/// </summary>
internal sealed record FaultSpec(IReadOnlyList<(FaultPoint Point, int Nth)> FailAt, ulong? SwiotlbSlots, uint? DebugEntries)
{
    /// <summary>The name of the provider-removal kind in <c>faults:</c> and in the result's <c>injected</c>.</summary>
    public const string RemoveP2PProvider = "remove_p2p_provider";

    /// <summary>P2P providers (a device's BAR) removed after a step, in the order given.</summary>
    public IReadOnlyList<ProviderRemoval> Removals { get; init; } = [];

    public static readonly (string Name, FaultPoint Point)[] Points =
    [
        ("alloc_iova_fast", FaultPoint.AllocIovaFast),
        ("swiotlb_slot_search", FaultPoint.SwiotlbSlotSearch),
        ("iommu_map", FaultPoint.IommuMap),
        ("coherent_alloc", FaultPoint.CoherentAlloc),
    ];

    /// <summary>The names results use, including the limits set up front.</summary>
    public static string NameOf(FaultPoint p) => p == FaultPoint.DmaDebugEntries ? "dma_debug_entries" : Points.First(x => x.Point == p).Name;


    /// <summary>What the failing kernel function returns.</summary>
    public static string ReturnOf(FaultPoint p) => p switch
    {
        FaultPoint.AllocIovaFast => "0",
        FaultPoint.SwiotlbSlotSearch => "-1",
        FaultPoint.IommuMap => "-ENOMEM",
        _ => "NULL",
    };

    public static FaultSpec Parse(YNode node)
    {
        var f = node.Fields([.. Points.Select(p => p.Name), "swiotlb_slots", "dma_debug_entries", RemoveP2PProvider]);
        var failAt = new List<(FaultPoint, int)>();
        foreach (var (name, point) in Points)
        {
            if (f.Get(name) is not { } v)
            {
                continue;
            }
            // One call number, or a list of them.
            foreach (var n in v.IsSequence ? v.Items() : [v])
            {
                failAt.Add((point, n.AsInt(1, 1_000_000)));
            }
        }
        var slots = f.Get("swiotlb_slots")?.AsInt(1, 1 << 20) is { } s ? (ulong)s : (ulong?)null;
        var entries = f.Get("dma_debug_entries")?.AsInt(0, 1 << 20) is { } e ? (uint)e : (uint?)null;
        var removals = new List<ProviderRemoval>();
        if (f.Get(RemoveP2PProvider) is { } rm)
        {
            // One removal ({ dev, bar, after }), or a list of them.
            foreach (var item in rm.IsSequence ? rm.Items() : [rm])
            {
                if (!item.IsMapping)
                {
                    throw item.Error("a provider removal is a mapping: { dev: DEVICE, bar: N, after: STEP }");
                }
                var rf = item.Fields("dev", "bar", "after");
                removals.Add(new ProviderRemoval(rf.Required("dev").AsName(), rf.Required("bar").AsInt(0, 5), rf.Required("after").AsInt(0, 1_000_000), item));
            }
        }
        return new FaultSpec(failAt, slots, entries) { Removals = removals };
    }

    /// <summary>
    /// Checks the removals against the machine and the steps: the device and BAR exist, and the step after
    /// which the provider goes away is one of the scenario's.
    /// </summary>
    public void Check(MachineConfig machine, int steps)
    {
        foreach (var r in Removals)
        {
            var f = r.Node.Fields("dev", "bar", "after");
            var dev = machine.Devices.FirstOrDefault(d => d.Name == r.Dev)
                ?? throw f.Required("dev").Error($"no device '{r.Dev}' on machine '{machine.Name}' (devices: {string.Join(", ", machine.Devices.Select(d => d.Name))})");
            if (dev.Bars.All(b => b.Bar != r.Bar))
            {
                throw f.Required("bar").Error($"device '{r.Dev}' has no BAR {r.Bar} (BARs: {string.Join(", ", dev.Bars.Select(b => b.Bar))})");
            }
            if (r.After >= steps)
            {
                throw f.Required("after").Error($"step {r.After} does not exist: the scenario has {steps} steps, numbered from 0 as the result numbers them");
            }
        }
    }

    /// <summary>The machine with its default swiotlb pool shrunk to the slots asked for (2 KiB each).</summary>
    public MachineConfig Apply(MachineConfig m) =>
        SwiotlbSlots is { } n && m.Swiotlb is { } sw ? m with { Swiotlb = sw with { Size = n * 2048, Areas = 1 } } : m;
}

/// <summary>
/// <c>remove_p2p_provider: { dev, bar, after }</c>: the P2PDMA provider of <paramref name="Dev"/>'s BAR
/// <paramref name="Bar"/> is removed once step <paramref name="After"/> (numbered from 0) has run.
/// </summary>
internal sealed record ProviderRemoval(string Dev, int Bar, int After, YNode Node);

/// <summary>A fault the run injected: the step it hit, the kernel call, which call it was, and what that call returned.</summary>
internal sealed record InjectedFaultResult(int Step, string Fault, int Nth, string Ret);
