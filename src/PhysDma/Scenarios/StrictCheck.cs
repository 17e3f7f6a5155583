namespace PhysDma.Scenarios;

/// <summary>
/// <c>--strict</c>: a run also fails on any dma-debug report, device fault, kernel WARN or BUG that no
/// expectation names. A report is named when its step expects <c>debug</c> (reports and WARNs) or
/// <c>error</c> (faults, WARNs and BUGs), or when the final <c>expect:</c> names <c>debug</c> or <c>faults</c>.
/// </summary>
internal static class StrictCheck
{
    /// <summary>One line per unexpected report; empty when the run is clean.</summary>
    public static IReadOnlyList<string> Unexpected(Scenario scenario, RunResult result)
    {
        var named = scenario.Steps.ToDictionary(s => s.Index, s => s.Expect.Select(e => e.Field).ToHashSet(StringComparer.Ordinal));
        var final = scenario.FinalExpect.Select(e => e.Field).ToHashSet(StringComparer.Ordinal);
        bool Names(int step, string field) => named.TryGetValue(step, out var f) && f.Contains(field);
        var list = new List<string>();
        foreach (var d in result.Debug ?? [])
        {
            if (!Names(d.Step, "debug") && !final.Contains("debug"))
            {
                list.Add($"step {d.Step}: dma-debug {d.Check}: {d.Message.Split('\n')[0]}");
            }
        }
        foreach (var f in result.Faults)
        {
            if (!Names(f.Step, "error") && !final.Contains("faults"))
            {
                list.Add($"step {f.Step}: device fault: {f.Dev} {f.Access} at {f.Addr}: {f.Reason}");
            }
        }
        // dma-debug prints its reports as WARNs: those lines are the reports above, not WARNs of their own.
        var reported = (result.Debug ?? []).Select(d => d.Step).ToHashSet();
        foreach (var l in result.Log)
        {
            if (l.Level == "warn" && !reported.Contains(l.Step) && !Names(l.Step, "debug") && !Names(l.Step, "error"))
            {
                list.Add($"step {l.Step}: WARN: {l.Message.Split('\n')[0]}");
            }
        }
        if (result.Bug is { } bug)
        {
            var at = result.Steps.Count > 0 ? result.Steps[^1].Index : 0;
            if (!Names(at, "error"))
            {
                list.Add($"step {at}: BUG: {bug}");
            }
        }
        return list;
    }
}
