using System.Globalization;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace PhysDma.Tests.Schema;

/// <summary>
/// YAML to JSON as an editor's YAML language server sees it: plain integers, true/false and null are typed,
/// everything else (including 0x hex and 4KiB) is a string.
/// </summary>
public static class YamlJson
{
    public static JsonNode? Load(string text)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        return Convert(stream.Documents[0].RootNode);
    }

    public static JsonNode? Convert(YamlNode node) => node switch
    {
        YamlMappingNode m => new JsonObject(m.Children.Select(kv => KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, Convert(kv.Value)))),
        YamlSequenceNode s => new JsonArray([.. s.Children.Select(Convert)]),
        YamlScalarNode { Style: ScalarStyle.Plain } p => Plain(p.Value ?? ""),
        YamlScalarNode q => JsonValue.Create(q.Value ?? ""),
        _ => throw new InvalidOperationException($"unexpected YAML node {node.NodeType}"),
    };

    private static JsonNode? Plain(string v)
    {
        if (v is "" or "~" or "null" or "Null" or "NULL")
        {
            return null;
        }
        if (v is "true" or "false")
        {
            return JsonValue.Create(v == "true");
        }
        if (long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
        {
            return JsonValue.Create(n);
        }
        if (ulong.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var u))
        {
            return JsonValue.Create(u);
        }
        return JsonValue.Create(v);
    }
}
