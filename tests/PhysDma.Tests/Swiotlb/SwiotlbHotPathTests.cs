using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Swiotlb.SwiotlbMachines;

namespace PhysDma.Tests.Swiotlb;

/// <summary>The hot-path rule (docs/design.md): map, sync and unmap through swiotlb allocate nothing once warm.</summary>
public class SwiotlbHotPathTests
{
    [Theory]
    [InlineData(DmaDirection.ToDevice, 64)]
    [InlineData(DmaDirection.FromDevice, 4096)]
    [InlineData(DmaDirection.Bidirectional, 65536)]
    public void Map_sync_unmap_allocate_nothing_in_steady_state(DmaDirection dir, int size)
    {
        var cfg = X86(new SwiotlbConfig(Sizes.MiB, 1, false, false, null)) with { Cpus = 1 };
        var (m, api) = Build(cfg);
        var dev = m.Device("nic0");
        var (p, _) = SwiotlbMachines.Buffer(m, 65536);

        void Cycle()
        {
            var a = api.MapPhys(dev, p, (ulong)size, dir, 0);
            // A correct driver checks every mapping; with dma-debug on, not doing so is an error report per unmap.
            // (Assert.Equal itself allocates, so the result is tested by hand.)
            if (api.MappingError(dev, a) != Errno.None)
            {
                Assert.Fail("mapping failed");
            }
            api.SyncSingleForCpu(dev, a, (ulong)size, dir);
            api.SyncSingleForDevice(dev, a, (ulong)size, dir);
            api.UnmapPhys(dev, a, (ulong)size, dir, 0);
        }

        // Warm up: every slot of the pool once, so the cache model holds every line it will touch.
        Assert.Equal(0, SteadyState.AllocatedBytes(Cycle, warmup: 600, perWindow: 200));
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
    }
}
