using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// The decision trail's sentences: each names the kernel function that decided and the values it compared,
/// then what it chose. Layers call these only when a recorder collects a trail
/// (<c>if (Recorder?.Why is { } why)</c>), so nothing here runs, and nothing is allocated, otherwise.
/// </summary>
internal static class DmaWhy
{
    private static string H(ulong v) => Hex.Format(v);

    /// <summary><c>dma_map_phys</c>: which implementation the call went to.</summary>
    public static void Dispatch(List<string> why, Device dev, DmaOps? ops, bool mmio, bool archDirect)
    {
        string to;
        if (!dev.HasDmaMask)
        {
            to = "dev->dma_mask is NULL → DMA_MAPPING_ERROR";
        }
        else if (DmaApi.GoDirect(dev, ops))
        {
            to = "no IOMMU DMA domain, no dma_map_ops → dma_direct_map_phys";
        }
        else if (!mmio && archDirect)
        {
            to = "arch_dma_map_phys_direct: below the bypass limit → dma_direct_map_phys";
        }
        else if (dev.DmaIommu)
        {
            to = "dev->dma_iommu → iommu_dma_map_phys";
        }
        else if (mmio)
        {
            to = ops!.HasMapPhys ? "DMA_ATTR_MMIO, ops->map_phys → ops->map_phys"
                : ops.HasMapResource ? "DMA_ATTR_MMIO, ops->map_resource → ops->map_resource"
                : "DMA_ATTR_MMIO, ops without map_resource → DMA_MAPPING_ERROR";
        }
        else
        {
            to = ops!.HasMapPhys ? "ops->map_phys → ops->map_phys" : "ops without map_phys → ops->map_page";
        }
        why.Add($"dma_map_phys: {to}");
    }

    /// <summary><c>is_swiotlb_force_bounce</c> in <c>dma_direct_map_phys</c>.</summary>
    public static void ForceBounce(List<string> why, Machine m, Device dev, bool mmio)
    {
        var reason = m.Config.MemEncryptBit != 0 ? "memory encryption active"
            : dev.Config.ForceBounce ? $"{dev.Name} is set to force bouncing"
            : "swiotlb=force";
        why.Add(mmio
            ? $"is_swiotlb_force_bounce: {reason}, but DMA_ATTR_MMIO cannot bounce → DMA_MAPPING_ERROR"
            : $"is_swiotlb_force_bounce: {reason} → bounce");
    }

    /// <summary><c>dma_capable</c> in <c>dma_direct_map_phys</c>, and what followed.</summary>
    public static void Capable(List<string> why, Device dev, DmaAddr a, ulong size, bool kmallocBounce, bool swiotlbActive)
    {
        var limit = Sizes.MinNotZero(dev.DmaMask, dev.BusDmaLimit);
        var what = limit == dev.DmaMask ? "dma_mask" : "bus_dma_limit";
        var end = a.Value + size - 1;
        if (end > limit)
        {
            why.Add($"dma_capable: end {H(end)} > {what} {H(limit)} → {(swiotlbActive ? "swiotlb_map" : "DMA_MAPPING_ERROR (no swiotlb)")}");
        }
        else if (kmallocBounce)
        {
            why.Add($"dma_kmalloc_needs_bounce: non-coherent, {size} B not cache-line aligned → {(swiotlbActive ? "swiotlb_map" : "DMA_MAPPING_ERROR (no swiotlb)")}");
        }
        else
        {
            why.Add($"dma_capable: end {H(end)} <= {what} {H(limit)} → direct at {H(a.Value)}");
        }
    }

    /// <summary><c>swiotlb_tbl_map_single</c>: the slot it took.</summary>
    public static void Slot(List<string> why, PhysAddr orig, PhysAddr tlb, ulong size) =>
        why.Add($"swiotlb_tbl_map_single: {size} B from {H(orig.Value)} → slot {H(tlb.Value)}");

    /// <summary><c>dev_use_swiotlb</c> and the granule test in <c>iommu_dma_map_phys</c>.</summary>
    public static void UseSwiotlb(List<string> why, Device dev, PhysAddr phys, ulong size, ulong granule, bool bounce)
    {
        var who = dev.Untrusted ? "untrusted" : "kmalloc buffer on a non-coherent device";
        why.Add(bounce
            ? $"dev_use_swiotlb: {who} and phys {H(phys.Value)}+{H(size)} not granule-aligned ({H(granule)}) → bounce"
            : $"dev_use_swiotlb: {who}, but phys {H(phys.Value)}+{H(size)} is granule-aligned → no bounce");
    }

    /// <summary><c>dma_info_to_prot</c>.</summary>
    public static void Prot(List<string> why, bool coherent, DmaAttrs attrs, int prot)
    {
        var mmio = (attrs & DmaAttrs.Mmio) != 0;
        var reason = mmio ? "DMA_ATTR_MMIO" : coherent ? "coherent and not MMIO" : "non-coherent and not MMIO";
        why.Add($"dma_info_to_prot: {reason} → {string.Join("|", IommuProt.Names(prot))}");
    }

    /// <summary><c>iommu_dma_alloc_iova</c>: where the IOVA came from.</summary>
    public static void AllocIova(List<string> why, Device dev, ulong limit, bool triedLow, ulong iova, ulong size)
    {
        var got = iova == 0 ? "none (-ENOMEM)" : H(iova);
        why.Add(triedLow
            ? $"iommu_dma_alloc_iova: PCI device, 32-bit first: limit {H(Sizes.DmaBitMask(32))} → {got}"
            : $"iommu_dma_alloc_iova: {size} B below limit {H(limit)} → {got}");
    }

    /// <summary><c>pci_p2pdma_map_type</c> as an importer sees it, with the reason and what the importer does.</summary>
    public static void MapType(List<string> why, P2PDma p2p, string? providerOwner, Device dev, P2PMapType type)
    {
        var topo = p2p.Topology;
        var provider = providerOwner is null ? null : topo.Endpoint(providerOwner);
        var client = topo.Endpoint(dev.Name);
        string reason;
        if (type == P2PMapType.None)
        {
            why.Add("pci_p2pdma_state: not a P2PDMA page → dma_map_phys");
            return;
        }
        if (provider is null || client is null)
        {
            reason = $"{dev.Name} or the provider is not a PCI device";
        }
        else
        {
            var hb = topo.HostBridge(client.HostBridge);
            var id = $"{hb.Vendor:x4}:{hb.DeviceId:x4}";
            var common = topo.UpstreamPath(providerOwner!).Select(n => n.Name).Intersect(topo.UpstreamPath(dev.Name).Select(n => n.Name)).FirstOrDefault();
            reason = type switch
            {
                P2PMapType.BusAddr => $"{providerOwner} and {dev.Name} share upstream bridge {common}, no ACS redirect",
                P2PMapType.ThruHostBridge => $"no shared switch; host bridge {id} {(hb.P2PAllowed ? "allows P2P" : "whitelisted")}",
                _ => $"no shared switch; host bridge {id} not whitelisted",
            };
        }
        var action = type switch
        {
            P2PMapType.BusAddr => "BUS_ADDR → pci_p2pdma_bus_addr_map",
            P2PMapType.ThruHostBridge => "THRU_HOST_BRIDGE → dma_map_phys with DMA_ATTR_MMIO",
            _ => "NOT_SUPPORTED → -EREMOTEIO",
        };
        why.Add($"pci_p2pdma_map_type: {reason} → {action}");
    }
}
