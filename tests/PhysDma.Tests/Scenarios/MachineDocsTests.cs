using PhysDma.Scenarios;

namespace PhysDma.Tests.Scenarios;

/// <summary>docs/machines.md describes every built-in machine and every machine-file field at every level.</summary>
public class MachineDocsTests
{
    private static readonly string Doc = File.ReadAllText(Path.Combine(ScenarioTestKit.RepoRoot, "docs", "machines.md"));

    public static TheoryData<string> ProfileNames() => [.. Profiles.Names];

    [Theory]
    [MemberData(nameof(ProfileNames))]
    public void Every_built_in_machine_is_described(string name) =>
        Assert.Contains($"| `{name}` |", Doc, StringComparison.Ordinal);

    [Fact]
    public void Every_field_of_every_level_has_a_row_with_its_catalogue_description()
    {
        var levels = new[]
        {
            MachineCatalogue.Machine, MachineCatalogue.Swiotlb, MachineCatalogue.Iommu, MachineCatalogue.FlushQueue, MachineCatalogue.Range,
            MachineCatalogue.PciNode, MachineCatalogue.Device, MachineCatalogue.Bar, MachineCatalogue.P2PMem, MachineCatalogue.DmaRange,
        };
        foreach (var field in levels.SelectMany(l => l))
        {
            Assert.Contains($"| `{field.Name}`", Doc, StringComparison.Ordinal);
            Assert.Contains($"| {field.Description} |", Doc, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Readme_and_docs_point_only_to_files_in_the_repository()
    {
        var root = ScenarioTestKit.RepoRoot;
        var files = Directory.GetFiles(Path.Combine(root, "docs"), "*.md").Append(Path.Combine(root, "README.md"));
        foreach (var file in files)
        {
            var text = File.ReadAllText(file);
            Assert.DoesNotContain("../shared", text, StringComparison.Ordinal);
            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(text, @"\]\(([^)#:]+)(#[^)]*)?\)"))
            {
                var target = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, m.Groups[1].Value));
                Assert.True(File.Exists(target) || Directory.Exists(target), $"{Path.GetFileName(file)} links to {m.Groups[1].Value}, which is not in the repository");
            }
        }
    }
}
