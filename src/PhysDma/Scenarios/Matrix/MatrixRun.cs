using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using PhysDma.Scenarios.Report;
using YamlDotNet.RepresentationModel;

namespace PhysDma.Scenarios.Matrix;

/// <summary>What a matrix run does beyond running: which expectations bind, whether it is strict, whether reports are kept.</summary>
internal sealed record MatrixOptions(bool Strict = false, bool IgnoreExpect = false, bool Report = false)
{
    /// <summary><c>--device NAME=TARGET</c> pairs (as <c>run --device</c>: <see cref="DeviceAliases"/>).</summary>
    public IReadOnlyList<(string Name, string Target)> Devices { get; init; } = [];
}

/// <summary>A slice of the scenario × machine product: the <c>I</c>-th (1-based) of <c>N</c> contiguous slices.</summary>
internal readonly record struct Shard(int I, int N)
{
    public static Shard All => new(1, 1);

    /// <summary>Parses <c>i/n</c>, or says why not.</summary>
    public static Shard Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], out var i) || !int.TryParse(parts[1], out var n) || n < 1 || i < 1 || i > n)
        {
            throw new ScenarioError("--shard", 0, "", $"bad shard '{text}': write i/n with 1 <= i <= n (e.g. 2/3)");
        }
        return new Shard(i, n);
    }

    /// <summary>The cells of a product of <paramref name="total"/> this shard runs: [lo, hi).</summary>
    public (int Lo, int Hi) Range(int total) => ((int)((long)(I - 1) * total / N), (int)((long)I * total / N));

    public override string ToString() => $"{I}/{N}";
}

/// <summary>One machine of a matrix: its column name and what <c>--machine</c> would be given for it.</summary>
internal sealed record MatrixMachine(string Name, string Arg);

/// <summary>One scenario × machine cell.</summary>
internal sealed record MatrixCell(int Index, string File, string Machine)
{
    /// <summary><c>ok</c>, <c>failed</c> (an expectation, or with --strict an unexpected report) or <c>error</c> (bad input).</summary>
    public string Status { get; set; } = "error";

    public string? Error { get; set; }

    public IReadOnlyList<string> Strict { get; set; } = [];

    public JsonObject? Result { get; set; }

    /// <summary>The report data (<see cref="ReportRecorder"/>), when a report was asked for; not part of the JSON.</summary>
    public JsonObject? Report { get; set; }
}

/// <summary>
/// <c>physdma matrix</c>: every scenario on every machine, in parallel, as one document
/// (<c>physdma-matrix/1</c>) whose cells are in product order (scenario-major), so shards merged in any order
/// give the document of the whole run.
/// </summary>
internal sealed class MatrixRun
{
    public const string Format = "physdma-matrix/1";

    public required IReadOnlyList<string> Files { get; init; }
    public required IReadOnlyList<MatrixMachine> Machines { get; init; }
    public required MatrixOptions Options { get; init; }
    public List<MatrixCell> Cells { get; } = [];

    public int Total => Files.Count * Machines.Count;

    /// <summary>
    /// Resolves <c>--machines</c>: <c>all</c> (every built-in), a comma-separated list of built-in names, or machine
    /// files. An unknown name is bad input.
    /// </summary>
    public static IReadOnlyList<MatrixMachine> ResolveMachines(IReadOnlyList<string> args)
    {
        if (args.Count == 0 || (args.Count == 1 && args[0] == "all"))
        {
            return [.. Profiles.Names.Select(n => new MatrixMachine(n, n))];
        }
        var list = new List<MatrixMachine>();
        foreach (var a in args.SelectMany(a => a.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            if (a == "all")
            {
                list.AddRange(Profiles.Names.Select(n => new MatrixMachine(n, n)));
                continue;
            }
            try
            {
                var cfg = MachineParser.Resolve(new YNode(new YamlScalarNode(a), "--machines", ""), Directory.GetCurrentDirectory());
                list.Add(new MatrixMachine(cfg.Name, a));
            }
            catch (ScenarioError e) when (e.File == "--machines")
            {
                throw new ScenarioError("--machines", 0, "", e.Message);
            }
        }
        var dup = list.GroupBy(m => m.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null)
        {
            throw new ScenarioError("--machines", 0, "", $"machine '{dup.Key}' is named twice");
        }
        return list;
    }

    /// <summary>Runs the cells of one shard, <paramref name="parallelism"/> at a time; <paramref name="done"/> is called after each.</summary>
    public void Run(Shard shard, int parallelism, Action<MatrixCell>? done = null)
    {
        var (lo, hi) = shard.Range(Total);
        var cells = Enumerable.Range(lo, hi - lo)
            .Select(i => new MatrixCell(i, Files[i / Machines.Count], Machines[i % Machines.Count].Name)).ToArray();
        var homes = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var f in cells.Select(c => c.File).Distinct())
        {
            homes[f] = HomeMachine(f);
        }
        Parallel.ForEach(cells, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, parallelism) }, c =>
        {
            RunCell(c, Machines[c.Index % Machines.Count], homes[c.File]);
            done?.Invoke(c);
        });
        Cells.AddRange(cells);
    }

    private static string? HomeMachine(string file)
    {
        try
        {
            return ScenarioParser.ParseFile(file).Machine.Name;
        }
        catch (ScenarioError)
        {
            return null;
        }
    }

    private void RunCell(MatrixCell c, MatrixMachine m, string? home)
    {
        try
        {
            var scenario = ScenarioParser.ParseFile(c.File, m.Arg, Options.Devices);
            if (Options.IgnoreExpect)
            {
                scenario = ExpectOn.None(scenario);
            }
            else if (home != m.Name)
            {
                scenario = ExpectOn.ForeignMachine(scenario);
            }
            var runner = new ScenarioRunner(scenario);
            var rec = Options.Report ? ReportRecorder.Attach(runner) : null;
            var result = runner.Run();
            c.Result = result.Json;
            c.Strict = Options.Strict ? StrictCheck.Unexpected(scenario, result) : [];
            c.Status = result.Ok && c.Strict.Count == 0 ? "ok" : "failed";
            c.Report = rec?.Build(result, c.File);
        }
        catch (ScenarioError e)
        {
            c.Status = "error";
            c.Error = e.Formatted;
        }
    }

    /// <summary>0 when every cell held, 1 when an expectation (or --strict) failed anywhere, 2 when a cell was bad input.</summary>
    public int ExitCode => Cells.Any(c => c.Status == "error") ? 2 : Cells.Any(c => c.Status == "failed") ? 1 : 0;

    /// <summary>The document: the same for a whole run and for its shards merged.</summary>
    public JsonObject ToJson(Shard shard)
    {
        var cells = new JsonArray();
        foreach (var c in Cells.OrderBy(c => c.Index))
        {
            var o = new JsonObject
            {
                ["index"] = c.Index,
                ["file"] = c.File,
                ["machine"] = c.Machine,
                ["status"] = c.Status,
            };
            if (c.Error is not null)
            {
                o["error"] = c.Error;
            }
            if (c.Strict.Count > 0)
            {
                o["strict"] = new JsonArray([.. c.Strict.Select(s => (JsonNode)JsonValue.Create(s)!)]);
            }
            if (c.Result is not null)
            {
                o["result"] = c.Result.DeepClone();
            }
            cells.Add(o);
        }
        return new JsonObject
        {
            ["format"] = Format,
            ["files"] = new JsonArray([.. Files.Select(f => (JsonNode)JsonValue.Create(f)!)]),
            ["machines"] = new JsonArray([.. Machines.Select(m => (JsonNode)new JsonObject { ["name"] = m.Name, ["arg"] = m.Arg })]),
            ["options"] = new JsonObject
            {
                ["strict"] = Options.Strict,
                ["ignore_expect"] = Options.IgnoreExpect,
                ["devices"] = new JsonArray([.. Options.Devices.Select(d => (JsonNode)JsonValue.Create($"{d.Name}={d.Target}")!)]),
            },
            ["shard"] = shard.N == 1 ? null : shard.ToString(),
            ["total"] = Total,
            ["cells"] = cells,
        };
    }

    public static string Text(JsonNode doc) => doc.ToJsonString(TextOptions) + "\n";

    private static readonly JsonSerializerOptions TextOptions = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// <c>physdma merge</c>: joins shard documents of one matrix into the document of the whole run. The pieces
    /// must agree on files, machines and options, and together cover every cell exactly once.
    /// </summary>
    public static JsonObject Merge(IReadOnlyList<(string Path, string Text)> pieces)
    {
        if (pieces.Count == 0)
        {
            throw new ScenarioError("merge", 0, "", "no result files given");
        }
        JsonObject? first = null;
        var cells = new SortedDictionary<int, JsonNode>();
        foreach (var (path, text) in pieces)
        {
            JsonObject doc;
            try
            {
                doc = JsonNode.Parse(text) as JsonObject ?? throw new ScenarioError(path, 1, "", "not a JSON object");
            }
            catch (JsonException e)
            {
                throw new ScenarioError(path, (int)(e.LineNumber ?? 0) + 1, "", $"not valid JSON: {e.Message}");
            }
            if ((string?)doc["format"] != Format)
            {
                throw new ScenarioError(path, 1, "format", $"expected '{Format}' (a physdma matrix --json result)");
            }
            if (first is null)
            {
                first = doc;
            }
            else
            {
                foreach (var key in new[] { "files", "machines", "options", "total" })
                {
                    if (!JsonNode.DeepEquals(first[key], doc[key]))
                    {
                        throw new ScenarioError(path, 1, key, $"differs from the first piece's: not a shard of the same matrix");
                    }
                }
            }
            foreach (var c in doc["cells"]?.AsArray() ?? [])
            {
                var i = (int)c!["index"]!;
                if (!cells.TryAdd(i, c.DeepClone()))
                {
                    throw new ScenarioError(path, 1, "cells", $"cell {i} is in more than one piece");
                }
            }
        }
        var total = (int)first!["total"]!;
        if (cells.Count != total)
        {
            var missing = Enumerable.Range(0, total).Where(i => !cells.ContainsKey(i)).Take(5);
            throw new ScenarioError("merge", 0, "", $"the pieces cover {cells.Count} of {total} cells (missing: {string.Join(", ", missing)}…)");
        }
        var merged = (JsonObject)first.DeepClone();
        merged["shard"] = null;
        merged["cells"] = new JsonArray([.. cells.Values]);
        return merged;
    }

    /// <summary>Exit code of a document: as <see cref="ExitCode"/>.</summary>
    public static int ExitOf(JsonObject doc)
    {
        var statuses = doc["cells"]!.AsArray().Select(c => (string?)c!["status"]).ToList();
        return statuses.Contains("error") ? 2 : statuses.Contains("failed") ? 1 : 0;
    }
}
