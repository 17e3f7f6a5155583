using PhysDma.Core;

namespace PhysDma.Dma;

/// <summary>How a mapping was made, as results report it.</summary>
internal enum DmaPath
{
    None,
    Direct,
    Swiotlb,
    Iommu,
    IommuSwiotlb,
    BusAddr,
    Ops,
}

/// <summary>
/// What the layers did in one API call, for results: the path taken, the bounce slot and the IOMMU prot.
/// The kernel does not report these; layers fill them only when a recorder is attached, so the cost is
/// paid only when someone is looking.
/// </summary>
internal sealed class DmaRecorder
{
    public DmaPath Path { get; set; }
    public PhysAddr? Bounce { get; set; }
    public int? IommuProt { get; set; }

    /// <summary>
    /// The decision trail of the call: each entry names the kernel function and the values it compared. Null
    /// unless the caller asks for it (scenario runs do; replay does not), so layers add to it only when it is set.
    /// </summary>
    public List<string>? Why { get; set; }

    public void Reset()
    {
        Path = DmaPath.None;
        Bounce = null;
        IommuProt = null;
    }

    public static string PathName(DmaPath p) => p switch
    {
        DmaPath.Direct => "direct",
        DmaPath.Swiotlb => "swiotlb",
        DmaPath.Iommu => "iommu",
        DmaPath.IommuSwiotlb => "iommu+swiotlb",
        DmaPath.BusAddr => "bus_addr",
        DmaPath.Ops => "ops",
        _ => "none",
    };
}
