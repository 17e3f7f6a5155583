using PhysDma.Replay;
using static PhysDma.Tests.Replaying.ReplayKit;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Replaying;

/// <summary>Bad traces: one clear error with the line number and the line, exit 2; foreign lines skipped and counted.</summary>
public sealed class ReplayBadInputTests
{
    private static string Write(string text)
    {
        var file = Path.Combine(Path.GetTempPath(), $"physdma-bad-{Guid.NewGuid():N}.txt");
        File.WriteAllText(file, text);
        return file;
    }

    private static readonly string Map = Line(10, "dma_map_phys", "0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=64 phys_addr=10000 attrs=");

    [Theory]
    [InlineData("this is not a trace line", "not a trace line")]
    [InlineData("         physdma-1       [000] .....     0.000010: dma_map_phys: 0000:02:00.0 dir=SIDEWAYS dma_addr=fffff000 size=64 phys_addr=10000 attrs=", "dma_map_phys: dir: unknown direction 'SIDEWAYS'")]
    [InlineData("         physdma-1       [000] .....     0.000010: dma_map_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=xyz size=64 phys_addr=10000 attrs=", "dma_map_phys: dma_addr: 'xyz' is not a hex number")]
    [InlineData("         physdma-1       [000] .....     0.000010: dma_map_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 phys_addr=10000 attrs=", "dma_map_phys: missing field size")]
    [InlineData("         physdma-1       [000] .....     0.000010: dma_unmap_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=fffff000 size=64 attrs=SHINY", "dma_unmap_phys: attrs: unknown attribute 'SHINY'")]
    [InlineData("         physdma-1       [000] .....     0.000010: dma_map_sg: 0000:02:00.0 dir=TO_DEVICE nents=2/2 ents=2/2 dma_addrs={0x1000} sizes={0x1000} phys_addrs={0x10000,0x11000} attrs=", "dma_map_sg: nents=2 ents=2 but the arrays hold 2 phys_addrs, 1 dma_addrs and 1 sizes")]
    public void Malformed_line_is_an_error_with_its_number_and_text(string bad, string message)
    {
        var file = Write("# tracer: nop\n" + Map + "\n" + bad + "\n");
        var (exit, stdout, stderr) = CliArgs("replay", file);
        Assert.Equal(2, exit);
        Assert.Equal("", stdout);
        Assert.Equal($"physdma: {file}:3: {message}", stderr.Split('\n')[0].Split(" (expected")[0]);
        Assert.Equal("  " + bad, stderr.Split('\n')[1]);
    }

    [Fact]
    public void Unknown_device_exits_2_naming_it()
    {
        var file = Write(Line(1, "dma_map_phys", "0000:7f:00.0 dir=TO_DEVICE dma_addr=1000 size=64 phys_addr=10000 attrs=") + "\n");
        var (exit, _, stderr) = CliArgs("replay", file, "--machine", "x86-iommu-strict");
        Assert.Equal(2, exit);
        Assert.StartsWith($"physdma: {file}:1: traced device '0000:7f:00.0' matches no device of machine x86-iommu-strict (it has: gpu0 (0000:04:00.0), ", stderr, StringComparison.Ordinal);
        var (exit2, _, stderr2) = CliArgs("replay", file, "--device", "0000:7f:00.0=nic9");
        Assert.Equal(2, exit2);
        Assert.StartsWith($"physdma: {file}:1: --device 0000:7f:00.0=nic9: machine default has no device 'nic9'", stderr2, StringComparison.Ordinal);
        Assert.Equal(2, CliArgs("replay", file, "--device", "nic9").Exit);
    }

    [Fact]
    public void Other_subsystems_comments_and_headers_are_skipped_and_counted()
    {
        var text = string.Join('\n',
            "# tracer: nop", "#", "", "cpus=2", "CPU 1 is empty",
            Line(1, "sched_switch", "prev_comm=a prev_pid=1 ==> next_comm=b next_pid=2"),
            Line(2, "kmalloc", "call_site=x ptr=0000000012345678 bytes_req=64"),
            Line(3, "sched_switch", "prev_comm=b prev_pid=2 ==> next_comm=a next_pid=1"),
            Line(4, "io_page_fault", "IOMMU:nic0 0000:02:00.0 iova=0x00000000bffff000 flags=0x0000"),
            Map, "");
        var (_, r) = ReplayOn(text, "default");
        Assert.Equal(5, r.HeaderLines);
        Assert.Equal(new Dictionary<string, long> { ["sched_switch"] = 2, ["kmalloc"] = 1, ["derived: io_page_fault"] = 1 }, r.Skipped);
        Assert.Equal(5, r.Events);
        Assert.Equal(1, r.Replayed);
        Assert.Equal(10, r.Lines);
    }

    [Fact]
    public void Truncated_last_line_is_reported_not_replayed()
    {
        var cut = Map[..^30];
        var file = Write(Map + "\n" + cut);
        var (_, r) = ReplayOn(File.ReadAllText(file), "default");
        Assert.Equal(cut, r.TruncatedLastLine);
        Assert.Equal(2, r.TruncatedLine);
        Assert.Equal(1, r.Replayed);
        var (exit, _, stderr) = CliArgs("replay", file);
        Assert.Equal(0, exit);
        Assert.Equal($"physdma: {file}:2: the last line has no end (a cut-off capture?); it was not replayed", stderr.TrimEnd());
    }

    [Fact]
    public void Missing_file_and_unknown_event_system_are_bad_input()
    {
        Assert.Equal(2, CliArgs("replay", "/nonexistent/trace.txt").Exit);
        var (exit, _, stderr) = CliArgs("run", Example("quickstart.yaml"), "--trace", Path.GetTempFileName(), "--trace-events", "dma,block");
        Assert.Equal(2, exit);
        Assert.Equal("physdma: --trace-events: unknown event system 'block' (known: dma, swiotlb, iommu)", stderr.TrimEnd());
    }
}
