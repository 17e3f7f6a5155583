using System.CommandLine;
using PhysDma.Dma.Trace;
using PhysDma.Scenarios;
using Spectre.Console;

namespace PhysDma.Cli;

/// <summary>The <c>physdma</c> command: run scenarios, list and show built-in machines, run the map benchmark.</summary>
internal static class PhysDmaCli
{
    public static int Invoke(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = Build(stdout, stderr);
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors)
            {
                stderr.WriteLine($"physdma: {e.Message}");
            }
            stderr.WriteLine("physdma: try 'physdma --help'");
            return ExitBadInput;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return ScenarioInput.InternalError(e, string.Join(' ', args), stderr);
        }
    }

    // The exit codes (README.md, docs/errors.md): 0 every expectation held, 1 one failed, 2 bad input.
    public const int ExitOk = 0;
    public const int ExitExpectFailed = 1;
    public const int ExitBadInput = 2;

    /// <summary>A defect in PhysDma itself (an exception nothing expected): never 0, 1 or 2.</summary>
    public const int ExitInternalError = 3;

    private static RootCommand Build(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("PhysDma: an executable model of the Linux DMA mapping layer (dma_map_phys, DMA_ATTR_MMIO).");

        var file = new Argument<string>("FILE") { Description = "scenario file (YAML or JSON)" };
        var machine = new Option<string?>("--machine") { Description = "run on this machine instead of the scenario's (a built-in name or a machine file)" };
        var json = new Option<bool>("--json") { Description = "print the JSON result instead of the table" };
        var outFile = new Option<string?>("--out") { Description = "also write the JSON result to this file" };
        var trace = new Option<string?>("--trace") { Description = "write the trace events, as the tracefs trace file shows them, to this file" };
        var traceEvents = new Option<string>("--trace-events") { Description = "event systems to trace, like trace-cmd record -e: any of dma,swiotlb,iommu", DefaultValueFactory = _ => "dma" };
        var device = new Option<string[]>("--device") { Description = "NAME=TARGET: run the scenario's device NAME on the machine's device TARGET (a name or a PCI address); repeatable" };
        var strict = new Option<bool>("--strict") { Description = "also fail on any dma-debug report, device fault, WARN or BUG that no expect names" };
        var html = new Option<string?>("--html") { Description = "write a self-contained HTML report to this file" };
        var explain = new Option<bool>("--explain") { Description = "show each step's decision trail under it" };
        var maxMemory = new Option<string?>("--max-memory") { Description = "stop when the modelled bytes would take more host memory than this (default 4GiB)" };
        var run = new Command("run", "run a scenario (a file, or - for standard input) and report what every step did")
        {
            file, machine, json, outFile, trace, traceEvents, device, strict, html, explain, maxMemory,
        };
        run.SetAction(p => ScenarioInput.WithBudget(p.GetValue(maxMemory), stderr, budget =>
            Run(p.GetRequiredValue(file), p.GetValue(machine), p.GetValue(json), p.GetValue(outFile), p.GetValue(trace), stdout, stderr,
                p.GetValue(traceEvents) ?? "dma", p.GetValue(device), new RunExtras(p.GetValue(strict), p.GetValue(html), p.GetValue(explain), budget))));
        root.Add(run);
        root.Add(ReplayCommand.Build(stdout, stderr));
        MatrixCommand.Register(root, stdout, stderr);

        var machines = new Command("machines", "list the built-in machine profiles");
        machines.SetAction(_ => ListMachines(stdout));
        var name = new Argument<string>("NAME") { Description = "profile name" };
        var show = new Command("show", "print a built-in machine as a machine file (YAML)") { name };
        show.SetAction(p => ShowMachine(p.GetRequiredValue(name), stdout, stderr));
        machines.Add(show);
        MachinesImportCommand.Register(machines, stdout, stderr);
        root.Add(machines);

        var bench = new Command("bench", "benchmarks that ship with the tool (the BenchmarkDotNet suite runs from the source tree: " +
                                         "dotnet run -c Release --project bench/PhysDma.Benchmarks -- --filter ...)");
        var benchMap = new Command("map", BenchMapCommand.Description) { TreatUnmatchedTokensAsErrors = false };
        benchMap.SetAction(p => BenchMapCommand.Run(p.UnmatchedTokens, stdout, stderr));
        bench.Add(benchMap);
        root.Add(bench);
        root.Add(SchemaCommand.Build(stdout));
        return root;
    }

    /// <summary>Spectre.Console on a writer: colours on a terminal, a fixed wide layout for files and pipes.</summary>
    internal static IAnsiConsole Console(TextWriter w)
    {
        var terminal = ReferenceEquals(w, System.Console.Out) && !System.Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(w),
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        if (!terminal)
        {
            // Files and pipes get a fixed, wide layout so reports are readable and stable.
            console.Profile.Width = 160;
        }
        return console;
    }

    /// <summary>The options of <c>run</c> added after the first five.</summary>
    public sealed record RunExtras(bool Strict = false, string? Html = null, bool Explain = false, ulong MaxMemory = ScenarioRunner.DefaultMaxMemory);

    public static int Run(string path, string? machine, bool json, string? outFile, string? tracePath, TextWriter stdout, TextWriter stderr,
        string traceEvents = "dma", string[]? devices = null, RunExtras? extras = null)
    {
        extras ??= new RunExtras();
        if (DmaTrace.ParseEvents(traceEvents, out var eventsError) is not { } events)
        {
            stderr.WriteLine($"physdma: --trace-events: {eventsError}");
            return ExitBadInput;
        }
        RunResult result;
        ScenarioRunner runner;
        Scenario scenario;
        Scenarios.Report.ReportRecorder? rec = null;
        try
        {
            if (extras.Html is not null)
            {
                Report.HtmlReport.CheckWritable(extras.Html);
            }
            scenario = ScenarioInput.Parse(path, machine, [.. (devices ?? []).Select(DeviceAliases.ParseOption)]);
            runner = new ScenarioRunner(scenario);
            runner.Api.Trace.Events = tracePath is null ? TraceEvents.None : events;
            runner.MaxMemory = extras.MaxMemory;
            if (extras.Html is not null)
            {
                rec = Scenarios.Report.ReportRecorder.Attach(runner);
            }
            result = runner.Run();
        }
        catch (ScenarioError e)
        {
            stderr.WriteLine($"physdma: {MatrixCommand.Describe(e)}");
            return ExitBadInput;
        }
        catch (Exception e)
        {
            return ScenarioInput.InternalError(e, path, stderr);
        }
        var text = result.ToJson();
        try
        {
            if (outFile is not null)
            {
                File.WriteAllText(outFile, text);
            }
            if (tracePath is not null)
            {
                using var w = new StreamWriter(tracePath);
                runner.Api.Trace.WriteTo(w, runner.Api.Machine.Cpus);
            }
            if (rec is not null)
            {
                Report.HtmlReport.WriteRun(extras.Html!, rec.Build(result, path));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stderr.WriteLine($"physdma: cannot write output: {e.Message}");
            return ExitBadInput;
        }
        if (json)
        {
            stdout.Write(text);
        }
        else
        {
            ResultView.Render(Console(stdout), result, extras.Explain);
        }
        var unexpected = extras.Strict ? StrictCheck.Unexpected(scenario, result) : [];
        foreach (var u in unexpected)
        {
            stderr.WriteLine($"physdma: --strict: {u}");
        }
        return result.Ok && unexpected.Count == 0 ? ExitOk : ExitExpectFailed;
    }

    private static int ListMachines(TextWriter stdout)
    {
        var console = Console(stdout);
        var table = new Table().Border(TableBorder.Rounded).AddColumn("machine").AddColumn("what it is");
        foreach (var n in Profiles.Names)
        {
            table.AddRow(Markup.Escape(n), Markup.Escape(Profiles.Description(n)));
        }
        console.Write(table);
        return ExitOk;
    }

    private static int ShowMachine(string name, TextWriter stdout, TextWriter stderr)
    {
        var yaml = Profiles.YamlOf(name);
        if (yaml is null)
        {
            stderr.WriteLine($"physdma: unknown machine '{name}' (built-in: {string.Join(", ", Profiles.Names)})");
            return ExitBadInput;
        }
        stdout.Write(yaml);
        return ExitOk;
    }
}
