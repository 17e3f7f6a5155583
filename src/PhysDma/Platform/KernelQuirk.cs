namespace PhysDma.Platform;

/// <summary>
/// The known kernel defects a machine may reproduce (<see cref="MachineConfig.KernelQuirks"/>): the one table
/// of their names. 6.18 defects fixed later, and the pre-series IOMMU_CACHE on host-bridge P2P scatterlist
/// entries. KMSAN's in-page offset loss is not among them: KMSAN is not modelled.
/// </summary>
internal static class KernelQuirk
{
    /// <summary>dma-direct scatter-gather: a bus-address P2P entry is given no DMA length.</summary>
    public const string SgBusAddrNoLen = "sg_bus_addr_no_len";

    /// <summary>dma-direct scatter-gather: a host-bridge P2P entry's <c>break</c> skips the mapping, leaving its DMA address as it was.</summary>
    public const string SgHostBridgeBreak = "sg_host_bridge_break";

    /// <summary>The IOVA unlink slow path tests only SKIP_CPU_SYNC, so MMIO links get CPU cache maintenance.</summary>
    public const string IovaUnlinkIgnoresMmio = "iova_unlink_ignores_mmio";

    /// <summary>dma-iommu scatter-gather: a bus-address entry's DMA length is the list head's length.</summary>
    public const string IommuSgBusAddrHeadLen = "iommu_sg_bus_addr_head_len";

    /// <summary>
    /// dma-iommu scatter-gather: host-bridge P2P entries are mapped with the call's prot (IOMMU_CACHE on a
    /// coherent device) instead of IOMMU_MMIO.
    /// </summary>
    public const string IommuSgHostBridgeCache = "iommu_sg_host_bridge_cache";

    /// <summary>
    /// The pre-series behaviour for single host-bridge P2P mappings: importers mapped them like RAM, so a
    /// coherent device behind dma-iommu got IOMMU_CACHE instead of IOMMU_MMIO.
    /// </summary>
    public const string P2PHostBridgeAsRam = "p2p_host_bridge_as_ram";

    /// <summary>Every quirk, in the order messages list them.</summary>
    public static readonly IReadOnlyList<string> All =
        [SgBusAddrNoLen, SgHostBridgeBreak, IovaUnlinkIgnoresMmio, IommuSgBusAddrHeadLen, IommuSgHostBridgeCache, P2PHostBridgeAsRam];
}
