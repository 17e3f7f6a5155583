using PhysDma.Platform;
using PhysDma.Scenarios;
using PhysDma.Tests.Scenarios;

namespace PhysDma.Tests.Pci;

/// <summary>
/// <c>bdf:</c> is optional: a PCI device without one gets the address firmware would give it (depth-first bus
/// numbering from each host bridge, device numbers in file order), and devices below an external-facing port
/// are untrusted.
/// </summary>
public class PciAddressingTests
{
    private const string Machine = """
        machine:
          base: x86-noiommu
          pci:
            - { name: hb1, type: host_bridge, windows: [{ base: 0xd0000000, size: 256MiB }] }
            - { name: rpa, type: root_port, parent: hb1 }
            - { name: swa, type: switch, parent: rpa }
            - { name: swb, type: switch, parent: swa }
            - { name: rpb, type: root_port, parent: hb1, external_facing: true }
          devices:
            - { name: gpu9, parent: swb, dma_mask: 64, coherent_dma_mask: 64 }
            - { name: nvme9, parent: swa, dma_mask: 64, coherent_dma_mask: 64 }
            - { name: nic9, parent: swa, dma_mask: 64, coherent_dma_mask: 64 }
            - { name: ext9, parent: rpb, dma_mask: 64, coherent_dma_mask: 64 }
            - { name: igpu9, parent: hb1, dma_mask: 64, coherent_dma_mask: 64 }
        """;

    private static MachineConfig Completed()
    {
        var s = ScenarioParser.Parse(Machine + "\nsteps: []\n", "m.yaml");
        return PciAddressing.Complete(s.Machine);
    }

    [Fact]
    public void Devices_without_bdf_are_numbered_depth_first_from_their_host_bridge()
    {
        var c = Completed();
        string Bdf(string n) => c.Devices.Single(d => d.Name == n).Bdf!;
        // x86-noiommu's hb0 tree (rp0, rp1, rp4 with switch sw4) takes buses 00..04; hb1's root bus is 05.
        // rpa = 05:01.0 -> bus 06; swa upstream on 06:00.0, internal bus 07; its children in file order:
        // swb (dsp 07:00.0 -> bus 08; swb internal 09; gpu9 behind dsp 09:00.0 on bus 0a),
        // nvme9 (dsp 07:01.0 -> bus 0b), nic9 (dsp 07:02.0 -> bus 0c); rpb = 05:02.0 -> bus 0d; igpu9 = 05:03.0.
        Assert.Equal("0000:0a:00.0", Bdf("gpu9"));
        Assert.Equal("0000:0b:00.0", Bdf("nvme9"));
        Assert.Equal("0000:0c:00.0", Bdf("nic9"));
        Assert.Equal("0000:0d:00.0", Bdf("ext9"));
        Assert.Equal("0000:05:03.0", Bdf("igpu9"));
        // Devices that had a bdf keep it.
        Assert.Equal("0000:01:00.0", Bdf("nic0"));
        Assert.Equal("0000:10:00.0", Bdf("legacy32"));
    }

    [Fact]
    public void Devices_below_an_external_facing_port_are_untrusted()
    {
        var c = Completed();
        Assert.True(c.Devices.Single(d => d.Name == "ext9").Untrusted);
        Assert.False(c.Devices.Single(d => d.Name == "nic9").Untrusted);
    }

    [Fact]
    public void Every_built_in_profile_keeps_its_addresses()
    {
        foreach (var name in Profiles.Names)
        {
            Assert.True(Profiles.TryGet(name, out var p));
            Assert.Equal(p.Devices.Select(d => (d.Name, d.Bdf, d.Untrusted)), PciAddressing.Complete(p).Devices.Select(d => (d.Name, d.Bdf, d.Untrusted)));
        }
    }

    [Fact]
    public void Dma_debug_names_the_enumerated_address()
    {
        var r = ScenarioTestKit.Run(Machine + "\n" + """
            steps:
              - { op: alloc, name: frame, size: 4KiB, kind: ram }
              - { op: map, dev: nic9, buf: frame, size: 1514, dir: to_device, as: tx }
              - { op: mapping_error, handle: tx }
              - { op: unmap, handle: tx }
              - { op: unmap, handle: tx }
            expect: { debug: [free_not_allocated] }
            """);
        Assert.True(r.Ok, r.ToJson());
        Assert.Contains("DMA-API: nic9 0000:0c:00.0: device driver tries to free DMA memory it has not allocated", r.ToJson(), StringComparison.Ordinal);
    }

    [Fact]
    public void An_enumerated_address_taken_by_a_written_one_is_bad_input()
    {
        var (exit, _, err, _) = ScenarioTestKit.RunCli("""
            machine:
              base: x86-noiommu
              devices:
                - { name: late, parent: rp0 }
            steps: []
            """);
        // rp0 = 00:01.0 -> bus 01; its first child sits at 01:00.0, which nic0 already has.
        Assert.Equal(2, exit);
        Assert.Contains("device 'late' has no bdf and the address it would be enumerated at, 0000:01:00.0, is device 'nic0''s", err, StringComparison.Ordinal);
    }

    [Fact]
    public void A_pci_address_with_a_five_digit_domain_is_accepted()
    {
        var r = ScenarioTestKit.Run("""
            machine:
              base: x86-noiommu
              pci:
                - { name: vmd, type: host_bridge, bdf: "10000:e0:00.0", windows: [{ base: 0xd0000000, size: 256MiB }] }
                - { name: vrp, type: root_port, parent: vmd }
              devices:
                - { name: nvme9, parent: vrp, dma_mask: 64, coherent_dma_mask: 64 }
            steps:
              - { op: alloc, name: b, size: 4KiB, kind: ram }
              - { op: map, dev: nvme9, buf: b, dir: to_device, as: h }
              - { op: unmap, handle: h }
              - { op: unmap, handle: h }
            """);
        Assert.Contains("nvme9 10000:e1:00.0:", r.ToJson(), StringComparison.Ordinal);
    }
}
