using System.Formats.Tar;
using System.Globalization;
using System.IO.Compression;
using PhysDma.Tests.Scenarios;
using static PhysDma.Tests.Hosts.HostKit;

namespace PhysDma.Tests.Hosts;

/// <summary>
/// <c>physdma machines import</c> and <c>capture</c> on the Linux machine running the tests: every PCI device of
/// /sys/bus/pci/devices is in the written file with its BARs and DMA masks (read here independently), RAM is
/// the System RAM of /proc/iomem, and a scenario runs on it with <c>--device</c>.
/// </summary>
public class LiveHostImportTests
{
    private static bool HasHost => File.Exists("/proc/iomem") || Directory.Exists("/sys/bus/pci/devices");

    [Fact]
    public void Live_host_imports_every_pci_device_with_bars_and_masks_and_runs_the_quickstart()
    {
        var dir = TempDir();
        var file = Path.Combine(dir, "host.yaml");
        var (exit, _, err) = ScenarioTestKit.CliArgs("machines", "import", "--out", file);
        if (!HasHost)
        {
            Assert.Equal(2, exit);
            Assert.Contains("not a Linux host root", err, StringComparison.Ordinal);
            return;
        }
        Assert.Equal(0, exit);
        Assert.Equal("", err);
        var yaml = File.ReadAllText(file);
        var c = Load(yaml);

        var devices = Directory.Exists("/sys/bus/pci/devices") ? Directory.GetDirectories("/sys/bus/pci/devices").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList() : [];
        foreach (var bdf in devices)
        {
            var sys = $"/sys/bus/pci/devices/{bdf}";
            var cls = Convert.ToUInt32(File.ReadAllText($"{sys}/class").Trim(), 16);
            if ((cls >> 8) is 0x0604 or 0x0609)
            {
                // Bridges are PCI nodes (root ports, switch upstream ports) or a switch's downstream ports.
                Assert.Contains(bdf!, yaml, StringComparison.Ordinal);
                continue;
            }
            var dev = c.Devices.SingleOrDefault(d => d.Bdf == bdf);
            Assert.True(dev is not null, $"{bdf} is not a device of the imported machine");
            var expected = new List<(int, ulong, ulong)>();
            var lines = File.ReadAllLines($"{sys}/resource");
            for (var i = 0; i < Math.Min(6, lines.Length); i++)
            {
                var cols = lines[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                var start = Convert.ToUInt64(cols[0], 16);
                var end = Convert.ToUInt64(cols[1], 16);
                var flags = Convert.ToUInt64(cols[2], 16);
                if ((flags & 0x200) != 0 && end > start && start != 0 && !yaml.Contains($"{bdf} BAR {i} ", StringComparison.Ordinal))
                {
                    expected.Add((i, start, end - start + 1));
                }
            }
            Assert.Equal(expected, dev.Bars.Select(b => (b.Bar, b.Base, b.Size)).ToList());
            if (File.Exists($"{sys}/dma_mask_bits"))
            {
                Assert.Equal(int.Parse(File.ReadAllText($"{sys}/dma_mask_bits").Trim(), CultureInfo.InvariantCulture), dev.DmaMaskBits);
                Assert.Equal(int.Parse(File.ReadAllText($"{sys}/consistent_dma_mask_bits").Trim(), CultureInfo.InvariantCulture), dev.CoherentDmaMaskBits);
            }
        }
        Assert.Equal(devices.Count, c.Devices.Count + c.Pci.Count(p => p.Type != PhysDma.Platform.PciNodeType.HostBridge) + DownstreamPorts(yaml));

        // RAM: the System RAM of /proc/iomem (top level), each range in whole pages.
        var ram = File.ReadAllLines("/proc/iomem").Where(l => l.EndsWith(" : System RAM", StringComparison.Ordinal) && !l.StartsWith(' '))
            .Select(l => l.Split(' ')[0].Split('-')).Select(p => (Convert.ToUInt64(p[0], 16), Convert.ToUInt64(p[1], 16) + 1)).ToList();
        var total = c.Ram.Aggregate(0UL, (s, r) => s + r.Size);
        if (ram.Any(r => r.Item2 > 1))
        {
            var page = c.PageSize;
            var raw = ram.Aggregate(0UL, (s, r) => s + (r.Item2 - r.Item1));
            var pages = 0UL;
            foreach (var (start, end) in ram)
            {
                var s = (start + page - 1) & ~(page - 1);
                var e = end & ~(page - 1);
                pages += e > s ? e - s : 0;
            }
            Assert.Equal(pages, total);
            Assert.Contains($"# RAM: {raw} bytes from /proc/iomem System RAM; {pages} bytes in whole pages", yaml, StringComparison.Ordinal);
        }
        else
        {
            // /proc/iomem without root shows zeros: RAM is MemTotal, and the file says so.
            Assert.Contains("/proc/iomem was read without root", yaml, StringComparison.Ordinal);
            Assert.True(total > 0);
        }

        // The same host imports to the same bytes.
        var again = Path.Combine(dir, "again.yaml");
        Assert.Equal(0, ScenarioTestKit.CliArgs("machines", "import", "--out", again).Exit);
        Assert.Equal(yaml, File.ReadAllText(again));

        // A scenario written for nic0 runs on the machine's first device.
        var first = c.Devices.FirstOrDefault()?.Bdf;
        if (first is not null)
        {
            var (rexit, rout, rerr) = ScenarioTestKit.CliArgs("run", ScenarioTestKit.Example("quickstart.yaml"), "--machine", file, "--device", $"nic0={first}", "--json");
            Assert.Equal("", rerr);
            Assert.True(rexit is 0 or 1, rout);
            Assert.Matches("\"dev\":\\s*\"nic0\"", rout);
        }
    }

    [Fact]
    public void Capture_packs_what_import_reads_and_imports_to_the_same_machine()
    {
        if (!HasHost)
        {
            Assert.Equal(2, ScenarioTestKit.CliArgs("machines", "import").Exit);
            return;
        }
        var dir = TempDir();
        var tar = Path.Combine(dir, "host.tar.gz");
        var (exit, _, err) = ScenarioTestKit.CliArgs("machines", "capture", tar);
        Assert.Equal(0, exit);
        Assert.Equal("", err);
        var names = new List<string>();
        using (var gz = new GZipStream(File.OpenRead(tar), CompressionMode.Decompress))
        using (var reader = new TarReader(gz))
        {
            while (reader.GetNextEntry() is { } e)
            {
                names.Add(e.Name);
            }
        }
        Assert.Contains("proc/iomem", names);
        Assert.DoesNotContain(names, n => n.StartsWith('/') || n.Contains("..", StringComparison.Ordinal));
        if (Directory.Exists("/sys/bus/pci/devices"))
        {
            foreach (var d in Directory.GetDirectories("/sys/bus/pci/devices"))
            {
                Assert.Contains($"sys/bus/pci/devices/{Path.GetFileName(d)}", names);
            }
        }
        var root = Path.Combine(dir, "root");
        Directory.CreateDirectory(root);
        TarFile.ExtractToDirectory(new GZipStream(File.OpenRead(tar), CompressionMode.Decompress), root, overwriteFiles: false);
        var live = ScenarioTestKit.CliArgs("machines", "import");
        var captured = ScenarioTestKit.CliArgs("machines", "import", "--root", root);
        Assert.Equal(0, captured.Exit);
        Assert.Equal(live.Out, captured.Out);
    }

    private static int DownstreamPorts(string yaml) =>
        yaml.Split('\n').Count(l => l.TrimStart().StartsWith("# downstream port ", StringComparison.Ordinal));
}
