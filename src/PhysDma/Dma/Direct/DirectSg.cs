using PhysDma.Core;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>Scatter-gather mapping for dma-direct (kernel/dma/direct.c) with the P2PDMA states of spec §2.6.</summary>
internal sealed class DirectSg(DmaApi api)
{
    private Machine M => api.Machine;

    private bool Quirk(string name) => M.Config.HasQuirk(name);

    private int Unwind(Device dev, IReadOnlyList<ScatterEntry> sgl, int mapped, DmaDirection dir, DmaAttrs attrs, Errno error) =>
        ((IDmaBackend)api.Direct).UnwindSg(dev, sgl, mapped, dir, attrs, error);

    /// <summary><c>dma_direct_map_sg</c>: entry by entry, no merging; returns nents or a negative errno.</summary>
    public int MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        var state = default(P2PMapState);
        for (var i = 0; i < nents; i++)
        {
            var sg = sgl[i];
            var page = M.MemMap.Read(M.MemMap.PhysToPage(sg.Phys));
            switch (state.State(api.P2P, dev, page))
            {
                case P2PMapType.ThruHostBridge when Quirk(KernelQuirk.SgHostBridgeBreak):
                    // 6.18 as released: 'break' skipped the mapping and left dma_address as it was.
                    break;
                case P2PMapType.None:
                case P2PMapType.ThruHostBridge:
                    // Fixed upstream by falling through: host-bridge P2P is mapped like RAM (no MMIO attr).
                    sg.DmaAddress = api.Direct.MapPhys(dev, sg.Phys, sg.Length, dir, attrs);
                    if (sg.DmaAddress.IsError)
                    {
                        return Unwind(dev, sgl, i, dir, attrs, Errno.EIO);
                    }
                    break;
                case P2PMapType.BusAddr:
                    sg.DmaAddress = P2PDma.BusAddrMap(state.Provider!, sg.Phys);
                    if (!Quirk(KernelQuirk.SgBusAddrNoLen))
                    {
                        sg.DmaLength = sg.Length;
                    }
                    sg.IsBusAddress = true;
                    continue;
                default:
                    return Unwind(dev, sgl, i, dir, attrs, Errno.EREMOTEIO);
            }
            sg.DmaLength = sg.Length;
        }
        return nents;
    }

    /// <summary><c>dma_direct_unmap_sg</c>.</summary>
    public void UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        for (var i = 0; i < nents; i++)
        {
            var sg = sgl[i];
            if (sg.IsBusAddress)
            {
                sg.IsBusAddress = false;
            }
            else
            {
                api.Direct.UnmapPhys(dev, sg.DmaAddress, sg.DmaLength, dir, attrs);
            }
        }
    }

    /// <summary>
    /// <c>dma_direct_sync_sg_for_device</c> / <c>_for_cpu</c>: every entry, bus addresses included, by
    /// <c>sg->length</c>; for the device bounce then clean, for the CPU invalidate then bounce back, with one
    /// <c>arch_sync_dma_for_cpu_all</c> at the end.
    /// </summary>
    public void SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, bool forCpu)
    {
        for (var i = 0; i < nents; i++)
        {
            var sg = sgl[i];
            var paddr = api.Direct.DmaToPhys(dev, sg.DmaAddress);
            if (forCpu)
            {
                if (!dev.Coherent)
                {
                    M.ArchCache.SyncForCpu(paddr, sg.Length, dir);
                }
                api.Swiotlb.SyncSingleForCpu(dev, paddr, sg.Length, dir);
            }
            else
            {
                api.Swiotlb.SyncSingleForDevice(dev, paddr, sg.Length, dir);
                if (!dev.Coherent)
                {
                    M.ArchCache.SyncForDevice(paddr, sg.Length, dir);
                }
            }
        }
        if (forCpu && !dev.Coherent)
        {
            M.ArchCache.SyncForCpuAll();
        }
    }
}
