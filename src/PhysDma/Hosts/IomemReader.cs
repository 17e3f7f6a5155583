using System.Globalization;
using System.Text.RegularExpressions;

namespace PhysDma.Hosts;

/// <summary>
/// <c>/proc/iomem</c>: System RAM, the kernel image, PCI host-bridge windows (top-level <c>PCI Bus</c> entries),
/// bridges seen only by their bus, every PCI function's memory ranges (BARs), DMAR units.
/// </summary>
internal static partial class IomemReader
{
    [GeneratedRegex(@"^(?<indent> *)(?<start>[0-9a-fA-F]+)-(?<end>[0-9a-fA-F]+) : (?<name>.*)$")]
    private static partial Regex Line();

    [GeneratedRegex(@"^PCI Bus (?<dom>[0-9a-f]{4,8}):(?<bus>[0-9a-f]{2})$")]
    private static partial Regex PciBus();

    public static bool Looks(string firstLine) => Line().IsMatch(firstLine);

    public static void Read(string[] lines, string file, HostInfo host, bool includeBars = true)
    {
        // The enclosing entries of the current line, by indentation.
        var stack = new List<(int Indent, string Name, ulong Start, ulong End)>();
        var anyNonZero = false;
        var entries = new List<(int Indent, ulong Start, ulong End, string Name, string? ParentName)>();
        for (var i = 0; i < lines.Length; i++)
        {
            var text = lines[i].TrimEnd('\r');
            if (text.Trim().Length == 0)
            {
                continue;
            }
            var m = Line().Match(text);
            if (!m.Success)
            {
                throw new HostImportError(file, i + 1, $"not a /proc/iomem line (START-END : NAME): '{Clip(text)}'");
            }
            if (!ulong.TryParse(m.Groups["start"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var start)
                || !ulong.TryParse(m.Groups["end"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var end))
            {
                throw new HostImportError(file, i + 1, "address does not fit in 64 bits");
            }
            if (end < start)
            {
                throw new HostImportError(file, i + 1, $"range ends ({end:x}) before it starts ({start:x})");
            }
            anyNonZero |= end != 0;
            var indent = m.Groups["indent"].Value.Length;
            while (stack.Count > 0 && stack[^1].Indent >= indent)
            {
                stack.RemoveAt(stack.Count - 1);
            }
            var name = m.Groups["name"].Value.Trim();
            var parent = stack.Count > 0 ? stack[^1].Name : null;
            entries.Add((indent, start, end, name, parent));
            stack.Add((indent, name, start, end));
        }
        host.Sources.Add($"{Path.GetFileName(file)} (/proc/iomem)");
        if (!anyNonZero)
        {
            // Read without CAP_SYS_ADMIN: every address is shown as 0.
            host.IomemHidden = true;
            return;
        }
        // Driver names under a function's range name what claimed it (igb, nvme, ahci, ...).
        for (var k = 0; k < entries.Count; k++)
        {
            var (indent, start, end, name, parentName) = entries[k];
            var size = end - start + 1;
            if (indent == 0 && name == "System RAM")
            {
                host.Ram.Add((start, end + 1));
                host.RamSource = "/proc/iomem System RAM";
            }
            else if (indent == 0 && (name == "Reserved" || name.StartsWith("ACPI ", StringComparison.Ordinal) || name.StartsWith("Persistent Memory", StringComparison.Ordinal)))
            {
                host.Reserved.Add((start, end + 1, name));
            }
            else if (name == "Kernel code")
            {
                host.KernelCode = (start, end + 1);
            }
            else if (name == "Kernel rodata")
            {
                host.KernelRodata = (start, end + 1);
            }
            else if (PciBus().Match(name) is { Success: true } pb)
            {
                var dom = int.Parse(pb.Groups["dom"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                var bus = int.Parse(pb.Groups["bus"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if (parentName is not null && PciBus().Match(parentName) is { Success: true } ppb)
                {
                    var pbus = int.Parse(ppb.Groups["bus"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    if (pbus != bus && !host.AnonymousBridges.ContainsKey((dom, bus)))
                    {
                        host.AnonymousBridges[(dom, bus)] = (pbus, start, size);
                    }
                }
                else
                {
                    var hb = host.Bridge(dom, bus);
                    if (!hb.Windows.Contains((start, size)))
                    {
                        hb.Windows.Add((start, size));
                    }
                    hb.Via ??= "/proc/iomem";
                }
            }
            else if (PciAddress.TryParse(name, out var a) && name.Length >= 12)
            {
                var f = host.Function(a);
                if (includeBars && !f.Bars.Any(b => b.Index is not null))
                {
                    f.AddBar(new HostBar(null, start, size, start + size - 1 > 0xffffffff, false));
                }
                if (k + 1 < entries.Count && entries[k + 1].Indent > indent && entries[k + 1].Start >= start && entries[k + 1].End <= end)
                {
                    f.Driver ??= entries[k + 1].Name;
                }
            }
            else if (name.StartsWith("dmar", StringComparison.Ordinal) && name.Length > 4 && name[4..].All(char.IsAsciiDigit))
            {
                host.IommuPresent = true;
                host.IommuDriver ??= "intel-iommu (VT-d)";
            }
        }
    }

    private static string Clip(string s) => s.Length > 80 ? s[..80] + "…" : s;
}
