using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;

namespace PhysDma.Tests.Iommu;

/// <summary>The hot-path rule (docs/design.md): dma-iommu map, sync and unmap allocate nothing once warm.</summary>
public class IommuHotPathTests
{
    [Theory]
    [InlineData(IommuMode.Strict, "nic0", DmaDirection.ToDevice, 4096)]
    [InlineData(IommuMode.Lazy, "nic0", DmaDirection.ToDevice, 4096)]
    [InlineData(IommuMode.Lazy, "nic0", DmaDirection.Bidirectional, 100)]
    [InlineData(IommuMode.Lazy, "nic0", DmaDirection.FromDevice, 65536)]
    [InlineData(IommuMode.Strict, "tb0", DmaDirection.Bidirectional, 100)]
    public void Map_sync_unmap_allocate_nothing_in_steady_state(object modeArg, string name, DmaDirection dir, int size)
    {
        var mode = (IommuMode)modeArg; // xunit theories are public; the type is internal to PhysDma
        // dma-debug off: its cost is paid only when switched on (docs/design.md). A small swiotlb pool, so
        // the warm-up touches every bounce slot (sparse memory allocates a page on first touch).
        var m = new Machine(Config(mode, cpus: 1) with { Debug = false, Swiotlb = new SwiotlbConfig(Sizes.MiB, 1, false, false, null) });
        var api = new DmaApi(m);
        var dev = m.Device(name);
        var p = new PhysAddr(0x100000000 + 0x40);
        var seen = new byte[64];

        void Cycle()
        {
            var a = api.MapPhys(dev, p, (ulong)size, dir, 0);
            Assert.False(a.IsError);
            // The device uses the mapping, so the IOTLB fills and (lazily) must be invalidated.
            Assert.Null(dir == DmaDirection.FromDevice ? m.DeviceWrite(dev, a, seen) : m.DeviceRead(dev, a, seen));
            api.SyncSingleForCpu(dev, a, (ulong)size, dir);
            api.SyncSingleForDevice(dev, a, (ulong)size, dir);
            api.UnmapPhys(dev, a, (ulong)size, dir, 0);
        }

        // Warm up past a full flush-queue ring so every ring slot and magazine exists.
        Assert.Equal(0, SteadyState.AllocatedBytes(Cycle, warmup: 600, perWindow: 600));
    }
}
