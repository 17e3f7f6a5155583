namespace PhysDma.Scenarios;

/// <summary>
/// <c>expect_on: { MACHINE: { field: value, ... } }</c>: expectations that hold on one machine only. On the
/// machine a block names, its fields are checked in place of the plain <c>expect:</c> fields of the same name;
/// on every other machine the block is ignored.
/// </summary>
internal static class ExpectOn
{
    public static void Merge(YNode? node, string machine, string[] fields, List<Expectation> expect)
    {
        if (node is not { } on)
        {
            return;
        }
        foreach (var (m, block) in on.Fields().All)
        {
            var entries = block.Fields(fields).All.ToList();
            if (m != machine)
            {
                continue;
            }
            foreach (var (k, v) in entries)
            {
                expect.RemoveAll(e => e.Field == k);
                expect.Add(new Expectation(k, v) { On = m });
            }
        }
    }

    /// <summary>
    /// The expectations that bind when a scenario runs on a machine other than the one its file names: only
    /// the <c>expect_on:</c> blocks for that machine (plain <c>expect:</c> values were written for the file's machine).
    /// </summary>
    public static Scenario ForeignMachine(Scenario s) => s with
    {
        Steps = [.. s.Steps.Select(st => st with { Expect = [.. st.Expect.Where(e => e.On is not null)] })],
        FinalExpect = [],
    };

    /// <summary>The scenario with no expectations at all (<c>--ignore-expect</c>).</summary>
    public static Scenario None(Scenario s) => s with
    {
        Steps = [.. s.Steps.Select(st => st with { Expect = [] })],
        FinalExpect = [],
    };
}
