using PhysDma.Core;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// One <c>struct scatterlist</c> entry: the CPU side (page + offset + length, as a physical address) and the
/// DMA side the mapping fills in (<c>dma_address</c>, <c>dma_length</c>, the bus-address mark).
/// </summary>
public sealed class ScatterEntry(PhysAddr phys, uint length)
{
    /// <summary><c>sg_phys(sg)</c>.</summary>
    public PhysAddr Phys { get; set; } = phys;

    /// <summary><c>sg->length</c>.</summary>
    public uint Length { get; set; } = length;

    /// <summary><c>sg_dma_address(sg)</c>; left as it was by paths that do not set it.</summary>
    public DmaAddr DmaAddress { get; set; }

    /// <summary><c>sg_dma_len(sg)</c>.</summary>
    public uint DmaLength { get; set; }

    /// <summary><c>sg_dma_is_bus_address</c>: a P2P bus address the IOMMU never saw.</summary>
    public bool IsBusAddress { get; set; }

    /// <summary>dma-iommu's "swiotlb" mark on the list head: every entry was mapped on its own.</summary>
    public bool UsedSwiotlb { get; set; }
}

/// <summary><c>struct sg_table</c>: the entries, how many the CPU side has and how many DMA segments resulted.</summary>
public sealed class SgTable(IReadOnlyList<ScatterEntry> entries)
{
    public IReadOnlyList<ScatterEntry> Sgl { get; } = entries;

    /// <summary><c>orig_nents</c>.</summary>
    public int OrigNents => Sgl.Count;

    /// <summary><c>nents</c>: DMA segments after mapping.</summary>
    public int Nents { get; set; }
}

/// <summary>Scatter-gather mapping for dma-direct (kernel/dma/direct.c) (<c>dma_direct_map_sg</c>) with the P2PDMA states of <c>pci_p2pdma_state</c>.</summary>
internal sealed class DirectSg(DmaApi api)
{
    private Machine M => api.Machine;

    private bool Quirk(string name) => M.Config.KernelQuirks.Contains(name);

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
                case P2PMapType.ThruHostBridge when Quirk("sg_host_bridge_break"):
                    // 6.18 as released: 'break' skipped the mapping and left dma_address as it was.
                    break;
                case P2PMapType.None:
                case P2PMapType.ThruHostBridge:
                    // Fixed upstream by falling through: host-bridge P2P is mapped like RAM (no MMIO attr).
                    sg.DmaAddress = api.Direct.MapPhys(dev, sg.Phys, sg.Length, dir, attrs);
                    if (sg.DmaAddress.IsError)
                    {
                        UnmapSg(dev, sgl, i, dir, attrs | DmaAttrs.SkipCpuSync);
                        return -(int)Errno.EIO;
                    }
                    break;
                case P2PMapType.BusAddr:
                    sg.DmaAddress = P2PDma.BusAddrMap(state.Provider!, sg.Phys);
                    if (!Quirk("sg_bus_addr_no_len"))
                    {
                        sg.DmaLength = sg.Length;
                    }
                    sg.IsBusAddress = true;
                    continue;
                default:
                    UnmapSg(dev, sgl, i, dir, attrs | DmaAttrs.SkipCpuSync);
                    return -(int)Errno.EREMOTEIO;
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

    /// <summary><c>dma_direct_sync_sg_for_device</c>: every entry, bus addresses included, by <c>sg->length</c>.</summary>
    public void SyncSgForDevice(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir)
    {
        for (var i = 0; i < nents; i++)
        {
            var sg = sgl[i];
            var paddr = api.Direct.DmaToPhys(dev, sg.DmaAddress);
            api.Swiotlb.SyncSingleForDevice(dev, paddr, sg.Length, dir);
            if (!dev.Coherent)
            {
                M.ArchCache.SyncForDevice(paddr, sg.Length, dir);
            }
        }
    }

    /// <summary><c>dma_direct_sync_sg_for_cpu</c>.</summary>
    public void SyncSgForCpu(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir)
    {
        for (var i = 0; i < nents; i++)
        {
            var sg = sgl[i];
            var paddr = api.Direct.DmaToPhys(dev, sg.DmaAddress);
            if (!dev.Coherent)
            {
                M.ArchCache.SyncForCpu(paddr, sg.Length, dir);
            }
            api.Swiotlb.SyncSingleForCpu(dev, paddr, sg.Length, dir);
        }
        if (!dev.Coherent)
        {
            M.ArchCache.SyncForCpuAll();
        }
    }
}
