using System.Collections;
using System.Text.Json.Serialization.Metadata;

namespace PhysDma.Scenarios;

/// <summary>How <c>expect:</c> compares a field.</summary>
internal enum FieldKind
{
    /// <summary>A string, compared exactly.</summary>
    Text,

    /// <summary>A number; an expectation may give it in decimal or hex.</summary>
    Number,

    Bool,

    /// <summary>An address: compared as a number, so <c>4096</c> and <c>"0x1000"</c> agree.</summary>
    Address,

    /// <summary>Flag names, compared as a set.</summary>
    FlagSet,

    /// <summary>Bytes, compared against a data pattern expanded to the length actually read.</summary>
    Data,

    /// <summary>A list: of values, or of objects whose named keys are compared (a bare count for debug and faults).</summary>
    List,
}

/// <summary>A result field: its JSON name and how expectations compare it.</summary>
internal sealed record ResultField(string Name, FieldKind Kind);

/// <summary>
/// The one description of the result format: the fields of every step result and of the final state, read off
/// the result records themselves. The parser takes its list of what <c>expect:</c> may name from here, the runner
/// fills the same records, and expectation matching takes each field's kind from here.
/// </summary>
internal static class ResultCatalogue
{
    private static readonly Dictionary<Type, IReadOnlyList<ResultField>> ByType = [];
    private static readonly Dictionary<string, FieldKind> KindByName = new(StringComparer.Ordinal);

    static ResultCatalogue()
    {
        foreach (var t in (Type[])[typeof(RunResult), typeof(FinalState), typeof(CacheOpResult), typeof(SegmentResult),
                     typeof(DebugReportResult), typeof(FaultResult), typeof(LogResult), typeof(ExpectFailure)])
        {
            Add(t);
        }
        foreach (var op in OpCatalogue.All.Values)
        {
            Add(op.Result);
        }
        var run = FieldsOf(typeof(RunResult));
        Final = [.. FieldsOf(typeof(FinalState)), .. ((string[])["debug", "faults", "ok"]).Select(n => run.Single(f => f.Name == n))];
    }

    /// <summary>The fields a step's <c>expect:</c> may name for this op, in result order.</summary>
    public static IReadOnlyList<ResultField> StepFields(string op) => FieldsOf(OpCatalogue.All[op].Result);

    /// <summary>The fields the scenario's top-level <c>expect:</c> may name.</summary>
    public static IReadOnlyList<ResultField> Final { get; }

    /// <summary>How a field of this name is compared, wherever it appears.</summary>
    public static FieldKind KindOf(string name) => KindByName.GetValueOrDefault(name, FieldKind.Text);

    public static IReadOnlyList<ResultField> FieldsOf(Type t) => ByType[t];

    private static void Add(Type t)
    {
        if (ByType.ContainsKey(t))
        {
            return;
        }
        var info = ResultJson.Context.GetTypeInfo(t) ?? throw new InvalidOperationException($"{t.Name} is not in the result serializer");
        var fields = new List<ResultField>();
        foreach (var p in info.Properties.OrderBy(p => p.Order))
        {
            if (p.Get is null)
            {
                continue;
            }
            var kind = Kind(p);
            fields.Add(new ResultField(p.Name, kind));
            if (KindByName.TryGetValue(p.Name, out var other) && other != kind)
            {
                throw new InvalidOperationException($"result field '{p.Name}' has two kinds: {other} and {kind}");
            }
            KindByName[p.Name] = kind;
        }
        ByType[t] = fields;
    }

    private static FieldKind Kind(JsonPropertyInfo p)
    {
        var t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
        if (t == typeof(HexAddr))
        {
            return FieldKind.Address;
        }
        if (t == typeof(FlagSet))
        {
            return FieldKind.FlagSet;
        }
        if (t == typeof(ByteDump))
        {
            return FieldKind.Data;
        }
        if (t == typeof(bool))
        {
            return FieldKind.Bool;
        }
        if (t == typeof(string))
        {
            return FieldKind.Text;
        }
        if (typeof(IEnumerable).IsAssignableFrom(t))
        {
            return FieldKind.List;
        }
        return t.IsPrimitive ? FieldKind.Number : FieldKind.Text;
    }
}
