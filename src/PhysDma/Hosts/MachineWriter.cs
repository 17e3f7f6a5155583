using System.Globalization;
using System.Text;
using PhysDma.Core;

namespace PhysDma.Hosts;

/// <summary>One PCI node of an imported machine (host bridge, root port, switch).</summary>
internal sealed record ImportedNode(string Name, string Type, string? Parent, PciAddress? Address, bool AcsRedirect, bool ExternalFacing, IReadOnlyList<string> Comments);

/// <summary>One device of an imported machine.</summary>
internal sealed record ImportedDevice(string Name, PciAddress Address, string Parent, IReadOnlyList<HostBar> Bars, int DmaMask, int CoherentDmaMask,
    bool MasksAssumed, bool Untrusted, bool? Iommu, IReadOnlyList<(ulong Cpu, ulong Dma, ulong Size)> DmaRanges, ulong BusDmaLimit, ulong BusOffset);

/// <summary>An import's result: the machine file text, and what it holds, for callers and tests.</summary>
internal sealed record ImportedMachine(string Yaml, IReadOnlyList<ImportedNode> Nodes, IReadOnlyList<ImportedDevice> Devices, IReadOnlyList<string> Assumed,
    IReadOnlyList<(ulong Base, ulong Size)> Ram, string? IommuMode, IReadOnlyList<string> DownstreamPorts);

/// <summary>
/// Turns what an import learnt (<see cref="HostInfo"/>) into a machine file: the PCI hierarchy mapped onto
/// host bridges, root ports and switches, devices named by class, and every value the input did not give
/// filled with the kernel's default and listed in the file's header. Same input, same bytes.
/// </summary>
internal static class MachineWriter
{
    private const ulong AcsRedirectBits = 0x04 | 0x08 | 0x20; // PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC

    public static ImportedMachine Write(HostInfo host, string name)
    {
        var assumed = new List<string>();
        var notes = new List<string>(host.Notes);
        var arch = host.Arch ?? Assume(assumed, "x86_64", "arch: x86_64 (the input names no architecture)");
        var page = host.PageSize ?? Assume(assumed, 4096UL, "page_size: 4096 (the input does not show the page size)");
        var cpus = host.Cpus ?? Assume(assumed, 2, "cpus: 2 (the input does not count CPUs)");
        cpus = Math.Clamp(cpus, 1, 1024);
        assumed.Add(arch == "arm64"
            ? "cache_line: 64, dma_minalign: 128, bounce_unaligned_kmalloc: true (arm64 ARCH_DMA_MINALIGN and kmalloc bouncing)"
            : "cache_line: 64, dma_minalign: 8 (x86_64 defaults)");

        // ---- RAM
        var ram = new List<(ulong Start, ulong End)>();
        string ramFrom;
        if (host.Ram.Count > 0)
        {
            ram.AddRange(host.Ram);
            ramFrom = host.RamSource ?? "/proc/iomem";
        }
        else if (host.BootRam.Count > 0)
        {
            ram.AddRange(host.BootRam);
            ramFrom = "the kernel log's memory node ranges";
        }
        else if (host.E820Ram.Count > 0)
        {
            ram.AddRange(host.E820Ram);
            ramFrom = "the kernel log's BIOS-e820 usable ranges";
        }
        else
        {
            var total = host.MemTotal ?? 16 * Sizes.GiB;
            var lowTop = Math.Min(2 * Sizes.GiB, LowestMmio(host) & ~(Sizes.MiB - 1));
            var low = Math.Min(total, lowTop);
            ram.Add((0, low));
            if (total > low)
            {
                ram.Add((4 * Sizes.GiB, 4 * Sizes.GiB + total - low));
            }
            ramFrom = host.MemTotal is null
                ? Assume(assumed, "an assumption", $"ram: 16 GiB (the input shows no memory map): {Hex.Format(low)} bytes at 0, the rest at 4 GiB")
                : Assume(assumed, "/proc/meminfo MemTotal", $"ram layout: MemTotal {host.MemTotal} bytes placed at 0 and 4 GiB (the memory map was unreadable: /proc/iomem without root shows zeros)");
        }
        if (host.IomemHidden && host.Ram.Count == 0)
        {
            notes.Add("/proc/iomem was read without root: it shows every address as 0 (run the import as root for the real memory map)");
        }
        var pageRam = new List<(ulong Start, ulong End)>();
        foreach (var (s, e) in ram.OrderBy(r => r.Start))
        {
            var ps = Sizes.AlignUp(s, page);
            var pe = e & ~(page - 1);
            if (pe > ps && !pageRam.Any(r => ps < r.End && r.Start < pe))
            {
                pageRam.Add((ps, pe));
            }
        }
        var rawRam = ram.Aggregate(0UL, (a, r) => a + (r.End - r.Start));
        var pageTotal = pageRam.Aggregate(0UL, (a, r) => a + (r.End - r.Start));

        // ---- kernel image
        (ulong Start, ulong End)? kernel = null;
        if (host.KernelCode is { } kc)
        {
            var end = Math.Max(kc.End, host.KernelRodata?.End ?? 0);
            var ks = kc.Start & ~(page - 1);
            var ke = Sizes.AlignUp(end, page);
            var holder = pageRam.FirstOrDefault(r => r.Start <= ks && ks < r.End);
            if (holder.End > holder.Start)
            {
                kernel = (ks, Math.Min(ke, holder.End));
            }
        }
        if (kernel is null)
        {
            var guess = arch == "arm64" ? (pageRam.Count > 0 ? pageRam[0].Start + 2 * Sizes.MiB : 0) : 16 * Sizes.MiB;
            if (pageRam.Any(r => r.Start <= guess && guess + 32 * Sizes.MiB <= r.End))
            {
                kernel = (guess, guess + 32 * Sizes.MiB);
                assumed.Add($"kernel_text: {Hex.Format(guess)} + 32 MiB (the input does not place the kernel image)");
            }
            else
            {
                assumed.Add("kernel_text: none (the input does not place the kernel image and no RAM fits the default)");
            }
        }

        // ---- swiotlb
        var swSize = host.SwiotlbSize ?? Assume(assumed, 64 * Sizes.MiB, "swiotlb size: 64 MiB (the kernel's default IO_TLB_DEFAULT_SIZE)");
        ulong? swBase = null;
        if (host.SwiotlbBase is { } sb)
        {
            var fits = sb >= page && Sizes.IsAligned(sb, page) && pageRam.Any(r => r.Start <= sb && sb + swSize <= r.End)
                && (kernel is not { } k || sb + swSize <= k.Start || sb >= k.End);
            if (fits)
            {
                swBase = sb;
            }
            else
            {
                notes.Add($"swiotlb was mapped at {Hex.Format(sb)}, which is not free RAM of this machine: left to the model to place");
            }
        }
        var swAreas = host.SwiotlbAreas ?? 0;
        if (host.SwiotlbAreas is null)
        {
            assumed.Add("swiotlb areas: one per CPU (the kernel's default)");
        }
        if (host.SwiotlbSize is not null && host.SwiotlbBase is null)
        {
            assumed.Add("swiotlb base: placed by the model below 4 GiB (the input gives the size only)");
        }

        // ---- IOMMU
        string? iommuMode = null;
        if (host.IommuPresent == true || host.GroupTypes.Count > 0)
        {
            var fromGroups = host.GroupTypes.Values.Select(ModeOfGroupType).Where(m => m is not null).GroupBy(m => m!)
                .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).FirstOrDefault()?.Key;
            iommuMode = fromGroups ?? host.IommuPolicy ?? Assume(assumed, "lazy", "iommu mode: lazy (the kernel's default DMA-FQ domain; the input does not say)");
            if (host.GroupTypes.Values.Any(t => t is "blocked" or "unmanaged"))
            {
                notes.Add("groups of type blocked/unmanaged (a device owned by VFIO or with DMA blocked) are modelled as the machine's default domain");
            }
        }
        else if (host.IommuPresent is null)
        {
            assumed.Add("iommu: off (the input shows no IOMMU)");
        }

        // ---- PCI hierarchy
        var tree = new Tree(host, assumed, notes);
        tree.Build();

        // ---- devices: names, BARs (no overlap with RAM or each other), masks
        var occupied = new List<(ulong Start, ulong End)>(pageRam);
        var devices = new List<ImportedDevice>();
        var counters = new Dictionary<string, int>(StringComparer.Ordinal);
        var maskAssumed = 0;
        var guessedBars = 0;
        foreach (var f in tree.Endpoints.OrderBy(f => f.Address))
        {
            var stem = Stem(f);
            counters.TryGetValue(stem, out var n);
            counters[stem] = n + 1;
            var hb = tree.HostBridgeOf(f);
            var offset = hb.BusOffset ?? 0;
            var bars = new List<HostBar>();
            var index = 0;
            foreach (var b in f.Bars.OrderBy(b => b.Index ?? int.MaxValue).ThenBy(b => b.Base))
            {
                var idx = b.Index ?? index;
                index = idx + 1;
                if (b.Size == 0 || b.Base == 0 || idx > 5 || bars.Any(x => x.Index == idx))
                {
                    continue;
                }
                var end = b.Base + b.Size;
                if (end < b.Base || occupied.Any(o => b.Base < o.End && o.Start < end))
                {
                    notes.Add($"{f.Address} BAR {idx} {Hex.Format(b.Base)}+{Hex.Format(b.Size)} overlaps RAM or another BAR: left out");
                    continue;
                }
                occupied.Add((b.Base, end));
                bars.Add(b with { Index = idx });
            }
            if (f.BarIndexGuessed && bars.Count > 0)
            {
                guessedBars++;
            }
            var masksAssumed = f.DmaMaskBits is null;
            if (masksAssumed)
            {
                maskAssumed++;
            }
            bool? iommu = f.IommuGroup is { } g && host.GroupTypes.TryGetValue(g, out var gt) && gt == "identity" && iommuMode is not (null or "passthrough") ? false : null;
            var limit = hb.DmaRanges.Count == 0 ? 0UL : hb.DmaRanges.Max(r => r.Dma + r.Size - 1);
            devices.Add(new ImportedDevice($"{stem}{n}", f.Address, tree.ParentName(f), bars, f.DmaMaskBits ?? 32, f.CoherentDmaMaskBits ?? f.DmaMaskBits ?? 32,
                masksAssumed, tree.Untrusted(f), iommu, hb.DmaRanges, limit, offset));
        }
        if (guessedBars > 0)
        {
            assumed.Add($"BAR numbers of {guessedBars} device(s) by address order (the input shows their ranges without BAR numbers)");
        }
        if (maskAssumed > 0)
        {
            assumed.Add($"dma_mask: 32, coherent_dma_mask: 32 for {maskAssumed} device(s) the input gives no mask for (the PCI core's default before a driver sets one)");
        }
        if (devices.Count > 0)
        {
            assumed.Add("max_seg_size: 65536, seg_boundary_mask: 0xffffffff on every device (the kernel's defaults without driver dma_parms)");
        }
        if (iommuMode is not null)
        {
            if (host.IommuAddressBits is null)
            {
                assumed.Add("iommu aperture_bits: 48 (a 4-level page table; the input does not give the address width)");
            }
            assumed.Add("iommu page_sizes: [4KiB, 2MiB, 1GiB], flush_queue: 256 entries / 10 ms (the kernel's defaults)");
            if (arch == "x86_64" && !host.IommuReserved.Any(r => r.Type == "msi"))
            {
                assumed.Add("iommu reserved: the x86 MSI window 0xfee00000 + 1 MiB (always reserved on x86)");
            }
        }
        assumed.Add("debug: on, kernel_quirks: [], swiotlb force/dynamic off, highmem_above: null (model settings, not read from the host)");
        if (tree.HostBridges.Count > 0)
        {
            assumed.Add("p2p_allowed: true on AMD host bridges (pci_p2pdma allows AMD Zen), false on others (the model's host-bridge allow list by vendor/device decides)");
        }
        if (arch == "arm64" && tree.HostBridges.Any(h => h.DmaCoherent is null))
        {
            assumed.Add("coherent: the arm64 default (not coherent) for PCI devices; the input does not say dma-coherent");
        }

        // ---- text
        var sb2 = new StringBuilder();
        sb2.Append("# PhysDma machine file written by `physdma machines import`.\n");
        foreach (var s in host.Sources)
        {
            sb2.Append("# source: ").Append(s).Append('\n');
        }
        if (host.Model is not null)
        {
            sb2.Append("# host: ").Append(OneLine(host.Model)).Append('\n');
        }
        if (host.Kernel is not null)
        {
            sb2.Append("# kernel: ").Append(OneLine(host.Kernel)).Append('\n');
        }
        sb2.Append(CultureInfo.InvariantCulture, $"# RAM: {rawRam} bytes from {ramFrom}; {pageTotal} bytes in whole pages (the model keeps whole pages).\n");
        sb2.Append("#\n# Assumed (the input does not say; the kernel's default or the model's):\n");
        foreach (var a in assumed.Distinct())
        {
            sb2.Append("#   - ").Append(a).Append('\n');
        }
        if (notes.Count > 0)
        {
            sb2.Append("#\n# Notes:\n");
            foreach (var nline in notes.Distinct())
            {
                sb2.Append("#   - ").Append(nline).Append('\n');
            }
        }
        sb2.Append(CultureInfo.InvariantCulture, $"description: {Quote($"{name}: {(host.Model is null ? "Linux host" : OneLine(host.Model))}, imported from {string.Join(", ", host.Sources)}")}\n");
        sb2.Append(CultureInfo.InvariantCulture, $"arch: {arch}\n");
        sb2.Append(CultureInfo.InvariantCulture, $"page_size: {page}\n");
        sb2.Append("cache_line: 64\n");
        sb2.Append(arch == "arm64" ? "dma_minalign: 128\nbounce_unaligned_kmalloc: true\n" : "dma_minalign: 8\nbounce_unaligned_kmalloc: false\n");
        sb2.Append(CultureInfo.InvariantCulture, $"cpus: {cpus}\n");
        sb2.Append("debug: on\nkernel_quirks: []\nram:\n");
        foreach (var (s, e) in pageRam)
        {
            sb2.Append(CultureInfo.InvariantCulture, $"  - {{ base: {Hex.Format(s)}, size: {Hex.Format(e - s)} }}\n");
        }
        if (host.Reserved.Count > 0)
        {
            sb2.Append("# not RAM (reserved in /proc/iomem): ")
                .AppendJoin(", ", host.Reserved.Select(r => $"{Hex.Format(r.Start)}+{Hex.Format(r.End - r.Start)} {r.Name}")).Append('\n');
        }
        sb2.Append("highmem_above: null\n");
        sb2.Append(kernel is { } kt ? $"kernel_text: {{ base: {Hex.Format(kt.Start)}, size: {Hex.Format(kt.End - kt.Start)} }}\n" : "kernel_text: null\n");
        sb2.Append(CultureInfo.InvariantCulture,
            $"swiotlb: {{ size: {Hex.Format(swSize)}, areas: {swAreas}, force: false, dynamic: false, base: {(swBase is { } bb ? Hex.Format(bb) : "null")} }}\n");
        if (iommuMode is null)
        {
            sb2.Append("iommu: off\n");
        }
        else
        {
            if (host.IommuDriver is not null)
            {
                sb2.Append("# IOMMU: ").Append(host.IommuDriver).Append(host.IommuPolicySource is null ? "" : $"; mode from {host.IommuPolicySource}").Append('\n');
            }
            sb2.Append("iommu:\n");
            sb2.Append(CultureInfo.InvariantCulture, $"  mode: {iommuMode}\n");
            sb2.Append("  page_sizes: [4KiB, 2MiB, 1GiB]\n");
            sb2.Append(CultureInfo.InvariantCulture, $"  aperture_bits: {Math.Clamp(host.IommuAddressBits ?? 48, 32, 64)}\n");
            sb2.Append("  forcedac: false\n  flush_queue: { entries: 256, timeout_ms: 10 }\n");
            var reserved = host.IommuReserved.Select(r => (r.Start, r.End, r.Type)).ToList();
            if (arch == "x86_64" && !reserved.Any(r => r.Type == "msi"))
            {
                reserved.Add((0xfee00000, 0xfef00000, "msi"));
            }
            sb2.Append("  reserved:\n");
            foreach (var (s, e, t) in reserved.Distinct().OrderBy(r => r.Start).ThenBy(r => r.End))
            {
                sb2.Append(CultureInfo.InvariantCulture, $"    - {{ base: {Hex.Format(s)}, size: {Hex.Format(e - s)} }}  # {t}\n");
            }
        }
        sb2.Append(tree.Nodes.Count == 0 ? "pci: []\n" : "pci:\n");
        foreach (var node in tree.Nodes)
        {
            foreach (var c in node.Comments)
            {
                sb2.Append("  # ").Append(c).Append('\n');
            }
            sb2.Append(CultureInfo.InvariantCulture, $"  - name: {node.Name}\n    type: {node.Type}\n");
            if (node.Parent is not null)
            {
                sb2.Append(CultureInfo.InvariantCulture, $"    parent: {node.Parent}\n");
            }
            if (node.Address is { } na)
            {
                sb2.Append(CultureInfo.InvariantCulture, $"    bdf: \"{na}\"\n");
            }
            if (node.Type == "host_bridge")
            {
                var hb = tree.HostBridges.First(h => tree.NameOf(h) == node.Name);
                var (v, d) = tree.HostBridgeIds(hb);
                var amd = v == 0x1022;
                sb2.Append(CultureInfo.InvariantCulture, $"    vendor: 0x{v:x4}\n    device: 0x{d:x4}\n    p2p_allowed: {(amd ? "true" : "false")}\n");
                var windows = hb.Windows.Where(w => w.Size > 0).Distinct().OrderBy(w => w.Base).ToList();
                sb2.Append(windows.Count == 0 ? "    windows: []\n" : "    windows:\n");
                foreach (var (wb, ws) in windows)
                {
                    sb2.Append(CultureInfo.InvariantCulture, $"      - {{ base: {Hex.Format(wb)}, size: {Hex.Format(ws)} }}\n");
                }
            }
            else
            {
                sb2.Append(CultureInfo.InvariantCulture, $"    acs_redirect: {(node.AcsRedirect ? "true" : "false")}\n");
                if (node.ExternalFacing)
                {
                    sb2.Append("    external_facing: true\n");
                }
            }
        }
        sb2.Append(devices.Count == 0 ? "devices: []\n" : "devices:\n");
        foreach (var d in devices)
        {
            var f = host.Functions[d.Address];
            sb2.Append("  # ").Append(Describe(f)).Append('\n');
            sb2.Append(CultureInfo.InvariantCulture, $"  - name: {d.Name}\n    parent: {d.Parent}\n    bdf: \"{d.Address}\"\n");
            sb2.Append(d.Bars.Count == 0 ? "    bars: []\n" : "    bars:\n");
            foreach (var b in d.Bars)
            {
                var flags = (b.Is64 ? "64-bit" : "32-bit") + (b.Prefetchable ? ", prefetchable" : "");
                sb2.Append(CultureInfo.InvariantCulture,
                    $"      - {{ bar: {b.Index}, base: {Hex.Format(b.Base)}, size: {Hex.Format(b.Size)}, bus_base: {Hex.Format(b.Base - d.BusOffset)} }}  # {flags}\n");
            }
            sb2.Append(CultureInfo.InvariantCulture, $"    dma_mask: {d.DmaMask}\n    coherent_dma_mask: {d.CoherentDmaMask}\n");
            if (arch == "arm64" && tree.HostBridgeOf(f).DmaCoherent is { } coherent)
            {
                sb2.Append(coherent ? "    coherent: true  # dma-coherent\n" : "    coherent: false  # no dma-coherent\n");
            }
            if (d.Untrusted)
            {
                sb2.Append("    untrusted: true\n");
            }
            if (d.Iommu is { } io)
            {
                sb2.Append(CultureInfo.InvariantCulture, $"    iommu: {(io ? "true" : "false")}  # identity (passthrough) group\n");
            }
            if (d.DmaRanges.Count > 0)
            {
                sb2.Append("    dma_ranges:\n");
                foreach (var (c, dm, sz) in d.DmaRanges)
                {
                    sb2.Append(CultureInfo.InvariantCulture, $"      - {{ cpu: {Hex.Format(c)}, dma: {Hex.Format(dm)}, size: {Hex.Format(sz)} }}\n");
                }
                sb2.Append(CultureInfo.InvariantCulture, $"    bus_dma_limit: {Hex.Format(d.BusDmaLimit)}\n");
            }
            sb2.Append("    max_seg_size: 65536\n    seg_boundary_mask: 0xffffffff\n");
        }
        return new ImportedMachine(sb2.ToString(), tree.Nodes, devices, assumed.Distinct().ToList(),
            pageRam.Select(r => (r.Start, r.End - r.Start)).ToList(), iommuMode, tree.DownstreamComments);
    }

    private static T Assume<T>(List<string> assumed, T value, string what)
    {
        assumed.Add(what);
        return value;
    }

    private static string? ModeOfGroupType(string t) => t switch
    {
        "DMA" => "strict",
        "DMA-FQ" => "lazy",
        "identity" => "passthrough",
        "blocked" or "unmanaged" => null,
        _ => null,
    };

    private static ulong LowestMmio(HostInfo host)
    {
        var lowest = 4 * Sizes.GiB;
        foreach (var f in host.Functions.Values)
        {
            foreach (var b in f.Bars)
            {
                if (b.Base > 0 && b.Base < lowest)
                {
                    lowest = b.Base;
                }
            }
        }
        foreach (var hb in host.HostBridges.Values)
        {
            foreach (var (b, s) in hb.Windows)
            {
                if (b >= Sizes.MiB && s >= Sizes.MiB && b < lowest)
                {
                    lowest = b;
                }
            }
        }
        return lowest;
    }

    private static string Stem(HostFunction f)
    {
        var text = (f.Description ?? "") + " " + (f.Driver ?? "");
        if (f.Driver == "thunderbolt" || (f.Class is { } c && c == 0x0c0340) || text.Contains(" NHI", StringComparison.Ordinal))
        {
            return "tbt";
        }
        if (f.Driver == "nvme")
        {
            return "nvme";
        }
        if (f.Class is null && f.Driver is null && f.Description is not null && DeviceNames.ClassFromText(f.Description) is { } guess)
        {
            return DeviceNames.Stem(guess, null);
        }
        return DeviceNames.Stem(f.Class, f.Driver);
    }

    internal static string Describe(HostFunction f)
    {
        var sb = new StringBuilder();
        sb.Append(f.Address.ToString());
        if (f.Vendor is { } v && f.DeviceId is { } d)
        {
            sb.Append(CultureInfo.InvariantCulture, $" [{v:x4}:{d:x4}]");
        }
        if (f.Class is { } c)
        {
            sb.Append(CultureInfo.InvariantCulture, $" class 0x{c:x6}{(f.ClassGuessed ? " (from its name)" : "")}");
        }
        if (f.Driver is not null)
        {
            sb.Append(" driver ").Append(OneLine(f.Driver));
        }
        if (f.IommuGroup is { } g)
        {
            sb.Append(CultureInfo.InvariantCulture, $" group {g}");
        }
        if (f.Description is not null)
        {
            sb.Append(": ").Append(OneLine(f.Description));
        }
        return sb.ToString();
    }

    internal static string OneLine(string s)
    {
        var t = s.Replace('\n', ' ').Replace('\r', ' ').Replace('\t', ' ').Trim();
        return t.Length > 120 ? t[..120] : t;
    }

    private static string Quote(string s) => "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    internal static string AcsText(ushort word)
    {
        var parts = new List<string>();
        for (var i = 0; i < LspciReader.AcsFlags.Length; i++)
        {
            parts.Add(LspciReader.AcsFlags[i] + ((word & (1 << i)) != 0 ? "+" : "-"));
        }
        return string.Join(' ', parts);
    }

    internal static bool Redirects(ushort? ctl) => ctl is { } c && (c & AcsRedirectBits) != 0;
}
