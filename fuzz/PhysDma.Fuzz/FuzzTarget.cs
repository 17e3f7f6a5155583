using System.Diagnostics;
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

    public static FuzzOutcome Run(string text, string file = "fuzz.yaml")
    {
        var sw = Stopwatch.StartNew();
        try
        {
            var scenario = ScenarioParser.Parse(text, file);
            var runner = new ScenarioRunner(scenario) { MaxMemory = MaxMemory };
            var result = runner.Run();
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
