using System.Diagnostics;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Fuzz;

/// <summary>
/// Every minimal input the fuzzers found (Fuzz/Findings/) gives the outcome it must: a clean error naming
/// file, line and field with exit 2, or the kernel's own outcome in the result. Never an unhandled exception,
/// a hang or a misread value.
/// </summary>
public class FuzzFindingTests
{
    private static string Dir => Path.Combine(RepoRoot, "tests", "PhysDma.Tests", "Fuzz", "Findings");

    private static (int Exit, string Out, string Err) RunFinding(string name, params string[] extra)
    {
        var sw = Stopwatch.StartNew();
        var r = CliArgs(["run", Path.Combine(Dir, name), .. extra]);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"{name} took {sw.Elapsed}");
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("Unhandled", r.Err);
        return r;
    }

    [Theory]
    [InlineData("C01-OverflowException--ScenarioRunner.DoDevRead.yaml", 3, "len: a read prints every byte it reads: at most 1048576 bytes per step, not 9223372036854775808")]
    [InlineData("C02-OutOfMemoryException--ScenarioRunner.DoDevRead.yaml", 3, "len: a read prints every byte it reads: at most 1048576 bytes per step, not 2147483647")]
    [InlineData("C03-ArgumentException--RunResult.ToJson.yaml", 3, "len: a read prints every byte it reads: at most 1048576 bytes per step, not 134217728")]
    [InlineData("C04a-KeyNotFound--ScenarioRunner.DoFreeCoherent.yaml", 4, "handle: no handle named 'c' exists at this step")]
    [InlineData("C04b-KeyNotFound--ScenarioRunner.DoCpuWrite.yaml", 4, "buf: no buffer named 'c' exists at this step")]
    [InlineData("C04c-KeyNotFound--ScenarioRunner.DoCpuRead.yaml", 4, "buf: no buffer named 'c' exists at this step")]
    [InlineData("C04d-KeyNotFound--ScenarioRunner.Execute-mapping_error.yaml", 4, "handle: no handle named 'c' exists at this step")]
    [InlineData("C04e-KeyNotFound--ScenarioRunner.Execute-free.yaml", 4, "buf: no buffer named 'c' exists at this step")]
    [InlineData("C04f-KeyNotFound--ScenarioRunner.DoUnmap.yaml", 4, "handle: no handle named 'c' exists at this step")]
    [InlineData("C04g-KeyNotFound--ScenarioRunner.DoSync.yaml", 4, "handle: no handle named 'c' exists at this step")]
    [InlineData("C04h-KeyNotFound--ScenarioRunner.Target.yaml", 4, "handle: no handle named 'c' exists at this step")]
    [InlineData("C04i-KeyNotFound--ScenarioRunner.BeginMapStep.yaml", 4, "buf: no buffer named 'c' exists at this step")]
    [InlineData("C04j-KeyNotFound--ScenarioRunner.DoIovaAlloc.yaml", 4, "buf: no buffer named 'c' exists at this step")]
    [InlineData("C04k-KeyNotFound--ScenarioRunner.DoMapSg.yaml", 4, "buf: no buffer named 'c' exists at this step")]
    [InlineData("C05-OverflowException--DataSpec.Expand.yaml", 3, "size: 3221225472 bytes span 786432 pages; the model keeps per-page state and allows at most 262144 pages")]
    [InlineData("C06-ArgumentException--MemoryMap.Add.yaml", 3, "size: 0xfffffffffffff000 + size 0x2000 runs past the end of the 64-bit address space")]
    [InlineData("C07-IndexOutOfRange--Buffer.PhysAt.yaml", 3, "size: 0xc0001000 + size 0xffffffffffffffff runs past the end of the 64-bit address space")]
    [InlineData("C07b-IndexOutOfRange--Buffer.PhysAt-vmalloc.yaml", 3, "size: 281474976710656 bytes span 68719476736 pages")]
    [InlineData("C07c-IndexOutOfRange--Buffer.PhysAt-kernel_text.yaml", 3, "size: 0x0 + size 0xffffffffffffffff runs past the end of the 64-bit address space")]
    [InlineData("C08-ArgumentOutOfRange--BufferAllocator.PagesFrom.yaml", 3, "size: 0x40000000 + size 0xffffffffffffefff runs past the end of the 64-bit address space")]
    [InlineData("C14-IndexOutOfRange--BufferAllocator.MapRam.yaml", 3, "size: 0x100000000 + size 0xffffffffffffffff runs past the end of the 64-bit address space")]
    [InlineData("C17-ArgumentOutOfRange--BufferAllocator.KernelText.yaml", 4, "size: 18446744073709547519 bytes span 4503599627370495 pages")]
    [InlineData("H1-hang-mem-map-6TB.yaml", 4, "size: size 6502580486144 spans 1587544064 pages; the model keeps per-page state and allows at most 262144 pages per mapping")]
    [InlineData("H4-hang-mem-resource-1TiB.yaml", 3, "size: 1099511627776 bytes span 268435456 pages")]
    [InlineData("H5-slow-mem-1TiB-ram-512GiB-buffer.yaml", 4, "size: 549755813888 bytes span 134217728 pages")]
    [InlineData("S1-silent-cpu_write-4GiB-writes-nothing.yaml", 3, "size: 4294967296 bytes span 1048576 pages")]
    [InlineData("S2-silent-cpu_write-len-2pow32plus4-writes-4.yaml", 3, "size: 5368709120 bytes span 1310720 pages")]
    [InlineData("S3-silent-stack-alloc-2pow64-5-size-printed-negative.yaml", 3, "size: 0x0 + size 0xfffffffffffffffb runs past the end of the 64-bit address space")]
    [InlineData("S4-map-size-2pow64-1-printed-as-minus-1.yaml", 4, "size: 0x1000 + size 0xffffffffffffffff runs past the end of the 64-bit address space")]
    [InlineData("S5-010-is-decimal-10.yaml", 3, "steps[0].size: '010' has a leading zero")]
    [InlineData("V3-model_violation-map_sg-of-resource.yaml", 4, "segments: buffer 'b0' (resource) has no struct page, so it cannot be put in a scatterlist")]
    [InlineData("V5-model_violation-map_sg-resource-tbt0.yaml", 8, "segments: buffer 'b0' (resource) has no struct page")]
    [InlineData("H6-slow-alloc-coherent-8GiB-cacheline128.yaml", 3, "size: 9412142995 bytes span 2297887 pages; the model keeps per-page state and allows at most 262144 pages per buffer")]
    [InlineData("H7-slow-alloc-coherent-3GiB-mmio-attr-after-remove.yaml", 4, "size: 3221225472 bytes span 786432 pages")]
    [InlineData("H8-slow-alloc-coherent-3.5GiB-tbt0.yaml", 3, "size: 3769550646 bytes span 920301 pages")]
    [InlineData("F1-ArgumentException--MemoryMap.Add-resource-runs-into-bar.yaml", 5, "size: 0x40000000+0x28001000 runs into 'nvme0 BAR 0' at 0x60100000")]
    [InlineData("F2-resource-runs-past-its-region.yaml", 5, "size: 0x60100000+0x8000 runs past the end of 'nvme0 BAR 0' (0x60100000+0x4000)")]
    [InlineData("F3-StackOverflow--YamlDotNet.ResolveAliases-self-alias-keys.yaml", 3, "YAML aliases are not supported (*a)")]
    [InlineData("H9-slow-alloc-coherent-3GiB-cacheline128.yaml", 3, "size: 3221225472 bytes span 786432 pages")]
    [InlineData("C10-InvalidOperationException--YNode.Load.yaml", 2, "not valid YAML after this point")]
    [InlineData("C11-ArgumentException--YNode.Load.yaml", 1, "not valid YAML")]
    public void Finding_is_bad_input_at_its_line(string name, int line, string text)
    {
        var (exit, stdout, stderr) = RunFinding(name);
        Assert.Equal(2, exit);
        Assert.Equal("", stdout);
        Assert.StartsWith($"physdma: {Path.Combine(Dir, name)}:{line}", stderr);
        Assert.Contains(text, stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void Nesting_forty_thousand_deep_is_refused_at_its_column()
    {
        var (exit, _, stderr) = RunFinding("C12-StackOverflow-YamlDotNet-nesting40000.yaml");
        Assert.Equal(2, exit);
        Assert.Contains("C12-StackOverflow-YamlDotNet-nesting40000.yaml:2:71: nesting deeper than 64 levels", stderr);
    }

    [Fact]
    public void Machine_file_naming_itself_is_a_cycle()
    {
        var (exit, _, stderr) = RunFinding("C13-StackOverflow--MachineParser.LoadFile-selfref.yaml");
        Assert.Equal(2, exit);
        Assert.Equal($"physdma: {Path.Combine(Dir, "selfref.yaml")}:1: machine: machine files name each other in a cycle (selfref.yaml -> selfref.yaml)\n", stderr);
    }

    [Theory]
    [InlineData("C15-IndexOutOfRange--ScenarioRunner.DoAllocCoherent.yaml")]
    [InlineData("C16-OverflowException--DmaIommu.AllocPagesForIommu.yaml")]
    [InlineData("M1-mem-alloc-coherent-16TiBplus1GiB.yaml")]
    public void Coherent_allocation_beyond_free_ram_fails_with_enomem(string name)
    {
        var (exit, stdout, _) = RunFinding(name, "--json");
        Assert.Equal(0, exit);
        Assert.Contains("\"error\": \"ENOMEM\"", stdout);
        Assert.Contains("\"dma_addr\": \"0xffffffffffffffff\"", stdout);
    }

    [Fact]
    public void Task_stack_on_64k_pages_is_one_page()
    {
        var (exit, stdout, _) = RunFinding("C09-ArgumentOutOfRange--BufferAllocator.Stack.yaml", "--json");
        Assert.Equal(0, exit);
        Assert.Contains("\"kind\": \"stack\"", stdout);
        Assert.Contains("\"size\": 64", stdout);
    }

    [Fact]
    public void Gigabyte_coherent_allocation_through_the_iommu_completes()
    {
        var (exit, stdout, _) = RunFinding("H2-hang-mem-alloc-coherent-1GiB.yaml", "--json");
        Assert.Equal(0, exit);
        Assert.Contains("\"size\": 1073741824", stdout);
        Assert.Contains("\"path\": \"iommu\"", stdout);
    }

    [Fact]
    public void Sync_of_sixteen_tebibytes_visits_only_cached_lines()
    {
        var (exit, stdout, _) = RunFinding("H3-hang-sync-16TiB-arm64.yaml", "--json");
        Assert.Equal(0, exit);
        Assert.Contains("\"size\": 17592186044416", stdout);
    }

    [Fact]
    public void Gigabyte_written_is_every_byte_of_the_pattern()
    {
        var (exit, stdout, _) = RunFinding("M2-mem-cpu_write-1GiB-3.9GB-RSS.yaml", "--json");
        Assert.Equal(0, exit);
        Assert.Contains("\"len\": 1073741824", stdout);
    }

    [Theory]
    [InlineData("V1-model_violation-undocumented-exit1-p2pmem-on-coco.yaml", "Oops: unable to handle kernel paging request: phys_to_virt(0x3800000000): not RAM")]
    [InlineData("V2-model_violation-cpu-write-after-free_coherent.yaml", "Oops: unable to handle kernel paging request: CPU access at 0xffffc90000000000")]
    public void Access_with_no_kernel_mapping_is_an_oops(string name, string bug)
    {
        var (exit, stdout, _) = RunFinding(name, "--json");
        Assert.Equal(1, exit);
        Assert.Contains("\"error\": \"oops\"", stdout);
        Assert.Contains($"\"bug\": \"{bug}", stdout);
    }

    [Fact]
    public void Arm64_highmem_is_refused_in_the_machine()
    {
        var (exit, _, stderr) = RunFinding("V4-model_violation-arm64-highmem_above-65.yaml");
        Assert.Equal(2, exit);
        Assert.Contains(":1: machine.highmem_above: arm64 has no highmem", stderr);
    }

    [Fact]
    public void A_five_digit_pci_domain_runs_the_p2p_scatterlist_as_four_digits_do()
    {
        var (exit, stdout, stderr) = RunFinding("F4-FormatException--P2PDma.MapTypesIndex-five-digit-domain.yaml", "--json");
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        Assert.Contains("\"check\": \"cache_op_on_mmio\"", stdout);
    }

    [Fact]
    public void Every_finding_file_has_a_test()
    {
        var tested = typeof(FuzzFindingTests).GetMethods()
            .SelectMany(m => m.GetCustomAttributes(typeof(InlineDataAttribute), false).Cast<InlineDataAttribute>())
            .Select(a => (string)a.GetData(null!).First()[0]).ToHashSet();
        tested.UnionWith(["C12-StackOverflow-YamlDotNet-nesting40000.yaml", "C13-StackOverflow--MachineParser.LoadFile-selfref.yaml",
            "C09-ArgumentOutOfRange--BufferAllocator.Stack.yaml", "H2-hang-mem-alloc-coherent-1GiB.yaml", "H3-hang-sync-16TiB-arm64.yaml",
            "M2-mem-cpu_write-1GiB-3.9GB-RSS.yaml", "V4-model_violation-arm64-highmem_above-65.yaml", "selfref.yaml",
            "F4-FormatException--P2PDma.MapTypesIndex-five-digit-domain.yaml"]);
        var files = Directory.GetFiles(Dir, "*.yaml").Select(f => Path.GetFileName(f)!).ToList();
        Assert.Equal(55, files.Count);
        Assert.All(files, f => Assert.Contains(f, tested));
    }
}
