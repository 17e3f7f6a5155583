using PhysDma.Scenarios;

namespace PhysDma.Tests.Architecture;

/// <summary>The library's public surface is the documented one (docs/library.md), and nothing else.</summary>
public class PublicSurfaceTests
{
    private static readonly string[] Documented =
    [
        "PhysDma.Core.DmaAddr",
        "PhysDma.Core.DmaAttrs",
        "PhysDma.Core.DmaDirection",
        "PhysDma.Core.PhysAddr",
        "PhysDma.Dma.DebugReport",
        "PhysDma.Platform.Device",
        "PhysDma.Platform.DmaAccess",
        "PhysDma.Platform.DmaFault",
        "PhysDma.Platform.FaultReason",
        "PhysDma.Scenarios.DmaBuffer",
        "PhysDma.Scenarios.DmaModel",
    ];

    [Fact]
    public void Library_exports_only_the_documented_surface()
    {
        var exported = typeof(DmaModel).Assembly.GetExportedTypes().Select(t => t.FullName!).Order(StringComparer.Ordinal);
        Assert.Equal(Documented, exported);
    }

    [Fact]
    public void Every_documented_type_is_named_in_docs_library_md()
    {
        var doc = File.ReadAllText(Path.Combine(PhysDma.Tests.Scenarios.ScenarioTestKit.RepoRoot, "docs", "library.md"));
        foreach (var name in Documented.Select(n => n[(n.LastIndexOf('.') + 1)..]))
        {
            Assert.Contains($"`{name}`", doc, StringComparison.Ordinal);
        }
    }
}
