using System.Text.Json.Nodes;
using Json.Schema;
using PhysDma.Scenarios;
using PhysDma.Tests.Scenarios;

namespace PhysDma.Tests.Schema;

/// <summary>
/// The JSON Schemas of scenario and machine files: the committed files are what the catalogues generate, every
/// example and misuse scenario and every built-in machine validates, and the schema and the parser agree on
/// every op and field (driven through the parser with a generated step per op).
/// </summary>
public class SchemaTests
{
    private static string SchemaPath(string kind) => Path.Combine(ScenarioTestKit.RepoRoot, "docs", "schema", $"{kind}.schema.json");

    private static readonly Lazy<JsonSchema> ScenarioSchema = new(() => JsonSchema.FromText(SchemaGenerator.Text("scenario")));
    private static readonly Lazy<JsonSchema> MachineSchema = new(() => JsonSchema.FromText(SchemaGenerator.Text("machine")));

    private static void AssertValid(JsonSchema schema, JsonNode? doc, string what)
    {
        var r = schema.Evaluate(Element(doc), new EvaluationOptions { OutputFormat = OutputFormat.List });
        var errors = (r.Details ?? []).Where(d => d.Errors is { Count: > 0 })
            .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation} ({d.EvaluationPath}): {e.Value}"));
        Assert.True(r.IsValid, $"{what} does not validate:\n{string.Join("\n", errors.Take(20))}");
    }

    private static System.Text.Json.JsonElement Element(JsonNode? doc) =>
        System.Text.Json.JsonDocument.Parse(doc?.ToJsonString() ?? "null").RootElement;

    [Theory]
    [InlineData("scenario")]
    [InlineData("machine")]
    public void Committed_schema_equals_the_generated_one(string kind)
    {
        Assert.True(File.Exists(SchemaPath(kind)), $"docs/schema/{kind}.schema.json is missing: run physdma schema {kind} > docs/schema/{kind}.schema.json");
        Assert.Equal(SchemaGenerator.Text(kind), File.ReadAllText(SchemaPath(kind)).ReplaceLineEndings("\n"));
    }

    [Fact]
    public void The_schema_command_prints_the_generated_schema()
    {
        var (exit, o, e) = ScenarioTestKit.CliArgs("schema", "machine");
        Assert.Equal((0, ""), (exit, e));
        Assert.Equal(SchemaGenerator.Text("machine"), o);
        Assert.Equal(2, ScenarioTestKit.CliArgs("schema", "scenarios").Exit);
    }

    public static TheoryData<string> ScenarioFiles() => [.. ScenarioFileList()];

    private static List<string> ScenarioFileList()
    {
        var root = ScenarioTestKit.RepoRoot;
        var files = Directory.GetFiles(Path.Combine(root, "examples"), "*.yaml", SearchOption.AllDirectories)
            .Concat(Directory.GetFiles(Path.Combine(root, "tests", "PhysDma.Tests", "Misuse"), "*.yaml"))
            .Select(f => Path.GetRelativePath(root, f).Replace('\\', '/'))
            .Order(StringComparer.Ordinal);
        return [.. files];
    }

    [Theory]
    [MemberData(nameof(ScenarioFiles))]
    public void Every_example_and_misuse_scenario_validates(string file)
    {
        var doc = YamlJson.Load(File.ReadAllText(Path.Combine(ScenarioTestKit.RepoRoot, file)));
        // Machine files that examples share sit in a machines/ folder beside them.
        AssertValid(file.Contains("/machines/", StringComparison.Ordinal) ? MachineSchema.Value : ScenarioSchema.Value, doc, file);
    }

    [Fact]
    public void There_are_examples_and_misuse_scenarios_to_validate()
    {
        var files = ScenarioFileList();
        Assert.Contains("examples/four-cases.yaml", files);
        Assert.True(files.Count(f => f.Contains("/Misuse/", StringComparison.Ordinal)) >= 70, $"only {files.Count} files");
    }

    public static TheoryData<string> ProfileNames() => [.. Profiles.Names];

    [Theory]
    [MemberData(nameof(ProfileNames))]
    public void Every_built_in_machine_validates_as_a_machine_file(string name)
    {
        AssertValid(MachineSchema.Value, YamlJson.Load(Profiles.YamlOf(name)!), name);
    }

    [Theory]
    [InlineData("machine: default\nsteps:\n  - { op: map, dev: nic0, buf: pre, dir: to_device, as: h, sise: 4 }\n")]
    [InlineData("machine: default\nsteps:\n  - { op: map, dev: nic0, buf: pre, dir: sideways, as: h }\n")]
    [InlineData("machine: default\nsteps:\n  - { op: map, dev: nic0, buf: pre, as: h }\n")]
    [InlineData("machine: default\nsteps:\n  - { op: mapp, dev: nic0 }\n")]
    [InlineData("machine: default\nsteps:\n  - { op: alloc, name: b, size: 4KB, kind: ram }\n")]
    [InlineData("machine: default\nsteps:\n  - { op: tick, ms: 1, expect: { now: 1 } }\n")]
    [InlineData("machine: { base: default, iommu: { mode: eager } }\nsteps: []\n")]
    [InlineData("machine: { base: default, devices: [{ name: nic0, dma_mask: 64, colour: red }] }\nsteps: []\n")]
    [InlineData("machine: not-a-machine\nsteps: []\n")]
    public void A_scenario_the_parser_refuses_does_not_validate_either(string yaml)
    {
        var r = ScenarioSchema.Value.Evaluate(Element(YamlJson.Load(yaml)));
        Assert.False(r.IsValid);
        var withBuffer = yaml.Replace("steps:\n", "steps:\n  - { op: alloc, name: pre, size: 4KiB, kind: ram }\n", StringComparison.Ordinal);
        Assert.Throws<ScenarioError>(() => ScenarioParser.Parse(withBuffer, "bad.yaml"));
    }
}
