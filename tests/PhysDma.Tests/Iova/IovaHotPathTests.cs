using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Tests.Iova.IovaMachines;

namespace PhysDma.Tests.Iova;

/// <summary>
/// DESIGN "hot paths allocate nothing": the IOVA API and dma-iommu sg in steady state (debug off, strict
/// domain; a lazy domain adds a few bytes when its flush queue fills and frees a batch, outside these paths).
/// </summary>
public class IovaHotPathTests
{
    private static (Machine M, DmaApi Api) NoDebug()
    {
        var cfg = Iommu.IommuMachines.Config(IommuMode.Strict, extraDevices: Extra) with { Debug = false };
        var m = new Machine(cfg);
        return (m, new DmaApi(m));
    }

    [Fact]
    public void Iova_link_sync_destroy_allocates_nothing_in_steady_state()
    {
        var (m, api) = NoDebug();
        var nic = m.Device("nic0");
        var state = new DmaIovaState();
        void Round()
        {
            // Plain checks: xunit's asserts allocate.
            if (!api.IovaTryAlloc(nic, state, new PhysAddr(0x100000000), 16 * 4096))
            {
                throw new InvalidOperationException("dma_iova_try_alloc failed");
            }
            for (var i = 0UL; i < 16; i++)
            {
                if (api.IovaLink(nic, state, new PhysAddr(0x100000000 + (i * 8192)), i * 4096, 4096, DmaDirection.ToDevice, DmaAttrs.None) != Errno.None)
                {
                    throw new InvalidOperationException("dma_iova_link failed");
                }
            }
            api.IovaSync(nic, state, 0, 16 * 4096);
            api.IovaDestroy(nic, state, 16 * 4096, DmaDirection.ToDevice, DmaAttrs.None);
        }
        Assert.Equal(0, SteadyState.AllocatedBytes(Round, warmup: 300, perWindow: 100));
    }

    [Fact]
    public void Iommu_map_sg_allocates_nothing_in_steady_state()
    {
        var (m, api) = NoDebug();
        var nic = m.Device("nic0");
        var entries = Enumerable.Range(0, 32).Select(i => new ScatterEntry(new PhysAddr(0x100000000 + ((ulong)i * 8192)), 4096)).ToArray();
        var sgt = new SgTable(entries);
        void Round()
        {
            if (api.MapSgtable(nic, sgt, DmaDirection.ToDevice, DmaAttrs.None) != 0)
            {
                throw new InvalidOperationException("dma_map_sgtable failed");
            }
            api.UnmapSgtable(nic, sgt, DmaDirection.ToDevice, DmaAttrs.None);
        }
        Assert.Equal(0, SteadyState.AllocatedBytes(Round, warmup: 300, perWindow: 100));
        Assert.Equal(2, sgt.Nents);
    }
}
