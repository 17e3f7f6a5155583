using System.Globalization;
using System.Text.RegularExpressions;

namespace PhysDma.Hosts;

/// <summary>
/// <c>lspci</c> output: the tree (<c>-tv</c>, <c>-tvnn</c>) and the verbose listing (<c>-vvv</c>, <c>-vvvnn</c>, with
/// or without <c>-PP</c> paths; also listings grouped under <c>IOMMU Group N:</c> headings).
/// </summary>
internal static partial class LspciReader
{
    [GeneratedRegex(@"^\s*(?:[+\\]-|-)?\[[0-9a-f]{4,8}:[0-9a-f]{2}\]-")]
    private static partial Regex TreeStart();

    [GeneratedRegex(@"^(?<path>(?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7](?:/(?:[0-9a-f]{2}:)?[0-9a-f]{2}\.[0-7])*) (?<rest>[^:]+?(?: \[(?<cls>[0-9a-f]{4})\])?: .*)$")]
    private static partial Regex VerboseHeader();

    [GeneratedRegex(@"^IOMMU [Gg]roup:? (?<g>\d+):?$")]
    private static partial Regex GroupHeading();

    [GeneratedRegex(@"\[(?<v>[0-9a-f]{4}):(?<d>[0-9a-f]{4})\]")]
    private static partial Regex VendorDevice();

    [GeneratedRegex(@"\(prog-if (?<p>[0-9a-f]{2})")]
    private static partial Regex ProgIf();

    [GeneratedRegex(@"^Region (?<i>\d): Memory at (?<a>[0-9a-f]+|<unassigned>|<ignored>) \((?<bits>32-bit|64-bit|low-1M)(?:, (?<pref>non-prefetchable|prefetchable))?\)(?<tail>.*)$")]
    private static partial Regex Region();

    [GeneratedRegex(@"\[size=(?<n>\d+)(?<u>[KMGT]?)\]")]
    private static partial Regex Size();

    [GeneratedRegex(@"^Bus: primary=(?<p>[0-9a-f]{2}), secondary=(?<s>[0-9a-f]{2}), subordinate=(?<u>[0-9a-f]{2})")]
    private static partial Regex BusLine();

    [GeneratedRegex(@"Express (?:\(v\d\) )?(?<t>Root Port|Upstream Port|Downstream Port|Legacy Endpoint|Root Complex Integrated Endpoint|Endpoint|PCI-Express to PCI/PCI-X Bridge|PCI/PCI-X to PCI-Express Bridge|Root Complex Event Collector)")]
    private static partial Regex Express();

    [GeneratedRegex(@"^ACSC(?<w>ap|tl):\s+(?<flags>.*)$")]
    private static partial Regex Acs();

    public static bool LooksTree(string firstLine) => TreeStart().IsMatch(firstLine);

    public static bool LooksVerbose(string firstLine) =>
        VerboseHeader().IsMatch(firstLine.Trim()) || GroupHeading().IsMatch(firstLine.Trim());

    // ---------------------------------------------------------------- lspci -tv

    /// <summary>
    /// Walks the tree drawing: a branch (<c>+-</c>, <c>\-</c>) continues the bus of whatever opened that column;
    /// <c>NN.N-[SS-UU]</c> is a bridge whose children follow on bus SS.
    /// </summary>
    public static void ReadTree(string[] lines, string file, HostInfo host)
    {
        host.Sources.Add($"{Path.GetFileName(file)} (lspci -tv)");
        var columns = new Dictionary<int, (int Domain, int Bus, PciAddress? Bridge)>();
        var domain = 0;
        for (var li = 0; li < lines.Length; li++)
        {
            var line = lines[li].TrimEnd('\r');
            if (line.Trim().Length == 0)
            {
                continue;
            }
            (int Domain, int Bus, PciAddress? Bridge)? cur = null;
            var i = 0;
            while (i < line.Length)
            {
                var c = line[i];
                if (c is ' ' or '|' or '-')
                {
                    i++;
                    continue;
                }
                if (c is '+' or '\\' && i + 1 < line.Length && line[i + 1] == '-')
                {
                    if (i + 2 < line.Length && line[i + 2] == '[')
                    {
                        i += 2;
                        continue;
                    }
                    if (cur is { } here)
                    {
                        columns[i] = here;
                    }
                    else if (columns.TryGetValue(i, out var opened))
                    {
                        cur = opened;
                    }
                    else
                    {
                        throw new HostImportError(file, li + 1, $"tree branch at column {i + 1} continues nothing above it");
                    }
                    i += 2;
                    continue;
                }
                if (c == '[')
                {
                    var close = line.IndexOf(']', i);
                    var parts = close < 0 ? [] : line[(i + 1)..close].Split(':');
                    if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out domain)
                        || !int.TryParse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var rootBus))
                    {
                        throw new HostImportError(file, li + 1, $"expected [DOMAIN:BUS] at column {i + 1}");
                    }
                    host.Bridge(domain, rootBus).Via ??= "lspci -tv";
                    cur = (domain, rootBus, null);
                    i = close + 1;
                    continue;
                }
                // NN.F device entry, optionally -[SS] / -[SS-UU], then either more tree or two spaces and a name.
                if (i + 4 > line.Length || line[i + 2] != '.' || cur is null
                    || !int.TryParse(line.AsSpan(i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var dev)
                    || !int.TryParse(line.AsSpan(i + 3, 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var fn))
                {
                    throw new HostImportError(file, li + 1, $"expected a device entry (DD.F) at column {i + 1}: '{line.Trim()}'");
                }
                var ctx = cur.Value;
                var a = new PciAddress(ctx.Domain, ctx.Bus, dev, fn);
                var f = host.Function(a);
                f.Parent ??= ctx.Bridge;
                i += 4;
                if (i < line.Length && line[i] == '-' && i + 1 < line.Length && line[i + 1] == '[')
                {
                    var close = line.IndexOf(']', i);
                    var range = close < 0 ? [] : line[(i + 2)..close].Split('-');
                    if (range.Length is < 1 or > 2 || !int.TryParse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var sec))
                    {
                        throw new HostImportError(file, li + 1, $"expected a bus range [SS-UU] at column {i + 2}");
                    }
                    f.Secondary = sec;
                    f.Subordinate = range.Length == 2 && int.TryParse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var sub) ? sub : sec;
                    f.IsBridge = true;
                    cur = (ctx.Domain, sec, a);
                    i = close + 1;
                    continue;
                }
                var name = line[i..].Trim();
                if (name.Length > 0)
                {
                    Describe(f, name, null);
                }
                cur = null;
                break;
            }
        }
    }

    // ---------------------------------------------------------------- lspci -vvv

    public static void ReadVerbose(string[] lines, string file, HostInfo host)
    {
        host.Sources.Add($"{Path.GetFileName(file)} (lspci -vvv)");
        HostFunction? f = null;
        int? group = null;
        for (var li = 0; li < lines.Length; li++)
        {
            var raw = lines[li].TrimEnd('\r');
            var t = raw.Trim();
            if (t.Length == 0 || t.StartsWith("....", StringComparison.Ordinal))
            {
                continue;
            }
            if (GroupHeading().Match(t) is { Success: true } gh && !char.IsWhiteSpace(raw[0]))
            {
                group = int.Parse(gh.Groups["g"].Value, CultureInfo.InvariantCulture);
                f = null;
                continue;
            }
            if (VerboseHeader().Match(t) is { Success: true } h && (!char.IsWhiteSpace(raw[0]) || group is not null))
            {
                f = Header(h, host, file, li + 1);
                if (group is { } g)
                {
                    f.IommuGroup = g;
                    host.IommuPresent ??= true;
                }
                continue;
            }
            if (f is null)
            {
                throw new HostImportError(file, li + 1, $"line outside any device block: '{Clip(t)}'");
            }
            Property(f, t, host, file, li + 1);
        }
    }

    private static HostFunction Header(Match h, HostInfo host, string file, int line)
    {
        var path = h.Groups["path"].Value.Split('/');
        var domain = 0;
        PciAddress? parent = null;
        PciAddress a = default;
        foreach (var (p, k) in path.Select((p, k) => (p, k)))
        {
            var text = p;
            if (k > 0 && text.Length == 4)
            {
                // -P notation: only DD.F; the bus is the parent bridge's secondary.
                var sec = parent is { } pp && host.Functions.TryGetValue(pp, out var pf) ? pf.Secondary : null;
                if (sec is null)
                {
                    throw new HostImportError(file, line, $"'{h.Groups["path"].Value}': the bus of '{p}' is unknown (use lspci -PP)");
                }
                text = $"{sec:x2}:{p}";
            }
            if (!PciAddress.TryParse(text, out a, domain))
            {
                throw new HostImportError(file, line, $"'{p}' is not a PCI address");
            }
            domain = a.Domain;
            if (k < path.Length - 1)
            {
                var bridge = host.Function(a);
                bridge.IsBridge = true;
                parent = a;
            }
        }
        var f = host.Function(a);
        if (parent is { } par)
        {
            f.Parent = par;
            var pf = host.Function(par);
            pf.Secondary ??= a.Bus;
        }
        var rest = h.Groups["rest"].Value;
        uint? cls = h.Groups["cls"].Success ? (uint)int.Parse(h.Groups["cls"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) << 8 : null;
        if (cls is { } c && ProgIf().Match(rest) is { Success: true } pi)
        {
            cls = c | (uint)int.Parse(pi.Groups["p"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        }
        Describe(f, rest, cls);
        return f;
    }

    private static void Property(HostFunction f, string t, HostInfo host, string file, int line)
    {
        if (t.StartsWith("IOMMU group: ", StringComparison.Ordinal))
        {
            if (!int.TryParse(t["IOMMU group: ".Length..], NumberStyles.Integer, CultureInfo.InvariantCulture, out var g))
            {
                throw new HostImportError(file, line, $"IOMMU group: '{t["IOMMU group: ".Length..]}' is not a number");
            }
            f.IommuGroup = g;
            host.IommuPresent ??= true;
            return;
        }
        if (t.StartsWith("Region ", StringComparison.Ordinal))
        {
            if (t.Contains("I/O ports", StringComparison.Ordinal))
            {
                return;
            }
            var m = Region().Match(t);
            if (!m.Success)
            {
                throw new HostImportError(file, line, $"Region line not understood: '{Clip(t)}'");
            }
            var tail = m.Groups["tail"].Value;
            var size = Size().Match(tail);
            if (!size.Success)
            {
                throw new HostImportError(file, line, "Region line has no [size=...]");
            }
            if (m.Groups["a"].Value.StartsWith('<') || tail.Contains("[virtual]", StringComparison.Ordinal))
            {
                return;
            }
            var bytes = ulong.Parse(size.Groups["n"].Value, CultureInfo.InvariantCulture) << size.Groups["u"].Value switch
            {
                "K" => 10,
                "M" => 20,
                "G" => 30,
                "T" => 40,
                _ => 0,
            };
            var @base = ulong.Parse(m.Groups["a"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            f.AddBar(new HostBar(int.Parse(m.Groups["i"].Value, CultureInfo.InvariantCulture), @base, bytes,
                m.Groups["bits"].Value == "64-bit", m.Groups["pref"].Value == "prefetchable"));
            return;
        }
        if (t.StartsWith("Bus: ", StringComparison.Ordinal))
        {
            var m = BusLine().Match(t);
            if (!m.Success)
            {
                throw new HostImportError(file, line, $"Bus line not understood: '{Clip(t)}'");
            }
            f.Secondary = int.Parse(m.Groups["s"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            f.Subordinate = int.Parse(m.Groups["u"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            f.IsBridge = true;
            return;
        }
        if ((t.StartsWith("Capabilities: ", StringComparison.Ordinal) || t.StartsWith("Express ", StringComparison.Ordinal)) && Express().Match(t) is { Success: true } ex)
        {
            f.Port = ex.Groups["t"].Value switch
            {
                "Root Port" => PortType.RootPort,
                "Upstream Port" => PortType.UpstreamPort,
                "Downstream Port" => PortType.DownstreamPort,
                "Legacy Endpoint" => PortType.LegacyEndpoint,
                "Root Complex Integrated Endpoint" => PortType.RootComplexEndpoint,
                "Endpoint" => PortType.Endpoint,
                "Root Complex Event Collector" => PortType.EventCollector,
                _ => PortType.PciBridge,
            };
            return;
        }
        if (Acs().Match(t) is { Success: true } acs)
        {
            var word = AcsWord(acs.Groups["flags"].Value, file, line);
            if (acs.Groups["w"].Value == "ap")
            {
                f.AcsCap = word;
            }
            else
            {
                f.AcsCtl = word;
            }
            return;
        }
        if (t.StartsWith("SltCap:", StringComparison.Ordinal) && t.Contains("HotPlug+", StringComparison.Ordinal) && t.Contains("Surprise+", StringComparison.Ordinal))
        {
            f.HotPlugSurprise = true;
            return;
        }
        if (t.StartsWith("Kernel driver in use: ", StringComparison.Ordinal))
        {
            f.Driver = t["Kernel driver in use: ".Length..].Trim();
            if (f.Driver == "thunderbolt")
            {
                host.Thunderbolt = true;
            }
        }
    }

    /// <summary>The ACS flag names in PCI_ACS_* bit order.</summary>
    public static readonly string[] AcsFlags = ["SrcValid", "TransBlk", "ReqRedir", "CmpltRedir", "UpstreamFwd", "EgressCtrl", "DirectTrans"];

    private static ushort AcsWord(string flags, string file, int line)
    {
        ushort w = 0;
        foreach (var tok in flags.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = tok.TrimEnd('+', '-');
            var bit = Array.IndexOf(AcsFlags, name);
            if (bit < 0 || tok.Length == name.Length)
            {
                throw new HostImportError(file, line, $"ACS flag '{tok}' is not one of {string.Join(", ", AcsFlags)} followed by + or -");
            }
            if (tok.EndsWith('+'))
            {
                w |= (ushort)(1 << bit);
            }
        }
        return w;
    }

    /// <summary>Takes vendor, device and class from an lspci name; a class only from its words when no code is shown.</summary>
    private static void Describe(HostFunction f, string text, uint? cls)
    {
        f.Description ??= text.Length > 100 ? text[..100] : text;
        if (VendorDevice().Matches(text) is { Count: > 0 } vd)
        {
            var last = vd[^1];
            f.Vendor ??= (uint)int.Parse(last.Groups["v"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            f.DeviceId ??= (uint)int.Parse(last.Groups["d"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        }
        if (cls is { } c)
        {
            if (f.Class is null || f.ClassGuessed)
            {
                f.Class = c;
                f.ClassGuessed = false;
            }
            return;
        }
        if (f.Class is null && DeviceNames.ClassFromText(text) is { } guess)
        {
            f.Class = guess;
            f.ClassGuessed = true;
        }
    }

    private static string Clip(string s) => s.Length > 80 ? s[..80] + "…" : s;
}
