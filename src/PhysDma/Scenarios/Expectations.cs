using System.Text.Json.Nodes;
using PhysDma.Core;

namespace PhysDma.Scenarios;

/// <summary>
/// Checks <c>expect:</c> entries against result values. Addresses compare as numbers (so <c>4096</c> and
/// <c>"0x1000"</c> agree), <c>data</c> patterns are expanded to the length actually read, flag lists compare
/// as sets, lists of objects compare the keys the expectation names.
/// </summary>
internal static class Expectations
{
    /// <summary>Null when the value matches, else why not. The field's kind comes from <see cref="ResultCatalogue"/>.</summary>
    public static string? Check(string field, YNode expected, JsonNode? actual)
    {
        var kind = ResultCatalogue.KindOf(field);
        if (expected.IsNull)
        {
            return actual is null ? null : $"wanted null, got {Show(actual)}";
        }
        if (kind == FieldKind.Data)
        {
            if (actual is null)
            {
                return "wanted data, got null (nothing was read)";
            }
            var got = actual.GetValue<string>();
            var len = got.Length == 0 ? 0 : (got.Length + 1) / 3;
            var want = Values.HexBytes(DataSpec.Parse(expected).Expand(len));
            return want == got ? null : $"wanted {Abbrev(want)}, got {Abbrev(got)}";
        }
        if (actual is null)
        {
            return $"wanted {Describe(expected)}, got null";
        }
        if (kind == FieldKind.Address && actual is JsonValue av && av.TryGetValue<string>(out var s) && s.StartsWith("0x", StringComparison.Ordinal))
        {
            var want = expected.AsAddress();
            var got = Convert.ToUInt64(s[2..], 16);
            return want == got ? null : $"wanted {Hex.Format(want)}, got {s}";
        }
        if (kind == FieldKind.FlagSet && actual is JsonArray fa)
        {
            var want = expected.Items().Select(i => i.Scalar).OrderBy(x => x, StringComparer.Ordinal).ToList();
            var got = fa.Select(x => x!.GetValue<string>()).OrderBy(x => x, StringComparer.Ordinal).ToList();
            return want.SequenceEqual(got) ? null : $"wanted [{string.Join(", ", want)}], got [{string.Join(", ", got)}]";
        }
        if (actual is JsonArray arr)
        {
            if (expected.IsScalar && field is "faults" or "debug")
            {
                var n = expected.AsInt(0);
                return n == arr.Count ? null : $"wanted {n} entries, got {arr.Count}";
            }
            var items = expected.Items();
            if (items.Count != arr.Count)
            {
                return $"wanted {items.Count} entries, got {arr.Count}: {Show(arr)}";
            }
            for (var i = 0; i < items.Count; i++)
            {
                if (arr[i] is JsonObject obj)
                {
                    if (items[i].IsScalar)
                    {
                        // A bare name stands for the entry's main field (a debug report's check, a cache op's op).
                        var key = obj.ContainsKey("check") ? "check" : obj.ContainsKey("op") ? "op" : "reason";
                        var why = Check(key, items[i], obj[key]);
                        if (why is not null)
                        {
                            return $"entry {i}: {why}";
                        }
                        continue;
                    }
                    foreach (var (k, v) in items[i].Fields().All)
                    {
                        if (!obj.ContainsKey(k))
                        {
                            return $"entry {i} has no field '{k}'";
                        }
                        var why = Check(k, v, obj[k]);
                        if (why is not null)
                        {
                            return $"entry {i}: {k}: {why}";
                        }
                    }
                }
                else
                {
                    var why = Check(field, items[i], arr[i]);
                    if (why is not null)
                    {
                        return $"entry {i}: {why}";
                    }
                }
            }
            return null;
        }
        if (actual is JsonValue value)
        {
            if (value.TryGetValue<bool>(out var b))
            {
                return expected.AsBool() == b ? null : $"wanted {expected.Scalar}, got {(b ? "true" : "false")}";
            }
            if (value.GetValueKind() == System.Text.Json.JsonValueKind.Number)
            {
                var got = value.ToJsonString();
                var want = expected.Scalar.StartsWith('-') ? expected.Scalar : expected.AsAddress().ToString(System.Globalization.CultureInfo.InvariantCulture);
                return want == got ? null : $"wanted {want}, got {got}";
            }
            if (value.TryGetValue<string>(out var str))
            {
                return expected.Scalar == str ? null : $"wanted {expected.Scalar}, got {str}";
            }
        }
        return $"wanted {Describe(expected)}, got {Show(actual)}";
    }

    private static string Describe(YNode n) => n.IsScalar ? n.Scalar : n.IsSequence ? "a list" : "a mapping";

    private static string Show(JsonNode? n) => n is null ? "null" : Abbrev(n.ToJsonString());

    private static string Abbrev(string s) => s.Length <= 120 ? s : s[..117] + "...";
}
