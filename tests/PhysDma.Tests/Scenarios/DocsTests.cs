using System.Text.RegularExpressions;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>Every scenario in docs/checks.md runs and reports exactly the checks its text says.</summary>
public partial class DocsTests
{
    [GeneratedRegex("```yaml\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex YamlBlock();

    public static TheoryData<int> Blocks()
    {
        var data = new TheoryData<int>();
        var n = YamlBlock().Matches(File.ReadAllText(Path.Combine(RepoRoot, "docs", "checks.md"))).Count;
        for (var i = 0; i < n; i++)
        {
            data.Add(i);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void Checks_doc_scenario_holds_its_expectations(int block)
    {
        var yaml = YamlBlock().Matches(File.ReadAllText(Path.Combine(RepoRoot, "docs", "checks.md")))[block].Groups[1].Value;
        Assert.Contains("expect:", yaml, StringComparison.Ordinal);
        var r = Run(yaml, $"checks-{block}.yaml");
        Assert.True(r.Ok, r.ToJson());
    }

    [Fact]
    public void Every_check_name_of_the_format_has_a_doc_scenario_that_triggers_it()
    {
        var doc = File.ReadAllText(Path.Combine(RepoRoot, "docs", "checks.md"));
        string[] names =
        [
            "free_invalid_address", "free_not_allocated", "free_size_mismatch", "free_type_mismatch", "free_cpu_address_mismatch",
            "free_sg_count_mismatch", "free_direction_mismatch", "map_error_not_checked", "map_from_stack", "map_from_kernel_text",
            "map_invalid_area", "sync_not_allocated", "sync_out_of_range", "sync_direction_mismatch", "sync_readonly_for_cpu",
            "sync_writeonly_for_device", "sync_sg_count_mismatch", "sg_segment_too_long", "sg_segment_crosses_boundary",
            "cacheline_overlap", "leak_on_unbind", "mmio_without_attr", "ram_with_mmio_attr", "cache_op_on_mmio",
            "iova_mixed_mmio_ram", "cpu_read_while_device_owns", "stale_iotlb_access",
        ];
        var blocks = YamlBlock().Matches(doc).Select(m => m.Groups[1].Value).ToArray();
        foreach (var name in names)
        {
            Assert.Contains(blocks, b => Regex.IsMatch(b, $@"debug: \[[^\]]*\b{name}\b"));
        }
    }
}
