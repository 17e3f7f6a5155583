using PhysDma.Core;
using static PhysDma.Scenarios.FieldType;

namespace PhysDma.Scenarios;

/// <summary>
/// What every op and every step input field means, and which fields an op needs: the descriptions and value
/// types that <c>physdma schema scenario</c> writes for the ops and fields <see cref="OpCatalogue"/> lists.
/// A field name means the same thing in every op that takes it.
/// </summary>
internal static class StepCatalogue
{
    /// <summary>The direction names (<c>enum dma_data_direction</c>).</summary>
    public static readonly IReadOnlyList<string> Directions = ["bidirectional", "to_device", "from_device", "none"];

    /// <summary>What each op models: the kernel call, or what the CPU or a device does.</summary>
    public static readonly IReadOnlyDictionary<string, string> OpDescriptions = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["alloc"] = "Allocate a named buffer: RAM pages, a kmalloc object, a stack or vmalloc buffer, P2P memory, a BAR range or an MMIO resource.",
        ["free"] = "Give a buffer back.",
        ["cpu_write"] = "The CPU stores bytes into a buffer, through its cache.",
        ["cpu_read"] = "The CPU loads bytes from a buffer, through its cache; the result has data.",
        ["map"] = "Map a buffer for a device: dma_map_phys (api: phys), dma_map_page_attrs, dma_map_single_attrs or dma_map_resource.",
        ["unmap"] = "Unmap a handle: dma_unmap_phys and friends; size, dir, attrs and api default to the map's.",
        ["mapping_error"] = "dma_mapping_error on a handle; the result has ret.",
        ["sync"] = "dma_sync_single_for_cpu or dma_sync_single_for_device on a handle.",
        ["dev_read"] = "The device reads at a DMA address (a handle's plus offset, or addr); the result has data.",
        ["dev_write"] = "The device writes at a DMA address (a handle's plus offset, or addr).",
        ["tick"] = "Modelled time passes: flush-queue timers, dynamic swiotlb and rcache work run.",
        ["iommu_flush"] = "A full IOTLB flush now.",
        ["alloc_coherent"] = "dma_alloc_attrs: a coherent buffer; the handle's name is also a buffer for the CPU side.",
        ["free_coherent"] = "dma_free_attrs.",
        ["iova_alloc"] = "dma_iova_try_alloc: reserve an IOVA range (the state); the result has use_iova.",
        ["iova_link"] = "dma_iova_link: map a buffer at IOVA offset at inside the state.",
        ["iova_sync"] = "dma_iova_sync: make linked ranges visible to the device (IOTLB sync).",
        ["iova_unlink"] = "dma_iova_unlink.",
        ["iova_free"] = "dma_iova_free: give back an IOVA range with nothing linked.",
        ["iova_destroy"] = "dma_iova_destroy: unlink mapped_len bytes and free the range.",
        ["remove_device"] = "Driver unbind: dma-debug reports every mapping the driver leaked.",
        ["map_sg"] = "dma_map_sgtable on a list of segments; the result has nents and segments.",
        ["unmap_sg"] = "dma_unmap_sgtable.",
        ["sync_sg"] = "dma_sync_sgtable_for_cpu or dma_sync_sgtable_for_device.",
        ["p2p_map"] = "What the block layer, HMM and VFIO do with memory that may belong to a peer: by P2P map type, a bus address, dma_map_phys with MMIO, or EREMOTEIO.",
    };

    /// <summary>Every input field, by name: its value and meaning.</summary>
    public static readonly IReadOnlyDictionary<string, FieldDoc> Fields = new[]
    {
        new FieldDoc("op", Enum(OpCatalogue.All.Keys), "What the step does."),
        new FieldDoc("id", Name, "The step's name in the results."),
        new FieldDoc("cpu", Int, "Which modelled CPU runs the step (default 0)."),
        new FieldDoc("expect", Any, "Result fields and the values they must have."),
        new FieldDoc("expect_on", Any, "Per machine (by name): result fields and the values they must have on that machine, in place of expect's."),
        new FieldDoc("fallback", Enum("map_phys", "none"), "What the driver does when dma_iova_try_alloc says no: map_phys maps each link with dma_map_phys (none: the scenario stops)."),
        new FieldDoc("name", Name, "The buffer's name."),
        new FieldDoc("size", Size, "Length in bytes (default for map: the whole buffer from offset)."),
        new FieldDoc("kind", Enum("ram", "kmalloc", "stack", "vmalloc", "p2pmem", "bar", "resource", "kernel_text"),
            "ram: pages; kmalloc: a slab object (may share cachelines); stack: a vmapped task stack; vmalloc: pages mapped in reverse order; p2pmem: from device from's P2PDMA pool (has struct page); bar: device from's BAR bar at offset (no struct page); resource: MMIO at phys, or in device from's BAR bar at offset (no struct page); kernel_text: inside the kernel image."),
        new FieldDoc("align", Size, "Alignment of the buffer (a power of two)."),
        new FieldDoc("zone", Enum("dma", "dma32", "normal", "high"), "Memory zone the pages come from."),
        new FieldDoc("from", Name, "The device that owns the memory (kind p2pmem or bar)."),
        new FieldDoc("bar", Int, "Which BAR of the from device (kind bar)."),
        new FieldDoc("offset", Size, "Offset into the buffer, BAR, handle or IOVA state (default 0)."),
        new FieldDoc("phys", Address, "Place the buffer at this physical address (RAM kinds: must be free RAM; resource: the MMIO address)."),
        new FieldDoc("buf", Name, "A buffer allocated by an earlier step."),
        new FieldDoc("data", Data, "Bytes: hex pairs, { fill: 0xAA } or { seq: 7 }, repeated or cut to the length."),
        new FieldDoc("len", Size, "Number of bytes (for data: default the pattern's own length or the rest of the buffer)."),
        new FieldDoc("dev", Name, "A device of the machine."),
        new FieldDoc("dir", Enum(Directions), "DMA direction (enum dma_data_direction)."),
        new FieldDoc("attrs", List(Enum(DmaNames.AttrTable.Select(a => a.Scenario))), "DMA_ATTR_* flags."),
        new FieldDoc("api", Enum("phys", "page", "single", "resource"), "Which mapping call: dma_map_phys (default), dma_map_page_attrs, dma_map_single_attrs, dma_map_resource."),
        new FieldDoc("as", Name, "Name of the handle or IOVA state this step creates."),
        new FieldDoc("kmap", Bool, "api: single only: hand dma_map_single a kmap_local_page pointer."),
        new FieldDoc("handle", Name, "A handle made by an earlier map, map_sg, p2p_map or alloc_coherent step."),
        new FieldDoc("for", Enum("cpu", "device"), "Sync for the CPU or for the device."),
        new FieldDoc("addr", Address, "A raw DMA address (instead of handle)."),
        new FieldDoc("ms", Int, "Modelled milliseconds."),
        new FieldDoc("cpu_offset", Size, "Hand dma_free_attrs the CPU address plus this offset (a wrong address)."),
        new FieldDoc("phys_of", Name, "A buffer whose physical address dma_iova_try_alloc is given (the IOVA keeps its offset in the granule)."),
        new FieldDoc("state", Name, "An IOVA state made by an earlier iova_alloc."),
        new FieldDoc("at", Size, "Offset inside the IOVA state."),
        new FieldDoc("mapped_len", Size, "Bytes linked so far (dma_iova_destroy's mapped_len)."),
        new FieldDoc("segments", List(Object(Segment)), "The scatterlist entries, in order."),
        new FieldDoc("nents", Int, "The entry count passed (default: the one dma_map_sgtable used); a different count is misuse."),
    }.ToDictionary(f => f.Name, StringComparer.Ordinal);

    /// <summary>An entry of <c>map_sg</c>'s <c>segments:</c>.</summary>
    public static IReadOnlyList<FieldDoc> Segment =>
    [
        new("buf", Name, "A buffer allocated by an earlier step.", Required: true),
        new("offset", Size, "Offset into the buffer (default 0)."),
        new("size", Size, "Length of the entry (1 byte to 4 GiB - 1).", Required: true),
    ];

    /// <summary>The fields an op cannot do without (others are optional, or needed only with some values of another field).</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyList<string>> Required = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal)
    {
        ["alloc"] = ["name", "size", "kind"],
        ["free"] = ["name"],
        ["cpu_write"] = ["buf", "data"],
        ["cpu_read"] = ["buf", "len"],
        ["map"] = ["dev", "buf", "dir", "as"],
        ["unmap"] = ["handle"],
        ["mapping_error"] = ["handle"],
        ["sync"] = ["handle", "for"],
        ["dev_read"] = ["len"],
        ["dev_write"] = ["data"],
        ["tick"] = ["ms"],
        ["iommu_flush"] = [],
        ["alloc_coherent"] = ["dev", "size", "as"],
        ["free_coherent"] = ["handle"],
        ["iova_alloc"] = ["dev", "size", "as"],
        ["iova_link"] = ["state", "buf", "size", "at", "dir"],
        ["iova_sync"] = ["state", "at", "size"],
        ["iova_unlink"] = ["state", "at", "size", "dir"],
        ["iova_free"] = ["state"],
        ["iova_destroy"] = ["state", "mapped_len", "dir"],
        ["remove_device"] = ["dev"],
        ["map_sg"] = ["dev", "segments", "dir", "as"],
        ["unmap_sg"] = ["handle"],
        ["sync_sg"] = ["handle", "for"],
        ["p2p_map"] = ["dev", "buf", "dir", "as"],
    };

    /// <summary>The top-level fields of a scenario.</summary>
    public static readonly IReadOnlyList<string> ScenarioFields = ["name", "description", "machine", "steps", "expect", "faults"];
}
