using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// <c>--device NAME=TARGET</c>: runs a scenario written for device <c>NAME</c> on another machine's device
/// <c>TARGET</c> (its name or its PCI address). The target takes the scenario's name; a device of the
/// machine that already had that name takes the target's old name (the two swap).
/// </summary>
internal static class DeviceAliases
{
    /// <summary>Parses one <c>NAME=TARGET</c> option value.</summary>
    public static (string Name, string Target) ParseOption(string value)
    {
        var eq = value.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0 || eq == value.Length - 1)
        {
            throw new ScenarioError("--device", 0, "", $"'{value}' is not NAME=TARGET (e.g. nic0=0000:3b:00.0 or nic0=eth1)");
        }
        return (value[..eq].Trim(), value[(eq + 1)..].Trim());
    }

    /// <summary>The machine with every alias applied, in order. An unknown target is an error naming it.</summary>
    public static MachineConfig Apply(MachineConfig machine, IReadOnlyList<(string Name, string Target)> aliases)
    {
        if (aliases.Count == 0)
        {
            return machine;
        }
        // Addresses a hand-written machine leaves out are the enumerated ones. A machine whose addresses
        // cannot be completed is reported when it is built; its written addresses still match here.
        try
        {
            machine = PciAddressing.Complete(machine);
        }
        catch (MachineConfigException)
        {
        }
        var devices = machine.Devices.ToList();
        foreach (var (name, target) in aliases)
        {
            var t = devices.FindIndex(d => d.Name == target);
            if (t < 0)
            {
                var bdf = target.Length == 7 ? "0000:" + target : target;
                t = devices.FindIndex(d => string.Equals(d.Bdf, bdf, StringComparison.OrdinalIgnoreCase));
            }
            if (t < 0)
            {
                throw new ScenarioError("--device", 0, "",
                    $"{name}={target}: machine '{machine.Name}' has no device '{target}' (devices: " +
                    string.Join(", ", devices.Select(d => d.Bdf is null ? d.Name : $"{d.Name} {d.Bdf}")) + ")");
            }
            var old = devices[t].Name;
            if (old == name)
            {
                continue;
            }
            var clash = devices.FindIndex(d => d.Name == name);
            if (clash >= 0)
            {
                devices[clash] = devices[clash] with { Name = old };
            }
            devices[t] = devices[t] with { Name = name };
        }
        return machine with { Devices = devices };
    }
}
