using PhysDma.Platform;
using static PhysDma.Scenarios.FieldType;

namespace PhysDma.Scenarios;

/// <summary>
/// Every field a machine file may have, at every level, with its value and meaning: the one list that
/// <see cref="MachineParser"/> accepts fields from and that <c>physdma schema machine</c> describes.
/// </summary>
internal static class MachineCatalogue
{
    /// <summary>
    /// Known 6.18 defects a machine may reproduce (<c>kernel_quirks:</c>): dma-direct's sg bus-address entries
    /// without a length and its host-bridge break, dma_iova_unlink ignoring MMIO, iommu_dma_map_sg's bus-address
    /// head length, and the IOMMU_CACHE that host-bridge P2P entries (sg and single) had before the series. KMSAN's in-page
    /// offset loss is not among them: KMSAN is not modelled.
    /// </summary>
    public static IReadOnlyList<string> KnownQuirks => KernelQuirk.All;

    /// <summary>A range of physical addresses.</summary>
    public static readonly IReadOnlyList<FieldDoc> Range =
    [
        new("base", Address, "First physical address of the range.", Required: true),
        new("size", Size, "Length of the range (not 0).", Required: true),
    ];

    /// <summary>The <c>swiotlb:</c> mapping.</summary>
    public static readonly IReadOnlyList<FieldDoc> Swiotlb =
    [
        new("size", Size, "Size of the default bounce pool (the kernel's swiotlb= size; 64MiB by default)."),
        new("areas", Int, "Number of areas the pool is split into (per-CPU locking); 0 picks one per CPU, as swiotlb_adjust_nareas does."),
        new("force", Bool, "swiotlb=force: every streaming mapping of RAM bounces."),
        new("dynamic", Bool, "CONFIG_SWIOTLB_DYNAMIC: a full pool grows by transient and new pools."),
        new("base", Address.OrNull(), "Where the default pool sits; null: the highest free RAM below 4 GiB."),
    ];

    /// <summary>The <c>iommu.flush_queue:</c> mapping.</summary>
    public static readonly IReadOnlyList<FieldDoc> FlushQueue =
    [
        new("entries", Int, "Entries of each per-CPU flush queue (IOVA_FQ_SIZE, 256)."),
        new("timeout_ms", Int, "Flush-queue timer period in modelled milliseconds (IOVA_FQ_TIMEOUT, 10)."),
    ];

    /// <summary>The <c>iommu:</c> mapping.</summary>
    public static readonly IReadOnlyList<FieldDoc> Iommu =
    [
        new("mode", Enum("strict", "lazy", "passthrough"), "Default domain type: strict (every unmap invalidates the IOTLB), lazy (unmaps go through the flush queue), passthrough (identity: devices use dma-direct)."),
        new("page_sizes", List(Size), "Page sizes the IO page table supports; the smallest is the IOVA granule."),
        new("aperture_bits", Int, "Width of the IOVA space in bits (32..64)."),
        new("forcedac", Bool, "iommu.forcedac=1: PCI devices do not try 32-bit IOVAs first."),
        new("flush_queue", Object(FlushQueue), "Lazy-mode flush queue."),
        new("reserved", List(Object(Range)), "IOMMU reserved regions: never handed out as IOVAs (e.g. the x86 MSI window)."),
    ];

    /// <summary>An entry of <c>pci:</c>.</summary>
    public static readonly IReadOnlyList<FieldDoc> PciNode =
    [
        new("name", Name, "The node's name; an existing name (from the base machine) overrides that node's fields.", Required: true),
        new("type", Enum("host_bridge", "root_port", "switch"), "What the node is. Required for a new node."),
        new("parent", Name.OrNull(), "The node above (host bridge for a root port; root port or switch for a switch). Parents come before children."),
        new("vendor", Int, "Host bridge PCI vendor ID (with device, checked against the kernel's P2P host-bridge allowlist)."),
        new("device", Int, "Host bridge PCI device ID."),
        new("p2p_allowed", Bool, "Host bridge: peer-to-peer through it is allowed even when not on the allowlist."),
        new("windows", List(Object(Range)), "Host bridge MEM windows (reserved in every IOVA domain)."),
        new("acs_redirect", Bool, "Root port or switch: ACS request/completion redirect is on, so P2P below it goes up to the host bridge."),
        new("bdf", Text.OrNull(), "PCI address of the bridge, \"DDDD:BB:DD.F\" (optional: enumerated like firmware when left out)."),
        new("external_facing", Bool, "Root port: external-facing (Thunderbolt/USB4); every device below it is untrusted."),
    ];

    /// <summary>An entry of a device's <c>bars:</c>.</summary>
    public static readonly IReadOnlyList<FieldDoc> Bar =
    [
        new("bar", Int, "BAR index (0..5).", Required: true),
        new("base", Address, "CPU physical address of the BAR.", Required: true),
        new("size", Size, "Size of the BAR.", Required: true),
        new("bus_base", Address, "PCI bus address of the BAR (default: base); differs when the host bridge translates."),
    ];

    /// <summary>A device's <c>p2pmem:</c> mapping.</summary>
    public static readonly IReadOnlyList<FieldDoc> P2PMem =
    [
        new("bar", Int, "The BAR the P2PDMA provider publishes (pci_p2pdma_add_resource).", Required: true),
        new("offset", Size, "Offset of the published memory in the BAR."),
        new("size", Size, "Size of the published memory (gets ZONE_DEVICE struct pages).", Required: true),
    ];

    /// <summary>An entry of a device's <c>dma_ranges:</c>.</summary>
    public static readonly IReadOnlyList<FieldDoc> DmaRange =
    [
        new("cpu", Address, "CPU physical start of the range.", Required: true),
        new("dma", Address, "DMA (bus) address the device uses for it.", Required: true),
        new("size", Size, "Length of the range.", Required: true),
    ];

    /// <summary>An entry of <c>devices:</c>.</summary>
    public static readonly IReadOnlyList<FieldDoc> Device =
    [
        new("name", Name, "The device's name (also its driver's name in kernel messages); an existing name overrides that device's fields.", Required: true),
        new("parent", Name.OrNull(), "The PCI root port or switch above it; omit for a platform (non-PCI) device."),
        new("bdf", Text.OrNull(), "PCI address, \"DDDD:BB:DD.F\" (optional: firmware-like depth-first numbering from each host bridge, device numbers in file order)."),
        new("bars", List(Object(Bar)), "The device's memory BARs."),
        new("p2pmem", Object(P2PMem).OrNull(), "Registers a P2PDMA provider: BAR memory with struct pages that alloc kind p2pmem takes from."),
        new("dma_mask", Int.OrNull(), "dma_mask in bits (1..64; default 32); null models dev->dma_mask == NULL."),
        new("coherent_dma_mask", Int, "coherent_dma_mask in bits (1..64)."),
        new("coherent", Bool.OrNull(), "dev_is_dma_coherent (default: true on x86_64, false on arm64)."),
        new("iommu", Bool.OrNull(), "Translated by the machine's IOMMU (default: true for PCI devices when the machine has one)."),
        new("untrusted", Bool, "External-facing (pci_dev->untrusted): strict domain, unaligned buffers bounced."),
        new("bus_dma_limit", Address, "dev->bus_dma_limit: highest bus address the interconnect passes (0: none)."),
        new("dma_ranges", List(Object(DmaRange)), "dev->dma_range_map: CPU-to-bus offsets for dma-direct."),
        new("min_align_mask", Address, "dma_set_min_align_mask: low address bits a bounce buffer must keep."),
        new("max_seg_size", Size, "dma_set_max_seg_size: longest scatterlist segment."),
        new("seg_boundary_mask", Address, "dma_set_seg_boundary: a segment may not cross a multiple of mask+1."),
        new("force_bounce", Bool, "dev->dma_io_tlb_mem force_bounce: every RAM mapping bounces."),
        new("restricted_pool", Object(Range).OrNull(), "A restricted-dma-pool: the device's own swiotlb pool at this range."),
        new("ops", Enum("none", "legacy", "legacy_no_resource", "phys", "phys_no_mmio"), "Per-device dma_map_ops: none (dma-direct or dma-iommu), legacy (map_page/map_resource), legacy_no_resource (map_page only), phys (map_phys), phys_no_mmio (6.19 map_phys converted from ops without map_resource: refuses DMA_ATTR_MMIO)."),
    ];

    /// <summary>The machine mapping itself.</summary>
    public static readonly IReadOnlyList<FieldDoc> Machine =
    [
        new("base", Enum(Profiles.Names), "Start from this built-in machine and override the fields given here."),
        new("description", Text, "One line about the machine (shown by physdma machines)."),
        new("arch", Enum("x86_64", "arm64"), "Architecture: its cache hooks, default coherence and kernel address layout."),
        new("page_size", Size, "PAGE_SIZE."),
        new("cache_line", Size, "L1 cache line size, used by the cache model and dma-debug."),
        new("dma_minalign", Size, "ARCH_DMA_MINALIGN."),
        new("bounce_unaligned_kmalloc", Bool, "DMA_BOUNCE_UNALIGNED_KMALLOC: small kmalloc buffers bounce for non-coherent devices."),
        new("cpus", Int, "Number of modelled CPUs (1..1024)."),
        new("debug", Bool, "CONFIG_DMA_API_DEBUG and PhysDma's own checks (on or off)."),
        new("kernel_quirks", List(Enum(KnownQuirks)), "Known 6.18 defects to reproduce."),
        new("ram", List(Object(Range)), "System RAM ranges (struct page exists for every page)."),
        new("highmem_above", Address.OrNull(), "RAM at or above this address has no linear map (kmap_local_pfn needed)."),
        new("kernel_text", Object(Range).OrNull(), "Where the kernel image lies."),
        new("swiotlb", Object(Swiotlb).Or(Bool).OrNull(), "The default swiotlb pool; off (or null) for none, on for the defaults."),
        new("iommu", Object(Iommu).Or(Bool).OrNull(), "The IOMMU; off (or null) for none, on for the defaults."),
        new("mem_encrypt_bit", Address.OrNull(), "Memory encryption (SME/SEV): the encryption bit as a mask (e.g. 0x800000000000), set in the DMA address of encrypted memory; 0 or null: none."),
        new("pci", List(Object(PciNode)), "PCI topology: host bridges, root ports, switches, parents first."),
        new("devices", List(Object(Device)), "Devices that do DMA."),
    ];
}
