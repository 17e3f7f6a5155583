using System.CommandLine;
using System.Text.Json.Nodes;
using PhysDma.Cli.Report;
using PhysDma.Scenarios;
using PhysDma.Scenarios.Matrix;
using Spectre.Console;

namespace PhysDma.Cli;

/// <summary><c>physdma matrix</c> (every scenario on every machine) and <c>physdma merge</c> (join shards of one).</summary>
internal static class MatrixCommand
{
    public static void Register(RootCommand root, TextWriter stdout, TextWriter stderr)
    {
        var files = new Argument<string[]>("FILE") { Description = "scenario files", Arity = ArgumentArity.OneOrMore };
        var machines = new Option<string[]>("--machines") { Description = "all (the default), NAME,NAME,..., or machine files", AllowMultipleArgumentsPerToken = true };
        var json = new Option<bool>("--json") { Description = "print the matrix document (physdma-matrix/1) instead of the table" };
        var html = new Option<string?>("--html") { Description = "write a self-contained HTML report to this file" };
        var strict = new Option<bool>("--strict") { Description = "also fail on any dma-debug report, device fault, WARN or BUG that no expect names" };
        var ignore = new Option<bool>("--ignore-expect") { Description = "check no expectations: show outcomes only" };
        var explain = new Option<bool>("--explain") { Description = "show each cell's decision trail under it" };
        var shard = new Option<string?>("--shard") { Description = "run only the i-th of n slices of the scenario x machine product (i/n)" };
        var device = new Option<string[]>("--device") { Description = "NAME=TARGET: run the scenario's device NAME on each machine's device TARGET (as run --device); repeatable" };
        var jobs = new Option<int?>("--jobs") { Description = "how many runs at once (default: the number of cores)" };
        var matrix = new Command("matrix", "run every scenario on every machine and show step x machine, differences marked")
        {
            files, machines, device, json, html, strict, ignore, explain, shard, jobs,
        };
        matrix.SetAction(p => Run(p.GetRequiredValue(files), p.GetValue(machines) ?? [], p.GetValue(json), p.GetValue(html),
            p.GetValue(strict), p.GetValue(ignore), p.GetValue(explain), p.GetValue(shard), p.GetValue(jobs), stdout, stderr, p.GetValue(device) ?? []));
        root.Add(matrix);

        var pieces = new Argument<string[]>("RESULT") { Description = "matrix --json results of the shards of one matrix", Arity = ArgumentArity.OneOrMore };
        var merge = new Command("merge", "join the --json results of matrix shards into the result of the whole matrix") { pieces };
        merge.SetAction(p => Merge(p.GetRequiredValue(pieces), stdout, stderr));
        root.Add(merge);
    }

    public static int Run(string[] files, string[] machineArgs, bool json, string? html, bool strict, bool ignoreExpect, bool explain,
        string? shardText, int? jobs, TextWriter stdout, TextWriter stderr, string[]? devices = null)
    {
        MatrixRun run;
        Shard shard;
        try
        {
            shard = shardText is null ? Shard.All : Shard.Parse(shardText);
            foreach (var f in files.Where(f => !File.Exists(f)))
            {
                throw new ScenarioError(f, 0, "", "no such scenario file");
            }
            run = new MatrixRun
            {
                Files = files,
                Machines = MatrixRun.ResolveMachines(machineArgs),
                Options = new MatrixOptions(strict, ignoreExpect, html is not null) { Devices = [.. (devices ?? []).Select(DeviceAliases.ParseOption)] },
            };
            if (html is not null)
            {
                HtmlReport.CheckWritable(html);
            }
        }
        catch (ScenarioError e)
        {
            stderr.WriteLine($"physdma: {Describe(e)}");
            return PhysDmaCli.ExitBadInput;
        }

        var parallelism = jobs ?? Environment.ProcessorCount;
        var terminal = ReferenceEquals(stdout, System.Console.Out) && !System.Console.IsOutputRedirected && !json;
        if (terminal)
        {
            AnsiConsole.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var (lo, hi) = shard.Range(run.Total);
                    var task = ctx.AddTask($"{hi - lo} runs", maxValue: hi - lo);
                    run.Run(shard, parallelism, _ => task.Increment(1));
                });
        }
        else
        {
            run.Run(shard, parallelism);
        }

        var doc = run.ToJson(shard);
        if (html is not null)
        {
            try
            {
                HtmlReport.WriteMatrix(html, doc, run.Cells.OrderBy(c => c.Index).Select(c => c.Report).OfType<JsonObject>().ToList());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"physdma: --html: cannot write '{html}': {e.Message}");
                return PhysDmaCli.ExitBadInput;
            }
        }
        if (json)
        {
            stdout.Write(MatrixRun.Text(doc));
        }
        else
        {
            Render(PhysDmaCli.Console(stdout), doc, explain);
        }
        return run.ExitCode;
    }

    /// <summary>An error in an option names the option; one in a file names file, line and field.</summary>
    public static string Describe(ScenarioError e) =>
        e.File.StartsWith("--", StringComparison.Ordinal) && e.Line == 0 ? $"{e.File}: {e.Message}" : e.Formatted;

    public static int Merge(string[] paths, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            var pieces = new List<(string, string)>();
            foreach (var p in paths)
            {
                try
                {
                    pieces.Add((p, File.ReadAllText(p)));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new ScenarioError(p, 0, "", $"cannot read: {e.Message}");
                }
            }
            var doc = MatrixRun.Merge(pieces);
            stdout.Write(MatrixRun.Text(doc));
            return MatrixRun.ExitOf(doc);
        }
        catch (ScenarioError e)
        {
            stderr.WriteLine($"physdma: {Describe(e)}");
            return PhysDmaCli.ExitBadInput;
        }
    }

    /// <summary>One table per scenario: a row per step, a column per machine; a row whose cells differ is marked.</summary>
    public static void Render(IAnsiConsole console, JsonObject doc, bool explain)
    {
        var machines = doc["machines"]!.AsArray().Select(m => (string)m!["name"]!).ToList();
        var cells = doc["cells"]!.AsArray().Select(c => c!.AsObject()).ToList();
        foreach (var byFile in cells.GroupBy(c => (string)c["file"]!))
        {
            console.MarkupLine($"[bold]{Markup.Escape(byFile.Key)}[/]");
            var grid = Grid.Of(byFile, machines);
            var table = new Table().Border(TableBorder.Rounded).AddColumn("#").AddColumn("step").AddColumn("");
            foreach (var m in grid.Machines)
            {
                table.AddColumn(Markup.Escape(m));
            }
            foreach (var row in grid.Rows)
            {
                var cols = new List<string> { Markup.Escape(row.Index), Markup.Escape(row.Label), row.Differs ? "[yellow]≠[/]" : "" };
                foreach (var (text, why, ok) in row.Cells)
                {
                    var t = Markup.Escape(text);
                    if (!ok)
                    {
                        t = $"[red]{t} FAIL[/]";
                    }
                    else if (row.Differs)
                    {
                        t = $"[yellow]{t}[/]";
                    }
                    if (explain && why.Count > 0)
                    {
                        t += "\n[dim]" + Markup.Escape(string.Join("\n", why)) + "[/]";
                    }
                    cols.Add(t);
                }
                table.AddRow([.. cols]);
            }
            var status = new List<string> { "", "[bold]status[/]", "" };
            status.AddRange(grid.Status.Select(s => s.StartsWith("ok", StringComparison.Ordinal) ? "[green]ok[/]" : $"[red]{Markup.Escape(s)}[/]"));
            table.AddRow([.. status]);
            console.Write(table);
        }
        var bad = cells.Count(c => (string?)c["status"] != "ok");
        console.MarkupLine(bad == 0 ? $"[green]OK[/]: {cells.Count} runs" : $"[red]{bad} of {cells.Count} runs did not hold[/]");
    }
}

/// <summary>The step × machine grid of one scenario, shared by the table and the HTML report.</summary>
internal sealed record Grid(IReadOnlyList<string> Machines, IReadOnlyList<GridRow> Rows, IReadOnlyList<string> Status)
{
    public static Grid Of(IEnumerable<JsonObject> cellsOfOneFile, IReadOnlyList<string> machineOrder)
    {
        var cells = cellsOfOneFile.OrderBy(c => machineOrder.ToList().IndexOf((string)c["machine"]!)).ToList();
        var machines = cells.Select(c => (string)c["machine"]!).ToList();
        var steps = cells.Select(c => c["result"]?["steps"]?.AsArray().Select(s => s!.AsObject()).ToList() ?? []).ToList();
        var n = steps.Count == 0 ? 0 : steps.Max(s => s.Count);
        var rows = new List<GridRow>();
        for (var i = 0; i < n; i++)
        {
            var first = steps.Select(s => i < s.Count ? s[i] : null).First(s => s is not null)!;
            var label = (string)first["op"]! + (first["id"] is { } id ? $" ({id})" : "");
            var row = steps.Select(s => i < s.Count ? (Summary(s[i]), Why(s[i]), (bool)s[i]["ok"]!) : ("—", (IReadOnlyList<string>)[], true)).ToList();
            rows.Add(new GridRow(i.ToString(System.Globalization.CultureInfo.InvariantCulture), label, row, row.Select(r => r.Item1).Distinct().Count() > 1));
        }
        var status = cells.Select(c => (string)c["status"]! switch
        {
            "ok" => "ok",
            "error" => "error: " + (string?)c["error"],
            _ => "failed: " + string.Join("; ", (c["result"]?["failures"]?.AsArray() ?? []).Select(f => $"step {f!["step"]?.ToString() ?? "final"} {f["field"]}: {f["message"]}")
                .Concat((c["strict"]?.AsArray() ?? []).Select(s => "strict " + (string?)s))),
        }).ToList();
        return new Grid(machines, rows, status);
    }

    private static IReadOnlyList<string> Why(JsonObject s) =>
        s["why"] is JsonArray w ? [.. w.Select(x => (string?)x ?? "")] : [];

    /// <summary>What a step did, in one line: path, address, bounce slot, prot, cache ops, debug checks, error.</summary>
    public static string Summary(JsonObject s)
    {
        var parts = new List<string>();
        if (s["path"] is { } p)
        {
            parts.Add((string)p!);
        }
        if (s["dma_addr"] is { } a && (string?)s["op"] is "map" or "p2p_map" or "alloc_coherent" or "iova_alloc" or "iova_link")
        {
            parts.Add((string)a!);
        }
        if (s["segments"] is JsonArray segs)
        {
            parts.Add(string.Join(" ", segs.Select(g => $"{g!["dma_addr"]}+{g["len"]}")));
        }
        if (s["bounce"] is { } b)
        {
            parts.Add("via " + (string)b!);
        }
        if (s["iommu_prot"] is JsonArray prot)
        {
            parts.Add("[" + string.Join(" ", prot.Select(x => (string?)x)) + "]");
        }
        if (s["cache_ops"] is JsonArray ops && ops.Count > 0)
        {
            parts.Add(string.Join(" ", ops.Select(o => (string?)o!["op"])));
        }
        if (s["data"] is { } d)
        {
            var t = (string)d!;
            parts.Add(t.Length > 23 ? t[..23] + "…" : t);
        }
        if (s["debug"] is JsonArray dbg)
        {
            parts.Add("debug: " + string.Join(",", dbg.Select(x => (string?)x)));
        }
        if (s["error"] is { } e)
        {
            parts.Add("error " + (string)e!);
        }
        return parts.Count == 0 ? "·" : string.Join(" ", parts);
    }
}

/// <summary>One step across machines: each machine's summary, trail and whether its expectations held.</summary>
internal sealed record GridRow(string Index, string Label, IReadOnlyList<(string Text, IReadOnlyList<string> Why, bool Ok)> Cells, bool Differs);
