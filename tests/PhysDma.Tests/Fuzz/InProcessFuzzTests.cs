using System.Diagnostics;
using CsCheck;
using PhysDma.Fuzz;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Fuzz;

/// <summary>
/// A bounded in-process fuzz run (about a minute, fixed seed): scenarios generated from the ops and fields the
/// format knows, byte-level mutations of every example, misuse scenario and fuzz finding, and of every
/// built-in machine as a machine file. Each must end
/// as a run or as bad input; an unhandled exception or a run past the time bound fails the test with the input.
/// </summary>
public class InProcessFuzzTests
{
    [Fact]
    public void Generated_and_mutated_scenarios_end_as_a_run_or_bad_input()
    {
        var corpus = ScenarioGen.LoadCorpus(RepoRoot);
        Assert.True(corpus.Count > 140, $"seed corpus has only {corpus.Count} files");
        var generated = Path.Combine(RepoRoot, "fuzz", "input.yaml");
        var machines = ScenarioGen.MachineCorpus(RepoRoot);
        var gen = Gen.Frequency(
            (4, ScenarioGen.Structured.Select(t => (t, generated, false))),
            (4, ScenarioGen.Mutated(corpus).Select(x => (x.Text, x.File, false))),
            (1, ScenarioGen.Mutated(machines).Select(x => (x.Text, x.File, true))));
        var rng = new PCG(19, 1);
        var counts = new long[3];
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            var (text, file, isMachine) = gen.Generate(rng, null, out _);
            try
            {
                counts[(int)(isMachine ? FuzzTarget.RunMachine(text, file) : FuzzTarget.Run(text, file))]++;
            }
            catch (FuzzFailure e)
            {
                Assert.Fail($"{e.Message}\n--- input (from {Path.GetFileName(file)}) ---\n{text}");
            }
        }
        // Both kinds of outcome occur: the generators reach the runner, not only the parser.
        Assert.True(counts[(int)FuzzOutcome.Ok] + counts[(int)FuzzOutcome.ExpectFailed] > 1000, $"only {counts[0] + counts[1]} inputs ran");
        Assert.True(counts[(int)FuzzOutcome.BadInput] > 1000);
    }
}
