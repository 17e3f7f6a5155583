using PhysDma.Replay;
using static PhysDma.Tests.Replaying.ReplayKit;

namespace PhysDma.Tests.Replaying;

/// <summary>--relocate: traced pages go to free model RAM, keeping in-page offsets and each mapping's contiguity.</summary>
public sealed class ReplayRelocationTests
{
    private static string Map(int us, ulong dma, ulong size, ulong phys) =>
        Line((ulong)us, "dma_map_phys", $"nic0 dir=TO_DEVICE dma_addr={dma:x} size={size} phys_addr={phys:x} attrs=");

    [Fact]
    public void Offsets_and_contiguity_are_kept_and_a_page_seen_again_is_the_same_page()
    {
        var trace = string.Join('\n',
            // Three pages from an offset: one run of three model pages.
            Map(1, 0x10000, 0x2800, 0x7f0000800),
            // Inside the same traced pages: the same model pages.
            Map(2, 0x20000, 0x100, 0x7f0001f00),
            // A page of its own, elsewhere in the host's RAM: the next free model page.
            Map(3, 0x30000, 0x40, 0x12345678),
            // Overlapping the first run but reaching a page never seen: a fresh run of two pages.
            Map(4, 0x40000, 0x1800, 0x7f0002800),
            "");
        var (_, r) = ReplayOn(trace, "arm64-noncoherent", relocate: true);
        // arm64-noncoherent maps RAM one to one (dma == phys); its first free RAM is at 0x80000000.
        Assert.Equal([0x80000800UL, 0x80001f00UL, 0x80003678UL, 0x80004800UL], r.Calls!.Select(c => c.ModelDma));
        Assert.Equal(PhysPolicy.Relocate, r.Policy);
        Assert.Empty(r.Failures);
    }

    [Fact]
    public void Ram_the_machine_lacks_is_refused_without_relocate_and_mmio_passes_as_traced()
    {
        var mmio = Line(1, "dma_map_phys", "nic0 dir=TO_DEVICE dma_addr=10000 size=64 phys_addr=fe000000 attrs=MMIO") + "\n";
        var (_, r) = ReplayOn(mmio, "arm64-noncoherent");
        Assert.Equal([0xfe000000UL], r.Calls!.Select(c => c.ModelDma));
        var e = Assert.Throws<TraceFormatException>(() => ReplayOn(Map(1, 0x10000, 64, 0x7f0000800) + "\n", "arm64-noncoherent"));
        Assert.Equal(1, e.Line);
        Assert.StartsWith("phys_addr 0x7f0000800 (size 64) is not RAM on machine arm64-noncoherent", e.Message, StringComparison.Ordinal);
    }
}
