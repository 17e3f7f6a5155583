using PhysDma.Core;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>What an importer decided for one range, and the address the device was given.</summary>
internal readonly record struct P2PMapping(DmaAddr Addr, P2PMapType Type, Errno Error)
{
    public bool Ok => Error == Errno.None && !Addr.IsError;
}

/// <summary>
/// What the block layer (<c>blk_rq_dma_map_iter_start</c>), HMM (<c>hmm_dma_map_pfn</c>) and VFIO's dma-buf
/// exporter do with memory that may belong to a peer device, all through <c>pci_p2pdma_state</c>:
/// ask the P2PDMA layer for the map type, then program the bus address, map through the host bridge with
/// <c>DMA_ATTR_MMIO</c>, or refuse with -EREMOTEIO. Page-based importers learn the provider from the
/// page's pgmap (one struct page read); page-less ones (VFIO dma-buf) hold the provider already.
/// </summary>
internal sealed class P2PImport(DmaApi api)
{
    private DmaAttrs HostBridgeAttrs(DmaAttrs attrs) =>
        api.Machine.Config.KernelQuirks.Contains(KernelQuirk.P2PHostBridgeAsRam) ? attrs : attrs | DmaAttrs.Mmio;

    /// <summary>By page: <c>pci_p2pdma_state</c> on the page, then the map type's action.</summary>
    public P2PMapping MapPage(ref P2PMapState state, Device dev, Page page, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var desc = api.Machine.MemMap.Read(page);
        var type = state.State(api.P2P, dev, desc);
        return Map(dev, type, state.Provider, phys, size, dir, attrs);
    }

    /// <summary>By provider (no struct page): <c>pci_p2pdma_map_type(provider, dev)</c>, then the action.</summary>
    public P2PMapping MapProvider(P2PProvider provider, Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (provider.State == P2PProviderState.Removed)
        {
            // The exporter revoked its dma-bufs when the provider went away (vfio_pci_dma_buf_move / _cleanup):
            // map_dma_buf of a revoked buffer fails with -ENODEV before any map type is looked up.
            return new P2PMapping(DmaAddr.MappingError, P2PMapType.NotSupported, Errno.ENODEV);
        }
        var type = api.P2P.MapType(provider, dev);
        return Map(dev, type, provider, phys, size, dir, attrs);
    }

    private P2PMapping Map(Device dev, P2PMapType type, P2PProvider? provider, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (api.Recorder?.Why is { } why)
        {
            DmaWhy.MapType(why, api.P2P, provider?.Owner, dev, type);
        }
        switch (type)
        {
            case P2PMapType.BusAddr:
                if (api.Recorder is { } rec)
                {
                    rec.Path = DmaPath.BusAddr;
                }
                return new P2PMapping(P2PDma.BusAddrMap(provider!, phys), type, Errno.None);
            case P2PMapType.ThruHostBridge:
                return Checked(dev, api.MapPhys(dev, phys, size, dir, HostBridgeAttrs(attrs)), type);
            case P2PMapType.None:
                return Checked(dev, api.MapPhys(dev, phys, size, dir, attrs), type);
            default:
                return new P2PMapping(DmaAddr.MappingError, type, Errno.EREMOTEIO);
        }
    }

    /// <summary>Importers check every DMA-API mapping with dma_mapping_error, as the block layer does.</summary>
    private P2PMapping Checked(Device dev, DmaAddr addr, P2PMapType type)
    {
        // A failure stays DMA_MAPPING_ERROR in the result; the importer would turn it into its own error.
        api.MappingError(dev, addr);
        return new P2PMapping(addr, type, Errno.None);
    }

    /// <summary>Undoes <see cref="MapPage"/> / <see cref="MapProvider"/>: bus addresses were never DMA-API mappings.</summary>
    public void Unmap(Device dev, P2PMapping m, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        switch (m.Type)
        {
            case P2PMapType.ThruHostBridge:
                api.UnmapPhys(dev, m.Addr, size, dir, HostBridgeAttrs(attrs));
                break;
            case P2PMapType.None:
                api.UnmapPhys(dev, m.Addr, size, dir, attrs);
                break;
        }
    }
}
