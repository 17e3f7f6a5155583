using PhysDma.Tests.Scenarios;

namespace PhysDma.Tests.Coherent;

/// <summary>
/// arch_dma_prep_coherent: on a non-coherent arm64 device a new coherent buffer is cleaned and invalidated
/// (dcache_clean_inval_poc) before the CPU uses it uncached, and alloc_coherent's result shows it.
/// </summary>
public class PrepCoherentTests
{
    private const string Steps = """
        steps:
          - { op: alloc, name: old, size: 8KiB, kind: ram, phys: 0x100000000 }
          - { op: cpu_write, buf: old, data: { fill: 0xaa }, len: 8KiB }
          - { op: free, name: old }
          - { op: alloc_coherent, id: ac, dev: nic0, size: 8KiB, as: c }
          - { op: dev_read, id: rd, dev: nic0, handle: c, offset: 4000, len: 8 }
        """;

    [Fact]
    public void Non_coherent_alloc_coherent_reports_one_clean_and_invalidate_of_the_new_pages()
    {
        var r = ScenarioTestKit.Run("machine: arm64-noncoherent\n" + Steps);
        var ac = ScenarioTestKit.Step(r, "ac");
        Assert.Equal("0x100000000", ScenarioTestKit.Str(ac["phys"]));
        var op = Assert.Single(ac["cache_ops"]!.AsArray())!;
        Assert.Equal("flush", ScenarioTestKit.Str(op["op"]));
        Assert.Equal("0x100000000", ScenarioTestKit.Str(op["phys"]));
        Assert.Equal(8192UL, op["size"]!.GetValue<ulong>());
        Assert.Equal(0L, ac["kernel_mappings"]!.GetValue<long>());
    }

    [Fact]
    public void The_device_sees_the_zeroed_buffer_not_the_dirty_lines_of_the_pages_former_owner()
    {
        var r = ScenarioTestKit.Run("machine: arm64-noncoherent\n" + Steps);
        Assert.Equal("00 00 00 00 00 00 00 00", ScenarioTestKit.Str(ScenarioTestKit.Step(r, "rd")["data"]));
    }

    [Fact]
    public void Coherent_device_alloc_coherent_reports_no_cache_operation()
    {
        var r = ScenarioTestKit.Run("machine: x86-noiommu\n" + Steps);
        Assert.Empty(ScenarioTestKit.Step(r, "ac")["cache_ops"]!.AsArray());
    }
}
