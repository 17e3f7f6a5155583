using System.Text.Json.Nodes;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Schema;

/// <summary>
/// The schema and the parser agree on every op and field: a step with exactly the schema's required fields
/// parses; without any one of them the parser says it is missing; every field the schema lists for an op the
/// parser takes, and every other field name it refuses as unknown. Machine files likewise, at every level.
/// </summary>
public class SchemaParserAgreementTests
{
    private static readonly JsonObject Scenario = SchemaGenerator.Scenario();
    private static readonly JsonObject Machine = SchemaGenerator.Machine();

    /// <summary>Names the steps below refer to: a buffer, a handle, a scatterlist, a coherent buffer and an IOVA state.</summary>
    private const string Prelude = """
        machine: default
        steps:
          - { op: alloc, name: b, size: 8KiB, kind: ram }
          - { op: map, dev: nic0, buf: b, dir: bidirectional, as: h }
          - { op: map_sg, dev: nic0, segments: [{ buf: b, size: 4KiB }], dir: bidirectional, as: sg }
          - { op: alloc_coherent, dev: nic0, size: 4KiB, as: c }
          - { op: iova_alloc, dev: nic0, size: 8KiB, as: st }

        """;

    private static JsonObject StepSchema(string op) =>
        Scenario["$defs"]!["step"]!["allOf"]!.AsArray()
            .Single(c => c!["if"]!["properties"]!["op"]!["const"]!.GetValue<string>() == op)!["then"]!.AsObject();

    private static string[] SchemaFields(string op) => [.. StepSchema(op)["properties"]!.AsObject().Select(p => p.Key)];

    private static string[] SchemaRequired(string op) => [.. StepSchema(op)["required"]!.AsArray().Select(r => r!.GetValue<string>())];

    /// <summary>A value of the field that the parser takes in this op.</summary>
    private static string Sample(string op, string field) => field switch
    {
        "name" => op == "alloc" ? "n1" : "b",
        "handle" => op switch { "unmap_sg" or "sync_sg" => "sg", "free_coherent" => "c", _ => "h" },
        "state" => "st",
        "as" => "x1",
        "dev" or "from" => "nic0",
        "buf" or "phys_of" => "b",
        "kind" => "ram",
        "size" or "len" or "mapped_len" => "4KiB",
        "align" => "4KiB",
        "zone" => "normal",
        "bar" => "1",
        "offset" or "at" or "cpu_offset" => "0",
        "phys" or "addr" => "0x1000",
        "data" => "{ fill: 0xaa }",
        "dir" => "bidirectional",
        "attrs" => "[weak_ordering]",
        "api" => "phys",
        "kmap" => "false",
        "for" => "cpu",
        "ms" => "1",
        "nents" => "1",
        "segments" => "[{ buf: b, size: 4KiB }]",
        "id" => "s1",
        "cpu" => "0",
        "expect" => "{}",
        "expect_on" => "{ coco: {} }",
        "fallback" => "map_phys",
        _ => throw new InvalidOperationException($"no sample for field '{field}'"),
    };

    /// <summary>The fields a minimal step of the op carries: the schema's required ones, plus what a choice needs.</summary>
    private static List<string> MinimalFields(string op)
    {
        var fields = SchemaRequired(op).Where(f => f != "op").ToList();
        if (op is "dev_read" or "dev_write")
        {
            fields.Add("handle"); // one of handle or addr
        }
        return fields;
    }

    private static string StepYaml(string op, IEnumerable<string> fields, string extra) =>
        $"  - {{ op: {op}{string.Concat(fields.Select(f => $", {f}: {Sample(op, f)}"))}{extra} }}\n";

    private static Exception? Parse(string op, IEnumerable<string> fields, string extra = "")
    {
        try
        {
            ScenarioParser.Parse(Prelude + StepYaml(op, fields, extra), "agree.yaml");
            return null;
        }
        catch (ScenarioError e)
        {
            return e;
        }
    }

    public static TheoryData<string> Ops() => [.. OpCatalogue.All.Keys];

    [Fact]
    public void The_schema_lists_exactly_the_parsers_ops()
    {
        var schemaOps = Scenario["$defs"]!["step"]!["properties"]!["op"]!["enum"]!.AsArray().Select(o => o!.GetValue<string>());
        Assert.Equal(OpCatalogue.All.Keys, schemaOps);
        var e = Assert.Throws<ScenarioError>(() => ScenarioParser.Parse(Prelude + "  - { op: map_page }\n", "agree.yaml"));
        Assert.Contains("unknown op 'map_page'", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void A_step_with_the_schemas_required_fields_parses(string op)
    {
        Assert.Null(Parse(op, MinimalFields(op)));
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void Without_a_required_field_the_parser_says_it_is_missing(string op)
    {
        foreach (var field in SchemaRequired(op).Where(f => f != "op"))
        {
            var e = Parse(op, MinimalFields(op).Where(f => f != field));
            Assert.NotNull(e);
            Assert.Contains($"missing field '{field}'", e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void The_parser_takes_exactly_the_fields_the_schema_lists(string op)
    {
        var inSchema = SchemaFields(op).ToHashSet(StringComparer.Ordinal);
        var minimal = MinimalFields(op);
        foreach (var field in StepCatalogue.Fields.Keys.Append("bogus").Where(f => f != "op" && !minimal.Contains(f)))
        {
            var value = field == "bogus" ? "1" : Sample(op, field);
            var e = Parse(op, minimal, $", {field}: {value}");
            var unknown = e is not null && e.Message.Contains($"unknown field '{field}'", StringComparison.Ordinal);
            Assert.True(unknown != inSchema.Contains(field),
                $"{op}.{field}: schema {(inSchema.Contains(field) ? "lists" : "does not list")} it, parser {(unknown ? "refuses" : "takes")} it ({e?.Message})");
        }
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void Step_expect_lists_the_ops_result_fields_in_result_order(string op)
    {
        var expect = StepSchema(op)["properties"]!["expect"]!["properties"]!.AsObject().Select(p => p.Key);
        Assert.Equal(ResultCatalogue.StepFields(op).Select(f => f.Name), expect);
    }

    /// <summary>Where a machine field of each level sits in a machine mapping: {0} is the field and its value.</summary>
    public static TheoryData<string, string> MachineLevels() => new()
    {
        { "machine", "base: default\n{0}\n" },
        { "swiotlb", "base: default\nswiotlb: {{ {0} }}\n" },
        { "iommu", "base: default\niommu: {{ {0} }}\n" },
        { "flush_queue", "base: default\niommu: {{ flush_queue: {{ {0} }} }}\n" },
        { "range", "base: default\nram: [{{ base: 0, size: 1GiB, {0} }}]\n" },
        { "pci", "base: default\npci: [{{ name: hb9, type: host_bridge, {0} }}]\n" },
        { "device", "base: default\ndevices: [{{ name: d9, {0} }}]\n" },
        { "bar", "base: default\ndevices: [{{ name: d9, bars: [{{ bar: 0, base: 0x1000, size: 4KiB, {0} }}] }}]\n" },
        { "p2pmem", "base: default\ndevices: [{{ name: d9, p2pmem: {{ bar: 0, size: 4KiB, {0} }} }}]\n" },
        { "dma_range", "base: default\ndevices: [{{ name: d9, dma_ranges: [{{ cpu: 0, dma: 0, size: 4KiB, {0} }}] }}]\n" },
    };

    private static IReadOnlyList<FieldDoc> Level(string level) => level switch
    {
        "machine" => MachineCatalogue.Machine,
        "swiotlb" => MachineCatalogue.Swiotlb,
        "iommu" => MachineCatalogue.Iommu,
        "flush_queue" => MachineCatalogue.FlushQueue,
        "range" => MachineCatalogue.Range,
        "pci" => MachineCatalogue.PciNode,
        "device" => MachineCatalogue.Device,
        "bar" => MachineCatalogue.Bar,
        "p2pmem" => MachineCatalogue.P2PMem,
        _ => MachineCatalogue.DmaRange,
    };

    /// <summary>The schema node of a machine level, found by walking the generated machine schema.</summary>
    private static JsonObject LevelSchema(string level)
    {
        JsonObject Prop(JsonObject o, string name) => Resolve(o["properties"]![name]!.AsObject());
        JsonObject Resolve(JsonObject o) => o["anyOf"] is JsonArray any ? Resolve(any.Select(a => a!.AsObject()).First(a => a["type"]?.GetValue<string>() is "object" or "array" || a["anyOf"] is not null)) :
            o["type"]?.GetValue<string>() == "array" ? Resolve(o["items"]!.AsObject()) : o;
        var m = Machine["$defs"]!["machine"]!.AsObject();
        return level switch
        {
            "machine" => m,
            "swiotlb" or "iommu" => Prop(m, level),
            "flush_queue" => Prop(Prop(m, "iommu"), "flush_queue"),
            "range" => Prop(m, "ram"),
            "pci" => Prop(m, "pci"),
            "device" => Prop(m, "devices"),
            "bar" => Prop(Prop(m, "devices"), "bars"),
            "p2pmem" => Prop(Prop(m, "devices"), "p2pmem"),
            _ => Prop(Prop(m, "devices"), "dma_ranges"),
        };
    }

    [Theory]
    [MemberData(nameof(MachineLevels))]
    public void Machine_schema_and_parser_agree_on_every_field_of_every_level(string level, string template)
    {
        var schemaFields = LevelSchema(level)["properties"]!.AsObject().Select(p => p.Key).ToList();
        Assert.Equal(Level(level).Select(f => f.Name), schemaFields);
        foreach (var field in schemaFields.Append("bogus"))
        {
            var yaml = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, $"{field}: null");
            string? error = null;
            try
            {
                MachineParser.Parse(YNode.Load(yaml, "m.yaml"), ".");
            }
            catch (ScenarioError e)
            {
                error = e.Message;
            }
            var unknown = error?.Contains($"unknown field '{field}'", StringComparison.Ordinal) ?? false;
            Assert.True(unknown == (field == "bogus"), $"{level}.{field}: {error}");
        }
    }
}
