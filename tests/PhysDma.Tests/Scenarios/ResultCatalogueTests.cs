using PhysDma.Scenarios;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>The one catalogue of ops and result fields agrees with what the parser takes and the runner writes.</summary>
public class ResultCatalogueTests
{
    private const string EveryFamily = """
        machine: default
        steps:
          - { op: alloc, name: rx, size: 8KiB, kind: ram }
          - { op: cpu_write, buf: rx, data: { fill: 0x5a } }
          - { op: cpu_read, buf: rx, len: 4 }
          - { op: map, dev: nic0, buf: rx, dir: bidirectional, as: h }
          - { op: mapping_error, handle: h }
          - { op: sync, handle: h, for: cpu }
          - { op: dev_read, handle: h, len: 4 }
          - { op: dev_write, handle: h, data: "01 02" }
          - { op: unmap, handle: h }
          - { op: map_sg, dev: nic0, segments: [{ buf: rx, size: 4KiB }, { buf: rx, offset: 4096, size: 4KiB }], dir: to_device, as: sg }
          - { op: sync_sg, handle: sg, for: device }
          - { op: unmap_sg, handle: sg }
          - { op: alloc_coherent, dev: nic0, size: 4KiB, as: ring }
          - { op: free_coherent, handle: ring }
          - { op: iova_alloc, dev: nic0, size: 8KiB, phys_of: rx, as: st }
          - { op: iova_link, state: st, buf: rx, size: 8KiB, at: 0, dir: to_device }
          - { op: iova_sync, state: st, at: 0, size: 8KiB }
          - { op: iova_unlink, state: st, at: 0, size: 8KiB, dir: to_device }
          - { op: iova_free, state: st }
          - { op: iova_alloc, dev: nic0, size: 4KiB, phys_of: rx, as: st2 }
          - { op: iova_link, state: st2, buf: rx, size: 4KiB, at: 0, dir: to_device }
          - { op: iova_destroy, state: st2, mapped_len: 4KiB, dir: to_device }
          - { op: iommu_flush }
          - { op: tick, ms: 10 }
          - { op: free, name: rx }
          - { op: remove_device, dev: nic0 }
        """;

    [Fact]
    public void Every_step_writes_exactly_the_fields_its_catalogue_entry_lists_in_that_order()
    {
        var r = Run(EveryFamily);
        Assert.True(r.Ok, r.ToJson());
        foreach (var step in r.Json["steps"]!.AsArray())
        {
            var op = Str(step!["op"]);
            var listed = ResultCatalogue.StepFields(op).Select(f => f.Name).Where(n => n != "debug");
            Assert.Equal(listed, step.AsObject().Select(kv => kv.Key));
        }
        Assert.Equal(
            ["live_mappings", "iova_pages_in_use", "swiotlb_slots_used", "iotlb_entries", "debug", "faults", "ok"],
            ResultCatalogue.Final.Select(f => f.Name));
        Assert.Equal(
            ResultCatalogue.Final.Take(4).Select(f => f.Name),
            r.Json["final"]!.AsObject().Select(kv => kv.Key));
    }

    [Fact]
    public void The_runner_handles_every_op_of_the_catalogue()
    {
        var ran = Run(EveryFamily).Json["steps"]!.AsArray().Select(s => Str(s!["op"])).ToHashSet();
        ran.Add("p2p_map"); // shares map's result; run end to end by the P2P scenario tests
        Assert.Equal(OpCatalogue.All.Keys.Order(StringComparer.Ordinal), ran.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("dma_addr", FieldKind.Address)]
    [InlineData("phys", FieldKind.Address)]
    [InlineData("bounce", FieldKind.Address)]
    [InlineData("addr", FieldKind.Address)]
    [InlineData("attrs", FieldKind.FlagSet)]
    [InlineData("iommu_prot", FieldKind.FlagSet)]
    [InlineData("data", FieldKind.Data)]
    [InlineData("size", FieldKind.Number)]
    [InlineData("ret", FieldKind.Number)]
    [InlineData("segments", FieldKind.List)]
    [InlineData("use_iova", FieldKind.Bool)]
    [InlineData("path", FieldKind.Text)]
    public void Field_kinds_come_from_the_result_records(string field, object kind) =>
        Assert.Equal((FieldKind)kind, ResultCatalogue.KindOf(field)); // xunit theories are public; FieldKind is internal to PhysDma

    [Fact]
    public void A_step_may_expect_any_field_its_result_has_and_nothing_else()
    {
        const string Good = """
            machine: default
            steps:
              - { op: alloc, name: b, size: 4KiB, kind: ram, phys: 0x2000 }
              - op: map
                dev: nic0
                buf: b
                dir: to_device
                as: h
                expect: { phys: 8192, page_touches: 0, kernel_mappings: 0, cache_ops: [], p2p: none, error: null, ok: true }
            """;
        var r = Run(Good);
        Assert.True(r.Ok, r.ToJson());
        var (exit, _, err, _) = RunCli(Good.Replace("p2p: none", "nents: 1", StringComparison.Ordinal));
        Assert.Equal(2, exit);
        Assert.Contains("unknown field 'nents'", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Sizes_past_two_to_the_63_are_written_unsigned_as_the_kernel_prints_size_t()
    {
        var r = Run("""
            machine: x86-noiommu
            steps:
              - { op: alloc, name: rx, size: 4KiB, kind: ram }
              - { op: map, dev: nic0, buf: rx, dir: from_device, as: h }
              - { op: sync, handle: h, for: cpu, offset: 64, size: 0xffffffffffffff00 }
            """);
        Assert.Equal(18446744073709551360UL, r.Json["steps"]![2]!["size"]!.GetValue<ulong>());
        Assert.Contains("\"size\": 18446744073709551360,", r.ToJson(), StringComparison.Ordinal);
    }
}
