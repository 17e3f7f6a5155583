using System.Text.Json.Nodes;
using PhysDma.Report;

namespace PhysDma.Scenarios.Report;

/// <summary>
/// Feeds a run's steps to <see cref="StateSnapshots"/> (what the HTML report draws after every step) and
/// builds the run's report data at the end. Attached only when a report is asked for.
/// </summary>
internal sealed class ReportRecorder
{
    private readonly StateSnapshots _snaps;

    private ReportRecorder(RunState s) => _snaps = new StateSnapshots(s.M, s.Api, () => Live(s));

    /// <summary>Starts recording a runner's steps (replaces any other <see cref="ScenarioRunner.AfterStep"/>).</summary>
    public static ReportRecorder Attach(ScenarioRunner runner)
    {
        var rec = new ReportRecorder(runner.State);
        runner.AfterStep = rec.Take;
        return rec;
    }

    /// <summary>The run's report data: the result document plus <c>spans</c> (<see cref="StateSnapshots.Spans"/>) and <c>topology</c>.</summary>
    public JsonObject Build(RunResult result, string file)
    {
        var doc = (JsonObject)result.Json.DeepClone();
        doc["file"] = file;
        doc["spans"] = _snaps.Spans();
        doc["topology"] = _snaps.Topology();
        return doc;
    }

    private void Take(Step step, StepResult r)
    {
        switch (step)
        {
            case MapStep m: _snaps.MadeAt(m.As, step.Index); break;
            case P2PMapStep p: _snaps.MadeAt(p.As, step.Index); break;
            case MapSgStep sg: _snaps.MadeAt(sg.As, step.Index); break;
            case AllocCoherentStep c: _snaps.MadeAt(c.As, step.Index); break;
            case IovaAllocStep i: _snaps.MadeAt(i.As, step.Index); break;
        }
        _snaps.Take(step.Index);
    }

    /// <summary>The run's live mappings: handles, the fallback links of IOVA states, and every scatterlist entry.</summary>
    private static IEnumerable<ReportMapping> Live(RunState s)
    {
        foreach (var h in s.Handles.Values.Where(h => !h.Unmapped && !h.Addr.IsError))
        {
            yield return new(h.Dev, h.Name, h.Phys.Value, h.Size, h.Addr.Value, h.Size, Single: h.P2P is null);
        }
        foreach (var (name, iova) in s.Iova.Where(kv => kv.Value.Fallback))
        {
            foreach (var l in iova.Links.Where(l => !l.Unmapped && !l.Addr.IsError))
            {
                yield return new(iova.Dev, name, l.Phys.Value, l.Size, l.Addr.Value, l.Size, Single: false);
            }
        }
        foreach (var sg in s.Sg.Values.Where(h => h.Mapped && !h.Unmapped))
        {
            var nents = Math.Max(1, sg.Table.Nents);
            for (var i = 0; i < sg.Table.Sgl.Count; i++)
            {
                var e = sg.Table.Sgl[i];
                var dma = i < nents ? sg.Table.Sgl[i] : null;
                yield return new(sg.Dev, sg.Name, e.Phys.Value, e.Length, dma?.DmaAddress.Value ?? 0, dma?.DmaLength ?? 0, Single: false);
            }
        }
    }
}
