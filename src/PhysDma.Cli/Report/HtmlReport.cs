using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using PhysDma.Scenarios;
using PhysDma.Scenarios.Matrix;

namespace PhysDma.Cli.Report;

/// <summary>
/// The HTML report: one self-contained file (no network) with the run data as JSON, drawn by Chart.js
/// (pinned, inlined from this assembly's resources) and the report's own script.
/// </summary>
internal static class HtmlReport
{
    /// <summary>Fails early, as bad input naming the path, when the report could not be written there.</summary>
    public static void CheckWritable(string path)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full);
        if (Directory.Exists(full))
        {
            throw new ScenarioError("--html", 0, "", $"'{path}' is a directory, not a file to write the report to");
        }
        if (dir is null || !Directory.Exists(dir))
        {
            throw new ScenarioError("--html", 0, "", $"cannot write '{path}': the directory '{dir}' does not exist");
        }
        try
        {
            using var _ = new FileStream(full, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ScenarioError("--html", 0, "", $"cannot write '{path}': {e.Message}");
        }
    }

    public static void WriteRun(string path, JsonObject run) =>
        File.WriteAllText(path, Html(new JsonObject
        {
            ["title"] = $"PhysDma: {(string?)run["scenario"]} on {(string?)run["machine"]}",
            ["runs"] = new JsonArray(run.DeepClone()),
        }));

    public static void WriteReplay(string path, JsonObject replay) =>
        File.WriteAllText(path, Html(new JsonObject
        {
            ["title"] = $"PhysDma replay: {(string?)replay["scenario"]} on {(string?)replay["machine"]}",
            ["runs"] = new JsonArray(replay.DeepClone()),
        }));

    public static void WriteMatrix(string path, JsonObject doc, IReadOnlyList<JsonObject> runs)
    {
        var machines = doc["machines"]!.AsArray().Select(m => (string)m!["name"]!).ToList();
        var grids = new JsonArray();
        foreach (var byFile in doc["cells"]!.AsArray().Select(c => c!.AsObject()).GroupBy(c => (string)c["file"]!))
        {
            var g = Grid.Of(byFile, machines);
            grids.Add(new JsonObject
            {
                ["file"] = byFile.Key,
                ["machines"] = new JsonArray([.. g.Machines.Select(m => (JsonNode)JsonValue.Create(m)!)]),
                ["rows"] = new JsonArray([.. g.Rows.Select(r => (JsonNode)new JsonObject
                {
                    ["index"] = r.Index,
                    ["label"] = r.Label,
                    ["differs"] = r.Differs,
                    ["cells"] = new JsonArray([.. r.Cells.Select(c => (JsonNode)new JsonObject
                    {
                        ["text"] = c.Text,
                        ["ok"] = c.Ok,
                        ["why"] = new JsonArray([.. c.Why.Select(w => (JsonNode)JsonValue.Create(w)!)]),
                    })]),
                })]),
                ["status"] = new JsonArray([.. g.Status.Select(s => (JsonNode)JsonValue.Create(s)!)]),
            });
        }
        File.WriteAllText(path, Html(new JsonObject
        {
            ["title"] = $"PhysDma matrix: {doc["files"]!.AsArray().Count} scenarios × {machines.Count} machines",
            ["grids"] = grids,
            ["runs"] = new JsonArray([.. runs.Select(r => (JsonNode)r.DeepClone())]),
        }));
    }

    private static string Html(JsonObject data)
    {
        var json = MatrixRun.Text(data).Replace("</", "<\\/", StringComparison.Ordinal);
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        sb.Append("<title>").Append(System.Net.WebUtility.HtmlEncode((string?)data["title"])).Append("</title>\n");
        sb.Append("<style>\n").Append(Resource("report.css")).Append("</style>\n");
        sb.Append("<script>\n").Append(Resource("chart.umd.min.js")).Append("\n</script>\n");
        sb.Append("</head><body>\n<main id=\"app\"></main>\n");
        sb.Append("<script id=\"physdma-data\" type=\"application/json\">").Append(json).Append("</script>\n");
        sb.Append("<script>\n").Append(Resource("report.js")).Append("</script>\n");
        sb.Append("</body></html>\n");
        return sb.ToString();
    }

    private static string Resource(string name)
    {
        using var s = Assembly.GetExecutingAssembly().GetManifestResourceStream("PhysDma.Cli.Report." + name)
            ?? throw new InvalidOperationException($"report resource '{name}' is missing from the build");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }
}
