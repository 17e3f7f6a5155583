using System.Globalization;
using PhysDma.Core;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace PhysDma.Scenarios;

/// <summary>
/// A YAML node with where it came from (file, line, the field path that leads to it), so every read can
/// fail with a message naming file, line and field. Scenario and machine files are read through this
/// only: unknown fields are errors, never ignored.
/// </summary>
internal readonly struct YNode
{
    public YNode(YamlNode node, string file, string path)
    {
        Node = node;
        File = file;
        Path = path;
    }

    public YamlNode Node { get; }
    public string File { get; }
    public string Path { get; }
    public int Line => (int)Node.Start.Line;

    public ScenarioError Error(string message) => new(File, Line, Path, message);

    /// <summary>How deep mappings and lists may nest: far beyond any scenario, far below what exhausts the stack.</summary>
    public const int MaxDepth = 64;

    public static YNode Load(string text, string file)
    {
        CheckDepth(text, file);
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw SyntaxError(file, e.Start, e.InnerException?.Message ?? e.Message);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            // YamlDotNet's scanner and node loader throw these for some malformed documents, with no position.
            throw new ScenarioError(file, 1, "", $"not valid YAML: {e.Message}");
        }
        if (stream.Documents.Count == 0)
        {
            throw new ScenarioError(file, 1, "", "the file is empty");
        }
        return new YNode(stream.Documents[0].RootNode, file, "");
    }

    private static ScenarioError SyntaxError(string file, Mark at, string message) =>
        new(file, (int)at.Line, "", $"not valid YAML: {message}") { Column = (int)at.Column };

    /// <summary>
    /// Walks the document's events (iteratively) before the recursive node loader sees it, so a document
    /// nested thousands deep is refused at the line where it passes <see cref="MaxDepth"/> instead of
    /// overflowing the stack, and an alias (which may refer to a node containing it) is refused where it stands.
    /// </summary>
    private static void CheckDepth(string text, string file)
    {
        var parser = new Parser(new StringReader(text));
        var depth = 0;
        var at = Mark.Empty;
        try
        {
            while (parser.MoveNext())
            {
                at = parser.Current!.End;
                switch (parser.Current)
                {
                    case MappingStart or SequenceStart:
                        if (++depth > MaxDepth)
                        {
                            throw new ScenarioError(file, (int)parser.Current.Start.Line, "", $"nesting deeper than {MaxDepth} levels") { Column = (int)parser.Current.Start.Column };
                        }
                        break;
                    case MappingEnd or SequenceEnd:
                        depth--;
                        break;
                    case AnchorAlias alias:
                        // An alias can refer to a node that contains it, which the node loader follows
                        // forever; scenario and machine files have no use for them (machines share with base:).
                        throw new ScenarioError(file, (int)alias.Start.Line, "", $"YAML aliases are not supported (*{alias.Value}): write the value out, or use base: in a machine file") { Column = (int)alias.Start.Column };
                }
            }
        }
        catch (YamlException e)
        {
            throw SyntaxError(file, e.Start, e.InnerException?.Message ?? e.Message);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            // The scanner gave up without a position: the end of the last event it read is where it stopped.
            throw new ScenarioError(file, Math.Max(1, (int)at.Line), "", $"not valid YAML after this point: {e.Message}") { Column = (int)at.Column };
        }
    }

    public bool IsNull => Node is YamlScalarNode { Style: ScalarStyle.Plain } s && (s.Value is null or "" or "~" or "null");
    public bool IsMapping => Node is YamlMappingNode;
    public bool IsSequence => Node is YamlSequenceNode;
    public bool IsScalar => Node is YamlScalarNode;

    public string Scalar
    {
        get
        {
            if (Node is YamlScalarNode s)
            {
                return s.Value ?? "";
            }
            throw Error($"expected a single value, found a {(IsMapping ? "mapping" : "list")}");
        }
    }

    private string Child(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

    /// <summary>The entries of a mapping, checked against the allowed field names.</summary>
    public Fields Fields(params string[] allowed)
    {
        if (Node is not YamlMappingNode m)
        {
            throw Error($"expected a mapping of fields, found {(IsSequence ? "a list" : $"'{Scalar}'")}");
        }
        var dict = new Dictionary<string, YNode>(StringComparer.Ordinal);
        foreach (var (k, v) in m.Children)
        {
            var key = k is YamlScalarNode ks ? ks.Value ?? "" : "";
            var keyNode = new YNode(k, File, Child(key));
            if (allowed.Length > 0 && !allowed.Contains(key))
            {
                throw keyNode.Error($"unknown field '{key}' (allowed here: {string.Join(", ", allowed)})");
            }
            if (!dict.TryAdd(key, new YNode(v, File, Child(key))))
            {
                throw keyNode.Error($"field '{key}' appears twice");
            }
        }
        return new Fields(this, dict);
    }

    public IReadOnlyList<YNode> Items()
    {
        if (Node is not YamlSequenceNode s)
        {
            throw Error("expected a list");
        }
        var path = Path;
        var file = File;
        return [.. s.Children.Select((c, i) => new YNode(c, file, $"{path}[{i}]"))];
    }

    public string AsString() => Scalar;

    public bool AsBool()
    {
        var v = Scalar.ToLowerInvariant();
        return v switch
        {
            "true" or "on" or "yes" => true,
            "false" or "off" or "no" => false,
            _ => throw Error($"expected true/false (or on/off), found '{Scalar}'"),
        };
    }

    public int AsInt(int min = int.MinValue, int max = int.MaxValue)
    {
        var v = Scalar;
        long n;
        if (v.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            if (!long.TryParse(v.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out n))
            {
                throw Error($"'{v}' is not a number");
            }
        }
        else if (!long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out n))
        {
            throw Error($"'{v}' is not a number");
        }
        else
        {
            Values.RefuseLeadingZero(v.TrimStart('-', '+'), v, this);
        }
        if (n < min || n > max)
        {
            throw Error($"{n} is out of range ({min}..{max})");
        }
        return (int)n;
    }

    /// <summary>A size: an integer, hex, or a number with a binary unit (<c>4KiB</c>, <c>2MiB</c>, <c>16GiB</c>).</summary>
    public ulong AsSize() => Values.ParseSize(Scalar, this);

    /// <summary>An address: an integer or a hex string.</summary>
    public ulong AsAddress() => Values.ParseAddress(Scalar, this);

    /// <summary>A name: <c>[a-z0-9_.-]+</c>.</summary>
    public string AsName()
    {
        var v = Scalar;
        if (!Values.IsName(v))
        {
            throw Error($"'{v}' is not a valid name (use lowercase letters, digits, '_', '.', '-')");
        }
        return v;
    }

    public T AsEnum<T>(params (string Name, T Value)[] choices)
    {
        var v = Scalar;
        foreach (var (name, value) in choices)
        {
            if (string.Equals(name, v, StringComparison.Ordinal))
            {
                return value;
            }
        }
        throw Error($"'{v}' is not one of: {string.Join(", ", choices.Select(c => c.Name))}");
    }
}

/// <summary>The fields of one mapping, read by name; each read node keeps its line for errors.</summary>
internal sealed class Fields(YNode owner, Dictionary<string, YNode> fields)
{
    public YNode Owner { get; } = owner;

    public bool Has(string key) => fields.ContainsKey(key);

    public YNode? Get(string key) => fields.TryGetValue(key, out var n) ? n : null;

    public YNode Required(string key) =>
        fields.TryGetValue(key, out var n) ? n : throw Owner.Error($"missing field '{key}'");

    public IEnumerable<string> Keys => fields.Keys;

    public IEnumerable<KeyValuePair<string, YNode>> All => fields;
}
