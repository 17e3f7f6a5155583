using PhysDma.Platform;

namespace PhysDma.Iommu;

/// <summary>
/// Where the IOMMU core's trace events go (include/trace/events/iommu.h: <c>map</c>, <c>unmap</c>,
/// <c>io_page_fault</c>). The unit holds none unless someone traces, so the hot paths pay one null check.
/// </summary>
internal interface IIommuTraceSink
{
    /// <summary><c>trace_map</c>, from <c>iommu_map</c> after a successful mapping.</summary>
    void Map(ulong iova, ulong paddr, ulong size);

    /// <summary><c>trace_unmap</c>, from <c>__iommu_unmap</c>: the size asked for and the size unmapped.</summary>
    void Unmap(ulong iova, ulong size, ulong unmappedSize);

    /// <summary><c>trace_io_page_fault</c>, from <c>report_iommu_fault</c>; <paramref name="write"/> is IOMMU_FAULT_WRITE.</summary>
    void IoPageFault(Device dev, ulong iova, bool write);
}
