using System.Globalization;
using PhysDma.Dma;
using PhysDma.Platform;
using PhysDma.Scenarios;
using PhysDma.Tools;

namespace PhysDma.Cli;

/// <summary>
/// <c>physdma bench map</c>: the kernel's tools/dma/dma_map_benchmark on a modelled machine. The same short
/// options (<c>-t -s -n -b -d -x -g -m</c>, read with getopt's rules and atoi's), the same checks and
/// messages, the same three output lines; plus <c>--machine NAME|FILE</c> and <c>--device NAME</c> to pick
/// what the kernel tool gets from the driver binding.
/// </summary>
internal static class BenchMapCommand
{
    /// <summary>Help text for the subcommand: what the options mean.</summary>
    public const string Description =
        "map and unmap as fast as possible on a modelled device, like the kernel's dma_map_benchmark: " +
        "-t THREADS (1-1024, default 1) -s SECONDS (1-300, default 20) -n NODE (-1 or 0) -b DMA_MASK_BITS (20-64, default 32) " +
        "-d DIR (0 BIDIRECTIONAL, 1 TO_DEVICE, 2 FROM_DEVICE) -x TRANSFER_NS (0-10000000) -g GRANULE_PAGES (1-1024) " +
        "-m MODE (0 single, 1 scatter-gather); --machine NAME|FILE (default: default), --device NAME (default: the machine's first device)";

    private const string OptString = "tsnbdxgm";

    public static int Run(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        // The tool's defaults: one thread, 20 seconds, NUMA_NO_NODE, 32-bit mask, bidirectional, one page, single mode.
        int threads = 1, seconds = 20, node = -1, bits = 32, dir = 0, xdelay = 0, granule = 1, mode = 0;
        var modeGiven = false;
        string machineName = "default";
        string? deviceName = null;

        for (var i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (a == "--")
            {
                break;
            }
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                var eq = a.IndexOf('=', StringComparison.Ordinal);
                var name = eq < 0 ? a : a[..eq];
                if (name is not ("--machine" or "--device"))
                {
                    stderr.WriteLine($"physdma bench map: unrecognized option '{a}'");
                    return PhysDmaCli.ExitBadInput;
                }
                string value;
                if (eq >= 0)
                {
                    value = a[(eq + 1)..];
                }
                else if (i + 1 < args.Count)
                {
                    value = args[++i];
                }
                else
                {
                    stderr.WriteLine($"physdma bench map: option '{name}' requires an argument");
                    return PhysDmaCli.ExitBadInput;
                }
                if (name == "--machine")
                {
                    machineName = value;
                }
                else
                {
                    deviceName = value;
                }
                continue;
            }
            if (a.Length < 2 || a[0] != '-')
            {
                // getopt leaves operands alone, and the tool never looks at them.
                continue;
            }
            // Every option takes an argument, so the option letter is followed by its value ("-t2") or the next word.
            var c = a[1];
            if (!OptString.Contains(c, StringComparison.Ordinal))
            {
                stderr.WriteLine($"physdma bench map: invalid option -- '{c}'");
                return PhysDmaCli.ExitBadInput;
            }
            string optarg;
            if (a.Length > 2)
            {
                optarg = a[2..];
            }
            else if (i + 1 < args.Count)
            {
                optarg = args[++i];
            }
            else
            {
                stderr.WriteLine($"physdma bench map: option requires an argument -- '{c}'");
                return PhysDmaCli.ExitBadInput;
            }
            var v = Atoi(optarg);
            switch (c)
            {
                case 't': threads = v; break;
                case 's': seconds = v; break;
                case 'n': node = v; break;
                case 'b': bits = v; break;
                case 'd': dir = v; break;
                case 'x': xdelay = v; break;
                case 'g': granule = v; break;
                default: mode = v; modeGiven = true; break;
            }
        }

        // The tool's own checks, in its order and with its words.
        string? bad =
            mode is < 0 or > MapBenchmarkParams.SgMode ? $"invalid map mode, SINGLE_MODE:{MapBenchmarkParams.SingleMode}, SG_MODE: {MapBenchmarkParams.SgMode}"
            : threads is <= 0 or > MapBenchmarkParams.MaxThreads ? $"invalid number of threads, must be in 1-{MapBenchmarkParams.MaxThreads}"
            : seconds is <= 0 or > MapBenchmarkParams.MaxSeconds ? $"invalid number of seconds, must be in 1-{MapBenchmarkParams.MaxSeconds}"
            : xdelay is < 0 or > MapBenchmarkParams.MaxTransDelayNs ? $"invalid transmit delay, must be in 0-{MapBenchmarkParams.MaxTransDelayNs}"
            : bits is < 20 or > 64 ? "invalid dma mask bit, must be in 20-64"
            : dir is not (0 or 1 or 2) ? "invalid dma direction"
            : granule is < 1 or > 1024 ? "invalid granule size"
            : null;
        if (bad is not null)
        {
            stderr.WriteLine(bad);
            return PhysDmaCli.ExitBadInput;
        }

        MachineConfig config;
        try
        {
            config = MachineParser.Resolve(new YNode(new YamlDotNet.RepresentationModel.YamlScalarNode(machineName), "--machine", ""), Directory.GetCurrentDirectory());
        }
        catch (ScenarioError e)
        {
            stderr.WriteLine($"physdma: {e.Formatted}");
            return PhysDmaCli.ExitBadInput;
        }
        Machine machine;
        DmaApi api;
        try
        {
            machine = new Machine(config);
            api = new DmaApi(machine);
        }
        catch (MachineConfigException e)
        {
            stderr.WriteLine($"physdma: machine '{config.Name}': {e.Field}: {e.Message}");
            return PhysDmaCli.ExitBadInput;
        }
        deviceName ??= config.Devices.Count > 0 ? config.Devices[0].Name : null;
        if (deviceName is null || !machine.TryGetDevice(deviceName, out var dev))
        {
            stderr.WriteLine($"physdma: --device: machine '{config.Name}' has no device '{deviceName}' (it has: {string.Join(", ", config.Devices.Select(d => d.Name))})");
            return PhysDmaCli.ExitBadInput;
        }

        var p = new MapBenchmarkParams
        {
            Threads = threads,
            Seconds = seconds,
            Node = node,
            DmaBits = bits,
            Dir = dir,
            TransNs = xdelay,
            Granule = granule,
            Mode = mode,
        };
        MapBenchmarkResult r;
        try
        {
            r = MapBenchmark.Run(api, dev, p);
        }
        catch (MapBenchmarkException e)
        {
            // What the driver logs, then the tool's perror("ioctl").
            stderr.WriteLine($"dma_map_benchmark: {e.Message}");
            stderr.WriteLine($"ioctl: {StrError(e.Errno)}");
            return e.Errno == Core.Errno.EINVAL ? PhysDmaCli.ExitBadInput : PhysDmaCli.ExitExpectFailed;
        }

        var inv = CultureInfo.InvariantCulture;
        // Without -m, the line of tools/dma/dma_map_benchmark as released; with it, the line of the series adding -m.
        stdout.WriteLine(modeGiven
            ? string.Create(inv, $"dma mapping benchmark({MapBenchmarkParams.Modes[mode]}): threads:{threads} seconds:{seconds} node:{node} dir:{MapBenchmarkParams.Directions[dir]} granule:{granule}")
            : string.Create(inv, $"dma mapping benchmark: threads:{threads} seconds:{seconds} node:{node} dir:{MapBenchmarkParams.Directions[dir]} granule: {granule}"));
        stdout.WriteLine(string.Create(inv, $"average map latency(us):{r.AvgMap100ns / 10.0:F1} standard deviation:{r.MapStddev / 10.0:F1}"));
        stdout.WriteLine(string.Create(inv, $"average unmap latency(us):{r.AvgUnmap100ns / 10.0:F1} standard deviation:{r.UnmapStddev / 10.0:F1}"));
        return PhysDmaCli.ExitOk;
    }

    /// <summary>C's <c>atoi</c>: leading blanks, a sign, digits; anything else ends the number, nothing gives 0.</summary>
    public static int Atoi(string s)
    {
        var i = 0;
        while (i < s.Length && s[i] is ' ' or '\t' or '\n' or '\v' or '\f' or '\r')
        {
            i++;
        }
        var neg = false;
        if (i < s.Length && s[i] is '+' or '-')
        {
            neg = s[i] == '-';
            i++;
        }
        long v = 0;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            // Saturate instead of glibc's undefined overflow, so a huge value is out of range, not wrapped into it.
            v = Math.Min(v * 10 + (s[i] - '0'), (long)int.MaxValue + 1);
            i++;
        }
        v = neg ? -v : v;
        return (int)Math.Clamp(v, int.MinValue, int.MaxValue);
    }

    private static string StrError(Core.Errno e) => e switch
    {
        Core.Errno.EINVAL => "Invalid argument",
        Core.Errno.ENOMEM => "Cannot allocate memory",
        _ => e.ToString(),
    };
}
