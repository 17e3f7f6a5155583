using System.Globalization;

namespace PhysDma.Hosts;

/// <summary>Bad host input: a file that cannot be read or a line that cannot be understood.</summary>
internal sealed class HostImportError(string file, int line, string message) : Exception(message)
{
    public string File { get; } = file;
    public int Line { get; } = line;

    /// <summary><c>FILE:LINE: message</c> (no line when the whole file is at fault).</summary>
    public string Formatted => Line > 0 ? $"{File}:{Line}: {Message}" : $"{File}: {Message}";
}

/// <summary>The PCIe capability's device/port type (PCI_EXP_TYPE_*), or what a dump says instead.</summary>
internal enum PortType
{
    Unknown,
    Endpoint,
    LegacyEndpoint,
    RootComplexEndpoint,
    RootPort,
    UpstreamPort,
    DownstreamPort,
    PciBridge,
    EventCollector,
}

/// <summary>One memory BAR of a PCI function.</summary>
internal sealed record HostBar(int? Index, ulong Base, ulong Size, bool Is64, bool Prefetchable);

/// <summary>A PCI address, ordered the way lspci and sysfs list devices (domain, bus, device, function).</summary>
internal readonly record struct PciAddress(int Domain, int Bus, int Dev, int Fn) : IComparable<PciAddress>
{
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Domain:x4}:{Bus:x2}:{Dev:x2}.{Fn}");

    public int CompareTo(PciAddress o) =>
        Domain != o.Domain ? Domain.CompareTo(o.Domain) : Bus != o.Bus ? Bus.CompareTo(o.Bus) : Dev != o.Dev ? Dev.CompareTo(o.Dev) : Fn.CompareTo(o.Fn);

    /// <summary>Parses <c>[DOMAIN:]BB:DD.F</c>; the domain defaults to <paramref name="domain"/>.</summary>
    public static bool TryParse(string s, out PciAddress a, int domain = 0)
    {
        a = default;
        var parts = s.Split(':');
        if (parts.Length is < 2 or > 3)
        {
            return false;
        }
        var dom = domain;
        if (parts.Length == 3 && !int.TryParse(parts[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out dom))
        {
            return false;
        }
        var bus = parts[^2];
        var df = parts[^1].Split('.');
        if (df.Length != 2 || bus.Length != 2 || df[0].Length != 2 || df[1].Length != 1
            || !int.TryParse(bus, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var b)
            || !int.TryParse(df[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var d)
            || !int.TryParse(df[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var f) || d > 31 || f > 7)
        {
            return false;
        }
        a = new PciAddress(dom, b, d, f);
        return true;
    }
}

/// <summary>What is known about one PCI function, from whichever sources mention it.</summary>
internal sealed class HostFunction(PciAddress address)
{
    public PciAddress Address { get; } = address;
    public uint? Vendor { get; set; }
    public uint? DeviceId { get; set; }

    /// <summary>24-bit class code (base, sub, prog-if).</summary>
    public uint? Class { get; set; }

    /// <summary>True when <see cref="Class"/> was guessed from a device name.</summary>
    public bool ClassGuessed { get; set; }

    public string? Description { get; set; }
    public string? Driver { get; set; }
    public PortType Port { get; set; }

    /// <summary>Header type 1 (a PCI-to-PCI bridge), when known.</summary>
    public bool? IsBridge { get; set; }

    public int? Secondary { get; set; }
    public int? Subordinate { get; set; }

    /// <summary>The upstream bridge, when the source says (sysfs path, lspci -PP path, lspci -t tree).</summary>
    public PciAddress? Parent { get; set; }

    public List<HostBar> Bars { get; } = [];

    /// <summary>
    /// Adds a BAR: one with the same index replaces the earlier (a later assignment), one at the same base
    /// replaces an unindexed guess; an unindexed BAR never replaces a known one.
    /// </summary>
    public void AddBar(HostBar bar)
    {
        if (bar.Index is { } idx)
        {
            Bars.RemoveAll(b => b.Index == idx || (b.Index is null && b.Base == bar.Base));
            Bars.Add(bar);
            return;
        }
        if (!Bars.Any(b => b.Base <= bar.Base && bar.Base - b.Base < b.Size))
        {
            Bars.Add(bar);
            BarIndexGuessed = true;
        }
    }

    public bool BarIndexGuessed { get; set; }
    public int? DmaMaskBits { get; set; }
    public int? CoherentDmaMaskBits { get; set; }
    public int? IommuGroup { get; set; }

    /// <summary>ACS capability and control words (PCI_ACS_SV … PCI_ACS_DT), when the source shows them.</summary>
    public ushort? AcsCap { get; set; }

    public ushort? AcsCtl { get; set; }

    /// <summary>Hot-plug slot with surprise removal (SltCap HotPlug+ Surprise+).</summary>
    public bool HotPlugSurprise { get; set; }

    /// <summary>sysfs <c>removable</c> says "removable": below an external-facing port.</summary>
    public bool Removable { get; set; }

    public bool IsBridgeLike => IsBridge == true || Port is PortType.RootPort or PortType.UpstreamPort or PortType.DownstreamPort or PortType.PciBridge
        || (Class is { } c && (c >> 8) is 0x0604 or 0x0609);
}

/// <summary>A PCI host bridge (one root bus): its MEM windows and inbound DMA translation.</summary>
internal sealed class HostBridgeInfo(int domain, int bus)
{
    public int Domain { get; } = domain;
    public int RootBus { get; } = bus;
    public List<(ulong Base, ulong Size)> Windows { get; } = [];

    /// <summary>CPU address minus bus address of outbound MEM windows (0 on x86).</summary>
    public ulong? BusOffset { get; set; }

    /// <summary>Inbound windows (<c>dma-ranges</c>): CPU address, bus address, size.</summary>
    public List<(ulong Cpu, ulong Dma, ulong Size)> DmaRanges { get; } = [];

    public bool? DmaCoherent { get; set; }
    public string? Via { get; set; }
}

/// <summary>Everything an import learnt about a host, before it becomes a machine file.</summary>
internal sealed class HostInfo
{
    public string? Arch { get; set; }
    public ulong? PageSize { get; set; }
    public int? Cpus { get; set; }
    public string? Kernel { get; set; }
    public string? Model { get; set; }

    /// <summary>System RAM as [start, end) ranges, from /proc/iomem (preferred) or the boot log.</summary>
    public List<(ulong Start, ulong End)> Ram { get; } = [];

    public string? RamSource { get; set; }

    /// <summary>Top-level ranges /proc/iomem calls Reserved (or ACPI tables/NVS): not RAM in the model.</summary>
    public List<(ulong Start, ulong End, string Name)> Reserved { get; } = [];
    public List<(ulong Start, ulong End)> BootRam { get; } = [];
    public List<(ulong Start, ulong End)> E820Ram { get; } = [];
    public bool IomemHidden { get; set; }
    public ulong? MemTotal { get; set; }

    /// <summary>"Kernel code" and "Kernel rodata" from /proc/iomem, [start, end).</summary>
    public (ulong Start, ulong End)? KernelCode { get; set; }

    public (ulong Start, ulong End)? KernelRodata { get; set; }

    public SortedDictionary<(int Domain, int Bus), HostBridgeInfo> HostBridges { get; } = [];
    public SortedDictionary<PciAddress, HostFunction> Functions { get; } = [];

    /// <summary>Bridges the dump shows only by the bus behind them (iomem "PCI Bus 0000:01" nested in 0000:00).</summary>
    public SortedDictionary<(int Domain, int Bus), (int ParentBus, ulong Base, ulong Size)> AnonymousBridges { get; } = [];

    public bool? IommuPresent { get; set; }
    public string? IommuDriver { get; set; }
    public int? IommuAddressBits { get; set; }

    /// <summary>strict, lazy or passthrough, from the boot log or the groups' types.</summary>
    public string? IommuPolicy { get; set; }

    public string? IommuPolicySource { get; set; }
    public SortedDictionary<int, string> GroupTypes { get; } = [];
    public SortedSet<(ulong Start, ulong End, string Type)> IommuReserved { get; } = [];

    public ulong? SwiotlbSize { get; set; }
    public ulong? SwiotlbBase { get; set; }
    public int? SwiotlbAreas { get; set; }
    public string? SwiotlbSource { get; set; }

    /// <summary>The host has Thunderbolt/USB4 PCIe tunnelling (USB4 _OSC, NHI, DMA protection).</summary>
    public bool Thunderbolt { get; set; }

    /// <summary>What the sources were, for the file's header.</summary>
    public List<string> Sources { get; } = [];

    /// <summary>Things the import noticed that a reader should know (left-out BARs, guesses that are not defaults).</summary>
    public List<string> Notes { get; } = [];

    /// <summary>Inbound/outbound windows printed before the host bridge they belong to is named.</summary>
    internal List<(ulong Cpu, ulong Dma, ulong Size)> PendingInboundList { get; } = [];

    internal ulong? PendingOutbound { get; set; }

    public HostFunction Function(PciAddress a)
    {
        if (!Functions.TryGetValue(a, out var f))
        {
            f = new HostFunction(a);
            Functions[a] = f;
        }
        return f;
    }

    public HostBridgeInfo Bridge(int domain, int bus)
    {
        if (!HostBridges.TryGetValue((domain, bus), out var hb))
        {
            hb = new HostBridgeInfo(domain, bus);
            HostBridges[(domain, bus)] = hb;
        }
        return hb;
    }
}
