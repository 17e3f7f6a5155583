using System.Globalization;

namespace PhysDma.Hosts;

/// <summary>
/// The imported PCI hierarchy mapped onto the machine file's nodes: a host bridge per root bus, a
/// <c>root_port</c> per root port, a <c>switch</c> per switch upstream port (its downstream ports are implied
/// by the slots below it), devices below the nearest of these (root-complex integrated endpoints directly
/// below their host bridge).
/// </summary>
internal sealed class Tree(HostInfo host, List<string> assumed, List<string> notes)
{
    private readonly Dictionary<PciAddress, PciAddress?> _upstream = [];
    private readonly Dictionary<PciAddress, PortType> _kind = [];
    private readonly Dictionary<PciAddress, string> _deviceParent = [];
    private readonly Dictionary<string, bool> _external = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string?> _nodeParent = new(StringComparer.Ordinal);
    private readonly Dictionary<(int, int), string> _hbNames = [];
    private readonly Dictionary<PciAddress, (int, int)> _hbOf = [];
    private int _rp;
    private int _sw;

    public List<ImportedNode> Nodes { get; } = [];
    public List<HostFunction> Endpoints { get; } = [];
    public List<HostBridgeInfo> HostBridges { get; } = [];
    public List<string> DownstreamComments { get; } = [];

    public string NameOf(HostBridgeInfo hb) => _hbNames[(hb.Domain, hb.RootBus)];

    public HostBridgeInfo HostBridgeOf(HostFunction f) => host.HostBridges[_hbOf[f.Address]];

    public string ParentName(HostFunction f) => _deviceParent[f.Address];

    public (uint Vendor, uint Device) HostBridgeIds(HostBridgeInfo hb) =>
        host.Functions.TryGetValue(new PciAddress(hb.Domain, hb.RootBus, 0, 0), out var f) && f.Class is { } c && (c >> 8) == 0x0600
            ? (f.Vendor ?? 0, f.DeviceId ?? 0)
            : (0, 0);

    public bool Untrusted(HostFunction f)
    {
        if (f.Removable)
        {
            return true;
        }
        for (var p = _deviceParent[f.Address]; p is not null; p = _nodeParent.GetValueOrDefault(p))
        {
            if (_external.GetValueOrDefault(p))
            {
                return true;
            }
        }
        return false;
    }

    public void Build()
    {
        var funcs = host.Functions.Values.ToList();
        foreach (var f in funcs)
        {
            _upstream[f.Address] = Upstream(f);
        }
        // Buses with functions but no bridge leading to them are root buses (or sit behind a bridge seen only by its bus).
        foreach (var f in funcs)
        {
            if (_upstream[f.Address] is null && !host.AnonymousBridges.ContainsKey((f.Address.Domain, f.Address.Bus)))
            {
                host.Bridge(f.Address.Domain, f.Address.Bus).Via ??= "the devices on it";
            }
        }
        var guessed = 0;
        foreach (var f in funcs)
        {
            _kind[f.Address] = Kind(f, ref guessed);
        }
        if (guessed > 0)
        {
            assumed.Add($"{guessed} bridge(s): port type from their place in the tree (on a root bus: root port; below a root or downstream port: switch upstream port; below that: downstream port)");
        }
        foreach (var hb in host.HostBridges.Values)
        {
            var name = $"hb{HostBridges.Count}";
            _hbNames[(hb.Domain, hb.RootBus)] = name;
            HostBridges.Add(hb);
            var comments = new List<string>
            {
                string.Create(CultureInfo.InvariantCulture, $"host bridge to bus {hb.Domain:x4}:{hb.RootBus:x2} (from {hb.Via ?? "the input"})"),
            };
            if (hb.DmaRanges.Count > 0)
            {
                comments.Add("inbound window (dma-ranges): " + string.Join(", ", hb.DmaRanges.Select(r =>
                    $"CPU {Core.Hex.Format(r.Cpu)}+{Core.Hex.Format(r.Size)} at bus {Core.Hex.Format(r.Dma)}")));
            }
            if (hb.BusOffset is { } off && off != 0)
            {
                comments.Add($"outbound MEM window: bus address = CPU address - {Core.Hex.Format(off)}");
            }
            Nodes.Add(new ImportedNode(name, "host_bridge", null, new PciAddress(hb.Domain, hb.RootBus, 0, 0), false, false, comments));
            _nodeParent[name] = null;
            VisitBus(hb.Domain, hb.RootBus, name, (hb.Domain, hb.RootBus), depth: 0);
        }
        foreach (var f in funcs.Where(f => !_hbOf.ContainsKey(f.Address)))
        {
            notes.Add($"{f.Address}: its upstream bridges form a loop in the input; left out");
        }
    }

    private PciAddress? Upstream(HostFunction f)
    {
        if (f.Parent is { } p && p != f.Address && host.Functions.ContainsKey(p))
        {
            return p;
        }
        HostFunction? best = null;
        foreach (var b in host.Functions.Values)
        {
            if (b.Address == f.Address || b.Address.Domain != f.Address.Domain || b.Secondary is not { } sec || sec == b.Address.Bus)
            {
                continue;
            }
            var sub = Math.Max(b.Subordinate ?? sec, sec);
            if (sec <= f.Address.Bus && f.Address.Bus <= sub && (best is null || sec > best.Secondary))
            {
                best = b;
            }
        }
        return best?.Address;
    }

    private PortType Kind(HostFunction f, ref int guessed, int depth = 0)
    {
        if (_kind.TryGetValue(f.Address, out var known))
        {
            return known;
        }
        if (!f.IsBridgeLike)
        {
            return PortType.Endpoint;
        }
        if (f.Port is PortType.RootPort or PortType.UpstreamPort or PortType.DownstreamPort or PortType.PciBridge)
        {
            return f.Port;
        }
        guessed++;
        if (_upstream[f.Address] is not { } up || depth > 32)
        {
            return PortType.RootPort;
        }
        var above = Kind(host.Functions[up], ref guessed, depth + 1);
        _kind[up] = above;
        return above switch
        {
            PortType.RootPort or PortType.DownstreamPort => PortType.UpstreamPort,
            PortType.UpstreamPort => PortType.DownstreamPort,
            _ => PortType.PciBridge,
        };
    }

    /// <summary>Functions on <paramref name="bus"/> that hang from the bus itself (no bridge function known above them).</summary>
    private IEnumerable<HostFunction> OnBus(int domain, int bus) =>
        host.Functions.Values.Where(f => f.Address.Domain == domain && f.Address.Bus == bus && _upstream[f.Address] is null);

    private IEnumerable<HostFunction> Below(PciAddress bridge) =>
        host.Functions.Values.Where(f => _upstream[f.Address] == bridge);

    private void VisitBus(int domain, int bus, string parent, (int, int) hb, int depth)
    {
        foreach (var f in OnBus(domain, bus))
        {
            Visit(f, parent, hb, depth);
        }
        foreach (var ((d, b), anon) in host.AnonymousBridges)
        {
            if (d == domain && anon.ParentBus == bus && depth < 32)
            {
                var isRoot = _hbNames.ContainsValue(parent) && parent.StartsWith("hb", StringComparison.Ordinal);
                var name = isRoot ? $"rp{_rp++}" : $"sw{_sw++}";
                Nodes.Add(new ImportedNode(name, isRoot ? "root_port" : "switch", parent, null, false, false,
                    [string.Create(CultureInfo.InvariantCulture, $"bridge to bus {d:x4}:{b:x2}, seen only by its window {Core.Hex.Format(anon.Base)}+{Core.Hex.Format(anon.Size)} (address and type unknown)")]));
                _nodeParent[name] = parent;
                assumed.Add(string.Create(CultureInfo.InvariantCulture, $"{name}: the bridge to bus {d:x4}:{b:x2} is a {(isRoot ? "root port" : "switch")} with no ACS redirect (the input shows only its bus)"));
                VisitBus(domain, b, name, hb, depth + 1);
            }
        }
    }

    private bool IsHostBridgeName(string n) => _hbNames.ContainsValue(n);

    private void Visit(HostFunction f, string parent, (int, int) hb, int depth)
    {
        _hbOf[f.Address] = hb;
        if (depth > 64)
        {
            return;
        }
        var kind = _kind[f.Address];
        var portComment = PortComment(f, kind);
        switch (kind)
        {
            case PortType.Endpoint:
                _deviceParent[f.Address] = parent;
                Endpoints.Add(f);
                return;
            case PortType.DownstreamPort when !IsHostBridgeName(parent) && parent.StartsWith("sw", StringComparison.Ordinal):
                DownstreamComments.Add(portComment);
                var sw = Nodes.FindIndex(n => n.Name == parent);
                var node = Nodes[sw];
                var comments = node.Comments.Append(portComment).ToList();
                Nodes[sw] = node with { Comments = comments, AcsRedirect = node.AcsRedirect || MachineWriter.Redirects(f.AcsCtl) };
                foreach (var c in Below(f.Address))
                {
                    Visit(c, parent, hb, depth + 1);
                }
                return;
        }
        string name;
        string type;
        if (kind == PortType.RootPort || IsHostBridgeName(parent))
        {
            name = $"rp{_rp++}";
            type = "root_port";
            if (kind != PortType.RootPort)
            {
                assumed.Add($"{name} ({f.Address}): a {kind} on a root bus is modelled as a root port");
            }
        }
        else
        {
            name = $"sw{_sw++}";
            type = "switch";
        }
        var external = false;
        if (type == "root_port")
        {
            var subtree = Subtree(f.Address).ToList();
            if (!f.Removable && subtree.Any(s => s.Removable))
            {
                external = true;
            }
            else if (host.Thunderbolt && (f.HotPlugSurprise || (subtree.Any(IsThunderbolt) && subtree.Any(s => s.IsBridgeLike))))
            {
                external = true;
                assumed.Add($"{name} ({f.Address}) is external-facing: a Thunderbolt/USB4 host and a root port {(f.HotPlugSurprise ? "with surprise hot-plug" : "above a Thunderbolt controller's PCIe switch")} (the firmware's ExternalFacingPort mark is not in the input)");
            }
        }
        _external[name] = external;
        _nodeParent[name] = parent;
        Nodes.Add(new ImportedNode(name, type, parent, f.Address, type == "root_port" && MachineWriter.Redirects(f.AcsCtl), external, [portComment]));
        foreach (var c in Below(f.Address))
        {
            Visit(c, name, hb, depth + 1);
        }
    }

    private IEnumerable<HostFunction> Subtree(PciAddress a)
    {
        var stack = new Stack<PciAddress>();
        stack.Push(a);
        var seen = new HashSet<PciAddress>();
        while (stack.Count > 0)
        {
            var x = stack.Pop();
            foreach (var c in Below(x))
            {
                if (seen.Add(c.Address))
                {
                    yield return c;
                    stack.Push(c.Address);
                }
            }
        }
    }

    private static bool IsThunderbolt(HostFunction f) =>
        f.Driver == "thunderbolt" || f.Class == 0x0c0340
        || (f.Description is { } d && (d.Contains("Thunderbolt", StringComparison.OrdinalIgnoreCase) || d.Contains("USB4", StringComparison.Ordinal)));

    private static string PortComment(HostFunction f, PortType kind)
    {
        var what = kind switch
        {
            PortType.RootPort => "root port",
            PortType.UpstreamPort => "switch upstream port",
            PortType.DownstreamPort => "downstream port",
            PortType.PciBridge => "PCI bridge",
            _ => "device",
        };
        var s = $"{what} {MachineWriter.Describe(f)}";
        if (f.Secondary is { } sec)
        {
            s += string.Create(CultureInfo.InvariantCulture, $"; bus {sec:x2}{(f.Subordinate is { } sub && sub != sec ? $"-{sub:x2}" : "")}");
        }
        if (f.AcsCap is { } cap)
        {
            s += "; ACSCap " + MachineWriter.AcsText(cap);
        }
        if (f.AcsCtl is { } ctl)
        {
            s += "; ACSCtl " + MachineWriter.AcsText(ctl);
        }
        if (f.HotPlugSurprise)
        {
            s += "; hot-plug (surprise)";
        }
        return s;
    }
}
