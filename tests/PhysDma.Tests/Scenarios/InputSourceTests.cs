using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>Where a scenario comes from and the inputs a newcomer gets wrong: each a clean error with exit 2.</summary>
public class InputSourceTests
{
    [Fact]
    public void Yaml_typo_names_line_and_column()
    {
        var (exit, stdout, stderr, file) = RunCli("machine: default\nsteps:\n  - { op: alloc, name: a, size: 4KiB, kind: ram\n  - op: map\n");
        Assert.Equal(2, exit);
        Assert.Equal("", stdout);
        Assert.Matches($"^physdma: {System.Text.RegularExpressions.Regex.Escape(file)}:3:3: not valid YAML after this point", stderr);
        Assert.DoesNotContain("   at ", stderr);
    }

    [Fact]
    public void Directory_is_refused_with_what_to_give()
    {
        var dir = Path.Combine(Path.GetTempPath(), "physdma-tests");
        Directory.CreateDirectory(dir);
        var (exit, _, stderr) = CliArgs("run", dir);
        Assert.Equal(2, exit);
        Assert.Equal($"physdma: {dir}:0: is a directory: give a scenario file (YAML or JSON), or - to read one from standard input\n", stderr);
    }

    [Fact]
    public void Leading_zero_integer_is_refused()
    {
        var (exit, _, stderr, _) = RunCli("machine: x86-noiommu\nsteps:\n  - { op: tick, ms: 010 }\n");
        Assert.Equal(2, exit);
        Assert.Contains(":3: steps[0].ms: '010' has a leading zero", stderr);
    }

    [Fact]
    public void P2pmem_with_phys_is_refused()
    {
        var (exit, _, stderr, _) = RunCli("machine: default\nsteps:\n  - { op: alloc, name: v, size: 4096, kind: p2pmem, from: gpu0, phys: 0x3800000000 }\n");
        Assert.Equal(2, exit);
        Assert.Contains(":3: phys: p2pmem comes from the provider's pool (pci_alloc_p2pmem takes no address)", stderr);
    }

    [Fact]
    public void Kmalloc_placed_on_a_slab_page_at_its_alignment()
    {
        var r = Run("machine: x86-noiommu\nsteps:\n  - { op: alloc, name: a, size: 64, kind: kmalloc }\n" +
                    "  - { op: alloc, name: b, size: 64, kind: kmalloc, phys: 0x1008 }\n");
        Assert.Equal("0x1000", Str(Step(r, 0)["phys"]));
        Assert.Equal("0x1008", Str(Step(r, 1)["phys"]));
    }

    [Fact]
    public void Kmalloc_misaligned_on_a_slab_page_names_the_alignment()
    {
        var (exit, _, stderr, _) = RunCli("machine: x86-noiommu\nsteps:\n  - { op: alloc, name: a, size: 64, kind: kmalloc }\n" +
                                          "  - { op: alloc, name: b, size: 64, kind: kmalloc, phys: 0x1004 }\n");
        Assert.Equal(2, exit);
        Assert.Contains(":4: phys: 0x1004 is not aligned for kmalloc: objects on this machine are aligned to 8 bytes", stderr);
    }
}
