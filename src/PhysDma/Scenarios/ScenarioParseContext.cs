using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>What the steps parsed so far have named: the parser checks each name a later step uses against it.</summary>
internal sealed class ParseContext(MachineConfig machine)
{
    public MachineConfig Machine { get; } = machine;
    public HashSet<string> Buffers { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, string> Handles { get; } = new(StringComparer.Ordinal);

    public string Device(YNode n)
    {
        var name = n.AsName();
        if (!Machine.Devices.Any(d => d.Name == name))
        {
            throw n.Error($"unknown device '{name}' (this machine has: {string.Join(", ", Machine.Devices.Select(d => d.Name))})");
        }
        return name;
    }

    public string Buffer(YNode n)
    {
        var name = n.AsName();
        if (!Buffers.Contains(name))
        {
            throw n.Error($"unknown buffer '{name}' (no earlier alloc step names it)");
        }
        return name;
    }

    public HashSet<string> SgHandles { get; } = new(StringComparer.Ordinal);

    public HashSet<string> CoherentHandles { get; } = new(StringComparer.Ordinal);

    public HashSet<string> IovaStates { get; } = new(StringComparer.Ordinal);

    /// <summary>A new handle or state name, not used by any earlier step.</summary>
    public string NewHandle(YNode asNode, string dev)
    {
        var handle = asNode.AsName();
        if (Handles.ContainsKey(handle))
        {
            throw asNode.Error($"handle '{handle}' is already used by an earlier step");
        }
        Handles[handle] = dev;
        return handle;
    }

    public string CoherentHandle(YNode n)
    {
        var name = n.AsName();
        if (!CoherentHandles.Contains(name))
        {
            throw n.Error($"unknown coherent allocation '{name}' (no earlier alloc_coherent step made it with 'as:')");
        }
        return name;
    }

    public string IovaState(YNode n)
    {
        var name = n.AsName();
        if (!IovaStates.Contains(name))
        {
            throw n.Error($"unknown IOVA state '{name}' (no earlier iova_alloc step made it with 'as:')");
        }
        return name;
    }

    public string Handle(YNode n)
    {
        var name = n.AsName();
        if (!Handles.ContainsKey(name))
        {
            throw n.Error($"unknown handle '{name}' (no earlier map step made it with 'as:')");
        }
        if (SgHandles.Contains(name))
        {
            throw n.Error($"handle '{name}' is a scatter-gather mapping: use unmap_sg / sync_sg");
        }
        if (IovaStates.Contains(name))
        {
            throw n.Error($"'{name}' is an IOVA state: use iova_unlink / iova_destroy / iova_free");
        }
        return name;
    }

    public string AnyHandle(YNode n)
    {
        var name = n.AsName();
        if (!Handles.ContainsKey(name))
        {
            throw n.Error($"unknown handle '{name}' (no earlier map step made it with 'as:')");
        }
        return name;
    }

    public string SgHandle(YNode n)
    {
        var name = n.AsName();
        if (!Handles.ContainsKey(name))
        {
            throw n.Error($"unknown handle '{name}' (no earlier map_sg step made it with 'as:')");
        }
        if (!SgHandles.Contains(name))
        {
            throw n.Error($"handle '{name}' is not a scatter-gather mapping: use unmap / sync");
        }
        return name;
    }
}
