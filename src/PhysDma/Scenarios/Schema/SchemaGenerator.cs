using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PhysDma.Scenarios;

/// <summary>
/// Writes the JSON Schemas (draft 2020-12) of scenario and machine files from the catalogues the parser reads:
/// <see cref="OpCatalogue"/> (ops and their input fields), <see cref="StepCatalogue"/> (what each field is),
/// <see cref="ResultCatalogue"/> (what <c>expect:</c> may name) and <see cref="MachineCatalogue"/>. Editors use
/// them for completion and checking; docs/schema/ holds the generated files.
/// </summary>
internal static class SchemaGenerator
{
    /// <summary>The schema kinds <c>physdma schema</c> prints.</summary>
    public static readonly IReadOnlyList<string> Kinds = ["scenario", "machine"];

    /// <summary>The schema text of one kind (<c>scenario</c> or <c>machine</c>), ending in a newline.</summary>
    public static string Text(string kind) => Serialize(kind switch
    {
        "scenario" => Scenario(),
        "machine" => Machine(),
        _ => throw new ArgumentException($"unknown schema '{kind}' (schemas: {string.Join(", ", Kinds)})", nameof(kind)),
    });

    private static string Serialize(JsonObject schema) =>
        schema.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";

    /// <summary>The machine-file schema: a machine mapping, or a document with a <c>machine:</c> key.</summary>
    public static JsonObject Machine()
    {
        var machine = FieldDoc.ObjectSchema(MachineCatalogue.Machine);
        var defs = Defs();
        defs["machine"] = machine;
        return new JsonObject
        {
            ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
            ["$id"] = "physdma-machine.schema.json",
            ["title"] = "PhysDma machine file",
            ["description"] = "A modelled machine: architecture, memory, swiotlb, IOMMU, PCI topology and devices. docs/machines.md explains every field.",
            ["anyOf"] = new JsonArray(
                new JsonObject { ["$ref"] = "#/$defs/machine" },
                new JsonObject
                {
                    ["type"] = "object",
                    ["properties"] = new JsonObject { ["machine"] = MachineValue() },
                    ["required"] = new JsonArray("machine"),
                    ["additionalProperties"] = false,
                }),
            ["$defs"] = defs,
        };
    }

    /// <summary>The scenario schema: machine, steps (one shape per op) and the final expectations.</summary>
    public static JsonObject Scenario()
    {
        var defs = Defs();
        defs["machine"] = FieldDoc.ObjectSchema(MachineCatalogue.Machine);
        var cases = new JsonArray();
        foreach (var op in OpCatalogue.All.Values)
        {
            cases.Add(new JsonObject
            {
                ["if"] = new JsonObject
                {
                    ["properties"] = new JsonObject { ["op"] = new JsonObject { ["const"] = op.Name } },
                    ["required"] = new JsonArray("op"),
                },
                ["then"] = StepSchema(op),
            });
        }
        defs["step"] = new JsonObject
        {
            ["type"] = "object",
            ["description"] = "One step: op and that op's fields, plus id, cpu and expect.",
            ["properties"] = new JsonObject { ["op"] = StepCatalogue.Fields["op"].Schema() },
            ["required"] = new JsonArray("op"),
            ["allOf"] = cases,
        };
        var top = new JsonObject
        {
            ["name"] = Described(new JsonObject { ["type"] = "string" }, "The scenario's name in the result (default: the file name)."),
            ["description"] = Described(new JsonObject { ["type"] = "string" }, "What the scenario shows."),
            ["machine"] = MachineValue(),
            ["steps"] = Described(new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["$ref"] = "#/$defs/step" } }, "What the driver, the CPU and the devices do, in order."),
            ["expect"] = Described(Expect(ResultCatalogue.Final.Select(f => f.Name)), "Expectations on the final state, the debug reports and the faults."),
            ["faults"] = Described(Faults(), "Deterministic fault injection: the Nth call of a kernel function fails, a pool is made small, or a P2P provider is removed."),
        };
        if (!top.Select(p => p.Key).SequenceEqual(StepCatalogue.ScenarioFields))
        {
            throw new InvalidOperationException("scenario top-level fields and StepCatalogue.ScenarioFields differ");
        }
        return new JsonObject
        {
            ["$schema"] = "https://json-schema.org/draft/2020-12/schema",
            ["$id"] = "physdma-scenario.schema.json",
            ["title"] = "PhysDma scenario",
            ["description"] = "A machine, then the steps a driver, the CPU and devices take. docs/scenarios.md explains every op and field.",
            ["type"] = "object",
            ["properties"] = top,
            ["required"] = new JsonArray("machine", "steps"),
            ["additionalProperties"] = false,
            ["$defs"] = defs,
        };
    }

    private static JsonObject StepSchema(OpSpec op)
    {
        var props = new JsonObject();
        foreach (var name in OpCatalogue.CommonInputs.Concat(op.Inputs))
        {
            if (!StepCatalogue.Fields.TryGetValue(name, out var doc))
            {
                throw new InvalidOperationException($"op '{op.Name}' takes field '{name}', which StepCatalogue does not describe");
            }
            props[name] = name switch
            {
                "op" => Described(new JsonObject { ["const"] = op.Name }, StepCatalogue.OpDescriptions[op.Name]),
                "expect" => Described(Expect(ResultCatalogue.StepFields(op.Name).Select(f => f.Name)), $"Result fields of {op.Name} and the values they must have."),
                "expect_on" => Described(new JsonObject { ["type"] = "object", ["additionalProperties"] = Expect(ResultCatalogue.StepFields(op.Name).Select(f => f.Name)) },
                    $"Per machine: result fields of {op.Name} that hold on that machine, in place of expect's."),
                _ => doc.Schema(),
            };
        }
        var required = StepCatalogue.Required[op.Name];
        if (required.Except(op.Inputs).FirstOrDefault() is { } stray)
        {
            throw new InvalidOperationException($"op '{op.Name}' requires '{stray}', which it does not take");
        }
        return new JsonObject
        {
            ["description"] = StepCatalogue.OpDescriptions[op.Name],
            ["properties"] = props,
            ["required"] = new JsonArray([.. required.Prepend("op").Select(r => (JsonNode)r)]),
            ["additionalProperties"] = false,
        };
    }

    private static JsonObject Expect(IEnumerable<string> fields)
    {
        var props = new JsonObject();
        foreach (var f in fields)
        {
            props[f] = new JsonObject();
        }
        return new JsonObject { ["type"] = "object", ["properties"] = props, ["additionalProperties"] = false };
    }

    private static JsonObject MachineValue() => Described(new JsonObject
    {
        ["anyOf"] = new JsonArray(
            new JsonObject { ["enum"] = new JsonArray([.. Profiles.Names.Select(n => (JsonNode)n)]) },
            new JsonObject { ["type"] = "string", ["pattern"] = "\\.(ya?ml|json)$" },
            new JsonObject { ["$ref"] = "#/$defs/machine" }),
    }, "A built-in machine, a path to a machine file (.yaml, .yml, .json), or a machine mapping (base: NAME plus overrides).");

    private static JsonObject Described(JsonObject schema, string description)
    {
        schema.Insert(0, "description", description);
        return schema;
    }

    /// <summary>The value types shared by every field (see <see cref="FieldType"/>).</summary>
    private static JsonObject Defs()
    {
        var hexOrDec = "^\\s*(0[xX][0-9a-fA-F_]{1,16}|[0-9]+)\\s*$";
        return new JsonObject
        {
            ["size"] = new JsonObject
            {
                ["description"] = "A size: bytes, 0x hex, or a number with a binary unit (4096, 4KiB, 2MiB, 16GiB).",
                ["anyOf"] = new JsonArray(
                    new JsonObject { ["type"] = "integer", ["minimum"] = 0 },
                    new JsonObject { ["type"] = "string", ["pattern"] = "^\\s*(0[xX][0-9a-fA-F_]{1,16}|[0-9]+\\s*(KiB|MiB|GiB|TiB|B)?)\\s*$" }),
            },
            ["address"] = new JsonObject
            {
                ["description"] = "An address: an integer or a 0x hex string.",
                ["anyOf"] = new JsonArray(
                    new JsonObject { ["type"] = "integer", ["minimum"] = 0 },
                    new JsonObject { ["type"] = "string", ["pattern"] = hexOrDec }),
            },
            ["int"] = new JsonObject
            {
                ["description"] = "An integer, decimal or 0x hex.",
                ["anyOf"] = new JsonArray(
                    new JsonObject { ["type"] = "integer" },
                    new JsonObject { ["type"] = "string", ["pattern"] = "^(-?[0-9]+|0[xX][0-9a-fA-F]+)$" }),
            },
            ["name"] = new JsonObject
            {
                ["description"] = "A name: lowercase letters, digits, '_', '.', '-'.",
                ["type"] = "string",
                ["pattern"] = "^[a-z0-9_.-]+$",
            },
            ["bool"] = new JsonObject
            {
                ["description"] = "true/false (also on/off, yes/no).",
                ["anyOf"] = new JsonArray(
                    new JsonObject { ["type"] = "boolean" },
                    new JsonObject { ["enum"] = new JsonArray([.. ((string[])["true", "false", "on", "off", "yes", "no"]).SelectMany(w => new[] { w, char.ToUpperInvariant(w[0]) + w[1..], w.ToUpperInvariant() }).Select(w => (JsonNode)w)]) }),
            },
            ["data"] = new JsonObject
            {
                ["description"] = "Bytes: hex pairs (\"de ad be ef\"), { fill: 0xAA } (every byte), or { seq: 7 } (byte i is (7 + i) & 0xff).",
                ["anyOf"] = new JsonArray(
                    new JsonObject { ["type"] = "string", ["pattern"] = "^\\s*(0[xX])?([0-9a-fA-F]{2}[ \\t]*)+$" },
                    new JsonObject
                    {
                        ["type"] = "object",
                        ["properties"] = new JsonObject
                        {
                            ["fill"] = new JsonObject { ["description"] = "Every byte has this value (0..255).", ["$ref"] = "#/$defs/int" },
                            ["seq"] = new JsonObject { ["description"] = "Byte i is (seq + i) & 0xff.", ["$ref"] = "#/$defs/int" },
                        },
                        ["minProperties"] = 1,
                        ["maxProperties"] = 1,
                        ["additionalProperties"] = false,
                    }),
            },
        };
    }

    /// <summary>The <c>faults:</c> section: a call number (from 1) or a list of them per kernel call, two pool limits, and provider removals.</summary>
    private static JsonObject Faults()
    {
        var nth = new JsonObject
        {
            ["oneOf"] = new JsonArray(
                new JsonObject { ["type"] = "integer", ["minimum"] = 1 },
                new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "integer", ["minimum"] = 1 } }),
        };
        var props = new JsonObject();
        foreach (var (name, _) in FaultSpec.Points)
        {
            props[name] = Described(nth.DeepClone().AsObject(), $"Fail the Nth {name} call of the run (or each call in the list).");
        }
        props["swiotlb_slots"] = Described(new JsonObject { ["type"] = "integer", ["minimum"] = 1 }, "Shrink the default swiotlb pool to this many 2 KiB slots.");
        props["dma_debug_entries"] = Described(new JsonObject { ["type"] = "integer", ["minimum"] = 0 }, "Limit dma-debug's entry pool to this many free entries that cannot grow.");
        var removal = new JsonObject
        {
            ["type"] = "object",
            ["properties"] = new JsonObject
            {
                ["dev"] = Described(new JsonObject { ["type"] = "string" }, "The PCI device whose BAR provides the P2P memory."),
                ["bar"] = Described(new JsonObject { ["type"] = "integer", ["minimum"] = 0, ["maximum"] = 5 }, "The BAR (0-5)."),
                ["after"] = Described(new JsonObject { ["type"] = "integer", ["minimum"] = 0 }, "The step (numbered from 0, as the result numbers them) after which the provider goes away."),
            },
            ["required"] = new JsonArray("dev", "bar", "after"),
            ["additionalProperties"] = false,
        };
        props[FaultSpec.RemoveP2PProvider] = Described(new JsonObject
        {
            ["oneOf"] = new JsonArray(removal, new JsonObject { ["type"] = "array", ["items"] = removal.DeepClone() }),
        }, "Remove a P2PDMA provider (a device's BAR) after a step while it may still be mapped: the teardown waits for referenced p2pmem pages, then the BAR stops decoding.");
        return new JsonObject { ["type"] = "object", ["properties"] = props, ["additionalProperties"] = false };
    }
}
