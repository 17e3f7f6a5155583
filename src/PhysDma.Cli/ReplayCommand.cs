using System.CommandLine;
using PhysDma.Core;
using PhysDma.Platform;
using PhysDma.Replay;
using PhysDma.Scenarios;
using Spectre.Console;

namespace PhysDma.Cli;

/// <summary>
/// <c>physdma replay TRACE</c>: the DMA API calls of a captured trace (tracefs <c>trace</c>/<c>trace_pipe</c>
/// text or <c>trace-cmd report</c>) replayed on a modelled machine, with what dma-debug and the model say.
/// </summary>
internal static class ReplayCommand
{
    /// <summary>Traces larger than this get a progress bar on a terminal.</summary>
    public const long ProgressThreshold = 50L * 1024 * 1024;

    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var trace = new Argument<string>("TRACE") { Description = "trace text: the tracefs trace or trace_pipe file, or trace-cmd report output ('-' for stdin)" };
        var machine = new Option<string>("--machine") { Description = "the machine to replay on: a built-in name or a machine file", DefaultValueFactory = _ => "default" };
        var device = new Option<string[]>("--device") { Description = "map a traced device onto a device of the machine: TRACED_DEV_NAME=NAME (repeatable)", AllowMultipleArgumentsPerToken = false };
        var json = new Option<bool>("--json") { Description = "print the JSON report instead of the table" };
        var outFile = new Option<string?>("--out") { Description = "also write the JSON report to this file" };
        var strict = new Option<bool>("--strict") { Description = "exit 1 when dma-debug reported anything" };
        var relocate = new Option<bool>("--relocate") { Description = "place traced pages in free model RAM (for a trace from another host)" };
        var html = new Option<string?>("--html")
        {
            Description = $"write a self-contained HTML report to this file: the replayed events with their trace lines, swiotlb occupancy, IOVA spaces, the lazy window (the first {ReplayReportRecorder.MaxSteps} DMA events)",
        };
        var cmd = new Command("replay", "replay a captured DMA trace on a modelled machine and report what it did and which calls are bugs")
        {
            trace, machine, device, json, outFile, strict, relocate, html,
        };
        cmd.SetAction(p => Run(p.GetRequiredValue(trace), p.GetValue(machine) ?? "default", p.GetValue(device) ?? [], p.GetValue(json),
            p.GetValue(outFile), p.GetValue(strict), p.GetValue(relocate), stdout, stderr, p.GetValue(html)));
        return cmd;
    }

    public static int Run(string tracePath, string machineName, string[] devices, bool json, string? outFile, bool strict, bool relocate,
        TextWriter stdout, TextWriter stderr, string? html = null)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var d in devices)
        {
            var eq = d.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == d.Length - 1)
            {
                stderr.WriteLine($"physdma: --device {d}: expected TRACED_DEV_NAME=NAME, e.g. --device 0000:03:00.0=nic0");
                return PhysDmaCli.ExitBadInput;
            }
            map[d[..eq]] = d[(eq + 1)..];
        }
        TraceReplay replay;
        Action<long>? progress = null;
        if (html is not null)
        {
            try
            {
                Report.HtmlReport.CheckWritable(html);
            }
            catch (ScenarioError e)
            {
                stderr.WriteLine($"physdma: {MatrixCommand.Describe(e)}");
                return PhysDmaCli.ExitBadInput;
            }
        }
        try
        {
            var config = MachineParser.Resolve(new YNode(new YamlDotNet.RepresentationModel.YamlScalarNode(machineName), "--machine", ""), Directory.GetCurrentDirectory());
            replay = new TraceReplay(config, new ReplayOptions { DeviceMap = map, Relocate = relocate, KeepCalls = true, Report = html is not null, Progress = pos => progress?.Invoke(pos) });
        }
        catch (ScenarioError e)
        {
            stderr.WriteLine($"physdma: {e.Formatted}");
            return PhysDmaCli.ExitBadInput;
        }
        catch (MachineConfigException e)
        {
            stderr.WriteLine($"physdma: --machine {machineName}: {e.Field}: {e.Message}");
            return PhysDmaCli.ExitBadInput;
        }

        ReplayReport report;
        try
        {
            using var input = tracePath == "-" ? System.Console.OpenStandardInput()
                : new FileStream(tracePath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
            var showProgress = input.CanSeek && input.Length > ProgressThreshold && ReferenceEquals(stdout, System.Console.Out)
                && !System.Console.IsOutputRedirected && !System.Console.IsErrorRedirected;
            if (showProgress)
            {
                ReplayReport? done = null;
                AnsiConsole.Progress().AutoClear(true).Start(ctx =>
                {
                    var task = ctx.AddTask("replaying", maxValue: input.Length);
                    progress = pos => task.Value = pos;
                    done = replay.Run(input, tracePath);
                });
                report = done!;
            }
            else
            {
                report = replay.Run(input, tracePath);
            }
        }
        catch (TraceFormatException e)
        {
            stderr.WriteLine($"physdma: {tracePath}:{e.Line}: {e.Message}");
            stderr.WriteLine($"  {e.Text}");
            return PhysDmaCli.ExitBadInput;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"physdma: cannot read {tracePath}: {e.Message}");
            return PhysDmaCli.ExitBadInput;
        }

        var text = report.ToJson();
        if (outFile is not null || replay.Steps is not null)
        {
            try
            {
                if (outFile is not null)
                {
                    File.WriteAllText(outFile, text);
                }
                if (replay.Steps is { } steps)
                {
                    Report.HtmlReport.WriteReplay(html!, steps.Build(report, tracePath));
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"physdma: cannot write output: {e.Message}");
                return PhysDmaCli.ExitBadInput;
            }
        }
        if (json)
        {
            stdout.Write(text);
        }
        else
        {
            Render(PhysDmaCli.Console(stdout), report);
        }
        if (report.TruncatedLastLine is not null)
        {
            stderr.WriteLine($"physdma: {tracePath}:{report.TruncatedLine}: the last line has no end (a cut-off capture?); it was not replayed");
        }
        return strict && report.DebugReports.Count > 0 ? PhysDmaCli.ExitExpectFailed : PhysDmaCli.ExitOk;
    }

    private static void Render(IAnsiConsole c, ReplayReport r)
    {
        c.MarkupLine($"[bold]replay[/] {Markup.Escape(r.Trace)} on [bold]{Markup.Escape(r.Machine)}[/] (dma-debug {(r.Debug ? "on" : "off")})");
        c.MarkupLine($"physical addresses: {Markup.Escape(ReplayReport.PolicyText(r.Policy))}");
        c.MarkupLine($"{r.Lines} lines: {r.Events} events, {r.Replayed} replayed, {r.HeaderLines} header/comment lines; " +
                     $"dma addresses: {r.AddressesCompared - r.AddressesDiffering} of {r.AddressesCompared} as traced");
        if (r.Skipped.Count > 0)
        {
            c.MarkupLine("skipped: " + Markup.Escape(string.Join(", ", r.Skipped.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => $"{k.Key} ×{k.Value}"))));
        }

        var calls = new Table().Border(TableBorder.Rounded).AddColumn("traced device").AddColumn("device").AddColumn("calls");
        foreach (var d in r.Devices)
        {
            var parts = new List<string>();
            for (var k = 1; k < d.Calls.Length - 1; k++)
            {
                if (d.Calls[k] != 0)
                {
                    parts.Add($"{TracePayload.Name((TraceEventKind)k)} {d.Calls[k]}");
                }
            }
            calls.AddRow(Markup.Escape(d.Traced), Markup.Escape(d.Model), Markup.Escape(string.Join(", ", parts)));
        }
        c.Write(calls);

        var stats = new Table().Border(TableBorder.Rounded).AddColumn("measure").AddColumn("value");
        stats.AddRow("peak swiotlb slots", $"{r.PeakSwiotlbSlots}" + (r.PeakSwiotlbHolders.Count > 0 ? $" (held by the mappings of lines {string.Join(", ", r.PeakSwiotlbHolders)})" : ""));
        stats.AddRow("peak IOVA pages", r.PeakIovaPages.ToString(System.Globalization.CultureInfo.InvariantCulture));
        stats.AddRow("bytes bounced", r.BytesBounced.ToString(System.Globalization.CultureInfo.InvariantCulture));
        stats.AddRow("cache maintenance", $"clean {r.CacheCleans}, invalidate {r.CacheInvalidates}, flush {r.CacheFlushes}");
        c.Write(stats);

        if (r.Failures.Count > 0)
        {
            var t = new Table().Border(TableBorder.Rounded).Title("calls that failed").AddColumn("line").AddColumn("device").AddColumn("call").AddColumn("why");
            foreach (var f in r.Failures)
            {
                t.AddRow(f.Line.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(f.Device), f.Event, Markup.Escape(f.Reason));
            }
            c.Write(t);
        }
        if (r.Leaks.Count > 0)
        {
            var t = new Table().Border(TableBorder.Rounded).Title("still mapped at the end of the trace").AddColumn("line").AddColumn("device").AddColumn("call").AddColumn("traced dma_addr").AddColumn("dma_addr").AddColumn("size");
            foreach (var l in r.Leaks)
            {
                t.AddRow(l.Line.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(l.Device), l.Event, Hex.Format(l.TracedDma), Hex.Format(l.ModelDma), l.Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            c.Write(t);
        }
        if (r.DebugReports.Count > 0)
        {
            var t = new Table().Border(TableBorder.Rounded).Title("dma-debug").AddColumn("line").AddColumn("check").AddColumn("report").AddColumn("trace line");
            foreach (var d in r.DebugReports)
            {
                var where = d.Line == 0 ? "end" : d.Line.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (d.MappedAtLine is { } ml)
                {
                    where += $" (mapped at {ml})";
                }
                t.AddRow(Markup.Escape(where), Markup.Escape(d.Check), Markup.Escape(d.Message), Markup.Escape(d.LineText));
            }
            c.Write(t);
        }
        else
        {
            c.MarkupLine(r.Debug ? "dma-debug: no reports" : "dma-debug: off on this machine");
        }
        c.MarkupLine("[dim]" + Markup.Escape(ReplayReport.CannotShow) + "[/]");
    }
}
