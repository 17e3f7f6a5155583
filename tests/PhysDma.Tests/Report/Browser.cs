using PhysDma.Tests.Scenarios;
using PuppeteerSharp;

namespace PhysDma.Tests.Report;

/// <summary>
/// Debian's headless Chromium (/usr/bin/chromium, installed by .ci/run), driven by PuppeteerSharp: no browser
/// download, no network, a fresh profile per test class.
/// </summary>
public sealed class Browser : IAsyncLifetime
{
    public const string Executable = "/usr/bin/chromium";

    private readonly string _profile = Path.Combine(Path.GetTempPath(), "physdma-chromium-" + Guid.NewGuid().ToString("N"));
    private IBrowser? _browser;

    public static string Artefacts { get; } = Path.Combine(ScenarioTestKit.RepoRoot, "TestResults", "html-report");

    public async Task InitializeAsync()
    {
        if (!File.Exists(Executable))
        {
            throw new InvalidOperationException($"{Executable} is missing: install Debian's chromium package (apt-get install -y chromium); .ci/run does");
        }
        Directory.CreateDirectory(_profile);
        _browser = await Puppeteer.LaunchAsync(new LaunchOptions
        {
            ExecutablePath = Executable,
            Headless = true,
            Args =
            [
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", $"--user-data-dir={_profile}",
            ],
        });
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.CloseAsync();
        }
        try
        {
            Directory.Delete(_profile, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Opens a report file; every console error and page error is collected into <paramref name="errors"/>.</summary>
    public async Task<IPage> Open(string htmlFile, List<string> errors)
    {
        var page = await _browser!.NewPageAsync();
        await page.SetViewportAsync(new ViewPortOptions { Width = 1300, Height = 900 });
        page.Console += (_, e) =>
        {
            if (e.Message.Type == ConsoleType.Error)
            {
                errors.Add(e.Message.Text);
            }
        };
        page.PageError += (_, e) => errors.Add(e.Message);
        // Nothing may come from the network: the report is one self-contained file.
        await page.SetRequestInterceptionAsync(true);
        page.Request += async (_, e) =>
        {
            if (e.Request.Url.StartsWith("file:", StringComparison.Ordinal) || e.Request.Url.StartsWith("data:", StringComparison.Ordinal))
            {
                await e.Request.ContinueAsync();
            }
            else
            {
                errors.Add("network request: " + e.Request.Url);
                await e.Request.AbortAsync();
            }
        };
        await page.GoToAsync(new Uri(htmlFile).AbsoluteUri, WaitUntilNavigation.Load);
        await page.WaitForSelectorAsync("body[data-ready=true]");
        return page;
    }

    public static async Task Screenshot(IPage page, string name)
    {
        Directory.CreateDirectory(Artefacts);
        var path = Path.Combine(Artefacts, name + ".png");
        await page.ScreenshotAsync(path, new ScreenshotOptions { FullPage = true });
        Assert.True(new FileInfo(path).Length > 10_000, $"screenshot {path} is empty");
    }
}
