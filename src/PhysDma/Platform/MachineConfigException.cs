namespace PhysDma.Platform;

/// <summary>
/// Which property of a <see cref="MachineConfig"/> was wrong, in the config's own names: property names joined
/// by dots, list items by index, e.g. <c>PageSize</c>, <c>Devices[2].P2PMem.Bar</c>, <c>Iommu.FlushQueue.Entries</c>.
/// The layer that read a machine file maps it back to the file's field name.
/// </summary>
internal readonly record struct ConfigProperty(string Path)
{
    public static ConfigProperty Of(string property) => new(property);

    /// <summary>Item <paramref name="index"/> of the list property <paramref name="list"/>.</summary>
    public static ConfigProperty Item(string list, int index) => new($"{list}[{index}]");

    /// <summary>A property of this one.</summary>
    public ConfigProperty Then(string property) => new($"{Path}.{property}");

    /// <summary>Item <paramref name="index"/> of the list property <paramref name="list"/> of this one.</summary>
    public ConfigProperty Then(string list, int index) => new($"{Path}.{list}[{index}]");

    public override string ToString() => Path;
}

/// <summary>A machine description that cannot be built; <see cref="Property"/> says which config property is wrong.</summary>
internal sealed class MachineConfigException(ConfigProperty property, string message) : Exception(message)
{
    public ConfigProperty Property { get; } = property;
}
