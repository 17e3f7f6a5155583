using PhysDma.Platform;

namespace PhysDma.Scenarios.Matrix;

/// <summary>
/// <c>--device ALIAS=NAME</c>: the device a scenario calls ALIAS is the machine's NAME. Applied to every machine
/// of a matrix that has NAME (the device is renamed ALIAS); a machine without NAME is left as it is.
/// </summary>
/// <remarks>Kept to this one function so that <c>run --device</c>'s own resolution can replace it.</remarks>
public static class DeviceAliases
{
    public static IReadOnlyList<(string Alias, string Name)> Parse(IEnumerable<string> args)
    {
        var list = new List<(string, string)>();
        foreach (var a in args)
        {
            var eq = a.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == a.Length - 1)
            {
                throw new ScenarioError("--device", 0, "", $"'{a}': expected ALIAS=NAME, e.g. --device nic0=eth1");
            }
            list.Add((a[..eq], a[(eq + 1)..]));
        }
        return list;
    }

    public static MachineConfig Apply(MachineConfig m, IReadOnlyList<(string Alias, string Name)> aliases)
    {
        foreach (var (alias, name) in aliases)
        {
            if (alias == name || !m.Devices.Any(d => d.Name == name))
            {
                continue;
            }
            // The machine's own ALIAS, if it has one, gives way to the device the user named.
            m = m with { Devices = [.. m.Devices.Where(d => d.Name != alias).Select(d => d.Name == name ? d with { Name = alias } : d)] };
        }
        return m;
    }
}
