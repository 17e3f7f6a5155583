using System.Text.Json.Nodes;

namespace PhysDma.Scenarios;

/// <summary>
/// The value a scenario or machine field takes, as the parser reads it and as the JSON Schema describes it.
/// Values written in YAML reach the schema as JSON: plain integers as numbers, everything else as strings.
/// </summary>
internal abstract record FieldType
{
    /// <summary>The JSON Schema of the value (a <c>$ref</c> into the shared definitions, or an inline schema).</summary>
    public abstract JsonObject Schema();

    /// <summary>A size: bytes, hex, or a number with a binary unit (<c>4096</c>, <c>0x1000</c>, <c>4KiB</c>, <c>2MiB</c>).</summary>
    public static readonly FieldType Size = new Ref("size");

    /// <summary>An address: an integer or a <c>0x</c> hex string.</summary>
    public static readonly FieldType Address = new Ref("address");

    /// <summary>An integer, decimal or <c>0x</c> hex.</summary>
    public static readonly FieldType Int = new Ref("int");

    /// <summary>A name: <c>[a-z0-9_.-]+</c>.</summary>
    public static readonly FieldType Name = new Ref("name");

    /// <summary><c>true</c>/<c>false</c>, or <c>on</c>/<c>off</c>, <c>yes</c>/<c>no</c>.</summary>
    public static readonly FieldType Bool = new Ref("bool");

    /// <summary>Bytes: hex pairs (<c>"de ad be ef"</c>), <c>{ fill: 0xAA }</c> or <c>{ seq: 7 }</c>.</summary>
    public static readonly FieldType Data = new Ref("data");

    /// <summary>Free text.</summary>
    public static readonly FieldType Text = new Inline(new JsonObject { ["type"] = "string" });

    /// <summary>Any value (what <c>expect:</c> compares a result field against).</summary>
    public static readonly FieldType Any = new Inline([]);

    /// <summary>One of these words.</summary>
    public static FieldType Enum(params IEnumerable<string> values) =>
        new Inline(new JsonObject { ["enum"] = new JsonArray([.. values.Select(v => (JsonNode)v)]) });

    /// <summary>A list of values of one type.</summary>
    public static FieldType List(FieldType item) =>
        new Inline(new JsonObject { ["type"] = "array", ["items"] = item.Schema() });

    /// <summary>A mapping with these fields (no others).</summary>
    public static FieldType Object(IReadOnlyList<FieldDoc> fields) => new ObjectType(fields);

    /// <summary>This type, or <c>null</c>.</summary>
    public FieldType OrNull() => new Inline(new JsonObject { ["anyOf"] = new JsonArray(Schema(), new JsonObject { ["type"] = "null" }) });

    /// <summary>Either of two types.</summary>
    public FieldType Or(FieldType other) => new Inline(new JsonObject { ["anyOf"] = new JsonArray(Schema(), other.Schema()) });

    private sealed record Ref(string Def) : FieldType
    {
        public override JsonObject Schema() => new() { ["$ref"] = $"#/$defs/{Def}" };
    }

    private sealed record Inline(JsonObject Node) : FieldType
    {
        public override JsonObject Schema() => (JsonObject)Node.DeepClone();
    }

    private sealed record ObjectType(IReadOnlyList<FieldDoc> Fields) : FieldType
    {
        public override JsonObject Schema() => FieldDoc.ObjectSchema(Fields);
    }
}

/// <summary>One field of a scenario step or of a machine file: its name, value, whether it must be given, and what it means.</summary>
internal sealed record FieldDoc(string Name, FieldType Type, string Description, bool Required = false)
{
    /// <summary>The field's JSON Schema, with its description (what editors show on completion).</summary>
    public JsonObject Schema()
    {
        var s = Type.Schema();
        s.Insert(0, "description", Description);
        return s;
    }

    /// <summary>The names of these fields, in order: what the parser accepts.</summary>
    public static string[] Names(IReadOnlyList<FieldDoc> fields) => [.. fields.Select(f => f.Name)];

    /// <summary>A closed mapping of these fields.</summary>
    public static JsonObject ObjectSchema(IReadOnlyList<FieldDoc> fields)
    {
        var props = new JsonObject();
        foreach (var f in fields)
        {
            props[f.Name] = f.Schema();
        }
        var o = new JsonObject { ["type"] = "object", ["properties"] = props, ["additionalProperties"] = false };
        var required = fields.Where(f => f.Required).Select(f => (JsonNode)f.Name).ToArray();
        if (required.Length > 0)
        {
            o["required"] = new JsonArray(required);
        }
        return o;
    }
}
