using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Debug;

/// <summary>
/// DESIGN.md's performance rule with dma-debug on: entries come from the pool's free list and go back to it,
/// so a correct driver's map, sync and unmap allocate nothing once warm.
/// </summary>
public class DebugHotPathTests
{
    [Theory]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    [InlineData(DmaDirection.Bidirectional)]
    public void Direct_map_sync_unmap_allocate_nothing_with_debug_on(DmaDirection dir) =>
        AssertNoAllocation(DebugMachines.X86(), "nic0", 0x100000, dir);

    [Theory]
    [InlineData(DmaDirection.ToDevice)]
    [InlineData(DmaDirection.FromDevice)]
    public void Non_coherent_map_sync_unmap_allocate_nothing_with_debug_on(DmaDirection dir) =>
        AssertNoAllocation(DebugMachines.Arm64(), "dev0", 0x80100000, dir);

    private static void AssertNoAllocation(DmaApi api, string devName, ulong phys, DmaDirection dir)
    {
        var dev = api.Dev(devName);
        var d = api.Dbg();
        var p = new PhysAddr(phys);
        void Cycle()
        {
            var a = api.MapPhys(dev, p, 4096, dir, DmaAttrs.None);
            if (api.MappingError(dev, a) != Errno.None)
            {
                Assert.Fail("mapping failed");
            }
            api.SyncSingleForCpu(dev, a, 4096, dir);
            d.CheckCpuAccess(p, 64, write: false);
            api.SyncSingleForDevice(dev, a, 4096, dir);
            api.UnmapPhys(dev, a, 4096, dir, DmaAttrs.None);
        }
        Assert.Equal(0, SteadyState.AllocatedBytes(Cycle, warmup: 100, perWindow: 100));
        Assert.Equal(0, d.ReportCount);
        Assert.Equal(0, d.LiveEntries);
    }
}
