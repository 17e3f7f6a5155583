using System.Globalization;

namespace PhysDma.Platform;

/// <summary>
/// Fills in what a hand-written machine may leave out of its PCI devices, the way firmware and the PCI core
/// would: addresses (<c>bdf</c>) by depth-first bus numbering from each host bridge, and <c>untrusted</c>
/// for every device below an external-facing port (<c>set_pcie_untrusted</c>).
/// </summary>
/// <remarks>
/// Numbering: host bridges in file order, each on the next free root bus of its domain (a host bridge with a
/// <c>bdf</c> gives domain and root bus itself). On the root bus, device 0 is the host bridge and its children
/// take device numbers 1, 2, … in file order (PCI nodes first, then devices). A root port's secondary bus is
/// the next free bus number; its children take device numbers 0, 1, … there. A switch's upstream port takes
/// the next free bus as its internal bus, each child gets a downstream port (device 0, 1, … on the internal
/// bus) with the next free bus behind it, and sits at device 0 of that bus. A subtree is numbered completely
/// before its next sibling (depth first). Devices that already have a <c>bdf</c> keep it and take no number.
/// </remarks>
internal static class PciAddressing
{
    public static MachineConfig Complete(MachineConfig config)
    {
        if (config.Devices.All(d => d.Parent is null || d.Bdf is not null) && !config.Pci.Any(p => p.ExternalFacing))
        {
            return config;
        }
        var nodes = new Dictionary<string, PciNodeConfig>(StringComparer.Ordinal);
        foreach (var n in config.Pci)
        {
            nodes.TryAdd(n.Name, n);
        }
        var assigned = Enumerate(config, nodes);
        var taken = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var d in config.Devices)
        {
            if (d.Bdf is not null)
            {
                taken.TryAdd(d.Bdf, d.Name);
            }
        }
        var devices = new List<DeviceConfig>(config.Devices.Count);
        for (var i = 0; i < config.Devices.Count; i++)
        {
            var d = config.Devices[i];
            if (d.Bdf is null && assigned.TryGetValue(i, out var bdf))
            {
                if (taken.TryGetValue(bdf, out var other))
                {
                    throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.Bdf)),
                        $"device '{d.Name}' has no bdf and the address it would be enumerated at, {bdf}, is device '{other}''s; give '{d.Name}' a bdf");
                }
                taken[bdf] = d.Name;
                d = d with { Bdf = bdf };
            }
            if (!d.Untrusted && BelowExternalFacing(d.Parent, nodes))
            {
                d = d with { Untrusted = true };
            }
            devices.Add(d);
        }
        return config with { Devices = devices };
    }

    private static bool BelowExternalFacing(string? parent, Dictionary<string, PciNodeConfig> nodes)
    {
        for (var hops = 0; parent is not null && hops < 256 && nodes.TryGetValue(parent, out var n); hops++, parent = n.Parent)
        {
            if (n.ExternalFacing)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Device index → enumerated address, for devices below a PCI node of this machine.</summary>
    private static Dictionary<int, string> Enumerate(MachineConfig config, Dictionary<string, PciNodeConfig> nodes)
    {
        var result = new Dictionary<int, string>();
        var nextBus = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var hb in config.Pci.Where(p => p.Type == PciNodeType.HostBridge))
        {
            var domain = "0000";
            var root = -1;
            if (hb.Bdf is { Length: >= 12 } b && b.LastIndexOf(':') is var c && c > 0
                && int.TryParse(b[(c - 2)..c], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var rb))
            {
                domain = b[..(c - 3)];
                root = rb;
            }
            var bus = nextBus.TryGetValue(domain, out var nb) ? nb : 0;
            if (root < 0)
            {
                root = bus;
            }
            var state = new State(domain, Math.Max(bus, root + 1), config, nodes, result);
            var devNo = 1;
            foreach (var child in Children(config, hb.Name))
            {
                state.Place(child, root, devNo++);
            }
            nextBus[domain] = state.NextBus;
        }
        return result;
    }

    /// <summary>A child of a PCI node: a PCI node (by name) or a device (by index).</summary>
    private readonly record struct Child(string? Node, int Device);

    private static IEnumerable<Child> Children(MachineConfig config, string parent)
    {
        foreach (var n in config.Pci)
        {
            if (n.Type != PciNodeType.HostBridge && n.Parent == parent)
            {
                yield return new Child(n.Name, -1);
            }
        }
        for (var i = 0; i < config.Devices.Count; i++)
        {
            var d = config.Devices[i];
            if (d.Parent == parent && d.Bdf is null)
            {
                yield return new Child(null, i);
            }
        }
    }

    private sealed class State(string domain, int nextBus, MachineConfig config, Dictionary<string, PciNodeConfig> nodes, Dictionary<int, string> result)
    {
        public int NextBus { get; private set; } = nextBus;

        private int TakeBus() => Math.Min(NextBus++, 255);

        private string Addr(int bus, int dev) =>
            string.Create(CultureInfo.InvariantCulture, $"{domain}:{bus & 0xff:x2}:{dev & 0x1f:x2}.0");

        /// <summary>Puts <paramref name="child"/> at <paramref name="bus"/>:<paramref name="dev"/>.0 and numbers what is below it.</summary>
        public void Place(Child child, int bus, int dev)
        {
            if (child.Node is null)
            {
                result[child.Device] = Addr(bus, dev);
                return;
            }
            var node = nodes[child.Node];
            if (node.Type == PciNodeType.RootPort)
            {
                var secondary = TakeBus();
                var d = 0;
                foreach (var c in Children(config, node.Name))
                {
                    Place(c, secondary, d++);
                }
                return;
            }
            // A switch: its upstream port is here; a downstream port per child on the internal bus.
            _ = TakeBus();
            var port = 0;
            foreach (var c in Children(config, node.Name))
            {
                _ = port++;
                Place(c, TakeBus(), 0);
            }
        }
    }
}
