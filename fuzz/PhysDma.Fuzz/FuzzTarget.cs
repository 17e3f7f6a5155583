using System.Diagnostics;
using PhysDma.Platform;
using PhysDma.Scenarios;

namespace PhysDma.Fuzz;

/// <summary>What one input did: ran (expectations held or not), or was refused as bad input.</summary>
public enum FuzzOutcome
{
    Ok,
    ExpectFailed,
    BadInput,
}

/// <summary>An input broke the rule: an exception other than bad input, a run past the time bound.</summary>
public sealed class FuzzFailure(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// One fuzz input through the whole pipeline the CLI runs: parse (scenario and any machine file it names),
/// run, serialize the result. Bad input (<see cref="ScenarioError"/>) is a correct outcome; anything else
/// that escapes, or a run longer than <see cref="TimeLimit"/>, is a finding.
/// </summary>
public static class FuzzTarget
{
    /// <summary>The budget of modelled memory for one input (the CLI's default is 4 GiB).</summary>
    public const ulong MaxMemory = 256UL << 20;

    public static TimeSpan TimeLimit { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A machine file: parsed as <c>--machine FILE</c> would parse it, then a machine and its DMA layers built
    /// from it and a short fixed scenario run on it (map, device read, unmap on its first device).
    /// </summary>
    public static FuzzOutcome RunMachine(string text, string file = "machine.yaml")
    {
        MachineConfig cfg;
        try
        {
            var root = YNode.Load(text, file);
            cfg = MachineParser.Parse(root.IsMapping && root.Fields().Get("machine") is { } inner ? inner : root, Path.GetDirectoryName(Path.GetFullPath(file)) ?? ".");
        }
        catch (ScenarioError)
        {
            return FuzzOutcome.BadInput;
        }
        catch (Exception e)
        {
            throw new FuzzFailure($"machine: {e.GetType().Name}: {e.Message}", e);
        }
        // The fixed steps name the machine's first device; they are parsed against a built-in machine that has
        // a device of that name when there is one (the parser checks names), then run on the fuzzed machine.
        var dev = cfg.Devices.Select(d => d.Name).FirstOrDefault(n => n is "nic0" or "nvme0" or "gpu0" or "legacy32" or "tbt0");
        var steps = dev is null ? "steps: []\n"
            : $"steps:\n  - {{ op: alloc, name: b, size: 4KiB, kind: ram }}\n  - {{ op: map, dev: {dev}, buf: b, dir: to_device, as: h }}\n" +
              $"  - {{ op: dev_read, dev: {dev}, handle: h, len: 64 }}\n  - {{ op: unmap, handle: h }}\n";
        var scenario = ScenarioParser.Parse("machine: default\n" + steps, file) with { Machine = cfg };
        return RunParsed(scenario);
    }

    private static FuzzOutcome RunParsed(Scenario scenario) => Guarded(() => scenario);

    public static FuzzOutcome Run(string text, string file = "fuzz.yaml") => Guarded(() => ScenarioParser.Parse(text, file));

    /// <summary>
    /// Parses and runs one input: a run or bad input is an outcome; any other exception, or a run past the time
    /// limit, is a finding.
    /// </summary>
    private static FuzzOutcome Guarded(Func<Scenario> parse)
    {
        var sw = Stopwatch.StartNew();
        try
        {
            var result = new ScenarioRunner(parse()) { MaxMemory = MaxMemory }.Run();
            _ = result.ToJson();
            return result.Ok ? FuzzOutcome.Ok : FuzzOutcome.ExpectFailed;
        }
        catch (ScenarioError)
        {
            return FuzzOutcome.BadInput;
        }
        catch (Exception e)
        {
            throw new FuzzFailure($"{e.GetType().Name}: {e.Message}", e);
        }
        finally
        {
            if (sw.Elapsed > TimeLimit)
            {
                throw new FuzzFailure($"input ran {sw.Elapsed.TotalSeconds:F1} s (limit {TimeLimit.TotalSeconds} s)");
            }
        }
    }
}
