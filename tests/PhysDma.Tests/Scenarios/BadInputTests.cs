using static PhysDma.Tests.Scenarios.ScenarioTestKit;

namespace PhysDma.Tests.Scenarios;

/// <summary>Malformed scenarios: one message naming file, line and field, exit code 2, never a stack trace.</summary>
public class BadInputTests
{
    private const string Head = "machine: x86-noiommu\nsteps:\n";

    private static void AssertBad(string yaml, int line, string fieldAndText)
    {
        var (exit, stdout, stderr, file) = RunCli(yaml);
        Assert.Equal(2, exit);
        Assert.Equal("", stdout);
        var msg = stderr.TrimEnd('\n');
        Assert.DoesNotContain('\n', msg);
        Assert.StartsWith($"physdma: {file}:{line}: ", msg);
        Assert.Contains(fieldAndText, msg);
        Assert.DoesNotContain("   at ", stderr);
    }

    [Fact]
    public void Unknown_step_field() =>
        AssertBad(Head + "  - { op: alloc, name: b, size: 4KiB, kind: ram, colour: red }\n", 3, "steps[0].colour: unknown field 'colour'");

    [Fact]
    public void Bad_size() =>
        AssertBad(Head + "  - op: alloc\n    name: b\n    size: 4KB\n    kind: ram\n", 5, "steps[0].size: '4KB' is not a size");

    [Fact]
    public void Negative_size() =>
        AssertBad(Head + "  - { op: alloc, name: b, size: -4096, kind: ram }\n", 3, "steps[0].size: negative size '-4096'");

    [Fact]
    public void Unknown_device() =>
        AssertBad(Head + "  - { op: alloc, name: b, size: 4KiB, kind: ram }\n  - { op: map, dev: gpu9, buf: b, dir: to_device, as: h }\n",
            4, "steps[1].dev: unknown device 'gpu9' (this machine has: nic0, legacy32, gpu0, nvme0)");

    [Fact]
    public void Unknown_handle() =>
        AssertBad(Head + "  - { op: unmap, handle: nope }\n", 3, "steps[0].handle: unknown handle 'nope'");

    [Fact]
    public void Unknown_buffer() =>
        AssertBad(Head + "  - { op: cpu_read, buf: ghost, len: 4 }\n", 3, "steps[0].buf: unknown buffer 'ghost'");

    [Fact]
    public void Missing_op() =>
        AssertBad(Head + "  - { name: b, size: 4KiB, kind: ram }\n", 3, "step has no 'op' field");

    [Fact]
    public void Unknown_op() =>
        AssertBad(Head + "  - { op: map_everything }\n", 3, "steps[0].op: unknown op 'map_everything'");

    [Fact]
    public void Missing_required_field() =>
        AssertBad(Head + "  - { op: alloc, name: b, kind: ram }\n", 3, "steps[0]: missing field 'size'");

    [Fact]
    public void Bad_direction() =>
        AssertBad(Head + "  - { op: alloc, name: b, size: 4KiB, kind: ram }\n  - { op: map, dev: nic0, buf: b, dir: sideways, as: h }\n",
            4, "steps[1].dir: 'sideways' is not one of: bidirectional, to_device, from_device, none");

    [Fact]
    public void Unknown_attr() =>
        AssertBad(Head + "  - { op: alloc, name: b, size: 4KiB, kind: ram }\n  - { op: map, dev: nic0, buf: b, dir: to_device, attrs: [cached], as: h }\n",
            4, "steps[1].attrs[0]: unknown attr 'cached'");

    [Fact]
    public void Bad_hex_data() =>
        AssertBad(Head + "  - { op: alloc, name: b, size: 4KiB, kind: ram }\n  - { op: cpu_write, buf: b, data: \"de ad be\u00a0zz\" }\n",
            4, "steps[1].data:");

    [Fact]
    public void Invalid_yaml()
    {
        // A YAML syntax error names the column too: FILE:LINE:COLUMN.
        var (exit, _, stderr, file) = RunCli(Head + "  - { op: alloc, name: b\n");
        Assert.Equal(2, exit);
        Assert.StartsWith($"physdma: {file}:4:1: not valid YAML", stderr);
    }

    [Fact]
    public void Unknown_machine() =>
        AssertBad("machine: pdp11\nsteps: []\n", 1, "machine: unknown machine 'pdp11'");

    [Fact]
    public void Unknown_machine_field() =>
        AssertBad("machine:\n  base: x86-noiommu\n  cpu_count: 4\nsteps: []\n", 3, "machine.cpu_count: unknown field 'cpu_count'");

    [Fact]
    public void Duplicate_handle() =>
        AssertBad(Head + "  - { op: alloc, name: b, size: 4KiB, kind: ram }\n  - { op: map, dev: nic0, buf: b, dir: to_device, as: h }\n  - { op: map, dev: nic0, buf: b, dir: to_device, as: h }\n",
            5, "steps[2].as: handle 'h' is already used");

    [Fact]
    public void Bad_name() =>
        AssertBad(Head + "  - { op: alloc, name: Big-Buffer, size: 4KiB, kind: ram }\n", 3, "steps[0].name: 'Big-Buffer' is not a valid name");

    [Fact]
    public void Non_coherent_device_on_x86_is_refused_with_the_machine_field() =>
        AssertBad("machine:\n  base: x86-noiommu\n  devices:\n    - { name: nic0, coherent: false }\nsteps: []\n", 1,
            "machine.devices[0].coherent: device 'nic0': x86_64 has no non-coherent DMA");

    [Fact]
    public void Map_page_of_pageless_memory_is_an_impossible_request() =>
        AssertBad(Head + "  - { op: alloc, name: regs, size: 4KiB, kind: bar, from: nic0, bar: 0 }\n  - { op: map, dev: nic0, buf: regs, dir: to_device, api: page, as: h }\n",
            4, "api: api page needs a struct page, and buffer 'regs' (bar) has none");

    [Fact]
    public void Missing_file()
    {
        var (exit, _, err) = CliArgs("run", "/nonexistent/x.yaml");
        Assert.Equal(2, exit);
        Assert.StartsWith("physdma: /nonexistent/x.yaml:0: cannot read scenario", err);
    }

    [Fact]
    public void Bad_command_line_exits_with_2()
    {
        var (exit, _, err) = CliArgs("run");
        Assert.Equal(2, exit);
        Assert.Contains("physdma:", err);
        var (exit2, _, _) = CliArgs("run", "x.yaml", "--bogus");
        Assert.Equal(2, exit2);
    }

    [Fact]
    public void Unknown_profile_for_show()
    {
        var (exit, _, err) = CliArgs("machines", "show", "vax");
        Assert.Equal(2, exit);
        Assert.Contains("unknown machine 'vax'", err);
    }

    private const string IommuHead = "machine: default\nsteps:\n  - { op: alloc, name: b, size: 4KiB, kind: ram }\n";

    [Fact]
    public void Iova_link_of_an_unknown_state() =>
        AssertBad(IommuHead + "  - { op: iova_link, state: s9, buf: b, size: 4096, at: 0, dir: to_device }\n", 4,
            "steps[1].state: unknown IOVA state 's9' (no earlier iova_alloc step made it with 'as:')");

    [Fact]
    public void Unmap_of_an_iova_state() =>
        AssertBad(IommuHead + "  - { op: iova_alloc, dev: nic0, size: 4096, as: s }\n  - { op: unmap, handle: s }\n", 5,
            "steps[2].handle: 's' is an IOVA state: use iova_unlink / iova_destroy / iova_free");

    [Fact]
    public void Free_coherent_of_a_streaming_mapping() =>
        AssertBad(IommuHead + "  - { op: map, dev: nic0, buf: b, dir: to_device, as: h }\n  - { op: free_coherent, handle: h }\n", 5,
            "steps[2].handle: unknown coherent allocation 'h'");

    [Fact]
    public void Coherent_name_clashes_with_a_buffer() =>
        AssertBad(IommuHead + "  - { op: alloc_coherent, dev: nvme0, size: 4096, as: b }\n", 4, "steps[1].as: 'b' is already the name of a buffer");

    [Fact]
    public void Iova_link_of_zero_bytes() =>
        AssertBad(IommuHead + "  - { op: iova_alloc, dev: nic0, size: 4096, as: s }\n  - { op: iova_link, state: s, buf: b, size: 0, at: 0, dir: to_device }\n", 5,
            "steps[2].size: size must not be 0");

    [Fact]
    public void Iova_state_used_after_destroy_is_a_bad_input_at_run_time()
    {
        var (exit, _, err, file) = RunCli(IommuHead + "  - { op: iova_alloc, dev: nic0, size: 4096, as: s }\n  - { op: iova_free, state: s }\n  - { op: iova_sync, state: s, at: 0, size: 4096 }\n");
        Assert.Equal(2, exit);
        Assert.Contains($"{file}:6: state: IOVA state 's' was already freed or destroyed", err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Unmap_sg_with_more_entries_than_the_list_is_a_bad_input_not_a_crash()
    {
        var (exit, _, err, file) = RunCli(Head + "  - { op: alloc, name: a, size: 4KiB, kind: ram }\n  - { op: map_sg, dev: nic0, segments: [{ buf: a, size: 64 }], dir: to_device, as: s }\n  - { op: unmap_sg, handle: s, nents: 5 }\n");
        Assert.Equal(2, exit);
        Assert.Contains($"{file}:5: nents: nents 5 is more than the 1 entries of 's'", err, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
    }
}
