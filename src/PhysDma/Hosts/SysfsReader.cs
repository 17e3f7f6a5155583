using System.Buffers.Binary;
using System.Globalization;

namespace PhysDma.Hosts;

/// <summary>
/// Reads a Linux host from <c>/proc</c> and <c>/sys</c> (or a copy of them under another root) and remembers
/// every file and link it read, so <c>machines capture</c> packs exactly those.
/// </summary>
internal sealed class SysfsReader(string root)
{
    private readonly SortedSet<string> _read = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, string> _links = new(StringComparer.Ordinal);

    public string Root { get; } = root;

    /// <summary>Files read (paths relative to the root, as opened: through links).</summary>
    public IReadOnlyCollection<string> FilesRead => _read;

    /// <summary>Symbolic links followed: path relative to the root → link text.</summary>
    public IReadOnlyDictionary<string, string> LinksRead => _links;

    private string Full(string rel) => Path.Combine(Root, rel);

    private byte[]? Bytes(string rel, int max = 1 << 20)
    {
        try
        {
            var full = Full(rel);
            if (!File.Exists(full))
            {
                return null;
            }
            using var s = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 4096, FileOptions.None);
            var buf = new byte[max];
            var n = 0;
            while (n < max)
            {
                var r = s.Read(buf, n, max - n);
                if (r <= 0)
                {
                    break;
                }
                n += r;
            }
            Array.Resize(ref buf, n);
            _read.Add(rel);
            return buf;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private string? Text(string rel)
    {
        var b = Bytes(rel);
        return b is null ? null : System.Text.Encoding.UTF8.GetString(b);
    }

    /// <summary>Resolves links in every component of a directory path (realpath).</summary>
    public static string Resolve(string dir)
    {
        var parts = dir.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var cur = Path.GetPathRoot(dir) ?? "/";
        foreach (var p in parts)
        {
            cur = Path.Combine(cur, p);
            var info = new DirectoryInfo(cur);
            if (info.LinkTarget is { } t)
            {
                cur = Path.GetFullPath(Path.IsPathRooted(t) ? t : Path.Combine(Path.GetDirectoryName(cur)!, t));
            }
        }
        return cur;
    }

    private string? Link(string rel)
    {
        try
        {
            var info = new FileInfo(Full(rel));
            var t = info.LinkTarget ?? new DirectoryInfo(Full(rel)).LinkTarget;
            if (t is not null)
            {
                _links[rel] = t;
            }
            return t;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private IEnumerable<string> List(string rel)
    {
        try
        {
            var d = new DirectoryInfo(Full(rel));
            return d.Exists ? d.EnumerateFileSystemInfos().Select(i => i.Name).Order(StringComparer.Ordinal).ToList() : [];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    public bool HasPci => Directory.Exists(Full("sys/bus/pci/devices"));

    public HostInfo Read()
    {
        var host = new HostInfo();
        if (Text("proc/iomem") is { } iomem)
        {
            IomemReader.Read(iomem.Split('\n'), Path.Combine(Root, "proc/iomem"), host, includeBars: false);
            host.Sources[^1] = "/proc/iomem";
        }
        ReadCpu(host);
        if (Text("proc/meminfo") is { } mi)
        {
            foreach (var l in mi.Split('\n'))
            {
                if (l.StartsWith("MemTotal:", StringComparison.Ordinal) && ulong.TryParse(l[9..].Trim().Split(' ')[0], CultureInfo.InvariantCulture, out var kb))
                {
                    host.MemTotal = kb * 1024;
                }
            }
        }
        if (Text("sys/kernel/mm/transparent_hugepage/hpage_pmd_size") is { } hp && ulong.TryParse(hp.Trim(), CultureInfo.InvariantCulture, out var pmd) && pmd > 0)
        {
            // PMD size = PAGE_SIZE * (PAGE_SIZE / 8): 2 MiB with 4 KiB pages, 32 MiB with 16 KiB, 512 MiB with 64 KiB.
            var page = (ulong)Math.Round(Math.Sqrt(8.0 * pmd));
            if (page is 4096 or 16384 or 65536)
            {
                host.PageSize = page;
            }
        }
        ReadPci(host);
        ReadIommu(host);
        if (Text("sys/kernel/debug/swiotlb/io_tlb_nslabs") is { } ns && ulong.TryParse(ns.Trim(), CultureInfo.InvariantCulture, out var nslabs) && nslabs > 0)
        {
            host.SwiotlbSize = nslabs << 11;
            host.SwiotlbSource = "/sys/kernel/debug/swiotlb/io_tlb_nslabs";
        }
        ReadDeviceTree(host);
        host.Sources.Add("/sys (PCI devices, IOMMU, swiotlb" + (host.HostBridges.Values.Any(h => h.DmaRanges.Count > 0 || h.DmaCoherent is not null) ? ", device tree)" : ")"));
        return host;
    }

    private void ReadCpu(HostInfo host)
    {
        if (Text("proc/cpuinfo") is { } ci)
        {
            var procs = 0;
            foreach (var l in ci.Split('\n'))
            {
                if (l.StartsWith("processor", StringComparison.Ordinal))
                {
                    procs++;
                }
                if (l.StartsWith("vendor_id", StringComparison.Ordinal) || l.StartsWith("flags", StringComparison.Ordinal))
                {
                    host.Arch ??= "x86_64";
                }
                if (l.StartsWith("CPU architecture", StringComparison.Ordinal) || l.StartsWith("Features", StringComparison.Ordinal))
                {
                    host.Arch ??= "arm64";
                }
            }
            if (procs > 0)
            {
                host.Cpus = procs;
            }
        }
        if (Text("sys/devices/system/cpu/online") is { } online)
        {
            var n = 0;
            foreach (var part in online.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var ab = part.Split('-');
                if (int.TryParse(ab[0], CultureInfo.InvariantCulture, out var a))
                {
                    n += ab.Length == 2 && int.TryParse(ab[1], CultureInfo.InvariantCulture, out var b) ? b - a + 1 : 1;
                }
            }
            if (n > 0)
            {
                host.Cpus = n;
            }
        }
    }

    private void ReadPci(HostInfo host)
    {
        foreach (var name in List("sys/bus/pci/devices"))
        {
            if (!PciAddress.TryParse(name, out var a))
            {
                continue;
            }
            var rel = $"sys/bus/pci/devices/{name}";
            var f = host.Function(a);
            if (Link(rel) is { } target)
            {
                var parts = target.Replace('\\', '/').Split('/');
                var me = Array.LastIndexOf(parts, name);
                if (me > 0)
                {
                    var up = parts[me - 1];
                    if (PciAddress.TryParse(up, out var pa) && up.Contains(':', StringComparison.Ordinal))
                    {
                        f.Parent = pa;
                    }
                    else if (up.StartsWith("pci", StringComparison.Ordinal) && up.Length > 3 && up[3..].Split(':') is [var dom, var bus]
                        && int.TryParse(dom, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var d)
                        && int.TryParse(bus, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var b))
                    {
                        host.Bridge(d, b).Via ??= "/sys/devices";
                    }
                }
            }
            f.Vendor = HexValue(Text($"{rel}/vendor"));
            f.DeviceId = HexValue(Text($"{rel}/device"));
            f.Class = HexValue(Text($"{rel}/class"));
            f.DmaMaskBits = IntValue(Text($"{rel}/dma_mask_bits"));
            f.CoherentDmaMaskBits = IntValue(Text($"{rel}/consistent_dma_mask_bits"));
            if (Text($"{rel}/removable")?.Trim() == "removable")
            {
                f.Removable = true;
            }
            if (Link($"{rel}/driver") is { } drv)
            {
                f.Driver = drv.Replace('\\', '/').Split('/')[^1];
            }
            if (Link($"{rel}/iommu_group") is { } grp && int.TryParse(grp.Replace('\\', '/').Split('/')[^1], CultureInfo.InvariantCulture, out var g))
            {
                f.IommuGroup = g;
            }
            if (Text($"{rel}/resource") is { } res)
            {
                var lines = res.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                for (var i = 0; i < Math.Min(6, lines.Length); i++)
                {
                    var cols = lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (cols.Length < 3)
                    {
                        continue;
                    }
                    var start = HexValue64(cols[0]);
                    var end = HexValue64(cols[1]);
                    var flags = HexValue64(cols[2]);
                    if ((flags & 0x200) == 0 || end <= start)
                    {
                        continue;
                    }
                    f.AddBar(new HostBar(i, start, end - start + 1, (flags & 0x00100000) != 0, (flags & 0x2000) != 0));
                }
            }
            if (Bytes($"{rel}/config", 4096) is { } cfg)
            {
                ReadConfig(f, cfg);
            }
        }
    }

    /// <summary>Header type, bus numbers, the PCIe capability (port type, slot) and the ACS extended capability.</summary>
    internal static void ReadConfig(HostFunction f, byte[] c)
    {
        if (c.Length < 0x40)
        {
            return;
        }
        var type = c[0x0e] & 0x7f;
        f.IsBridge = type == 1;
        if (type == 1)
        {
            f.Secondary = c[0x19];
            f.Subordinate = c[0x1a];
        }
        var status = BinaryPrimitives.ReadUInt16LittleEndian(c.AsSpan(0x06));
        if ((status & 0x10) != 0)
        {
            var p = c[0x34] & 0xfc;
            for (var hops = 0; p >= 0x40 && p + 0x18 <= c.Length && hops < 48; hops++)
            {
                if (c[p] == 0x10)
                {
                    var flags = BinaryPrimitives.ReadUInt16LittleEndian(c.AsSpan(p + 2));
                    f.Port = ((flags >> 4) & 0xf) switch
                    {
                        0 => PortType.Endpoint,
                        1 => PortType.LegacyEndpoint,
                        4 => PortType.RootPort,
                        5 => PortType.UpstreamPort,
                        6 => PortType.DownstreamPort,
                        7 or 8 => PortType.PciBridge,
                        9 => PortType.RootComplexEndpoint,
                        10 => PortType.EventCollector,
                        _ => PortType.Unknown,
                    };
                    if ((flags & 0x100) != 0)
                    {
                        var slotCap = BinaryPrimitives.ReadUInt32LittleEndian(c.AsSpan(p + 0x14));
                        f.HotPlugSurprise = (slotCap & 0x40) != 0 && (slotCap & 0x20) != 0;
                    }
                    break;
                }
                p = c[p + 1] & 0xfc;
            }
        }
        var e = 0x100;
        for (var hops = 0; e >= 0x100 && e + 8 <= c.Length && hops < 64; hops++)
        {
            var h = BinaryPrimitives.ReadUInt32LittleEndian(c.AsSpan(e));
            if (h == 0 || h == 0xffffffff)
            {
                break;
            }
            if ((h & 0xffff) == 0x000d)
            {
                f.AcsCap = BinaryPrimitives.ReadUInt16LittleEndian(c.AsSpan(e + 4));
                f.AcsCtl = BinaryPrimitives.ReadUInt16LittleEndian(c.AsSpan(e + 6));
                break;
            }
            e = (int)(h >> 20) & 0xffc;
        }
    }

    private void ReadIommu(HostInfo host)
    {
        foreach (var unit in List("sys/class/iommu"))
        {
            Link($"sys/class/iommu/{unit}");
            host.IommuPresent = true;
            host.IommuDriver ??= unit.StartsWith("dmar", StringComparison.Ordinal) ? "intel-iommu (VT-d)"
                : unit.StartsWith("ivhd", StringComparison.Ordinal) ? "amd-iommu (AMD-Vi)"
                : unit.Contains("smmu", StringComparison.Ordinal) ? "arm-smmu" : unit;
            if (HexValue64(Text($"sys/class/iommu/{unit}/intel-iommu/cap")?.Trim() ?? "") is var cap and not 0)
            {
                var mgaw = (int)((cap >> 16) & 0x3f) + 1;
                host.IommuAddressBits = Math.Min(host.IommuAddressBits ?? 64, mgaw);
            }
        }
        foreach (var g in List("sys/kernel/iommu_groups"))
        {
            if (!int.TryParse(g, CultureInfo.InvariantCulture, out var n))
            {
                continue;
            }
            if (Text($"sys/kernel/iommu_groups/{g}/type")?.Trim() is { Length: > 0 } t)
            {
                host.GroupTypes[n] = t;
                host.IommuPolicySource = "/sys/kernel/iommu_groups/*/type";
            }
            if (Text($"sys/kernel/iommu_groups/{g}/reserved_regions") is { } rr)
            {
                foreach (var l in rr.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    var cols = l.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (cols.Length >= 3)
                    {
                        var s = HexValue64(cols[0]);
                        var e = HexValue64(cols[1]);
                        if (e > s)
                        {
                            host.IommuReserved.Add((s, e + 1, cols[2]));
                        }
                    }
                }
            }
        }
    }

    /// <summary>arm64: PCI host bridges' <c>dma-ranges</c>, <c>ranges</c> and <c>dma-coherent</c> from the flattened device tree.</summary>
    private void ReadDeviceTree(HostInfo host)
    {
        var dt = Directory.Exists(Full("sys/firmware/devicetree/base")) ? "sys/firmware/devicetree/base" : Directory.Exists(Full("proc/device-tree")) ? "proc/device-tree" : null;
        if (dt is null)
        {
            return;
        }
        var pciNodes = new List<(string Path, int ParentAddrCells)>();
        void Walk(string rel, int addrCells, int depth)
        {
            if (depth > 8)
            {
                return;
            }
            foreach (var child in List(rel))
            {
                var crel = $"{rel}/{child}";
                if (!Directory.Exists(Full(crel)))
                {
                    continue;
                }
                var dtype = Text($"{crel}/device_type")?.TrimEnd('\0');
                if (dtype == "pci" && File.Exists(Full($"{crel}/dma-ranges")))
                {
                    pciNodes.Add((crel, addrCells));
                }
                var cells = Cells($"{crel}/#address-cells") ?? 2;
                Walk(crel, cells, depth + 1);
            }
        }
        Walk(dt, Cells($"{dt}/#address-cells") ?? 2, 0);
        if (pciNodes.Count == 0)
        {
            return;
        }
        // Device-tree PCI hosts are matched to root buses in order (one host bridge per controller).
        var bridges = host.HostBridges.Values.ToList();
        for (var i = 0; i < pciNodes.Count && i < bridges.Count; i++)
        {
            var (path, pac) = pciNodes[i];
            var hb = bridges[i];
            var sizeCells = Cells($"{path}/#size-cells") ?? 2;
            if (Bytes($"{path}/dma-ranges") is { } dr)
            {
                foreach (var (bus, cpu, size) in Triples(dr, pac, sizeCells))
                {
                    hb.DmaRanges.Add((cpu, bus, size));
                }
            }
            if (Bytes($"{path}/ranges") is { } rg)
            {
                foreach (var (bus, cpu, _) in Triples(rg, pac, sizeCells))
                {
                    if (cpu != bus)
                    {
                        hb.BusOffset ??= cpu - bus;
                    }
                }
            }
            hb.DmaCoherent = File.Exists(Full($"{path}/dma-coherent"));
            if (hb.DmaCoherent == true)
            {
                _read.Add($"{path}/dma-coherent");
            }
        }
    }

    /// <summary>PCI (3-cell child address) ranges: (bus address, CPU address, size).</summary>
    private static IEnumerable<(ulong Bus, ulong Cpu, ulong Size)> Triples(byte[] b, int parentCells, int sizeCells)
    {
        var entry = (3 + parentCells + sizeCells) * 4;
        for (var o = 0; entry > 0 && o + entry <= b.Length; o += entry)
        {
            var bus = Cells64(b, o + 4, 2);
            var cpu = Cells64(b, o + 12, parentCells);
            var size = Cells64(b, o + 12 + parentCells * 4, sizeCells);
            if (size > 0)
            {
                yield return (bus, cpu, size);
            }
        }
    }

    private static ulong Cells64(byte[] b, int o, int n)
    {
        ulong v = 0;
        for (var i = 0; i < n; i++)
        {
            v = (v << 32) | BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(o + i * 4));
        }
        return v;
    }

    private int? Cells(string rel) => Bytes(rel) is { Length: 4 } b ? (int)BinaryPrimitives.ReadUInt32BigEndian(b) : null;

    private static uint? HexValue(string? s) =>
        s is not null && uint.TryParse(s.Trim().Replace("0x", "", StringComparison.Ordinal), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var v) ? v : null;

    private static ulong HexValue64(string s) =>
        ulong.TryParse(s.Trim().Replace("0x", "", StringComparison.Ordinal), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var v) ? v : 0;

    private static int? IntValue(string? s) => s is not null && int.TryParse(s.Trim(), CultureInfo.InvariantCulture, out var v) ? v : null;
}
