using System.Text.RegularExpressions;
using PhysDma.Cli;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using PhysDma.Scenarios;
using PhysDma.Tools;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Tools;

public class BenchMapCommandTests
{
    [Theory]
    [InlineData(new[] { "-t", "0" }, "invalid number of threads, must be in 1-1024")]
    [InlineData(new[] { "-t", "1025" }, "invalid number of threads, must be in 1-1024")]
    [InlineData(new[] { "-tabc" }, "invalid number of threads, must be in 1-1024")]
    [InlineData(new[] { "-s", "301" }, "invalid number of seconds, must be in 1-300")]
    [InlineData(new[] { "-s", "0" }, "invalid number of seconds, must be in 1-300")]
    [InlineData(new[] { "-x", "10000001" }, "invalid transmit delay, must be in 0-10000000")]
    [InlineData(new[] { "-x", "-1" }, "invalid transmit delay, must be in 0-10000000")]
    [InlineData(new[] { "-b", "19" }, "invalid dma mask bit, must be in 20-64")]
    [InlineData(new[] { "-b", "65" }, "invalid dma mask bit, must be in 20-64")]
    [InlineData(new[] { "-d", "3" }, "invalid dma direction")]
    [InlineData(new[] { "-g", "0" }, "invalid granule size")]
    [InlineData(new[] { "-g", "1025" }, "invalid granule size")]
    [InlineData(new[] { "-m", "2" }, "invalid map mode, SINGLE_MODE:0, SG_MODE: 1")]
    [InlineData(new[] { "-m", "-1", "-t", "0" }, "invalid map mode, SINGLE_MODE:0, SG_MODE: 1")]
    [InlineData(new[] { "-z", "1" }, "physdma bench map: invalid option -- 'z'")]
    [InlineData(new[] { "-t" }, "physdma bench map: option requires an argument -- 't'")]
    public void Bad_values_get_the_kernel_tools_message_and_exit_2(string[] args, string message)
    {
        var (exit, stdout, stderr) = CliArgs(["bench", "map", .. args]);
        Assert.Equal(PhysDmaCli.ExitBadInput, exit);
        Assert.Equal("", stdout);
        Assert.Equal(message + "\n", stderr.Replace("\r\n", "\n", StringComparison.Ordinal));
    }

    [Fact]
    public void A_node_the_machine_lacks_fails_the_ioctl_as_the_driver_does()
    {
        var (exit, _, stderr) = CliArgs("bench", "map", "-n", "1", "-s", "1");
        Assert.Equal(PhysDmaCli.ExitBadInput, exit);
        Assert.Equal("dma_map_benchmark: invalid numa node\nioctl: Invalid argument\n", stderr.Replace("\r\n", "\n", StringComparison.Ordinal));
    }

    [Fact]
    public void An_unknown_device_names_the_ones_the_machine_has()
    {
        var (exit, _, stderr) = CliArgs("bench", "map", "--machine", "x86-noiommu", "--device", "nope");
        Assert.Equal(PhysDmaCli.ExitBadInput, exit);
        Assert.StartsWith("physdma: --device: machine 'x86-noiommu' has no device 'nope' (it has: ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Single_mode_prints_the_kernel_tools_three_lines()
    {
        var (exit, stdout, stderr) = CliArgs("bench", "map", "-t", "2", "-s", "1", "-g", "1", "-d", "1");
        Assert.Equal("", stderr);
        Assert.Equal(PhysDmaCli.ExitOk, exit);
        var lines = stdout.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        Assert.Equal(4, lines.Length);
        Assert.Equal("dma mapping benchmark: threads:2 seconds:1 node:-1 dir:TO_DEVICE granule: 1", lines[0]);
        Assert.Matches(new Regex(@"^average map latency\(us\):\d+\.\d standard deviation:\d+\.\d$"), lines[1]);
        Assert.Matches(new Regex(@"^average unmap latency\(us\):\d+\.\d standard deviation:\d+\.\d$"), lines[2]);
        Assert.Equal("", lines[3]);
    }

    [Fact]
    public void An_explicit_mode_prints_the_mode_line_of_the_series_that_adds_it()
    {
        var (exit, stdout, _) = CliArgs("bench", "map", "-m", "0", "-s", "1");
        Assert.Equal(PhysDmaCli.ExitOk, exit);
        Assert.StartsWith("dma mapping benchmark(SINGLE_MODE): threads:1 seconds:1 node:-1 dir:BIDIRECTIONAL granule:1\n",
            stdout.Replace("\r\n", "\n", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact]
    public void Sg_mode_maps_a_list_of_granule_pages_on_a_chosen_machine()
    {
        var (exit, stdout, stderr) = CliArgs("bench", "map", "-m1", "-g8", "-s1", "-d2", "-n0", "--machine=x86-iommu-strict");
        Assert.Equal("", stderr);
        Assert.Equal(PhysDmaCli.ExitOk, exit);
        Assert.StartsWith("dma mapping benchmark(SG_MODE): threads:1 seconds:1 node:0 dir:FROM_DEVICE granule:8\n",
            stdout.Replace("\r\n", "\n", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact]
    public void A_run_leaves_no_mapping_and_restores_the_mask()
    {
        Assert.True(Profiles.TryGet("x86-iommu-strict", out var cfg));
        var m = new Machine(cfg);
        var api = new DmaApi(m);
        var dev = m.Device(cfg.Devices[0].Name);
        var mask = dev.DmaMask;
        var r = MapBenchmark.Run(api, dev, new MapBenchmarkParams { Threads = 2, Seconds = 1, DmaBits = 40, Dir = 0, Granule = 3 });
        Assert.True(r.Loops > 0);
        Assert.Equal(mask, dev.DmaMask);
        api.Iommu!.FlushAll();
        Assert.Equal(0UL, api.Iommu.IovaPagesInUse);
        Assert.Equal(0, api.Iommu.DomainOf(dev)!.PteCount);
    }

    [Fact]
    public void A_failing_map_is_the_ioctls_ENOMEM()
    {
        // RAM only above 4 GiB, no swiotlb: a 32-bit device cannot reach the buffer and nothing can bounce it.
        var cfg = new MachineConfig
        {
            Name = "high-ram",
            Arch = Arch.X86_64,
            Cpus = 1,
            Ram = [new AddrRange(4 * Sizes.GiB, 4 * Sizes.GiB)],
            Swiotlb = null,
            Devices = [new DeviceConfig { Name = "nic0", DmaMaskBits = 32, CoherentDmaMaskBits = 32 }],
        };
        var m = new Machine(cfg);
        var api = new DmaApi(m);
        var dev = m.Device("nic0");
        var e = Assert.Throws<MapBenchmarkException>(() => MapBenchmark.Run(api, dev, new MapBenchmarkParams { Seconds = 1, DmaBits = 32 }));
        Assert.Equal(Errno.ENOMEM, e.Errno);
        Assert.Equal($"dma_map_single failed on {dev.Name}", e.Message);
    }

    [Theory]
    [InlineData("12", 12)]
    [InlineData("  -7x", -7)]
    [InlineData("+3", 3)]
    [InlineData("abc", 0)]
    [InlineData("", 0)]
    [InlineData("99999999999", int.MaxValue)]
    public void Numbers_are_read_as_atoi_reads_them(string text, int value) =>
        Assert.Equal(value, BenchMapCommand.Atoi(text));

    [Theory]
    [InlineData(0UL, 0UL)]
    [InlineData(15UL, 3UL)]
    [InlineData(16UL, 4UL)]
    [InlineData(ulong.MaxValue, 4294967295UL)]
    public void Standard_deviation_uses_the_floor_square_root(ulong x, ulong root) =>
        Assert.Equal(root, MapBenchmark.IntSqrt(x));
}
