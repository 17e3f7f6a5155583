using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Iommu.IommuMachines;

namespace PhysDma.Tests.Iommu;

/// <summary>DESIGN.md performance rule: dma-iommu map, sync and unmap allocate nothing once warm.</summary>
public class IommuHotPathTests
{
    [Theory]
    [InlineData(IommuMode.Strict, "nic0", DmaDirection.ToDevice, 4096)]
    [InlineData(IommuMode.Lazy, "nic0", DmaDirection.ToDevice, 4096)]
    [InlineData(IommuMode.Lazy, "nic0", DmaDirection.Bidirectional, 100)]
    [InlineData(IommuMode.Lazy, "nic0", DmaDirection.FromDevice, 65536)]
    [InlineData(IommuMode.Strict, "tb0", DmaDirection.Bidirectional, 100)]
    public void Map_sync_unmap_allocate_nothing_in_steady_state(IommuMode mode, string name, DmaDirection dir, int size)
    {
        // dma-debug off: its cost is paid only when switched on (DESIGN.md). A small swiotlb pool, so
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
        for (var i = 0; i < 600; i++)
        {
            Cycle();
        }
        // Several windows: under a loaded test run the runtime itself now and then charges a few KiB
        // to this thread (tiering), so one clean window is the proof; a real hot-path allocation
        // would show in every window.
        var windows = new long[5];
        for (var w = 0; w < windows.Length; w++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 300; i++)
            {
                Cycle();
            }
            windows[w] = GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Assert.True(windows.Min() == 0, $"bytes allocated per window of 300 cycles: {string.Join(", ", windows)}");
    }
}
