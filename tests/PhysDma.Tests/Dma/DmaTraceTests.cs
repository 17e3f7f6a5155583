using PhysDma.Core;
using PhysDma.Dma.Trace;
using PhysDma.Platform;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>Trace rendering (spec §7, invariant 32).</summary>
public sealed class DmaTraceTests
{
    [Theory]
    [InlineData(DmaAttrs.None, "")]
    [InlineData(DmaAttrs.Mmio, "MMIO")]
    [InlineData(DmaAttrs.Mmio | DmaAttrs.SkipCpuSync, "SKIP_CPU_SYNC|MMIO")]
    [InlineData(DmaAttrs.Privileged | DmaAttrs.WeakOrdering | DmaAttrs.NoWarn, "WEAK_ORDERING|NO_WARN|PRIVILEGED")]
    [InlineData(DmaAttrs.WriteCombine | DmaAttrs.NoKernelMapping | DmaAttrs.ForceContiguous | DmaAttrs.AllocSinglePages,
        "WRITE_COMBINE|NO_KERNEL_MAPPING|FORCE_CONTIGUOUS|ALLOC_SINGLE_PAGES")]
    [InlineData((DmaAttrs)(1UL << 3), "0x8")]
    [InlineData((DmaAttrs)1UL, "0x1")]
    [InlineData(DmaAttrs.WeakOrdering | (DmaAttrs)(1UL << 3) | (DmaAttrs)(1UL << 20), "WEAK_ORDERING|0x100008")]
    [InlineData(DmaAttrs.Mmio | (DmaAttrs)(1UL << 63), "MMIO|0x8000000000000000")]
    public void Attrs_TableOrder_UnknownBitsLast(DmaAttrs attrs, string expected) =>
        Assert.Equal(expected, DmaTrace.Attrs(attrs));

    [Theory]
    [InlineData(DmaDirection.Bidirectional, "BIDIRECTIONAL")]
    [InlineData(DmaDirection.ToDevice, "TO_DEVICE")]
    [InlineData(DmaDirection.FromDevice, "FROM_DEVICE")]
    [InlineData(DmaDirection.None, "NONE")]
    [InlineData((DmaDirection)9, "0x9")]
    public void Dir(DmaDirection dir, string expected) => Assert.Equal(expected, DmaTrace.Dir(dir));

    [Fact]
    public void Arrays()
    {
        Assert.Equal("{}", DmaTrace.Array([]));
        Assert.Equal("{0x1,0x2000}", DmaTrace.Array([1, 0x2000]));
    }

    [Fact]
    public void Disabled_records_nothing()
    {
        var r = X86();
        r.Api.Trace.Enabled = false;
        r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 64, DmaDirection.ToDevice, DmaAttrs.None);
        Assert.Equal(0, r.Api.Trace.Count);
        Assert.Equal(TraceHeader(0, 1), r.Api.Trace.ToText());
    }

    [Fact]
    public void Ftrace_text_has_cpu_time_event_and_payload()
    {
        var r = X86();
        r.Machine.Clock.Advance(1_234_567_891);
        using (r.Machine.OnCpu(1))
        {
            r.Api.MapPhys(r.Dev, new PhysAddr(0x1000), 64, DmaDirection.ToDevice, DmaAttrs.None);
        }
        var rec = r.Api.Trace.Records.Single();
        Assert.Equal(1, rec.Cpu);
        Assert.Equal(1_234_567_891UL, rec.TimeNs);
        Assert.Equal(
            "         physdma-1       [001] .....     1.234567: dma_map_phys: nic0 dir=TO_DEVICE dma_addr=1000 size=64 phys_addr=1000 attrs=",
            rec.ToFtraceLine());
        Assert.Equal(TraceHeader(1, 2) + rec.ToFtraceLine() + "\n", r.Api.Trace.ToText(2));
    }

    [Fact]
    public void Swiotlb_bounced_null_mask_prints_zero()
    {
        var m = new Machine(X86Config(Nic64 with { DmaMaskBits = null }));
        var t = new DmaTrace(m.Clock) { Enabled = true };
        t.SwiotlbBounced(m.Device(Nic), 0x1234, 64, force: false);
        Assert.Equal("dev_name: nic0 dma_mask=0 dev_addr=1234 size=64 NORMAL", t.Records.Single().Payload);
    }

    /// <summary>The tracefs header of the nop tracer with its buffer counts and CPU count.</summary>
    private static string TraceHeader(int entries, int cpus) =>
        $"# tracer: nop\n#\n# entries-in-buffer/entries-written: {entries}/{entries}   #P:{cpus}\n#\n" +
        "#                                _-----=> irqs-off/BH-disabled\n" +
        "#                               / _----=> need-resched\n" +
        "#                              | / _---=> hardirq/softirq\n" +
        "#                              || / _--=> preempt-depth\n" +
        "#                              ||| / _-=> migrate-disable\n" +
        "#                              |||| /     delay\n" +
        "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n" +
        "#              | |         |   |||||     |         |\n";
}
