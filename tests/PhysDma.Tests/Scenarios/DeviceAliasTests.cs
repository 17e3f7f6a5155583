using PhysDma.Scenarios;

namespace PhysDma.Tests.Scenarios;

/// <summary><c>run --device NAME=TARGET</c>: a scenario's device runs on another machine's device, by name or PCI address.</summary>
public class DeviceAliasTests
{
    private const string Scenario = """
        machine: x86-noiommu
        steps:
          - { op: alloc, name: b, size: 4KiB, kind: ram }
          - { op: map, dev: gpu7, buf: b, size: 64, dir: to_device, as: h }
          - { op: unmap, handle: h }
          - { op: unmap, handle: h }
        """;

    [Fact]
    public void A_scenario_device_runs_on_the_target_named_by_pci_address()
    {
        var (exit, o, e, _) = ScenarioTestKit.RunCli(Scenario, "--device", "gpu7=0000:10:00.0", "--json");
        Assert.Equal("", e);
        Assert.Equal(0, exit);
        // legacy32 is 0000:10:00.0: its report carries the scenario's name and the target's address.
        Assert.Contains("DMA-API: gpu7 0000:10:00.0: device driver tries to free DMA memory it has not allocated", o, StringComparison.Ordinal);
    }

    [Fact]
    public void A_target_named_by_device_name_swaps_names_with_the_alias()
    {
        var m = ScenarioParser.Parse(Scenario.Replace("gpu7", "nic0", StringComparison.Ordinal), "s.yaml", null, [("nic0", "legacy32")]).Machine;
        Assert.Equal("0000:10:00.0", m.Devices.Single(d => d.Name == "nic0").Bdf);
        Assert.Equal("0000:01:00.0", m.Devices.Single(d => d.Name == "legacy32").Bdf);
    }

    [Fact]
    public void Repeated_aliases_all_apply()
    {
        var m = DeviceAliases.Apply(Profiles.TryGet("default", out var d) ? d : throw new InvalidOperationException(), [("a", "0000:04:00.0"), ("b", "nvme0")]);
        Assert.Equal("0000:04:00.0", m.Devices.Single(x => x.Name == "a").Bdf);
        Assert.Equal("0000:05:00.0", m.Devices.Single(x => x.Name == "b").Bdf);
    }

    [Fact]
    public void An_alias_on_a_machine_whose_addresses_collide_reports_the_machine_error()
    {
        var (exit, _, e, _) = ScenarioTestKit.RunCli("""
            machine:
              base: x86-noiommu
              devices:
                - { name: late, parent: rp0 }
            steps:
              - { op: alloc, name: b, size: 4KiB, kind: ram }
              - { op: map, dev: gpu7, buf: b, size: 64, dir: to_device, as: h }
            """, "--device", "gpu7=nic0");
        Assert.Equal(2, exit);
        Assert.Contains("machine.devices[4].bdf: device 'late' has no bdf", e, StringComparison.Ordinal);
    }

    [Fact]
    public void A_scenario_device_with_no_counterpart_is_an_error_naming_it()
    {
        var (exit, _, e, _) = ScenarioTestKit.RunCli(Scenario);
        Assert.Equal(2, exit);
        Assert.Contains("unknown device 'gpu7'", e, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_target_is_an_error_naming_it()
    {
        var (exit, _, e, _) = ScenarioTestKit.RunCli(Scenario, "--device", "gpu7=0000:3b:00.0");
        Assert.Equal(2, exit);
        Assert.Contains("gpu7=0000:3b:00.0: machine 'x86-noiommu' has no device '0000:3b:00.0'", e, StringComparison.Ordinal);
        var (exit2, _, e2, _) = ScenarioTestKit.RunCli(Scenario, "--device", "gpu7");
        Assert.Equal(2, exit2);
        Assert.Contains("'gpu7' is not NAME=TARGET", e2, StringComparison.Ordinal);
    }
}
