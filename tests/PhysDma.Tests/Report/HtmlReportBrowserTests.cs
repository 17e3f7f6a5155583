using System.Text.Json.Nodes;
using PhysDma.Tests.Scenarios;
using PuppeteerSharp;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Report;

/// <summary>The HTML report, opened in headless Chromium: what a person sees in it.</summary>
public class HtmlReportBrowserTests(Browser browser) : IClassFixture<Browser>
{
    private static string Temp(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), "physdma-html-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    /// <summary>Runs the CLI with --html (and --json, to know the result) and returns the report path and result.</summary>
    private static (string Html, JsonObject Result) Report(string scenarioFile, params string[] extra)
    {
        var html = Temp("report.html");
        var (exit, o, err) = CliArgs(["run", scenarioFile, "--json", "--html", html, .. extra]);
        Assert.True(exit == 0, err + o);
        return (html, JsonNode.Parse(o)!.AsObject());
    }

    private const string ThreeBounces = """
        machine: x86-noiommu
        steps:
          - { op: alloc, name: a, size: 4KiB, kind: ram, phys: 0x100000000 }
          - { op: alloc, name: b, size: 8KiB, kind: ram, phys: 0x100002000 }
          - { op: map, dev: legacy32, buf: a, size: 64, dir: to_device, as: ha, expect: { bounce: "0xbc000000" } }
          - { op: map, dev: legacy32, buf: b, size: 6000, dir: to_device, as: hb, expect: { path: swiotlb } }
          - { op: map, dev: nic0, buf: b, size: 64, dir: to_device, as: direct, expect: { path: direct } }
          - { op: unmap, handle: ha }
          - { op: map, dev: legacy32, buf: a, size: 128, dir: from_device, as: hc, expect: { path: swiotlb } }
          - { op: unmap, handle: hb }
          - { op: unmap, handle: hc }
          - { op: unmap, handle: direct }
        """;

    [Fact]
    public async Task Occupancy_shows_one_bar_per_slot_holding_mapping_with_its_step_on_hover()
    {
        var file = Temp("bounces.yaml");
        File.WriteAllText(file, ThreeBounces);
        var (html, _) = Report(file);
        var errors = new List<string>();
        var page = await browser.Open(html, errors);

        var bars = await page.EvaluateExpressionAsync<string[]>("""
            (() => { const c = document.getElementById('occupancy-0').physdmaChart;
              return c.data.datasets.map((d, i) => d.label + ' ' + c.getDatasetMeta(i).data.length + ' ' + JSON.stringify(d.data.map(p => p.x))); })()
            """);
        // Three mappings held slots (the direct one did not); each is one bar, from its map to its unmap.
        Assert.Equal(["ha (step 2) 1 [[2,5]]", "hb (step 3) 1 [[3,7]]", "hc (step 6) 1 [[6,8]]"], bars);
        var legend = await page.EvaluateExpressionAsync<string[]>(
            "[...document.querySelectorAll('[data-chart=occupancy-0] li.legend-item')].map(li => li.textContent)");
        Assert.Equal(["ha (step 2) (1)", "hb (step 3) (1)", "hc (step 6) (1)"], legend);

        // Hovering hb's bar names it and the step that mapped it.
        var point = await page.EvaluateExpressionAsync<double[]>("""
            (() => { const canvas = document.getElementById('occupancy-0'); const c = canvas.physdmaChart;
              const el = c.getDatasetMeta(1).data[0]; const r = canvas.getBoundingClientRect();
              canvas.scrollIntoView(); const r2 = canvas.getBoundingClientRect();
              return [r2.left + (el.x + el.base) / 2, r2.top + el.y]; })()
            """);
        await page.Mouse.MoveAsync((decimal)point[0], (decimal)point[1]);
        var tooltip = await page.EvaluateExpressionAsync<string>("""
            (() => { const t = document.getElementById('occupancy-0').physdmaChart.tooltip;
              return t.opacity > 0 ? t.title.join(' ') + ' | ' + t.body.map(b => b.lines.join(' ')).join(' ') : 'hidden'; })()
            """);
        Assert.Equal("slots 2–4 @ 0xbc001000 | hb (step 3): steps 3–6 · 6000 B from 0x100002000, mapped at step 3", tooltip);

        await Browser.Screenshot(page, "occupancy");
        Assert.Empty(errors);
    }

    [Fact]
    public async Task Reachability_marks_the_lazy_window_from_the_unmap_to_the_flushing_tick()
    {
        var (html, result) = Report(Example("four-cases.yaml"));
        var steps = result["steps"]!.AsArray().Select(s => s!.AsObject()).ToList();
        var unmap = steps.Single(s => (string?)s["op"] == "unmap" && (string?)s["handle"] == "c1");
        var tick = steps.Single(s => (string?)s["op"] == "tick");
        var framePhys = Convert.ToUInt64(((string)steps[0]["phys"]!)[2..], 16);
        var errors = new List<string>();
        var page = await browser.Open(html, errors);

        var lazy = await page.EvaluateExpressionAsync<string[]>("""
            (() => { const c = document.getElementById('reach-0-nic0').physdmaChart;
              const i = c.data.datasets.findIndex(d => d.key === 'lazy');
              return c.data.datasets[i].data.map((p, j) => p.y + ' ' + JSON.stringify(p.x) + ' ' + (c.getDatasetMeta(i).data[j].width > 0)); })()
            """);
        // The page nic0 read through c1 stays reachable through the IOTLB from c1's unmap until the tick that flushed it.
        Assert.Contains($"phys 0x{framePhys:x}–0x{framePhys + 0xfff:x} [{unmap["index"]},{tick["index"]}] true", lazy);
        var label = await page.EvaluateExpressionAsync<string>(
            "document.querySelector('[data-chart=reach-0-nic0] li.legend-item[data-key=lazy]').textContent");
        Assert.StartsWith("lazy window: unmapped, still translated by the IOTLB", label);

        // The IOVA chart shows the same window: unmapped, still in the IOTLB.
        var stale = await page.EvaluateExpressionAsync<string[]>("""
            (() => { const c = document.getElementById('iova-0-nic0').physdmaChart;
              return c.data.datasets.filter(d => d.key === 'iotlb_stale').flatMap(d => d.data.map(p => p.y + ' ' + JSON.stringify(p.x))); })()
            """);
        Assert.Contains($"IOVA 0xbffff000–0xbfffffff [{unmap["index"]},{tick["index"]}]", stale);

        await Browser.Screenshot(page, "lazy-window");
        Assert.Empty(errors);
    }

    [Fact]
    public async Task Topology_marks_the_refused_p2p_pair()
    {
        var (html, _) = Report(Example("four-cases-refused.yaml"));
        var errors = new List<string>();
        var page = await browser.Open(html, errors);

        var refused = await page.EvaluateExpressionAsync<string[]>(
            "[...document.querySelectorAll('tr.pair.refused')].map(tr => tr.dataset.provider + '>' + tr.dataset.client)");
        Assert.Contains("gpu0>nic0", refused);
        Assert.DoesNotContain("gpu0>nvme0", refused);
        var cell = await page.EvaluateExpressionAsync<string[]>("""
            (() => { const td = document.querySelector('tr.pair[data-provider=gpu0][data-client=nic0] td:nth-child(3)');
              return [td.textContent, getComputedStyle(td).backgroundColor]; })()
            """);
        Assert.Equal(["✗ refused: PCI_P2PDMA_MAP_NOT_SUPPORTED", "rgb(253, 231, 231)"], cell);
        var local = await page.EvaluateExpressionAsync<string>("document.querySelector('tr.pair[data-provider=gpu0][data-client=nvme0]').dataset.type");
        Assert.Equal("PCI_P2PDMA_MAP_BUS_ADDR", local);

        await Browser.Screenshot(page, "topology-refused");
        Assert.Empty(errors);
    }

    [Fact]
    public async Task Matrix_report_marks_the_cells_that_differ_and_draws_a_run_when_opened()
    {
        var html = Temp("matrix.html");
        var (exit, _, err) = CliArgs("matrix", Example("bounce-32bit.yaml"), Example("quickstart.yaml"), "--machines", "x86-noiommu,x86-iommu-strict", "--html", html);
        Assert.True(exit == 0, err);
        var errors = new List<string>();
        var page = await browser.Open(html, errors);

        var differs = await page.EvaluateExpressionAsync<string[]>(
            "[...document.querySelectorAll('table.grid tr.differs td:nth-child(2)')].map(td => td.textContent)");
        Assert.Contains("≠ map (map-tx)", differs);
        Assert.DoesNotContain(differs, d => d.Contains("alloc", StringComparison.Ordinal));
        var cells = await page.EvaluateExpressionAsync<string[]>(
            "[...[...document.querySelectorAll('table.grid tr.differs')].find(tr => tr.textContent.includes('map-tx')).querySelectorAll('td.diff')].map(td => td.textContent)");
        Assert.Equal(["swiotlb 0xbc000000 via 0xbc000000", "iommu 0xbffff000 [READ CACHE]"], cells);

        // Runs are drawn when opened.
        Assert.Equal(0, await page.EvaluateExpressionAsync<int>("document.querySelectorAll('canvas').length"));
        await page.ClickAsync("details.run[data-run='0'] > summary");
        await page.WaitForSelectorAsync("#occupancy-0");
        // bounce-32bit on x86-noiommu bounces txh and rxh; the in-place nic0 mapping holds no slot.
        var holders = await page.EvaluateExpressionAsync<string[]>(
            "document.getElementById('occupancy-0').physdmaChart.data.datasets.map(d => d.label.split(' ')[0])");
        Assert.Equal(["txh", "rxh"], holders);

        await Browser.Screenshot(page, "matrix");
        Assert.Empty(errors);
    }
}
