using System.Formats.Tar;
using System.IO.Compression;

namespace PhysDma.Hosts;

/// <summary>
/// <c>physdma machines import</c> and <c>capture</c>: a machine file from a live Linux host (or a copy of its
/// <c>/proc</c> and <c>/sys</c>), or from text pasted in bug reports.
/// </summary>
internal static class HostImport
{
    /// <summary>Reads the host under <paramref name="root"/> ("/" for this one) and writes its machine file.</summary>
    public static ImportedMachine FromRoot(string root, string name)
    {
        var reader = new SysfsReader(root);
        if (!File.Exists(Path.Combine(root, "proc/iomem")) && !reader.HasPci)
        {
            throw new HostImportError(root, 0, "neither proc/iomem nor sys/bus/pci/devices is there: not a Linux host root");
        }
        return Finish(reader.Read(), name);
    }

    /// <summary>Reads any mix of /proc/iomem, lspci -tv, lspci -vvv and kernel log files.</summary>
    public static ImportedMachine FromText(IReadOnlyList<string> files, string name)
    {
        var host = new HostInfo();
        foreach (var file in files)
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new HostImportError(file, 0, $"cannot read: {e.Message}");
            }
            ReadText(lines, file, host);
        }
        return Finish(host, name);
    }

    /// <summary>Detects the kind of one text file by its first meaningful line and reads it into <paramref name="host"/>.</summary>
    public static void ReadText(string[] lines, string file, HostInfo host)
    {
        var first = lines.Select((l, i) => (l: l.TrimEnd('\r'), i)).FirstOrDefault(x => x.l.Trim().Length > 0 && !x.l.TrimStart().StartsWith("....", StringComparison.Ordinal));
        if (first.l is null)
        {
            throw new HostImportError(file, 0, "the file is empty");
        }
        if (IomemReader.Looks(first.l))
        {
            IomemReader.Read(lines, file, host);
        }
        else if (LspciReader.LooksTree(first.l))
        {
            LspciReader.ReadTree(lines, file, host);
        }
        else if (LspciReader.LooksVerbose(first.l))
        {
            LspciReader.ReadVerbose(lines, file, host);
        }
        else if (DmesgReader.Looks(first.l) || DmesgReader.LooksUnstamped(lines))
        {
            DmesgReader.Read(lines, file, host);
        }
        else
        {
            throw new HostImportError(file, first.i + 1,
                "not /proc/iomem, lspci -tv, lspci -vvv or kernel log output (the first line is none of them)");
        }
    }

    public static ImportedMachine Finish(HostInfo host, string name)
    {
        if (host.PendingInboundList.Count > 0)
        {
            // Windows printed with no host bridge line after them apply to every host bridge the input names.
            foreach (var hb in host.HostBridges.Values)
            {
                hb.DmaRanges.AddRange(host.PendingInboundList);
            }
            if (host.HostBridges.Count == 0)
            {
                host.Bridge(0, 0).DmaRanges.AddRange(host.PendingInboundList);
            }
            host.PendingInboundList.Clear();
        }
        return MachineWriter.Write(host, name);
    }

    /// <summary>
    /// Packs exactly the files (and the links leading to them) that an import of <paramref name="root"/> reads
    /// into a gzipped tar; <c>import --root</c> on the unpacked tree gives the same machine.
    /// </summary>
    public static (int Files, int Links) Capture(string root, string outFile)
    {
        var reader = new SysfsReader(root);
        if (!File.Exists(Path.Combine(root, "proc/iomem")) && !reader.HasPci)
        {
            throw new HostImportError(root, 0, "neither proc/iomem nor sys/bus/pci/devices is there: not a Linux host root");
        }
        reader.Read();
        var fullRoot = Path.GetFullPath(root);
        var entries = new SortedDictionary<string, (byte[]? Data, string? Link)>(StringComparer.Ordinal);
        string Physical(string rel)
        {
            var full = Path.GetFullPath(Path.Combine(fullRoot, rel));
            var dir = SysfsReader.Resolve(Path.GetDirectoryName(full)!);
            return Path.GetRelativePath(fullRoot, Path.Combine(dir, Path.GetFileName(full))).Replace('\\', '/');
        }
        foreach (var (rel, target) in reader.LinksRead)
        {
            entries[Physical(rel)] = (null, target);
        }
        var files = 0;
        foreach (var rel in reader.FilesRead)
        {
            var phys = Physical(rel);
            if (entries.ContainsKey(phys) || phys.StartsWith("..", StringComparison.Ordinal))
            {
                continue;
            }
            byte[] data;
            try
            {
                data = ReadSome(Path.Combine(fullRoot, rel));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            entries[phys] = (data, null);
            files++;
        }
        using var fs = File.Create(outFile);
        using var gz = new GZipStream(fs, CompressionLevel.Optimal);
        using var tar = new TarWriter(gz, TarEntryFormat.Pax, leaveOpen: false);
        var stamp = new DateTimeOffset(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var links = 0;
        foreach (var (name, (data, link)) in entries)
        {
            if (link is not null)
            {
                tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = link, ModificationTime = stamp });
                links++;
                continue;
            }
            var e = new PaxTarEntry(TarEntryType.RegularFile, name)
            {
                DataStream = new MemoryStream(data!),
                ModificationTime = stamp,
                Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
            };
            tar.WriteEntry(e);
        }
        return (files, links);
    }

    /// <summary>sysfs files report a size of 4096 whatever they hold: read until the end.</summary>
    private static byte[] ReadSome(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var ms = new MemoryStream();
        var buf = new byte[8192];
        int n;
        while ((n = s.Read(buf, 0, buf.Length)) > 0 && ms.Length < (1 << 20))
        {
            ms.Write(buf, 0, n);
        }
        return ms.ToArray();
    }
}
