using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Dma;

/// <summary>
/// 6.19 <c>map_phys</c> ops converted from ops without <c>map_resource</c> (<c>ops: phys_no_mmio</c>): RAM maps
/// as with any <c>map_phys</c> ops, MMIO is refused inside the callback, after which the hooks still run.
/// </summary>
public sealed class PhysNoMmioOpsTests
{
    [Fact]
    public void Ram_maps_through_map_phys_without_touching_struct_page()
    {
        var r = X86Nic(d => d with { Ops = DeviceOpsKind.PhysNoMmio });
        r.Api.Recorder = new DmaRecorder();
        var before = r.Counters.Snapshot();

        Assert.Equal(new DmaAddr(0x5000), r.Api.MapPhys(r.Dev, new PhysAddr(0x5000), 4096, DmaDirection.ToDevice, DmaAttrs.None));

        Assert.Equal(DmaPath.Ops, r.Api.Recorder.Path);
        Assert.Equal(default, r.Counters.Snapshot() - before);
    }

    [Fact]
    public void Mmio_is_refused_inside_map_phys_and_the_failed_map_is_traced()
    {
        var r = X86Nic(d => d with { Ops = DeviceOpsKind.PhysNoMmio });

        Assert.Equal(DmaAddr.MappingError, r.Api.MapPhys(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.Mmio));
        Assert.Equal(DmaAddr.MappingError, r.Api.MapResource(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.None));

        // Unlike 6.18 ops without map_resource, the callback ran, so dma_map_phys's hooks ran after it.
        Assert.Equal(2, r.Api.Trace.Records.Count);
        Assert.All(r.Api.Trace.Records, t => Assert.Equal("nic0 dir=TO_DEVICE dma_addr=ffffffffffffffff size=4096 phys_addr=d0000000 attrs=MMIO", t.Payload));
    }

    [Fact]
    public void Phys_ops_that_take_mmio_map_it_at_its_physical_address()
    {
        var r = X86Nic(d => d with { Ops = DeviceOpsKind.Phys });
        Assert.Equal(new DmaAddr(0xd000_0000), r.Api.MapResource(r.Dev, X86Bar, 4096, DmaDirection.ToDevice, DmaAttrs.None));
    }
}
