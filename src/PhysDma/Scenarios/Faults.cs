using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// A scenario's <c>faults:</c> section: which kernel calls fail (the Nth <c>alloc_iova_fast</c>, swiotlb slot
/// search, <c>iommu_map</c>, coherent allocation, counted over the run from 1), a swiotlb pool shrunk to N
/// slots, and dma-debug's entry pool limited to N free entries that cannot grow.
/// </summary>
internal sealed record FaultSpec(IReadOnlyList<(FaultPoint Point, int Nth)> FailAt, ulong? SwiotlbSlots, uint? DebugEntries)
{
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
        var f = node.Fields([.. Points.Select(p => p.Name), "swiotlb_slots", "dma_debug_entries"]);
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
        return new FaultSpec(failAt, slots, entries);
    }

    /// <summary>The machine with its default swiotlb pool shrunk to the slots asked for (2 KiB each).</summary>
    public MachineConfig Apply(MachineConfig m) =>
        SwiotlbSlots is { } n && m.Swiotlb is { } sw ? m with { Swiotlb = sw with { Size = n * 2048, Areas = 1 } } : m;
}

/// <summary>A fault the run injected: the step it hit, the kernel call, which call it was, and what that call returned.</summary>
internal sealed record InjectedFaultResult(int Step, string Fault, int Nth, string Ret);
