using System.CommandLine;
using PhysDma.Hosts;

namespace PhysDma.Cli;

/// <summary><c>physdma machines import</c> and <c>physdma machines capture</c>: real machines in.</summary>
internal static class MachinesImportCommand
{
    public static void Register(Command machines, TextWriter stdout, TextWriter stderr)
    {
        var root = new Option<string?>("--root") { HelpName = "DIR", Description = "read the host's /proc and /sys under DIR (an unpacked capture) instead of this host's" };
        var outFile = new Option<string?>("--out") { HelpName = "FILE", Description = "write the machine file here (default: standard output)" };
        var name = new Option<string?>("--name") { HelpName = "NAME", Description = "the machine's name in its description (default: host)" };
        var fromText = new Option<string[]>("--from-text")
        {
            HelpName = "FILE",
            Description = "read text as posted in bug reports instead: /proc/iomem, lspci -tv, lspci -vvv, dmesg (any mix)",
            AllowMultipleArgumentsPerToken = true,
        };
        var import = new Command("import", "write a machine file for a real Linux host, a captured one, or one described by pasted text")
        {
            root, outFile, name, fromText,
        };
        import.SetAction(p => Import(p.GetValue(root), p.GetValue(outFile), p.GetValue(name), p.GetValue(fromText), stdout, stderr));
        machines.Add(import);

        var tarFile = new Argument<string>("OUT.tar.gz") { Description = "the archive to write" };
        var captureRoot = new Option<string?>("--root") { HelpName = "DIR", Description = "capture from DIR instead of / (for testing)" };
        var capture = new Command("capture", "pack the /proc and /sys files `machines import` reads into a .tar.gz to send to someone else") { tarFile, captureRoot };
        capture.SetAction(p => Capture(p.GetRequiredValue(tarFile), p.GetValue(captureRoot), stdout, stderr));
        machines.Add(capture);
    }

    public static int Import(string? root, string? outFile, string? name, string[]? fromText, TextWriter stdout, TextWriter stderr)
    {
        ImportedMachine m;
        try
        {
            if (fromText is { Length: > 0 })
            {
                if (root is not null)
                {
                    stderr.WriteLine("physdma: --root and --from-text cannot be used together");
                    return PhysDmaCli.ExitBadInput;
                }
                m = HostImport.FromText(fromText, name ?? "imported");
            }
            else
            {
                m = HostImport.FromRoot(root ?? "/", name ?? "host");
            }
        }
        catch (HostImportError e)
        {
            stderr.WriteLine($"physdma: {e.Formatted}");
            return PhysDmaCli.ExitBadInput;
        }
        if (outFile is null)
        {
            stdout.Write(m.Yaml);
            return PhysDmaCli.ExitOk;
        }
        try
        {
            File.WriteAllText(outFile, m.Yaml);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"physdma: cannot write {outFile}: {e.Message}");
            return PhysDmaCli.ExitBadInput;
        }
        stdout.WriteLine($"physdma: wrote {outFile}: {m.Devices.Count} devices, {m.Nodes.Count} PCI nodes, {m.Assumed.Count} assumed values (listed at the top of the file)");
        return PhysDmaCli.ExitOk;
    }

    public static int Capture(string outFile, string? root, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            var (files, links) = HostImport.Capture(root ?? "/", outFile);
            stdout.WriteLine($"physdma: wrote {outFile}: {files} files and {links} links; import it with: tar xzf {Path.GetFileName(outFile)} -C DIR && physdma machines import --root DIR");
            return PhysDmaCli.ExitOk;
        }
        catch (HostImportError e)
        {
            stderr.WriteLine($"physdma: {e.Formatted}");
            return PhysDmaCli.ExitBadInput;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"physdma: cannot write {outFile}: {e.Message}");
            return PhysDmaCli.ExitBadInput;
        }
    }
}
