using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>Every example runs, holds its own expectations, and shows what it says it shows.</summary>
public class ExampleTests
{
    public static TheoryData<string> Examples()
    {
        var data = new TheoryData<string>();
        foreach (var f in Directory.GetFiles(Path.Combine(RepoRoot, "examples"), "*.yaml").Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(f));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Examples))]
    public void Example_holds_its_expectations(string name)
    {
        var (exit, stdout, stderr) = CliArgs("run", Example(name));
        Assert.True(exit == 0, $"{name}: exit {exit}\n{stdout}\n{stderr}");
        Assert.EndsWith("OK\n", stdout);
    }

    [Theory]
    [InlineData("x86-noiommu")]
    [InlineData("arm64-noncoherent")]
    public void Quickstart_gives_the_right_bytes_on_coherent_and_non_coherent_machines(string machine)
    {
        var r = ScenarioRunner.Run(ScenarioParser.ParseFile(Example("quickstart.yaml"), machine));
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal(machine, Str(r.Json["machine"]));
        var fetched = Step(r, "nic-fetches-frame");
        Assert.StartsWith("10 11 12 13", Str(fetched["data"]));
        Assert.Equal("de ad be ef 00 01 02 03", Str(Step(r, "driver-reads-frame")["data"]));
        var mapTx = Step(r, "map-tx");
        Assert.Equal("direct", Str(mapTx["path"]));
        var cacheOps = mapTx["cache_ops"]!.AsArray();
        if (machine == "arm64-noncoherent")
        {
            // The non-coherent device needs the CPU's dirty lines written back before it reads.
            var op = Assert.Single(cacheOps);
            Assert.Equal("clean", Str(op!["op"]));
            Assert.Equal(Str(mapTx["phys"]), Str(op["phys"]));
            Assert.Equal(64, op["size"]!.GetValue<long>());
        }
        else
        {
            Assert.Empty(cacheOps);
            Assert.Equal(0, mapTx["kernel_mappings"]!.GetValue<long>());
        }
    }

    [Fact]
    public void Missed_sync_shows_stale_bytes_on_both_sides()
    {
        var r = ScenarioRunner.Run(ScenarioParser.ParseFile(Example("missed-sync.yaml")));
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal("00 00 00 00", Str(Step(r, "read-without-sync")["data"]));
        Assert.Equal("ca fe f0 0d", Str(Step(r, "read-after-sync")["data"]));
        Assert.StartsWith("11 11 11 11", Str(Step(r, "nic-reads-old-frame")["data"]));
        Assert.StartsWith("22 22 22 22", Str(Step(r, "nic-reads-new-frame")["data"]));
    }

    [Fact]
    public void Missed_sync_on_a_coherent_machine_is_harmless()
    {
        // The same driver on a cache-coherent x86 machine: the device snoops, so nothing is stale and the
        // example's stale-byte expectations fail (exit 1), which is the point of the comparison.
        var r = ScenarioRunner.Run(ScenarioParser.ParseFile(Example("missed-sync.yaml"), "x86-noiommu"));
        Assert.False(r.Ok);
        Assert.Equal("ca fe f0 0d", Str(Step(r, "read-without-sync")["data"]));
        Assert.StartsWith("22 22 22 22", Str(Step(r, "nic-reads-old-frame")["data"]));
    }
}
