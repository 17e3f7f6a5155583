using System.Text.RegularExpressions;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Scenarios;

/// <summary>
/// docs/scenarios.md describes every op: its input fields (optional ones marked ?), its result fields in the
/// order the result has them, and an example step the parser takes.
/// </summary>
public partial class ScenarioDocsTests
{
    private static readonly string Doc = File.ReadAllText(Path.Combine(ScenarioTestKit.RepoRoot, "docs", "scenarios.md")).ReplaceLineEndings("\n");

    /// <summary>Buffers and handles the examples refer to; an example that makes one of these names replaces its line.</summary>
    private static readonly (string Makes, string Step)[] Prelude =
    [
        ("frame", "{ op: alloc, name: frame, size: 4KiB, kind: ram }"),
        ("rxbuf", "{ op: alloc, name: rxbuf, size: 4KiB, kind: ram }"),
        ("vram", "{ op: alloc, name: vram, size: 8KiB, kind: p2pmem, from: gpu0 }"),
        ("p1", "{ op: alloc, name: p1, size: 4KiB, kind: ram }"),
        ("p2", "{ op: alloc, name: p2, size: 4KiB, kind: ram }"),
        ("txh", "{ op: map, dev: nic0, buf: frame, dir: to_device, as: txh }"),
        ("rxh", "{ op: map, dev: nic0, buf: rxbuf, dir: from_device, as: rxh }"),
        ("prp", "{ op: map_sg, dev: nvme0, segments: [{ buf: p1, size: 4KiB }], dir: to_device, as: prp }"),
        ("ring", "{ op: alloc_coherent, dev: nic0, size: 8KiB, as: ring }"),
        ("st", "{ op: iova_alloc, dev: nic0, size: 64KiB, as: st }"),
    ];

    private static string Section(string op)
    {
        var start = Doc.IndexOf($"\n#### `{op}`\n", StringComparison.Ordinal);
        Assert.True(start >= 0, $"docs/scenarios.md has no section for op '{op}'");
        var end = Doc.IndexOf("\n#", start + 1, StringComparison.Ordinal);
        return Doc[start..(end < 0 ? Doc.Length : end)];
    }

    public static TheoryData<string> Ops() => [.. OpCatalogue.All.Keys];

    [Theory]
    [MemberData(nameof(Ops))]
    public void Each_op_lists_its_input_fields(string op)
    {
        var required = StepCatalogue.Required[op];
        var want = string.Join(", ", OpCatalogue.All[op].Inputs.Select(f => required.Contains(f) ? f : f + "?"));
        var section = Section(op);
        if (want.Length == 0)
        {
            Assert.Contains("No fields", section, StringComparison.Ordinal);
            return;
        }
        Assert.Contains($"Fields: `{want}`", section, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void Each_op_lists_its_result_fields_in_result_order(string op)
    {
        var m = ResultLine().Match(Section(op));
        Assert.True(m.Success, $"no result line for '{op}'");
        var listed = Regex.Replace(m.Groups[1].Value, @"\s+", " ");
        Assert.Equal(string.Join(", ", ResultCatalogue.StepFields(op).Select(f => f.Name)), listed);
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void Each_op_has_an_example_step_the_parser_takes(string op)
    {
        var m = ExampleBlock().Match(Section(op));
        Assert.True(m.Success, $"no example for '{op}'");
        var example = m.Groups[1].Value.TrimEnd();
        Assert.StartsWith($"- {{ op: {op},", example.Replace($"- {{ op: {op} }}", $"- {{ op: {op}, }}", StringComparison.Ordinal), StringComparison.Ordinal);
        var makes = MakesName().Match(example);
        var prelude = Prelude.Where(p => !makes.Success || p.Makes != makes.Groups[1].Value).Select(p => "  - " + p.Step);
        var yaml = "machine: default\nsteps:\n" + string.Join("\n", prelude) + "\n" + string.Join("\n", example.Split('\n').Select(l => "  " + l)) + "\n";
        var scenario = ScenarioParser.Parse(yaml, "docs-example.yaml");
        Assert.Equal(op, scenario.Steps[^1].Op);
    }

    [GeneratedRegex(@"Result[^`]*`([^`]+)`", RegexOptions.Singleline)]
    private static partial Regex ResultLine();

    [GeneratedRegex(@"```yaml\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex ExampleBlock();

    [GeneratedRegex(@"\bas: ([a-z0-9_.-]+)")]
    private static partial Regex MakesName();
}
