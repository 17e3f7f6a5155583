using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>
/// DESIGN invariants 3, 4 and 6: a driver that uses the API correctly gets the right bytes on every
/// machine (coherent or not, IOMMU strict, lazy, passthrough or absent, forced bouncing or not), leaves
/// every structure empty, gets no dma-debug report, and the JSON is the same on every run.
/// </summary>
public class CorrectUsageTests
{
    private const string Steps = """
        steps:
          # TX: a kmalloc'd frame and a page-sized one, both handed to the NIC.
          - { op: alloc, name: small, size: 96, kind: kmalloc }
          - { op: cpu_write, buf: small, data: { seq: 0x30 }, len: 96 }
          - { op: map, dev: nic0, buf: small, dir: to_device, as: t1 }
          - { op: mapping_error, handle: t1, expect: { ret: 0 } }
          - { op: dev_read, id: tx-small, dev: nic0, handle: t1, len: 96 }
          - { op: unmap, handle: t1 }
          - { op: alloc, name: page, size: 4KiB, kind: ram, zone: normal }
          - { op: cpu_write, buf: page, data: { fill: 0x5a }, len: 4096 }
          - { op: map, dev: nic0, buf: page, offset: 0x80, size: 1500, dir: to_device, as: t2 }
          - { op: mapping_error, handle: t2, expect: { ret: 0 } }
          - { op: dev_read, id: tx-page, dev: nic0, handle: t2, offset: 1496, len: 4 }
          - { op: unmap, handle: t2 }
          # RX: the NIC writes, the driver syncs for the CPU, reads, gives the buffer back, and again.
          - { op: alloc, name: rx, size: 2KiB, kind: kmalloc }
          - { op: map, dev: nic0, buf: rx, dir: from_device, as: r }
          - { op: mapping_error, handle: r, expect: { ret: 0 } }
          - { op: dev_write, dev: nic0, handle: r, data: "de ad be ef" }
          - { op: sync, handle: r, for: cpu }
          - { op: cpu_read, id: rx-1, buf: rx, len: 4 }
          - { op: sync, handle: r, for: device }
          - { op: dev_write, dev: nic0, handle: r, offset: 4, data: "ca fe" }
          - { op: unmap, handle: r }
          - { op: cpu_read, id: rx-2, buf: rx, len: 6 }
          # Bidirectional: the device reads what the CPU wrote and answers in place.
          - { op: alloc, name: cmd, size: 4KiB, kind: ram }
          - { op: cpu_write, buf: cmd, data: "01 02 03 04" }
          - { op: map, dev: nic0, buf: cmd, size: 64, dir: bidirectional, as: b }
          - { op: mapping_error, handle: b, expect: { ret: 0 } }
          - { op: dev_read, id: cmd-seen, dev: nic0, handle: b, len: 4 }
          - { op: dev_write, dev: nic0, handle: b, offset: 8, data: "99" }
          - { op: unmap, handle: b }
          - { op: cpu_read, id: cmd-answer, buf: cmd, offset: 8, len: 1 }
          - { op: tick, ms: 20 }
        expect:
          live_mappings: 0
          swiotlb_slots_used: 0
          faults: []
          debug: []
        """;

    public static TheoryData<string> Machines() =>
    [
        "default",
        "x86-iommu-strict",
        "x86-noiommu",
        "arm64-noncoherent",
        "coco",
        "{ base: default, iommu: { mode: passthrough } }",
        "{ base: x86-noiommu, swiotlb: { force: true } }",
        "{ base: arm64-noncoherent, swiotlb: off }",
    ];

    [Theory]
    [MemberData(nameof(Machines))]
    public void Bytes_arrive_and_everything_is_returned(string machine)
    {
        var yaml = $"machine: {machine}\n{Steps}";
        var r = Run(yaml);
        Assert.True(r.Ok, r.ToJson());
        Assert.Equal(string.Join(' ', Enumerable.Range(0x30, 96).Select(i => (i & 0xff).ToString("x2"))), Str(Step(r, "tx-small")["data"]));
        Assert.Equal("5a 5a 5a 5a", Str(Step(r, "tx-page")["data"]));
        Assert.Equal("de ad be ef", Str(Step(r, "rx-1")["data"]));
        Assert.Equal("de ad be ef ca fe", Str(Step(r, "rx-2")["data"]));
        Assert.Equal("01 02 03 04", Str(Step(r, "cmd-seen")["data"]));
        Assert.Equal("99", Str(Step(r, "cmd-answer")["data"]));
        var final = r.Json["final"]!;
        if (final["iova_pages_in_use"] is { } pages)
        {
            Assert.Equal(0, pages.GetValue<long>());
            Assert.Equal(0, final["iotlb_entries"]!.GetValue<long>());
        }
        // Invariant 6: byte-identical on a second run.
        Assert.Equal(r.ToJson(), Run(yaml).ToJson());
    }
}
