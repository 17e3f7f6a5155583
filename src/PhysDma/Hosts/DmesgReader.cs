using System.Globalization;
using System.Text.RegularExpressions;

namespace PhysDma.Hosts;

/// <summary>
/// Kernel log lines (<c>dmesg</c>, <c>journalctl -k</c>): PCI enumeration (functions, port types, BARs, bridge bus
/// ranges, root bus windows), IOMMU (DMAR / AMD-Vi / SMMU, default domain, TLB invalidation policy, groups,
/// RMRRs), swiotlb, PCIe inbound windows (<c>dma-ranges</c>), Thunderbolt/USB4, memory ranges, CPUs.
/// Lines it does not know are skipped: a log is free text.
/// </summary>
internal static partial class DmesgReader
{
    [GeneratedRegex(@"^(?:<\d+>)?\[\s*\d+\.\d+\]\s?")]
    private static partial Regex Stamp();

    [GeneratedRegex(@"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ )?kernel: ")]
    private static partial Regex Journal();

    [GeneratedRegex(@"^(?<drv>[\w-]+) (?<bdf>[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]): (?<msg>.*)$")]
    private static partial Regex DevLine();

    [GeneratedRegex(@"^\[(?<v>[0-9a-f]{4}):(?<d>[0-9a-f]{4})\] type (?<t>[0-9a-f]{2}) class 0x(?<c>[0-9a-f]{6})(?: (?<kind>.*))?$")]
    private static partial Regex Header();

    [GeneratedRegex(@"^(?:BAR (?<idx>\d)|reg 0x(?<reg>[0-9a-f]+):) \[mem (?<s>0x[0-9a-f]+)-(?<e>0x[0-9a-f]+)(?<flags>[^\]]*)\](?<tail>.*)$")]
    private static partial Regex Bar();

    [GeneratedRegex(@"^PCI bridge to \[bus (?<s>[0-9a-f]{2})(?:-(?<e>[0-9a-f]{2}))?\]")]
    private static partial Regex BridgeBus();

    [GeneratedRegex(@"^pci_bus (?<dom>[0-9a-f]{4,8}):(?<bus>[0-9a-f]{2}): root bus resource \[mem (?<s>0x[0-9a-f]+)-(?<e>0x[0-9a-f]+)[^\]]*\](?: \(bus address \[(?<bs>0x[0-9a-f]+)-(?<be>0x[0-9a-f]+)\]\))?")]
    private static partial Regex RootResource();

    [GeneratedRegex(@"PCI host bridge to bus (?<dom>[0-9a-f]{4,8}):(?<bus>[0-9a-f]{2})")]
    private static partial Regex HostBridge();

    [GeneratedRegex(@"software IO TLB: mapped \[mem (?<s>0x[0-9a-f]+)-(?<e>0x[0-9a-f]+)\]")]
    private static partial Regex SwiotlbMapped();

    [GeneratedRegex(@"software IO TLB: area num (?<n>\d+)")]
    private static partial Regex SwiotlbAreas();

    [GeneratedRegex(@"\bIB MEM (?<s>0x[0-9a-f]+)\.\.(?<e>0x[0-9a-f]+) -> (?<b>0x[0-9a-f]+)")]
    private static partial Regex Inbound();

    [GeneratedRegex(@"^\S+ \S+:\s+MEM (?<s>0x[0-9a-f]+)\.\.(?<e>0x[0-9a-f]+) -> (?<b>0x[0-9a-f]+)")]
    private static partial Regex Outbound();

    [GeneratedRegex(@"dma-ranges?.*?(?<c>0x[0-9a-f]+)\.\.(?<e>0x[0-9a-f]+) -> (?<b>0x[0-9a-f]+)")]
    private static partial Regex DmaRangesGeneric();

    [GeneratedRegex(@"^BIOS-e820: \[mem (?<s>0x[0-9a-f]+)-(?<e>0x[0-9a-f]+)\] usable")]
    private static partial Regex E820();

    [GeneratedRegex(@"^\s*node\s+\d+: \[mem (?<s>0x[0-9a-f]+)-(?<e>0x[0-9a-f]+)\]")]
    private static partial Regex NodeRange();

    [GeneratedRegex(@"RMRR base: (?<s>0x[0-9a-f]+) end: (?<e>0x[0-9a-f]+)")]
    private static partial Regex Rmrr();

    [GeneratedRegex(@"Host address width (?<w>\d+)")]
    private static partial Regex HostAddressWidth();

    [GeneratedRegex(@"(?:Brought up \d+ nodes?, (?<n>\d+) CPUs|Allowing (?<n>\d+) (?:present )?CPUs)")]
    private static partial Regex Cpus();

    [GeneratedRegex(@"^Linux version (?<v>\S+)")]
    private static partial Regex Version();

    [GeneratedRegex(@"^hcc params (?<p>0x[0-9a-f]+)")]
    private static partial Regex HccParams();

    public static bool Looks(string firstLine) => Stamp().IsMatch(firstLine) || Journal().IsMatch(firstLine);

    private static readonly string[] Markers =
    [
        "Linux version ", "Command line: ", "BIOS-e820: ", "DMAR: ", "AMD-Vi: ", "iommu: ", "software IO TLB: ", "pci_bus ", "PCI: ",
        "Machine model: ", "DMI: ", "Booting Linux", "smpboot: ", "ACPI: ",
    ];

    /// <summary>A log without timestamps (<c>dmesg -t</c>): one of its first lines is a kernel message PhysDma knows.</summary>
    public static bool LooksUnstamped(IEnumerable<string> lines) =>
        lines.Where(l => l.Trim().Length > 0).Take(50).Any(l =>
            Markers.Any(m => l.StartsWith(m, StringComparison.Ordinal)) || DevLine().IsMatch(l.TrimEnd('\r')));

    public static void Read(string[] lines, string file, HostInfo host)
    {
        host.Sources.Add($"{Path.GetFileName(file)} (kernel log)");
        for (var i = 0; i < lines.Length; i++)
        {
            var raw = lines[i].TrimEnd('\r');
            if (raw.Trim().Length == 0)
            {
                continue;
            }
            var s = Stamp().Replace(raw, "", 1);
            s = Journal().Replace(s, "", 1);
            try
            {
                ReadLine(s, host);
            }
            catch (FormatException e)
            {
                throw new HostImportError(file, i + 1, e.Message);
            }
            catch (OverflowException)
            {
                throw new HostImportError(file, i + 1, "a number does not fit in 64 bits");
            }
        }
    }

    private static ulong Hex(string s) => ulong.Parse(s.AsSpan(s.StartsWith("0x", StringComparison.Ordinal) ? 2 : 0), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private static int HexInt(string s) => int.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private static bool ReadLine(string s, HostInfo host)
    {
        if (Version().Match(s) is { Success: true } v)
        {
            host.Kernel ??= v.Groups["v"].Value;
            if (s.Contains("aarch64", StringComparison.Ordinal))
            {
                host.Arch ??= "arm64";
            }
            else if (s.Contains("x86_64", StringComparison.Ordinal) || s.Contains("-amd64", StringComparison.Ordinal))
            {
                host.Arch ??= "x86_64";
            }
            return false;
        }
        if (s.StartsWith("Machine model: ", StringComparison.Ordinal))
        {
            host.Model ??= s["Machine model: ".Length..].Trim();
            host.Arch ??= "arm64";
            return false;
        }
        if (s.StartsWith("DMI: ", StringComparison.Ordinal))
        {
            host.Model ??= s[5..].Trim();
            return false;
        }
        if (s.StartsWith("Booting Linux on physical CPU", StringComparison.Ordinal))
        {
            host.Arch ??= "arm64";
            return false;
        }
        if (E820().Match(s) is { Success: true } e8)
        {
            host.E820Ram.Add((Hex(e8.Groups["s"].Value), Hex(e8.Groups["e"].Value) + 1));
            return false;
        }
        if (NodeRange().Match(s) is { Success: true } nr)
        {
            var r = (Hex(nr.Groups["s"].Value), Hex(nr.Groups["e"].Value) + 1);
            if (!host.BootRam.Contains(r))
            {
                host.BootRam.Add(r);
            }
            return false;
        }
        if (Cpus().Match(s) is { Success: true } cp)
        {
            host.Cpus = int.Parse(cp.Groups["n"].Value, CultureInfo.InvariantCulture);
            return false;
        }
        if (SwiotlbMapped().Match(s) is { Success: true } sw)
        {
            var b = Hex(sw.Groups["s"].Value);
            var e = Hex(sw.Groups["e"].Value);
            // The kernel prints the end exclusive ("mapped [mem 0x74000000-0x78000000] (64MB)").
            var size = e - b + ((e & 0xfff) == 0xfff ? 1UL : 0UL);
            host.SwiotlbBase = b;
            host.SwiotlbSize = size;
            host.SwiotlbSource = "kernel log (software IO TLB: mapped)";
            return false;
        }
        if (SwiotlbAreas().Match(s) is { Success: true } sa)
        {
            host.SwiotlbAreas = int.Parse(sa.Groups["n"].Value, CultureInfo.InvariantCulture);
            return false;
        }
        if (s.Contains("DMA domain TLB invalidation policy: ", StringComparison.Ordinal))
        {
            host.IommuPolicy = s.Contains("lazy", StringComparison.Ordinal) ? "lazy" : "strict";
            host.IommuPolicySource = "kernel log (DMA domain TLB invalidation policy)";
            return false;
        }
        if (s.StartsWith("iommu: Default domain type: ", StringComparison.Ordinal))
        {
            if (s.Contains("Passthrough", StringComparison.Ordinal))
            {
                host.IommuPolicy = "passthrough";
                host.IommuPolicySource = "kernel log (Default domain type: Passthrough)";
            }
            return false;
        }
        if (s.StartsWith("DMAR: ", StringComparison.Ordinal) || s.StartsWith("DMAR-IR: ", StringComparison.Ordinal))
        {
            if (s.Contains("dmar0:", StringComparison.Ordinal) || s.Contains("DRHD base", StringComparison.Ordinal)
                || s.Contains("Intel(R) Virtualization Technology for Directed I/O", StringComparison.Ordinal))
            {
                host.IommuPresent ??= true;
                host.IommuDriver ??= "intel-iommu (VT-d)";
            }
            if (s.Contains("IOMMU disabled", StringComparison.Ordinal))
            {
                host.IommuPresent = false;
            }
            if (Rmrr().Match(s) is { Success: true } rm)
            {
                host.IommuReserved.Add((Hex(rm.Groups["s"].Value), Hex(rm.Groups["e"].Value) + 1, "direct"));
            }
            if (HostAddressWidth().Match(s) is { Success: true } hw)
            {
                host.IommuAddressBits = int.Parse(hw.Groups["w"].Value, CultureInfo.InvariantCulture);
            }
            return false;
        }
        if (s.StartsWith("AMD-Vi: ", StringComparison.Ordinal) || s.Contains(": AMD-Vi: ", StringComparison.Ordinal))
        {
            host.IommuPresent ??= true;
            host.IommuDriver ??= "amd-iommu (AMD-Vi)";
            return false;
        }
        if (s.Contains("arm-smmu", StringComparison.Ordinal) && (s.Contains("probing hardware configuration", StringComparison.Ordinal) || s.Contains("SMMUv", StringComparison.Ordinal)))
        {
            host.IommuPresent ??= true;
            host.IommuDriver ??= "arm-smmu";
            return false;
        }
        if (s.StartsWith("ACPI: USB4 _OSC: OS controls", StringComparison.Ordinal) && s.Contains("PCIe+", StringComparison.Ordinal))
        {
            host.Thunderbolt = true;
            return false;
        }
        if (HostBridge().Match(s) is { Success: true } hb)
        {
            var b = host.Bridge(HexInt(hb.Groups["dom"].Value), HexInt(hb.Groups["bus"].Value));
            b.Via ??= "kernel log";
            foreach (var pending in PendingInbound(host))
            {
                b.DmaRanges.Add(pending);
            }
            if (host.PendingOutbound is { } po)
            {
                b.BusOffset = po;
                host.PendingOutbound = null;
            }
            return true;
        }
        if (RootResource().Match(s) is { Success: true } rr)
        {
            var b = host.Bridge(HexInt(rr.Groups["dom"].Value), HexInt(rr.Groups["bus"].Value));
            var start = Hex(rr.Groups["s"].Value);
            var w = (start, Hex(rr.Groups["e"].Value) - start + 1);
            if (!b.Windows.Contains(w))
            {
                b.Windows.Add(w);
            }
            if (rr.Groups["bs"].Success)
            {
                b.BusOffset = start - Hex(rr.Groups["bs"].Value);
            }
            return true;
        }
        if (Inbound().Match(s) is { Success: true } ib)
        {
            var cpu = Hex(ib.Groups["s"].Value);
            host.PendingInboundList.Add((cpu, Hex(ib.Groups["b"].Value), Hex(ib.Groups["e"].Value) - cpu + 1));
            return false;
        }
        if (Outbound().Match(s) is { Success: true } ob && !s.Contains("IB MEM", StringComparison.Ordinal))
        {
            host.PendingOutbound = Hex(ob.Groups["s"].Value) - Hex(ob.Groups["b"].Value);
            return false;
        }
        if (DmaRangesGeneric().Match(s) is { Success: true } dr)
        {
            var cpu = Hex(dr.Groups["c"].Value);
            host.PendingInboundList.Add((cpu, Hex(dr.Groups["b"].Value), Hex(dr.Groups["e"].Value) - cpu + 1));
            return false;
        }
        if (DevLine().Match(s) is not { Success: true } dl)
        {
            return false;
        }
        if (!PciAddress.TryParse(dl.Groups["bdf"].Value, out var a))
        {
            return false;
        }
        var drv = dl.Groups["drv"].Value;
        var msg = dl.Groups["msg"].Value;
        if (msg.StartsWith("Adding to iommu group ", StringComparison.Ordinal))
        {
            host.Function(a).IommuGroup = int.Parse(msg["Adding to iommu group ".Length..].Trim(), CultureInfo.InvariantCulture);
            host.IommuPresent ??= true;
            return true;
        }
        if (drv is "pci" or "pcieport")
        {
            var f = host.Function(a);
            if (Header().Match(msg) is { Success: true } h)
            {
                f.Vendor = (uint)HexInt(h.Groups["v"].Value);
                f.DeviceId = (uint)HexInt(h.Groups["d"].Value);
                f.Class = (uint)HexInt(h.Groups["c"].Value);
                f.ClassGuessed = false;
                f.IsBridge = h.Groups["t"].Value == "01";
                if (h.Groups["kind"].Success)
                {
                    f.Port = h.Groups["kind"].Value switch
                    {
                        "PCIe Root Port" => PortType.RootPort,
                        "PCIe Switch Upstream Port" => PortType.UpstreamPort,
                        "PCIe Switch Downstream Port" => PortType.DownstreamPort,
                        "PCIe Endpoint" => PortType.Endpoint,
                        "PCIe Legacy Endpoint" => PortType.LegacyEndpoint,
                        "PCIe Root Complex Integrated Endpoint" => PortType.RootComplexEndpoint,
                        "PCIe Root Complex Event Collector" => PortType.EventCollector,
                        "PCIe to PCI/PCI-X bridge" or "conventional PCI bridge" => PortType.PciBridge,
                        _ => f.Port,
                    };
                }
            }
            else if (Bar().Match(msg) is { Success: true } bar)
            {
                var start = Hex(bar.Groups["s"].Value);
                var end = Hex(bar.Groups["e"].Value);
                var idx = bar.Groups["idx"].Success ? int.Parse(bar.Groups["idx"].Value, CultureInfo.InvariantCulture) : (HexInt(bar.Groups["reg"].Value) - 0x10) / 4;
                var flags = bar.Groups["flags"].Value;
                if (idx is >= 0 and <= 5 && end > start && !bar.Groups["tail"].Value.Contains("can't", StringComparison.Ordinal))
                {
                    f.AddBar(new HostBar(idx, start, end - start + 1, flags.Contains("64bit", StringComparison.Ordinal), flags.Contains("pref", StringComparison.Ordinal)));
                }
            }
            else if (BridgeBus().Match(msg) is { Success: true } bb)
            {
                f.Secondary = HexInt(bb.Groups["s"].Value);
                f.Subordinate = bb.Groups["e"].Success ? HexInt(bb.Groups["e"].Value) : f.Secondary;
                f.IsBridge = true;
            }
            else if (msg.StartsWith("pciehp: ", StringComparison.Ordinal) && msg.Contains("HotPlug+", StringComparison.Ordinal) && msg.Contains("Surprise+", StringComparison.Ordinal))
            {
                f.HotPlugSurprise = true;
            }
            return true;
        }
        if (drv == "thunderbolt")
        {
            host.Thunderbolt = true;
        }
        if (host.Functions.TryGetValue(a, out var known) && drv is not ("pci_bus" or "vmd" or "brcm-pcie"))
        {
            known.Driver ??= drv;
            // xhci_gen_setup: a controller with 64-bit addressing (HCCPARAMS1 AC64) gets a 64-bit DMA mask.
            if (drv == "xhci_hcd" && HccParams().Match(msg) is { Success: true } hcc && (Hex(hcc.Groups["p"].Value) & 1) != 0)
            {
                if (known.DmaMaskBits is null)
                {
                    known.DmaMaskBits = 64;
                    known.CoherentDmaMaskBits = 64;
                    host.Notes.Add($"{a}: dma_mask 64 because xhci_hcd reports 64-bit addressing (hcc params AC64)");
                }
            }
        }
        return false;
    }

    private static List<(ulong, ulong, ulong)> PendingInbound(HostInfo host)
    {
        var l = host.PendingInboundList.ToList();
        host.PendingInboundList.Clear();
        return l;
    }
}
