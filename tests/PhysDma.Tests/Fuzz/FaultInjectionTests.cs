using System.Text.Json.Nodes;
using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Fuzz;

/// <summary>
/// Deterministic fault injection (<c>faults:</c>): each kind fails exactly the calls it names, the result lists
/// every injected fault with what the failing kernel function returned, and the API gives the kernel's error.
/// </summary>
public class FaultInjectionTests
{
    private static RunResult RunFault(string name) =>
        ScenarioRunner.Run(ScenarioParser.ParseFile(Path.Combine(RepoRoot, "examples", "faults", name)));

    private static List<(int Step, string Fault, int Nth, string Ret)> Injected(RunResult r) =>
        [.. r.Json["injected"]!.AsArray().Select(n => n!.AsObject()).Select(o =>
            (o["step"]!.GetValue<int>(), Str(o["fault"]), o["nth"]!.GetValue<int>(), Str(o["ret"])))];

    private static string? Error(RunResult r, int step) => Step(r, step)["error"]?.GetValue<string>();

    [Fact]
    public void Failed_alloc_iova_fast_below_4g_and_above_gives_mapping_error()
    {
        var r = RunFault("alloc-iova-fast.yaml");
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(4, "alloc_iova_fast", 2, "0"), (4, "alloc_iova_fast", 3, "0")], Injected(r));
        Assert.Equal("DMA_MAPPING_ERROR", Error(r, 4));
        Assert.Equal("0xffffffffffffffff", Str(Step(r, 4)["dma_addr"]));
    }

    [Fact]
    public void Failed_swiotlb_slot_search_is_a_full_pool_once()
    {
        var r = RunFault("swiotlb-slot-search.yaml");
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(1, "swiotlb_slot_search", 1, "-1")], Injected(r));
        Assert.Equal("DMA_MAPPING_ERROR", Error(r, 1));
        Assert.Null(Error(r, 3));
        Assert.Contains(r.Log, l => l.Step == 1 && l.Message.StartsWith("legacy32 0000:10:00.0: swiotlb buffer is full (sz: 4096 bytes)", StringComparison.Ordinal));
    }

    [Fact]
    public void Failed_io_page_table_allocation_in_iommu_map_returns_enomem_and_the_iova()
    {
        var r = RunFault("iommu-map.yaml");
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(1, "iommu_map", 1, "-ENOMEM")], Injected(r));
        Assert.Equal("DMA_MAPPING_ERROR", Error(r, 1));
        Assert.Equal(0L, r.Final.IovaPagesInUse);
    }

    [Fact]
    public void Failed_coherent_allocation_returns_null()
    {
        var r = RunFault("coherent-alloc.yaml");
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(0, "coherent_alloc", 1, "NULL")], Injected(r));
        Assert.Equal("ENOMEM", Error(r, 0));
        Assert.Null(Error(r, 1));
    }

    [Fact]
    public void Shrunk_swiotlb_pool_fills_after_four_64k_bounces()
    {
        var r = RunFault("swiotlb-slots.yaml");
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal("DMA_MAPPING_ERROR", Error(r, 10));
        Assert.Contains(r.Log, l => l.Step == 10 && l.Message == "legacy32 0000:10:00.0: swiotlb buffer is full (sz: 65536 bytes), total 128 (slots), used 128 (slots)");
        Assert.Empty(Injected(r));
    }

    [Fact]
    public void Exhausted_dma_debug_pool_disables_dma_debug()
    {
        var r = RunFault("dma-debug-entries.yaml");
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal([(4, "dma_debug_entries", 1, "NULL")], Injected(r));
        Assert.Contains(r.Log, l => l.Step == 4 && l.Message == "DMA-API: debugging out of memory - disabling");
        // The second mapping's missing dma_mapping_error goes unreported: dma-debug is off.
        Assert.Empty(r.Debug!);
    }

    [Fact]
    public void Without_faults_section_the_result_has_no_injected_field()
    {
        var r = Run("machine: x86-noiommu\nsteps:\n  - { op: tick, ms: 1 }\n");
        Assert.Null(r.Json["injected"]);
    }

    [Fact]
    public void Call_number_zero_is_bad_input()
    {
        var (exit, _, stderr, _) = RunCli("machine: default\nfaults: { iommu_map: 0 }\nsteps: []\n");
        Assert.Equal(2, exit);
        Assert.Contains(":2: faults.iommu_map: 0 is out of range (1..1000000)", stderr);
    }
}
