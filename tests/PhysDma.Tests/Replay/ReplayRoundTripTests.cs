using System.Text.RegularExpressions;
using PhysDma.Dma.Trace;
using PhysDma.Replay;
using PhysDma.Scenarios;
using static PhysDma.Tests.Replaying.ReplayKit;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Replaying;

/// <summary>
/// Round trip: every example run with the trace on and replayed on the same machine makes the same calls with the
/// same dma_addr, and dma-debug says the same about them.
/// </summary>
public sealed partial class ReplayRoundTripTests
{
    /// <summary>dma-debug checks that come from what a trace does not hold (CPU accesses, dma_mapping_error calls).</summary>
    private static readonly HashSet<string> NotInATrace = ["cpu_read_while_device_owns", "cpu_write_while_device_owns", "map_error_not_checked"];

    private static IEnumerable<string> Examples() =>
        Directory.GetFiles(Path.Combine(RepoRoot, "examples"), "*.yaml").Select(Path.GetFileName).Order(StringComparer.Ordinal)!;

    /// <summary>Whether the machine has every device the example names, and an IOMMU when it uses the IOVA API.</summary>
    private static bool Runs(string example, string machine)
    {
        var config = Machine(machine);
        var names = config.Devices.Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
        var path = Example(example);
        var needsIommu = File.ReadAllText(path).Contains("op: iova_", StringComparison.Ordinal);
        return DevicesOf(path).IsSubsetOf(names) && (!needsIommu || config.Iommu is not null);
    }

    public static TheoryData<string, string> Pairs()
    {
        var data = new TheoryData<string, string>();
        foreach (var e in Examples())
        {
            foreach (var m in Profiles.Names.Where(m => Runs(e, m)))
            {
                data.Add(e, m);
            }
        }
        return data;
    }

    public static TheoryData<string, string> Skipped()
    {
        var data = new TheoryData<string, string>();
        foreach (var e in Examples())
        {
            foreach (var m in Profiles.Names.Where(m => !Runs(e, m)))
            {
                data.Add(e, m);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Pairs))]
    public void Replay_on_the_same_machine_gives_every_dma_addr_and_debug_report_again(string example, string machine)
    {
        var (runner, trace) = RunTraced(Example(example), machine);
        var (replay, report) = ReplayOn(trace, machine);

        // Every address the trace holds for a mapping call (single, each sg segment, coherent) came out the same.
        var traced = MappedAddresses(trace);
        Assert.Equal(traced, report.Calls!.Select(c => c.TracedDma).ToList());
        Assert.All(report.Calls!, c => Assert.True(c.TracedDma == c.ModelDma, $"line {c.Line}: traced {c.TracedDma:x}, replayed {c.ModelDma:x}"));
        Assert.Equal(0, report.AddressesDiffering);
        Assert.Equal(0, report.Skipped.Count(s => !s.Key.StartsWith("derived", StringComparison.Ordinal)));

        // The replayed calls, traced again, are the traced calls: same events, order, devices and arguments.
        var again = new TraceReplay(Machine(machine));
        again.Api.Trace.Events = TraceEvents.Dma;
        again.Run(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(trace)), "t.txt");
        Assert.Equal(trace, again.Api.Trace.ToText(again.Machine.Cpus));

        // dma-debug: the same reports, in order, for everything a trace can show.
        var expected = (runner.Api.Debug?.Reports ?? []).Where(r => !NotInATrace.Contains(r.Check)).Select(r => r.Check + ": " + r.Message).ToList();
        var got = report.DebugReports.Where(r => r.Line != 0).Select(r => r.Check + ": " + r.Message).ToList();
        Assert.Equal(expected, got);
        // What the scenario left mapped is what the replay calls leaked, one unbind report per device holding any.
        Assert.Equal(report.Leaks.Select(l => l.Device).Distinct().Count(), report.DebugReports.Count(r => r.Line == 0));
        Assert.All(report.DebugReports.Where(r => r.Line == 0), r => Assert.Equal("leak_on_unbind", r.Check));
    }

    /// <summary>The pairs left out above really cannot run: the machine lacks a device or an IOMMU the example needs.</summary>
    [Theory]
    [MemberData(nameof(Skipped))]
    public void Examples_left_out_on_a_machine_are_refused_there(string example, string machine)
    {
        var (exit, _, stderr) = CliArgs("run", Example(example), "--machine", machine, "--json");
        Assert.Equal(2, exit);
        Assert.True(stderr.Contains("unknown device", StringComparison.Ordinal) || stderr.Contains("has no IOVA on this machine", StringComparison.Ordinal), stderr);
    }

    [Fact]
    public void Every_example_round_trips_on_its_own_machine_at_least()
    {
        var pairs = Pairs();
        Assert.All(Examples(), e => Assert.Contains(pairs, p => (string)p[0] == e));
    }

    /// <summary>The dma_addr values of the mapping events, in order, read with a regex (independent of the replay's parser).</summary>
    private static List<ulong> MappedAddresses(string trace)
    {
        var list = new List<ulong>();
        foreach (var line in trace.Split('\n'))
        {
            if (MapPhys().Match(line) is { Success: true } m && m.Groups[1].Value != "ffffffffffffffff")
            {
                list.Add(Convert.ToUInt64(m.Groups[1].Value, 16));
            }
            else if (Alloc().Match(line) is { Success: true } a && a.Groups[2].Value != "0000000000000000")
            {
                list.Add(Convert.ToUInt64(a.Groups[1].Value, 16));
            }
            else if (MapSg().Match(line) is { Success: true } s)
            {
                list.AddRange(s.Groups[1].Value.Split(',').Select(x => Convert.ToUInt64(x[2..], 16)));
            }
        }
        return list;
    }

    [GeneratedRegex(@": dma_map_phys: \S+ dir=\S+ dma_addr=([0-9a-f]+) ")]
    private static partial Regex MapPhys();

    [GeneratedRegex(@": dma_alloc: \S+ dir=\S+ dma_addr=([0-9a-f]+) size=\d+ virt_addr=([0-9a-f]{16}) ")]
    private static partial Regex Alloc();

    [GeneratedRegex(@": dma_map_sg: \S+ dir=\S+ nents=\S+ ents=\S+ dma_addrs=\{([^}]*)\}")]
    private static partial Regex MapSg();
}
