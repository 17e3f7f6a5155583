using System.Text.Json;
using PhysDma.Platform;
using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>Built-in machines: some are written on <c>base:</c>, and every one shows as a whole machine file.</summary>
public class ProfileTests
{
    private static string Json(MachineConfig c) => JsonSerializer.Serialize(c with { Name = "" });

    [Fact]
    public void Every_shown_profile_parses_back_to_the_same_machine()
    {
        foreach (var name in Profiles.Names)
        {
            var (exit, yaml, _) = CliArgs("machines", "show", name);
            Assert.Equal(0, exit);
            Assert.DoesNotContain("base:", yaml.Split('\n').Select(l => l.Split(' ')[0]));
            Assert.True(Profiles.TryGet(name, out var builtIn));
            var shown = MachineParser.Parse(YNode.Load(yaml, name), ".");
            Assert.Equal(Json(builtIn), Json(shown));
        }
    }

    [Fact]
    public void Strict_profile_is_the_lazy_machine_in_strict_mode()
    {
        Assert.True(Profiles.TryGet("x86-iommu-lazy", out var lazy));
        Assert.True(Profiles.TryGet("x86-iommu-strict", out var strict));
        Assert.Equal(IommuMode.Strict, strict.Iommu!.Mode);
        Assert.Equal(Json(lazy with { Iommu = lazy.Iommu! with { Mode = IommuMode.Strict } }), Json(strict));
        var lazyLines = Profiles.YamlOf("x86-iommu-lazy")!.Split('\n');
        var strictLines = Profiles.YamlOf("x86-iommu-strict")!.Split('\n');
        Assert.Equal(lazyLines.Length, strictLines.Length);
        Assert.Equal(["description", "  mode"], lazyLines.Zip(strictLines).Where(p => p.First != p.Second).Select(p => p.First.Split(':')[0]));
    }

    [Fact]
    public void Default_profile_is_the_lazy_machine_under_another_name()
    {
        Assert.True(Profiles.TryGet("x86-iommu-lazy", out var lazy));
        Assert.True(Profiles.TryGet("default", out var dflt));
        Assert.Equal("default", dflt.Name);
        Assert.Equal(Json(lazy), Json(dflt));
        Assert.StartsWith("x86_64 server with an IOMMU in lazy mode (the kernel's default)", Profiles.Description("default"), StringComparison.Ordinal);
    }
}
