using System.Text;
using System.Text.RegularExpressions;
using PhysDma.Dma.Trace;
using PhysDma.Platform;
using PhysDma.Replay;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Replaying;

/// <summary>Runs an example with the trace on, and replays trace text on a built-in machine.</summary>
internal static partial class ReplayKit
{
    public static MachineConfig Machine(string name) =>
        Profiles.TryGet(name, out var c) ? c : throw new ArgumentException($"no machine {name}");

    /// <summary>Runs a scenario file on a machine with the given event systems traced; the runner and the trace text.</summary>
    public static (ScenarioRunner Runner, string Trace) RunTraced(string path, string machine, TraceEvents events = TraceEvents.Dma)
    {
        var runner = new ScenarioRunner(ScenarioParser.ParseFile(path, machine));
        runner.Api.Trace.Events = events;
        runner.Run();
        return (runner, runner.Api.Trace.ToText(runner.Api.Machine.Cpus));
    }

    public static (TraceReplay Replay, ReplayReport Report) ReplayOn(string trace, string machine, bool relocate = false,
        params (string Traced, string Device)[] devices)
    {
        var replay = new TraceReplay(Machine(machine), new ReplayOptions
        {
            KeepCalls = true,
            Relocate = relocate,
            DeviceMap = devices.ToDictionary(d => d.Traced, d => d.Device, StringComparer.Ordinal),
        });
        var report = replay.Run(new MemoryStream(Encoding.UTF8.GetBytes(trace)), "t.txt");
        return (replay, report);
    }

    /// <summary>The devices a scenario file names (<c>dev:</c> and <c>from:</c>).</summary>
    public static HashSet<string> DevicesOf(string path) =>
        [.. DeviceRef().Matches(File.ReadAllText(path)).Select(m => m.Groups[2].Value)];

    [GeneratedRegex(@"\b(dev|from): ([A-Za-z0-9_]+)")]
    private static partial Regex DeviceRef();

    /// <summary>A trace line in the tracefs format, at a time in microseconds.</summary>
    public static string Line(ulong usecs, string ev, string payload, int cpu = 0) =>
        new TraceRecord(cpu, usecs * 1000, ev, payload).ToFtraceLine();
}
