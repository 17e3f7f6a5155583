using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Dma.Trace;
using static PhysDma.Tests.Replaying.ReplayKit;
using static PhysDma.Tests.Scenarios.ScenarioTestKit;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Replaying;

/// <summary>
/// <c>run --trace</c> writes what the tracefs <c>trace</c> file of a Linux 6.18 kernel holds for the same calls:
/// event names, field order and number formats of include/trace/events/dma.h, swiotlb.h and iommu.h.
/// </summary>
public sealed class TraceOutFormatTests
{
    private const string Ctx = "         physdma-1       [000] .....     0.000000: ";

    private static string[] TraceOf(string example, string machine, params string[] events)
    {
        var file = Path.Combine(Path.GetTempPath(), $"physdma-trace-{Guid.NewGuid():N}.txt");
        string[] extra = events.Length == 0 ? [] : ["--trace-events", string.Join(',', events)];
        var (exit, _, stderr) = CliArgs(["run", Example(example), "--machine", machine, "--trace", file, .. extra]);
        Assert.True(exit is 0 or 1, stderr);
        var lines = File.ReadAllLines(file);
        File.Delete(file);
        return lines;
    }

    [Fact]
    public void Four_cases_trace_is_the_tracefs_file_with_pci_addresses()
    {
        var lines = TraceOf("four-cases.yaml", "default");
        Assert.Equal([
            "# tracer: nop",
            "#",
            "# entries-in-buffer/entries-written: 8/8   #P:2",
            "#",
            "#                                _-----=> irqs-off/BH-disabled",
            "#                               / _----=> need-resched",
            "#                              | / _---=> hardirq/softirq",
            "#                              || / _--=> preempt-depth",
            "#                              ||| / _-=> migrate-disable",
            "#                              |||| /     delay",
            "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
            "#              | |         |   |||||     |         |",
            Ctx + "dma_map_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=bffff000 size=64 phys_addr=1000 attrs=",
            Ctx + "dma_map_phys: 0000:02:00.0 dir=BIDIRECTIONAL dma_addr=bfffe000 size=4096 phys_addr=3800001000 attrs=MMIO",
            Ctx + "dma_map_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=bffe0000 size=65536 phys_addr=3840000000 attrs=MMIO",
            Ctx + "dma_map_phys: 0000:05:00.0 dir=FROM_DEVICE dma_addr=bffff000 size=4 phys_addr=c0001000 attrs=MMIO",
            Ctx + "dma_unmap_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=bffff000 size=64 attrs=",
            Ctx + "dma_unmap_phys: 0000:02:00.0 dir=BIDIRECTIONAL dma_addr=bfffe000 size=4096 attrs=MMIO",
            Ctx + "dma_unmap_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=bffe0000 size=65536 attrs=MMIO",
            Ctx + "dma_unmap_phys: 0000:05:00.0 dir=FROM_DEVICE dma_addr=bffff000 size=4 attrs=MMIO",
        ], lines);
    }

    [Fact]
    public void Iommu_events_come_from_inside_the_call_they_serve()
    {
        var lines = TraceOf("four-cases.yaml", "default", "dma", "iommu").Where(l => !l.StartsWith('#')).Take(4);
        Assert.Equal([
            Ctx + "map: IOMMU: iova=0x00000000bffff000 - 0x00000000c0000000 paddr=0x0000000000001000 size=4096",
            Ctx + "dma_map_phys: 0000:02:00.0 dir=TO_DEVICE dma_addr=bffff000 size=64 phys_addr=1000 attrs=",
            Ctx + "map: IOMMU: iova=0x00000000bfffe000 - 0x00000000bffff000 paddr=0x0000003800001000 size=4096",
            Ctx + "dma_map_phys: 0000:02:00.0 dir=BIDIRECTIONAL dma_addr=bfffe000 size=4096 phys_addr=3800001000 attrs=MMIO",
        ], lines);
    }

    [Fact]
    public void Iommu_unmap_and_io_page_fault_events()
    {
        var lines = TraceOf("vfio-dmabuf.yaml", "default", "iommu").Where(l => !l.StartsWith('#')).ToList();
        Assert.Contains("         physdma-1       [000] .....     0.000000: unmap: IOMMU: iova=0x00000000bfff0000 - 0x00000000c0000000 size=65536 unmapped_size=65536", lines);
        Assert.Equal("         physdma-1       [000] .....     0.010000: io_page_fault: IOMMU:nic0 0000:02:00.0 iova=0x00000000bfff8000 flags=0x0000", lines[^1]);
        Assert.DoesNotContain(lines, l => l.Contains(": dma_", StringComparison.Ordinal));
    }

    [Fact]
    public void Coherent_allocations_and_scatterlists()
    {
        var lines = TraceOf("nvme-prp.yaml", "default").Where(l => !l.StartsWith('#'));
        Assert.Equal([
            Ctx + "dma_alloc: 0000:05:00.0 dir=BIDIRECTIONAL dma_addr=bffff000 size=4096 virt_addr=0000000001bae498 flags=GFP_KERNEL attrs=",
            Ctx + "dma_alloc: 0000:05:00.0 dir=BIDIRECTIONAL dma_addr=bfffe000 size=4096 virt_addr=0000000061d13565 flags=GFP_KERNEL attrs=",
            Ctx + "dma_map_sg: 0000:05:00.0 dir=TO_DEVICE nents=2/2 ents=1/1 dma_addrs={0xbfff8200} sizes={0x2e00} phys_addrs={0x3200,0x5000} attrs=",
            Ctx + "dma_unmap_sg: 0000:05:00.0 dir=TO_DEVICE phys_addrs={0x3200,0x5000} attrs=",
            Ctx + "dma_free: 0000:05:00.0 dir=BIDIRECTIONAL dma_addr=bffff000 size=4096 virt_addr=0000000001bae498 attrs=",
            Ctx + "dma_free: 0000:05:00.0 dir=BIDIRECTIONAL dma_addr=bfffe000 size=4096 virt_addr=0000000061d13565 attrs=",
        ], lines);
    }

    [Fact]
    public void Swiotlb_bounced_names_the_pci_device()
    {
        var lines = TraceOf("bounce-32bit.yaml", "x86-noiommu", "dma", "swiotlb").Where(l => !l.StartsWith('#')).Take(2);
        Assert.Equal([
            Ctx + "swiotlb_bounced: dev_name: 0000:10:00.0 dma_mask=ffffffff dev_addr=100000000 size=64 NORMAL",
            Ctx + "dma_map_phys: 0000:10:00.0 dir=TO_DEVICE dma_addr=bc000000 size=64 phys_addr=100000000 attrs=",
        ], lines);
        Assert.DoesNotContain(TraceOf("bounce-32bit.yaml", "x86-noiommu"), l => l.Contains("swiotlb_bounced", StringComparison.Ordinal));
    }

    [Fact]
    public void Map_sg_keeps_128_entries_and_says_truncated()
    {
        var r = X86();
        var sgl = Enumerable.Range(0, 130).Select(i => new ScatterEntry(new PhysAddr(0x100000 + ((ulong)i * 0x2000)), 4096)).ToList();
        Assert.Equal(130, r.Api.MapSgAttrs(r.Dev, sgl, 130, DmaDirection.ToDevice, DmaAttrs.None));
        var payload = r.Api.Trace.Records.Single().Payload;
        var dma = string.Join(",", Enumerable.Range(0, 128).Select(i => $"0x{0x100000 + (i * 0x2000):x}"));
        var sizes = string.Join(",", Enumerable.Repeat("0x1000", 128));
        Assert.Equal($"nic0 dir=TO_DEVICE nents=128/130 ents=128/130 [TRUNCATED] dma_addrs={{{dma}}} sizes={{{sizes}}} phys_addrs={{{dma}}} attrs=", payload);
    }

    [Fact]
    public void Hashed_pointer_is_32_bits_in_16_digits_and_null_is_zeros()
    {
        Assert.Equal("0000000000000000", DmaTrace.HashedPointer(0));
        var h = DmaTrace.HashedPointer(0xffff888000001000);
        Assert.Matches("^00000000[0-9a-f]{8}$", h);
        Assert.NotEqual(h, DmaTrace.HashedPointer(0xffff888000002000));
        Assert.Equal(h, DmaTrace.HashedPointer(0xffff888000001000));
    }

    [Fact]
    public void Iommu_hook_is_detached_unless_iommu_events_are_selected()
    {
        var runner = new PhysDma.Scenarios.ScenarioRunner(PhysDma.Scenarios.ScenarioParser.ParseFile(Example("four-cases.yaml")));
        var unit = runner.Api.Iommu!.Unit;
        Assert.Null(unit.TraceSink);
        runner.Api.Trace.Events = TraceEvents.Dma | TraceEvents.Swiotlb;
        Assert.Null(unit.TraceSink);
        runner.Api.Trace.Events = TraceEvents.Iommu;
        Assert.Same(runner.Api.Trace, unit.TraceSink);
        runner.Api.Trace.Events = TraceEvents.None;
        Assert.Null(unit.TraceSink);
        Assert.Equal(TraceEvents.Dma | TraceEvents.Iommu, DmaTrace.ParseEvents("iommu,dma", out _));
    }

    [Fact]
    public void Written_trace_parses_back_event_by_event()
    {
        var (_, trace) = RunTraced(Example("nvme-prp.yaml"), "default", TraceEvents.Dma | TraceEvents.Swiotlb | TraceEvents.Iommu);
        using var reader = new PhysDma.Replay.TraceReader(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(trace)));
        var names = new List<string>();
        while (reader.Read())
        {
            if (reader.Kind == PhysDma.Replay.TraceLineKind.Event)
            {
                names.Add(reader.EventName.ToString());
            }
        }
        Assert.Equal(trace.Split('\n').Count(l => l.Length > 0 && !l.StartsWith('#')), names.Count);
        // iommu_map_sg maps each physically contiguous run with iommu_map_nosync, which traces it.
        Assert.Equal(["map", "dma_alloc", "map", "dma_alloc", "map", "map", "dma_map_sg", "dma_unmap_sg", "unmap"], names.Take(9));
    }
}
