using System.Text.Json.Nodes;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Report;

/// <summary>
/// <c>physdma replay --html</c>, opened in headless Chromium: the replayed trace's events as steps, swiotlb
/// occupancy coloured by the traced mapping holding the slots, and the lazy window of a lazy IOMMU unmap.
/// </summary>
public class ReplayHtmlReportBrowserTests(Browser browser) : IClassFixture<Browser>
{
    /// <summary>
    /// A Thunderbolt device (untrusted: its sub-page mappings bounce through swiotlb behind the IOMMU) and a NIC
    /// behind the lazy IOMMU, captured on the default machine; TestData/traces/README.md says how it was made.
    /// </summary>
    private static readonly string Fixture = Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "TestData", "traces", "tbt-bounce-nic-lazy.trace");

    private static string Replay()
    {
        var dir = Path.Combine(Path.GetTempPath(), "physdma-html-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var html = Path.Combine(dir, "replay.html");
        var (exit, o, err) = CliArgs("replay", Fixture, "--json", "--html", html);
        Assert.True(exit == 0, err + o);
        // The same replay as without --html: nine DMA calls replayed, every model address as traced.
        var report = JsonNode.Parse(o)!.AsObject();
        Assert.Equal(9, (long)report["replayed"]!);
        Assert.Equal(0, (long)report["addresses_differing"]!);
        return html;
    }

    [Fact]
    public async Task Replay_report_shows_one_occupancy_bar_per_bounced_mapping_and_the_lazy_window_of_the_nic_unmap()
    {
        var html = Replay();
        var errors = new List<string>();
        var page = await browser.Open(html, errors);

        // The events are the steps: nine rows, each with the trace line it came from.
        var rows = await page.EvaluateExpressionAsync<string[]>(
            "[...document.querySelectorAll('table.steps tr.step')].map(tr => tr.dataset.step + ' ' + tr.dataset.line + ' ' + tr.children[1].textContent)");
        Assert.Equal(
        [
            "0 15 dma_map_phys (line 15)", "1 17 dma_map_phys (line 17)", "2 20 dma_map_phys (line 20)", "3 22 dma_unmap_phys (line 22)",
            "4 24 dma_unmap_phys (line 24)", "5 27 dma_map_phys (line 27)", "6 28 dma_sync_single_for_cpu (line 28)",
            "7 30 dma_unmap_phys (line 30)", "8 32 dma_unmap_phys (line 32)",
        ], rows);
        var first = await page.EvaluateExpressionAsync<string[]>(
            "[...document.querySelector('table.steps tr.step[data-step=\"0\"]').children].map(td => td.textContent)");
        Assert.Equal("tbt0 · iommu+swiotlb · line 15 dma_map_phys · dma 0xbffff000 · via 0xbc000000 · [READ CACHE]", first[2]);
        Assert.Contains("dev_use_swiotlb: untrusted and phys 0x104a31000+0x40 not granule-aligned (0x1000) → bounce", first[3]);
        Assert.EndsWith("dma_map_phys: 0000:07:00.0 dir=TO_DEVICE dma_addr=bffff000 size=64 phys_addr=104a31000 attrs=", first[4]);

        // Three traced mappings bounced (the NIC's did not): one bar each, from its map event to its unmap event.
        var bars = await page.EvaluateExpressionAsync<string[]>("""
            (() => { const c = document.getElementById('occupancy-0').physdmaChart;
              return c.data.datasets.map((d, i) => d.label + ' ' + c.getDatasetMeta(i).data.length + ' ' + JSON.stringify(d.data.map(p => p.y + ' ' + JSON.stringify(p.x)))); })()
            """);
        Assert.Equal(
        [
            "line 15 dma_map_phys (event 0) 1 [\"slots 0–1 @ 0xbc000000 [0,4]\"]",
            "line 20 dma_map_phys (event 2) 1 [\"slots 2–3 @ 0xbc001000 [2,7]\"]",
            "line 27 dma_map_phys (event 5) 1 [\"slots 4–5 @ 0xbc002000 [5,8]\"]",
        ], bars);

        // Hovering the second bar names the mapping, the event that made it and the buffer it bounces.
        var point = await page.EvaluateExpressionAsync<double[]>("""
            (() => { const canvas = document.getElementById('occupancy-0'); const c = canvas.physdmaChart;
              canvas.scrollIntoView(); const el = c.getDatasetMeta(1).data[0]; const r = canvas.getBoundingClientRect();
              return [r.left + (el.x + el.base) / 2, r.top + el.y]; })()
            """);
        await page.Mouse.MoveAsync((decimal)point[0], (decimal)point[1]);
        var tooltip = await page.EvaluateExpressionAsync<string>("""
            (() => { const t = document.getElementById('occupancy-0').physdmaChart.tooltip;
              return t.opacity > 0 ? t.title.join(' ') + ' | ' + t.body.map(b => b.lines.join(' ')).join(' ') : 'hidden'; })()
            """);
        Assert.Equal("slots 2–3 @ 0xbc001000 | line 20 dma_map_phys (event 2): events 2–6 · 4096 B from 0x104a36200, mapped at event 2", tooltip);

        // The NIC's page stays reachable through the IOTLB from its unmap (event 3) until the flush-queue timer
        // flushed it, 10 ms later, before event 5; the untrusted device is strict, so it has no window.
        var lazy = await page.EvaluateExpressionAsync<string[]>("""
            (() => [...document.querySelectorAll('canvas[id^=reach-0-]')].flatMap(canvas => { const c = canvas.physdmaChart;
              return c.data.datasets.filter(d => d.key === 'lazy').flatMap(d => d.data.map(p => canvas.id + ' ' + p.y + ' ' + JSON.stringify(p.x) + ' ' + p.info)); }))()
            """);
        Assert.Equal(["reach-0-nic0 phys 0x10233e000–0x10233efff [3,5] mapping line 17 dma_map_phys"], lazy);
        var label = await page.EvaluateExpressionAsync<string>(
            "document.querySelector('[data-chart=reach-0-nic0] li.legend-item[data-key=lazy]').textContent");
        Assert.Equal("lazy window: unmapped, still translated by the IOTLB (1)", label);
        var stale = await page.EvaluateExpressionAsync<string[]>("""
            (() => { const c = document.getElementById('iova-0-nic0').physdmaChart;
              return c.data.datasets.filter(d => d.key === 'iotlb_stale').flatMap(d => d.data.map(p => p.y + ' ' + JSON.stringify(p.x))); })()
            """);
        Assert.Equal(["IOVA 0xbffff000–0xbfffffff [3,5]"], stale);
        // On the IOVA row the range is also waiting in the flush queue; the window is drawn over it, in its own red.
        var pixel = await page.EvaluateExpressionAsync<int[]>("""
            (() => { const canvas = document.getElementById('iova-0-nic0'); const c = canvas.physdmaChart;
              canvas.scrollIntoView(); const i = c.data.datasets.findIndex(d => d.key === 'iotlb_stale'); const el = c.getDatasetMeta(i).data[0];
              const ratio = canvas.width / canvas.getBoundingClientRect().width;
              return [...canvas.getContext('2d').getImageData(Math.round((el.x + el.base) / 2 * ratio), Math.round(el.y * ratio), 1, 1).data].slice(0, 3); })()
            """);
        Assert.Equal([0xe1, 0x57, 0x59], pixel);

        // The machine's PCI topology with the P2P map type of each pair.
        var pair = await page.EvaluateExpressionAsync<string>("document.querySelector('tr.pair[data-provider=gpu0][data-client=nvme0]').dataset.type");
        Assert.Equal("PCI_P2PDMA_MAP_BUS_ADDR", pair);

        await Browser.Screenshot(page, "replay");
        Assert.Empty(errors);
    }
}
