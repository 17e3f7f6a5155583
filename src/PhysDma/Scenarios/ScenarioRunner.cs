using System.Text.Json;
using System.Text.Json.Nodes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// Runs a parsed scenario on a fresh machine: each step is one driver, CPU or device action; the API calls
/// are measured (path, bounce, cache ops, struct page reads, kernel mappings) and every expectation is
/// checked. A run is deterministic: the same scenario gives byte-identical JSON. The ops themselves live in
/// one class per family (Runner/): buffers, single mappings, scatter-gather, the IOVA API, coherent
/// allocations, devices and time.
/// </summary>
internal sealed class ScenarioRunner
{
    private readonly Scenario _scenario;
    private readonly RunState _s;
    private readonly OpTable _ops = new();
    private readonly List<ExpectFailure> _failures = [];
    private readonly List<FaultResult> _faults = [];
    private readonly List<LogResult> _log = [];
    private readonly List<DebugReportResult> _debug = [];
    private readonly List<InjectedFaultResult> _injected = [];

    public ScenarioRunner(Scenario scenario)
    {
        _scenario = scenario;
        Machine m;
        DmaApi api;
        try
        {
            m = new Machine(scenario.Machine);
            api = new DmaApi(m);
        }
        catch (MachineConfigException e)
        {
            throw e.ToScenarioError(scenario.File);
        }
        _s = new RunState(scenario, m, api);
        if (scenario.Faults is { } faults)
        {
            foreach (var (point, nth) in faults.FailAt)
            {
                m.Inject.FailAt(point, nth);
            }
            if (faults.DebugEntries is { } entries)
            {
                api.Debug?.LimitEntries(entries);
            }
            foreach (var rm in faults.Removals)
            {
                if (api.P2P.Provider(rm.Dev, rm.Bar) is null)
                {
                    throw rm.Node.Error($"BAR {rm.Bar} of '{rm.Dev}' is not a P2PDMA provider on this machine (only BARs of PCI devices are)");
                }
            }
        }
        new BufferOps(_s).Register(_ops);
        new SingleMapOps(_s).Register(_ops);
        new SgOps(_s).Register(_ops);
        new IovaOps(_s).Register(_ops);
        new CoherentOps(_s).Register(_ops);
        new DeviceOps(_s).Register(_ops);
    }

    /// <summary>The default budget of host memory for modelled bytes: 4 GiB.</summary>
    public const ulong DefaultMaxMemory = 4UL << 30;

    /// <summary>The most host memory the modelled bytes (memory and cache) may take; a step past it is bad input.</summary>
    public ulong MaxMemory
    {
        get => _s.MaxMemory;
        set => _s.MaxMemory = value;
    }

    public Machine Machine => _s.M;
    public DmaApi Api => _s.Api;

    /// <summary>Called after every step with its result (the HTML report takes its snapshots here).</summary>
    public Action<Step, StepResult>? AfterStep { get; set; }

    internal RunState State => _s;

    public static RunResult Run(Scenario scenario) => new ScenarioRunner(scenario).Run();

    public RunResult Run()
    {
        var steps = new List<StepResult>();
        string? bug = null;
        string? violation = null;
        _s.Attach();
        foreach (var step in _scenario.Steps)
        {
            var r = OpCatalogue.All[step.Op].NewResult();
            r.Index = step.Index;
            r.Op = step.Op;
            r.Id = step.Id;
            var faultsBefore = _s.M.FaultCount;
            var logBefore = _s.Api.Log.Count;
            var debugBefore = _s.Api.Debug?.ReportCount ?? 0;
            var injectedBefore = _s.M.Inject.InjectedCount;
            var removalsBefore = _s.Api.P2P.RemovalCount;
            if (_s.Api.Debug is { } dbg)
            {
                // dma-debug's "Mapped at:" names the step that made a mapping, as the kernel names the caller.
                dbg.CurrentSite = $"{Path.GetFileName(_scenario.File)}:{step.Line} (step {step.Index}, {step.Op})";
            }
            _s.Recorder.Why!.Clear();
            _s.Current = step;
            try
            {
                using (_s.M.OnCpu(step.Cpu))
                {
                    _ops.Execute(step, r);
                }
            }
            catch (KernelBug e)
            {
                r.Error = "BUG";
                bug = e.Message;
            }
            catch (ModelViolation e)
            {
                // The kernel would dereference an address nothing maps (phys_to_virt of device memory, a struct
                // page that does not exist, a freed vmap area): the oops ends the run, as a BUG does.
                r.Error = "oops";
                bug = $"Oops: unable to handle kernel paging request: {e.Message}";
            }
            catch (Exception e) when (e is not ScenarioError)
            {
                throw new InternalError(_scenario.File, step.Line, step.Index, step.Op, e);
            }
            RemoveProviders(step);
            if (_s.HeldBytes > _s.MaxMemory)
            {
                throw _s.Error(step, "", $"the run holds {_s.HeldBytes} bytes of modelled memory after this step, more than the budget of {_s.MaxMemory} bytes (--max-memory)");
            }
            r.Why = [.. _s.Recorder.Why];
            CollectFaults(step, faultsBefore);
            foreach (var inj in _s.M.Inject.InjectedSince(injectedBefore))
            {
                _injected.Add(new InjectedFaultResult(step.Index, FaultSpec.NameOf(inj.Point), inj.Nth, FaultSpec.ReturnOf(inj.Point)));
            }
            CollectRemovals(step, removalsBefore);
            CollectLog(step, logBefore);
            CollectDebug(step, debugBefore, r);
            // A step's own `ok` says whether its other expectations held.
            r.Ok = Check(step.Index, [.. step.Expect.Where(e => e.Field != "ok")], f => StepNode(r)[f]);
            r.Ok &= Check(step.Index, [.. step.Expect.Where(e => e.Field == "ok")], _ => JsonValue.Create(r.Ok));
            steps.Add(r);
            AfterStep?.Invoke(step, r);
            if (bug is not null || violation is not null)
            {
                break;
            }
        }
        _s.Detach();

        var result = Result(bug, violation, steps);
        if (_scenario.FinalExpect.Count > 0)
        {
            var doc = result.Json;
            Check(null, _scenario.FinalExpect, f => f switch
            {
                "ok" => JsonValue.Create(result.Ok),
                "debug" or "faults" => doc[f],
                _ => doc["final"]![f],
            });
            // The failures just found are part of the document.
            result = Result(bug, violation, steps);
        }
        return result;
    }

    private RunResult Result(string? bug, string? violation, List<StepResult> steps) => new()
    {
        Scenario = _scenario.Name,
        Machine = _scenario.Machine.Name,
        Steps = steps,
        Debug = _s.Api.Debug is null ? null : _debug,
        Faults = _faults,
        Log = _log,
        Final = new FinalState(
            _s.LiveMappings,
            _s.Api.Iommu is { } iommu ? (long)iommu.IovaPagesInUse : null,
            _s.Api.Swiotlb.SlotsUsed,
            _s.Api.Iommu is { } iommu2 ? iommu2.IotlbEntries : null),
        Bug = bug,
        Violation = violation,
        Failures = [.. _failures],
        Injected = _scenario.Faults is null ? null : _injected,
    };

    private static JsonObject StepNode(StepResult r) =>
        JsonSerializer.SerializeToNode(r, ResultJson.Context.StepResult)!.AsObject();

    /// <summary>Checks expectations against a result's fields; each one that does not hold is a failure.</summary>
    private bool Check(int? step, IReadOnlyList<Expectation> expect, Func<string, JsonNode?> field)
    {
        var ok = true;
        foreach (var e in expect)
        {
            if (Expectations.Check(e.Field, e.Value, field(e.Field)) is { } why)
            {
                ok = false;
                _failures.Add(new ExpectFailure(step, e.Value.Line, e.Field, why));
            }
        }
        return ok;
    }

    /// <summary>The providers a scenario's <c>faults:</c> removes once this step has run.</summary>
    private void RemoveProviders(Step step)
    {
        if (_scenario.Faults is not { Removals.Count: > 0 } faults)
        {
            return;
        }
        foreach (var rm in faults.Removals)
        {
            if (rm.After == step.Index)
            {
                _s.Api.P2P.Remove(rm.Dev, rm.Bar);
            }
        }
    }

    /// <summary>
    /// Each step of a removal is an <c>injected</c> entry: <c>blocked</c> while <c>memunmap_pages</c> waits for
    /// referenced p2pmem pages, <c>0</c> when the teardown finished (at the step that freed the last page, if
    /// it had to wait). <c>nth</c> is the removal's place in the <c>faults:</c> section, from 1.
    /// </summary>
    private void CollectRemovals(Step step, int before)
    {
        if (_scenario.Faults is not { Removals.Count: > 0 } faults)
        {
            return;
        }
        foreach (var e in _s.Api.P2P.RemovalsSince(before))
        {
            var nth = 1;
            for (var i = 0; i < faults.Removals.Count; i++)
            {
                if (faults.Removals[i].Dev == e.Owner && faults.Removals[i].Bar == e.Bar)
                {
                    nth = i + 1;
                    break;
                }
            }
            _injected.Add(new InjectedFaultResult(step.Index, FaultSpec.RemoveP2PProvider, nth, e.Completed ? "0" : "blocked"));
        }
    }

    private void CollectFaults(Step step, int before)
    {
        var all = _s.M.Faults;
        for (var i = before; i < all.Count; i++)
        {
            var f = all[i];
            _faults.Add(new FaultResult(step.Index, f.Dev, new HexAddr(f.Addr.Value), f.Access == DmaAccess.Read ? "read" : "write", FaultName(f.Reason)));
        }
    }

    public static string FaultName(FaultReason r) => r switch
    {
        FaultReason.Unmapped => "unmapped",
        FaultReason.Permission => "permission",
        FaultReason.P2PBlocked => "p2p_blocked",
        FaultReason.BarRemoved => "bar_removed",
        _ => "out_of_range",
    };

    /// <summary>Every error dma-debug counted during the step, in order, top-level and under the step.</summary>
    private void CollectDebug(Step step, int before, StepResult r)
    {
        if (_s.Api.Debug is not { } debug)
        {
            return;
        }
        var reports = debug.ReportsSince(before);
        if (reports.Count == 0)
        {
            return;
        }
        foreach (var rep in reports)
        {
            _debug.Add(new DebugReportResult(step.Index, rep.Check, rep.Message, rep.Printed, rep.MappedAt));
        }
        r.Debug = [.. reports.Select(rep => rep.Check)];
    }

    private void CollectLog(Step step, int before)
    {
        var lines = _s.Api.Log.Lines;
        for (var i = before; i < lines.Count; i++)
        {
            _log.Add(new LogResult(step.Index, lines[i].Level.ToString().ToLowerInvariant(), lines[i].Message));
        }
    }
}
