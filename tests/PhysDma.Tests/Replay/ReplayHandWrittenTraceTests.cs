using PhysDma.Replay;
using static PhysDma.Tests.Replaying.ReplayKit;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Replaying;

/// <summary>
/// A trace as a real machine writes it (other tasks, CPUs, irq flags, a real IOMMU's addresses, other subsystems'
/// events) with two driver bugs: the TX buffer is unmapped twice and the RX buffer is never unmapped.
/// </summary>
public sealed class ReplayHandWrittenTraceTests
{
    public const string Trace = """
        # tracer: nop
        #
        # entries-in-buffer/entries-written: 7/7   #P:4
        #
        #           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
        #              | |         |   |||||     |         |
             irq/45-eth0-812     [001] d..1.   100.000010: dma_map_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=1514 phys_addr=10000 attrs=
             irq/45-eth0-812     [001] d..1.   100.000020: dma_map_phys: 0000:02:00.0 dir=FROM_DEVICE dma_addr=ffffe000 size=2048 phys_addr=20800 attrs=
             irq/45-eth0-812     [001] d..1.   100.000025: swiotlb_bounced: dev_name: 0000:02:00.0 dma_mask=ffffffffffffffff dev_addr=20800 size=2048 NORMAL
             irq/45-eth0-812     [001] d..1.   100.000030: dma_sync_single_for_cpu: 0000:02:00.0 dir=FROM_DEVICE dma_addr=ffffe000 size=2048
                  ksoftirqd/1-22      [001] ..s1.   100.000040: dma_unmap_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=1514 attrs=
                  ksoftirqd/1-22      [001] ..s1.   100.000050: dma_unmap_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=1514 attrs=
             irq/45-eth0-812     [001] d..1.   100.000060: sched_switch: prev_comm=irq/45-eth0 prev_pid=812 prev_prio=49 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120

        """;

    [Theory]
    [InlineData("default", 0xbffff000UL, 0xbfffe800UL, 0L)]
    [InlineData("x86-iommu-strict", 0xbffff000UL, 0xbfffe800UL, 0L)]
    // The confidential guest bounces both; CPU 1 takes its slots from swiotlb area 1.
    [InlineData("coco", 0xbe000000UL, 0xbe000800UL, 2L)]
    public void Double_unmap_and_leak_are_reported_with_their_lines(string machine, ulong tx, ulong rx, long peakSlots)
    {
        var (_, r) = ReplayOn(Trace, machine);

        Assert.Equal([(7L, 0xfffff000UL, tx), (8L, 0xffffe000UL, rx)], r.Calls!.Select(c => (c.Line, c.TracedDma, c.ModelDma)));
        Assert.Equal(2, r.DebugReports.Count);
        var twice = r.DebugReports[0];
        Assert.Equal((12L, "free_not_allocated", 7L), (twice.Line, twice.Check, twice.MappedAtLine));
        Assert.Equal($"DMA-API: nic0 0000:02:00.0: device driver tries to free DMA memory it has not allocated [device address=0x{tx:x16}] [size=1514 bytes]", twice.Message);
        Assert.EndsWith("100.000050: dma_unmap_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=1514 attrs=", twice.LineText, StringComparison.Ordinal);
        var leak = r.DebugReports[1];
        Assert.Equal((0L, "leak_on_unbind"), (leak.Line, leak.Check));
        Assert.Contains($"[count=1]\nOne of leaked entries details: [device address=0x{rx:x16}] [size=2048 bytes] [mapped with DMA_FROM_DEVICE]", leak.Message, StringComparison.Ordinal);
        Assert.Equal([new ReplayLeak(8, "0000:02:00.0", "dma_map_phys", 0xffffe000, rx, 2048)], r.Leaks);

        Assert.Equal(peakSlots, r.PeakSwiotlbSlots);
        Assert.Equal(new Dictionary<string, long> { ["derived: swiotlb_bounced"] = 1, ["sched_switch"] = 1 }, r.Skipped);
        Assert.Equal(6, r.HeaderLines);
        Assert.Equal(7, r.Events);
        Assert.Equal(5, r.Replayed);
        Assert.Equal(new long[] { 0, 2, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, r.Devices.Single().Calls);
    }

    [Fact]
    public void Strict_exits_1_when_dma_debug_reported_and_the_table_shows_the_lines()
    {
        var file = Path.Combine(Path.GetTempPath(), $"physdma-hand-{Guid.NewGuid():N}.txt");
        File.WriteAllText(file, Trace);
        var (exit, stdout, _) = CliArgs("replay", file, "--machine", "coco", "--strict");
        Assert.Equal(1, exit);
        Assert.Contains("free_not_allocated", stdout, StringComparison.Ordinal);
        Assert.Contains("12 (mapped at 7)", stdout, StringComparison.Ordinal);
        Assert.Contains("as traced: physical addresses used as they are", stdout, StringComparison.Ordinal);
        Assert.Contains("A trace cannot show", stdout, StringComparison.Ordinal);
        Assert.Equal(0, CliArgs("replay", file, "--machine", "coco").Exit);
    }

    [Fact]
    public void A_machine_file_replays_like_the_built_in_machine_it_copies()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"physdma-machine-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var machine = Path.Combine(dir, "guest.yaml");
        File.WriteAllText(machine, PhysDma.Scenarios.Profiles.YamlOf("coco"));
        var trace = Path.Combine(dir, "driver.trace");
        File.WriteAllText(trace, Trace);
        var (exit, stdout, stderr) = CliArgs("replay", trace, "--machine", machine, "--json");
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        var json = System.Text.Json.Nodes.JsonNode.Parse(stdout)!;
        Assert.Equal(["0xbe000000", "0xbe000800"], json["calls"]!.AsArray().Select(c => Str(c!["dma_addr"])));
        Assert.Equal("as_traced", Str(json["phys_policy"]));
        Assert.Equal(["free_not_allocated", "leak_on_unbind"], json["dma_debug_reports"]!.AsArray().Select(r => Str(r!["check"])));
        Assert.Equal(2, CliArgs("replay", trace, "--machine", Path.Combine(dir, "missing.yaml")).Exit);
    }

    [Fact]
    public void Trace_cmd_report_output_replays_like_the_trace_file()
    {
        // trace-cmd report: a "cpus=" header, no irq flags column, the event name padded, nanosecond timestamps.
        const string report = """
            cpus=4
                 irq/45-eth0-812   [001]   100.000010123: dma_map_phys:         0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=1514 phys_addr=10000 attrs=
                 irq/45-eth0-812   [001]   100.000020456: dma_unmap_phys:       0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=1514 attrs=
                 irq/45-eth0-812   [001]   100.000030000: map:                  IOMMU: iova=0x00000000fffff000 - 0x0000000100000000 paddr=0x0000000000010000 size=4096

            """;
        var (replay, r) = ReplayOn(report, "default");
        Assert.Equal([(2L, 0xfffff000UL, 0xbffff000UL)], r.Calls!.Select(c => (c.Line, c.TracedDma, c.ModelDma)));
        Assert.Equal(1, r.HeaderLines);
        Assert.Equal(1, r.Skipped["derived: map"]);
        Assert.Empty(r.DebugReports);
        // Modelled time follows the trace's timestamps, to the nanosecond trace-cmd prints.
        Assert.Equal(100_000_020_456UL, replay.Machine.Clock.NowNs);
    }
}
