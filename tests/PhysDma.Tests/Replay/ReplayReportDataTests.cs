using System.Text;
using System.Text.Json.Nodes;
using PhysDma.Replay;
using static PhysDma.Tests.Replaying.ReplayKit;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Replaying;

/// <summary>The data a replay gives the HTML report (<see cref="ReplayReportRecorder"/>): steps, failures, the cap.</summary>
public sealed class ReplayReportDataTests
{
    private static readonly string Fixture = Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "TestData", "traces", "tbt-bounce-nic-lazy.trace");

    private static (ReplayReport Report, JsonObject Data) Replay(string trace, bool report)
    {
        var replay = new TraceReplay(Machine("default"), new ReplayOptions { Report = report });
        var r = replay.Run(new MemoryStream(Encoding.UTF8.GetBytes(trace)), "t.trace");
        return (r, replay.Steps?.Build(r, "t.trace") ?? []);
    }

    [Fact]
    public void Recording_the_report_leaves_the_replay_unchanged()
    {
        var trace = File.ReadAllText(Fixture);
        var (plain, none) = Replay(trace, report: false);
        var (recorded, data) = Replay(trace, report: true);
        Assert.Empty(none);
        Assert.Equal(plain.ToJson(), recorded.ToJson());
        Assert.Equal(9, data["steps"]!.AsArray().Count);
        Assert.Equal(8, (long)data["spans"]!["last_step"]!);
    }

    [Fact]
    public void Dma_debug_reports_and_leaks_point_at_the_event_that_made_them()
    {
        var (_, data) = Replay(ReplayHandWrittenTraceTests.Trace, report: true);
        var steps = data["steps"]!.AsArray().Select(s => s!.AsObject()).ToList();
        Assert.Equal(["0 7 true", "1 8 true", "2 10 true", "3 11 true", "4 12 false"],
            steps.Select(s => $"{s["index"]} {s["line"]} {s["ok"]}"));
        Assert.Equal("[\"free_not_allocated\"]", steps[4]["debug"]!.ToJsonString());
        var failures = data["failures"]!.AsArray().Select(f => $"{f!["step"]?.ToJsonString() ?? "null"} {f["line"]} {f["field"]}").ToList();
        Assert.Equal(["4 12 dma-debug free_not_allocated", "null end dma-debug leak_on_unbind", "null end leak"], failures);
        Assert.Equal(
            "0000:02:00.0: dma_map_phys of line 8 (2048 bytes at 0xbfffe800) still mapped at the end of the trace",
            (string?)data["failures"]![2]!["message"]);
        Assert.False((bool)data["ok"]!);
    }

    [Fact]
    public void Only_the_first_max_steps_events_are_drawn_and_the_rest_counted()
    {
        var sb = new StringBuilder();
        var pairs = ReplayReportRecorder.MaxSteps / 2 + 50;
        for (var i = 0; i < pairs; i++)
        {
            sb.AppendLine(Line((ulong)(2 * i), "dma_map_phys", "0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=64 phys_addr=10000 attrs="));
            sb.AppendLine(Line((ulong)(2 * i + 1), "dma_unmap_phys", "0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=64 attrs="));
        }
        var (r, data) = Replay(sb.ToString(), report: true);
        Assert.Equal(2 * pairs, r.Replayed);
        Assert.Equal(2 * pairs, (long)data["events"]!);
        Assert.Equal(ReplayReportRecorder.MaxSteps, (int)data["events_drawn"]!);
        Assert.Equal(ReplayReportRecorder.MaxSteps, data["steps"]!.AsArray().Count);
        Assert.Equal(ReplayReportRecorder.MaxSteps - 1, (long)data["spans"]!["last_step"]!);
    }
}
