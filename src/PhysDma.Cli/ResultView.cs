using System.Text.Json.Nodes;
using PhysDma.Scenarios;
using Spectre.Console;

namespace PhysDma.Cli;

/// <summary>The readable view of a result: one table row per step, then faults, kernel log, failures and final state.</summary>
internal static class ResultView
{
    private static string Prot(JsonObject step) =>
        step["iommu_prot"] is JsonArray prot ? " [" + string.Join(" ", prot.Select(p => S(p))) + "]" : "";

    public static void Render(IAnsiConsole console, RunResult result, bool explain = false)
    {
        var j = result.Json;
        console.MarkupLine($"[bold]{Markup.Escape(S(j["scenario"]))}[/] on [bold]{Markup.Escape(S(j["machine"]))}[/]");
        var table = new Table().Border(TableBorder.Rounded)
            .AddColumn("#").AddColumn("op").AddColumn("what").AddColumn("result").AddColumn("path")
            .AddColumn("cache ops").AddColumn(new TableColumn("pages/kmaps").RightAligned()).AddColumn("ok");
        foreach (var s in j["steps"]!.AsArray())
        {
            var step = s!.AsObject();
            table.AddRow(
                Markup.Escape(S(step["index"])),
                Markup.Escape(S(step["op"]) + (step["id"] is { } id ? $" ({S(id)})" : "")),
                Markup.Escape(What(step)),
                Markup.Escape(Outcome(step)),
                Markup.Escape(step["path"] is { } p ? S(p) + (step["bounce"] is { } b ? $" via {S(b)}" : "") + Prot(step) : ""),
                Markup.Escape(CacheOps(step)),
                Markup.Escape(step.ContainsKey("page_touches") ? $"{S(step["page_touches"])}/{S(step["kernel_mappings"])}" : ""),
                step["ok"]!.GetValue<bool>() ? "[green]ok[/]" : "[red]FAIL[/]");
            // dma-debug reports sit under the step that caused them.
            foreach (var d in (j["debug"] as JsonArray ?? []).Where(d => S(d!["step"]) == S(step["index"])))
            {
                var text = $"{S(d!["check"])}: {S(d["message"]).Split('\n')[0]}{(d["printed"]!.GetValue<bool>() ? "" : " (not printed)")}{(d["mapped_at"] is { } at ? $" [mapped at {S(at)}]" : "")}";
                table.AddRow(new Markup(""), new Markup("[yellow]debug[/]"), new Markup($"[yellow]{Markup.Escape(text)}[/]"),
                    new Markup(""), new Markup(""), new Markup(""), new Markup(""), new Markup(""));
            }
        }
        console.Write(table);

        if (explain)
        {
            // Full-width lines: a trail names functions and values that a table column would break apart.
            console.MarkupLine("[bold]Decision trails[/]");
            foreach (var s in j["steps"]!.AsArray().Where(s => s!["why"] is JsonArray { Count: > 0 }))
            {
                console.MarkupLine(Markup.Escape($"  step {S(s!["index"])} {S(s["op"])}{(s["id"] is { } id ? $" ({S(id)})" : "")}:"));
                foreach (var w in s["why"]!.AsArray())
                {
                    console.MarkupLine("    " + Markup.Escape(S(w)));
                }
            }
        }

        if (j["faults"] is JsonArray faults && faults.Count > 0)
        {
            console.MarkupLine("[bold]Device faults[/]");
            foreach (var f in faults)
            {
                console.MarkupLine(Markup.Escape($"  step {S(f!["step"])}: {S(f["dev"])} {S(f["access"])} at {S(f["addr"])}: {S(f["reason"])}"));
            }
        }
        if (j["debug"] is JsonArray debug && debug.Count > 0)
        {
            console.MarkupLine("[bold]DMA-API debug reports[/]");
            foreach (var d in debug)
            {
                console.MarkupLine(Markup.Escape($"  step {S(d!["step"])}: [{S(d["check"])}] {S(d["message"])}"));
            }
        }
        if (j["log"] is JsonArray log && log.Count > 0)
        {
            console.MarkupLine("[bold]Kernel log[/]");
            foreach (var l in log)
            {
                console.MarkupLine(Markup.Escape($"  step {S(l!["step"])}: {S(l["message"])}"));
            }
        }
        var final = j["final"]!.AsObject();
        console.MarkupLine(Markup.Escape("Final: " + string.Join(", ", final.Select(kv => $"{kv.Key} {(kv.Value is null ? "-" : S(kv.Value))}"))));
        if (j["bug"] is { } bug)
        {
            console.MarkupLine($"[red]Kernel BUG: {Markup.Escape(S(bug))}[/]");
        }
        if (j["violation"] is { } v)
        {
            console.MarkupLine($"[red]Model violation (a bug in PhysDma's DMA layers): {Markup.Escape(S(v))}[/]");
        }
        foreach (var f in result.Failures)
        {
            var where = f.Step is { } st ? $"step {st}" : "final";
            console.MarkupLine($"[red]expectation failed[/] ({Markup.Escape(where)}, line {f.Line}) {Markup.Escape(f.Field)}: {Markup.Escape(f.Message)}");
        }
        console.MarkupLine(result.Ok ? "[green]OK[/]" : "[red]FAILED[/]");
    }

    private static string S(JsonNode? n) => n switch
    {
        null => "null",
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => n.ToJsonString(),
    };

    private static string What(JsonObject s)
    {
        var op = S(s["op"]);
        return op switch
        {
            "alloc" => $"{S(s["buf"])}: {S(s["kind"])} {S(s["size"])} B at {S(s["phys"])}",
            "map" or "p2p_map" => $"{S(s["handle"])} = {S(s["dev"])} {S(s["phys"])}+{S(s["size"])} {S(s["dir"])}{Attrs(s)}",
            "map_sg" or "unmap_sg" or "sync_sg" => $"{S(s["handle"])} {S(s["dev"])} nents {S(s["nents"])} {S(s["dir"])}" + (op == "sync_sg" ? $" for {S(s["for"])}" : Attrs(s)),
            "alloc_coherent" => $"{S(s["handle"])} = {S(s["dev"])} {S(s["size"])} B{Attrs(s)}",
            "free_coherent" => $"{S(s["handle"])} {S(s["dma_addr"])}+{S(s["size"])}",
            "iova_alloc" => $"{S(s["handle"])} = {S(s["dev"])} {S(s["size"])} B",
            "iova_link" => $"{S(s["handle"])}+{S(s["at"])} <- {S(s["phys"])}+{S(s["size"])} {S(s["dir"])}{Attrs(s)}",
            "iova_sync" or "iova_unlink" => $"{S(s["handle"])}+{S(s["at"])} len {S(s["size"])}",
            "iova_free" => S(s["handle"]),
            "iova_destroy" => $"{S(s["handle"])} mapped {S(s["mapped_len"])}",
            "remove_device" => S(s["dev"]),
            "unmap" or "sync" => $"{S(s["handle"])} {S(s["dma_addr"])}+{S(s["size"])} {S(s["dir"])}" + (op == "sync" ? $" for {S(s["for"])}" : Attrs(s)),
            "cpu_write" or "cpu_read" => $"{S(s["buf"])}[{S(s["offset"])}..+{S(s["len"])}]",
            "dev_read" or "dev_write" => $"{S(s["dev"])} at {S(s["dma_addr"])} len {S(s["len"])}",
            "mapping_error" => $"{S(s["handle"])} {S(s["dma_addr"])}",
            "tick" => $"+{S(s["ms"])} ms",
            _ => s.ContainsKey("buf") ? S(s["buf"]) : s.ContainsKey("dev") ? S(s["dev"]) : "",
        };
    }

    private static string Attrs(JsonObject s) =>
        s["attrs"] is JsonArray a && a.Count > 0 ? " [" + string.Join(",", a.Select(x => S(x))) + "]" : "";

    private static string Outcome(JsonObject s)
    {
        if (s["error"] is { } e)
        {
            return S(e) + (s["dma_addr"] is { } a && S(s["op"]) == "map" ? "" : "");
        }
        if (s["data"] is { } d)
        {
            var t = S(d);
            return t.Length > 35 ? t[..35] + "…" : t;
        }
        if (S(s["op"]) is "map" or "p2p_map" or "alloc_coherent" or "iova_alloc" or "iova_link" && s["dma_addr"] is not null)
        {
            return "dma " + S(s["dma_addr"]);
        }
        if (S(s["op"]) == "map_sg" && s["segments"] is JsonArray segs)
        {
            return string.Join(" ", segs.Select(g => $"{S(g!["dma_addr"])}+{S(g["len"])}"));
        }
        if (S(s["op"]) == "remove_device")
        {
            return $"leaked {S(s["leaked"])}";
        }
        if (S(s["op"]) == "tick")
        {
            return $"now {S(s["now_ms"])} ms";
        }
        return "";
    }

    private static string CacheOps(JsonObject s) =>
        s["cache_ops"] is JsonArray ops
            ? string.Join(" ", ops.Select(o => $"{S(o!["op"])} {S(o["phys"])}+{S(o["size"])}"))
            : "";
}
