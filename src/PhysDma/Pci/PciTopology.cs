using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Pci;

/// <summary>What a node of the PCI hierarchy is, as the kernel's <c>pci_upstream_bridge</c> walk sees it.</summary>
internal enum PciNodeKind
{
    Endpoint,
    RootPort,
    SwitchUpstreamPort,
    SwitchDownstreamPort,
}

/// <summary>
/// One <c>struct pci_dev</c> on an upstream path: an endpoint function, a root port, or a switch's upstream
/// or downstream port. A switch in the machine file is an upstream port with one downstream port per
/// slot below it (the functions of one multi-function device share a slot).
/// </summary>
internal sealed class PciNode
{
    internal PciNode(string name, PciNodeKind kind, PciNode? upstream, bool acsRedirect, string hostBridge)
    {
        Name = name;
        Kind = kind;
        Upstream = upstream;
        AcsRedirect = acsRedirect;
        HostBridge = hostBridge;
    }

    public string Name { get; }
    public PciNodeKind Kind { get; }

    /// <summary><c>pci_upstream_bridge</c>: null for a root port (it sits on the root bus).</summary>
    public PciNode? Upstream { get; }

    /// <summary><c>pci_bridge_has_acs_redir</c>: ACS request/completion redirect or egress control enabled.</summary>
    public bool AcsRedirect { get; }

    /// <summary>The host bridge this node is below.</summary>
    public string HostBridge { get; }

    /// <summary>
    /// <c>pci_name</c>: the function's address, <c>DDDD:BB:DD.F</c>. Endpoints have the machine file's <c>bdf</c>;
    /// ports get the address depth-first enumeration gives them (see <see cref="PciTopology"/>).
    /// </summary>
    public string Address { get; internal set; } = "";

    public override string ToString() => Name;
}

/// <summary>One BAR of an endpoint: where the CPU sees it and where the PCI bus sees it.</summary>
internal sealed record PciBar(string Owner, int Index, PhysAddr CpuBase, ulong BusBase, ulong Size)
{
    /// <summary><c>pci_bus_address − pci_resource_start</c>: add to a CPU address to get the bus address.</summary>
    public ulong BusOffset => BusBase - CpuBase.Value;

    public bool ContainsCpu(PhysAddr p) => p >= CpuBase && p.Value - CpuBase.Value < Size;
    public bool ContainsBus(ulong a) => a >= BusBase && a - BusBase < Size;
}

/// <summary>
/// The PCI hierarchy of a machine: host bridges (with their MEM windows and peer-to-peer permission),
/// root ports, switches and endpoint functions, and every endpoint's BARs.
/// </summary>
internal sealed class PciTopology
{
    private readonly Dictionary<string, PciNodeConfig> _configs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PciNode> _endpoints = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PciNode> _ports = new(StringComparer.Ordinal);
    private readonly List<PciBar> _bars = [];
    private readonly Dictionary<string, string> _bdf = new(StringComparer.Ordinal);

    public PciTopology(MachineConfig config)
    {
        for (var i = 0; i < config.Pci.Count; i++)
        {
            var n = config.Pci[i];
            if (!_configs.TryAdd(n.Name, n))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Pci), i).Then(nameof(PciNodeConfig.Name)), $"PCI node '{n.Name}' is defined twice");
            }
            if (n.Type == PciNodeType.HostBridge)
            {
                if (n.Parent is not null)
                {
                    throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Pci), i).Then(nameof(PciNodeConfig.Parent)), $"host bridge '{n.Name}' cannot have a parent");
                }
                continue;
            }
            if (n.Parent is null || !_configs.TryGetValue(n.Parent, out var parent))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Pci), i).Then(nameof(PciNodeConfig.Parent)),
                    n.Parent is null ? $"PCI node '{n.Name}' needs a parent" : $"PCI node '{n.Name}': parent '{n.Parent}' is not defined before it");
            }
            var ok = n.Type switch
            {
                PciNodeType.RootPort => parent.Type == PciNodeType.HostBridge,
                _ => parent.Type is PciNodeType.RootPort or PciNodeType.Switch,
            };
            if (!ok)
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Pci), i).Then(nameof(PciNodeConfig.Parent)),
                    $"a {Describe(n.Type)} cannot sit below a {Describe(parent.Type)} ('{n.Parent}')");
            }
        }
        for (var i = 0; i < config.Devices.Count; i++)
        {
            var d = config.Devices[i];
            if (d.Parent is null)
            {
                continue;
            }
            var bdf = d.Bdf ?? throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.Bdf)), $"PCI device '{d.Name}' needs a bdf");
            if (_bdf.Values.Contains(bdf))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.Bdf)), $"bdf {bdf} is used twice");
            }
            _bdf[d.Name] = bdf;
            var slot = bdf[..^2];
            if (_configs[d.Parent].Type == PciNodeType.HostBridge)
            {
                // A root-complex integrated endpoint: on the root bus, no upstream bridge.
                _endpoints[d.Name] = new PciNode(d.Name, PciNodeKind.Endpoint, null, false, d.Parent);
            }
            else
            {
                var upstream = PortFor(d.Parent, slot);
                _endpoints[d.Name] = new PciNode(d.Name, PciNodeKind.Endpoint, upstream, false, upstream.HostBridge);
            }
            foreach (var b in d.Bars)
            {
                _bars.Add(new PciBar(d.Name, b.Bar, new PhysAddr(b.Base), b.BusBase, b.Size));
            }
        }
        AssignPortAddresses(config);
    }

    /// <summary>
    /// Machine files give endpoints their addresses; bridges get the ones the kernel's depth-first bus
    /// enumeration gives them, worked back from the endpoints' buses. Root ports sit on bus 00 of their host
    /// bridge as devices 01, 02, ... in machine-file order; a switch's upstream port sits on its root or
    /// downstream port's secondary bus (one below the switch's internal bus) as device 00; its downstream
    /// ports sit on the internal bus (one below the lowest secondary bus among them) as devices 00, 01, ... in
    /// the order of their secondary buses. These are the names <c>pci=disable_acs_redir=</c> takes.
    /// </summary>
    private void AssignPortAddresses(MachineConfig config)
    {
        foreach (var (device, bdf) in _bdf)
        {
            _endpoints[device].Address = bdf;
        }
        var children = new Dictionary<PciNode, List<PciNode>>();
        foreach (var n in _endpoints.Values.Concat(_ports.Values))
        {
            if (n.Upstream is { } up)
            {
                if (!children.TryGetValue(up, out var list))
                {
                    children[up] = list = [];
                }
                list.Add(n);
            }
        }
        // An address is DOMAIN:BB:DD.F; the domain may have more than four digits (a VMD-style synthetic domain).
        int Domain(PciNode n) => n.Kind == PciNodeKind.Endpoint ? Convert.ToInt32(n.Address.Split(':')[0], 16) : children[n].Min(Domain);
        int Secondary(PciNode port) => children[port].Min(OwnBus);
        int Internal(PciNode usp) => children[usp].Min(Secondary) - 1;
        int OwnBus(PciNode n) => n.Kind switch
        {
            PciNodeKind.Endpoint => Convert.ToInt32(n.Address.Split(':')[1], 16),
            PciNodeKind.SwitchUpstreamPort => Internal(n) - 1,
            PciNodeKind.SwitchDownstreamPort => Internal(n.Upstream!),
            _ => 0,
        };
        string Format(PciNode n, int bus, int dev) => $"{Domain(n):x4}:{Math.Max(bus, 0):x2}:{dev:x2}.0";

        var rootPorts = config.Pci.Where(p => p.Type == PciNodeType.RootPort).ToList();
        foreach (var port in _ports.Values)
        {
            port.Address = port.Kind switch
            {
                PciNodeKind.RootPort => Format(port, 0, 1 + rootPorts.Where(r => r.Parent == port.HostBridge).ToList().FindIndex(r => r.Name == port.Name)),
                PciNodeKind.SwitchUpstreamPort => Format(port, OwnBus(port), 0),
                _ => Format(port, OwnBus(port), children[port.Upstream!].OrderBy(Secondary).ToList().IndexOf(port)),
            };
        }
    }

    private static string Describe(PciNodeType t) => t switch
    {
        PciNodeType.HostBridge => "host bridge",
        PciNodeType.RootPort => "root port",
        _ => "switch",
    };

    /// <summary>The port a child in <paramref name="slot"/> of node <paramref name="parentName"/> hangs from.</summary>
    private PciNode PortFor(string parentName, string slot)
    {
        var cfg = _configs[parentName];
        if (cfg.Type == PciNodeType.RootPort)
        {
            return RootPort(cfg);
        }
        var key = $"{cfg.Name}/{slot}";
        if (!_ports.TryGetValue(key, out var dsp))
        {
            var usp = SwitchUpstream(cfg);
            dsp = new PciNode($"{cfg.Name}.dsp[{slot}]", PciNodeKind.SwitchDownstreamPort, usp, cfg.AcsRedirect, usp.HostBridge);
            _ports[key] = dsp;
        }
        return dsp;
    }

    private PciNode RootPort(PciNodeConfig cfg)
    {
        if (!_ports.TryGetValue(cfg.Name, out var rp))
        {
            rp = new PciNode(cfg.Name, PciNodeKind.RootPort, null, cfg.AcsRedirect, cfg.Parent!);
            _ports[cfg.Name] = rp;
        }
        return rp;
    }

    private PciNode SwitchUpstream(PciNodeConfig cfg)
    {
        if (!_ports.TryGetValue(cfg.Name, out var usp))
        {
            // A switch with its own address hangs from the downstream port of its slot, shared with any
            // other function in that slot (a switch's management endpoint).
            var above = PortFor(cfg.Parent!, cfg.Bdf is { } b ? b[..^2] : cfg.Name);
            usp = new PciNode(cfg.Name, PciNodeKind.SwitchUpstreamPort, above, false, above.HostBridge);
            _ports[cfg.Name] = usp;
        }
        return usp;
    }

    public IReadOnlyList<PciBar> Bars => _bars;

    public bool IsPci(string device) => _endpoints.ContainsKey(device);

    public PciNode? Endpoint(string device) => _endpoints.TryGetValue(device, out var n) ? n : null;

    public string? Bdf(string device) => _bdf.TryGetValue(device, out var b) ? b : null;

    public PciNodeConfig HostBridge(string name) => _configs[name];

    public PciBar? Bar(string device, int index) => _bars.FirstOrDefault(b => b.Owner == device && b.Index == index);

    // Both run on every device access: plain loops, since a LINQ predicate capturing the address
    // allocates a closure and a delegate per call.
    public PciBar? BarAtCpu(PhysAddr p)
    {
        foreach (var b in _bars)
        {
            if (b.ContainsCpu(p))
            {
                return b;
            }
        }
        return null;
    }

    public PciBar? BarAtBus(ulong a)
    {
        foreach (var b in _bars)
        {
            if (b.ContainsBus(a))
            {
                return b;
            }
        }
        return null;
    }

    /// <summary>The nodes from a device up to its root port (the device first).</summary>
    public IEnumerable<PciNode> UpstreamPath(string device)
    {
        for (var n = Endpoint(device); n is not null; n = n.Upstream)
        {
            yield return n;
        }
    }
}
