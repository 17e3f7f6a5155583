using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using PhysDma.Tests.Iommu;

namespace PhysDma.Tests.Iova;

/// <summary>The IOMMU test machine plus the devices the IOVA API tests need.</summary>
internal static class IovaMachines
{
    public const ulong BarBase = 0x3800000000;

    public static readonly DeviceConfig[] Extra =
    [
        // An external NVMe drive: untrusted, keeps in-granule offsets when bouncing.
        new() { Name = "tbn0", Parent = "rp0", Bdf = "0000:06:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64, Untrusted = true, MinAlignMask = 0xfff },
        // A platform device that is not behind the IOMMU.
        new() { Name = "direct0", Iommu = false, DmaMaskBits = 64, CoherentDmaMaskBits = 64 },
        // A GPU whose BAR is peer memory.
        new() { Name = "gpu0", Parent = "rp0", Bdf = "0000:07:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64,
            Bars = [new BarConfig(1, BarBase, 16 * Sizes.GiB, BarBase)] },
    ];

    public static (Machine M, DmaApi Api) X86(IommuMode mode = IommuMode.Lazy) =>
        IommuMachines.Build(mode, extraDevices: Extra);

    /// <summary>arm64 with the same IOMMU and a non-coherent platform device behind it.</summary>
    public static (Machine M, DmaApi Api) Arm64NonCoherent(IommuMode mode = IommuMode.Strict, params string[] quirks)
    {
        var devices = new List<DeviceConfig>(Extra)
        {
            new() { Name = "ncdev", Iommu = true, Coherent = false, DmaMaskBits = 64, CoherentDmaMaskBits = 64 },
        };
        var cfg = IommuMachines.Config(mode, extraDevices: devices) with { Arch = Arch.Arm64, KernelQuirks = quirks };
        var m = new Machine(cfg);
        return (m, new DmaApi(m));
    }
}
