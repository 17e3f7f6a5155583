using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Debug;

/// <summary>Machines for the dma-debug tests, built in code.</summary>
internal static class DebugMachines
{
    public const ulong BarBase = 0x3800000000;

    /// <summary>x86_64, every device coherent: nic0 (PCI, 0000:03:00.0, one BAR) and plat0 (platform, small segments).</summary>
    public static DmaApi X86(bool debug = true, bool bounceKmalloc = false, SwiotlbConfig? swiotlb = null) =>
        new(new Machine(X86Config(debug, bounceKmalloc, swiotlb)));

    public static MachineConfig X86Config(bool debug = true, bool bounceKmalloc = false, SwiotlbConfig? swiotlb = null) => new()
    {
        Name = "test-x86",
        Arch = Arch.X86_64,
        Debug = debug,
        BounceUnalignedKmalloc = bounceKmalloc,
        Swiotlb = swiotlb,
        Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(0x100000000, Sizes.GiB)],
        KernelText = new AddrRange(0x1000000, 32 * Sizes.MiB),
        Devices =
        [
            new DeviceConfig
            {
                Name = "nic0",
                Bdf = "0000:03:00.0",
                DmaMaskBits = 64,
                CoherentDmaMaskBits = 64,
                Bars = [new BarConfig(0, BarBase, 16 * Sizes.MiB, BarBase)],
            },
            new DeviceConfig
            {
                Name = "plat0",
                DmaMaskBits = 32,
                MaxSegSize = 0x10000,
                SegBoundaryMask = 0xffff,
            },
        ],
    };

    /// <summary>arm64 with RAM at 0x80000000 and a non-coherent device dev0 that has a BAR.</summary>
    public static DmaApi Arm64() => new(new Machine(new MachineConfig
    {
        Name = "test-arm64",
        Arch = Arch.Arm64,
        Ram = [new AddrRange(0x80000000, 2 * Sizes.GiB)],
        Devices =
        [
            new DeviceConfig
            {
                Name = "dev0",
                Bdf = "0000:01:00.0",
                DmaMaskBits = 64,
                CoherentDmaMaskBits = 64,
                Coherent = false,
                Bars = [new BarConfig(0, BarBase, 16 * Sizes.MiB, BarBase)],
            },
        ],
    }));

    public static DmaDebug Dbg(this DmaApi api) => api.Debug ?? throw new InvalidOperationException("debug is off");

    public static Device Dev(this DmaApi api, string name = "nic0") => api.Machine.Device(name);

    /// <summary>Maps and checks the result with dma_mapping_error, as a correct driver does.</summary>
    public static DmaAddr MapChecked(this DmaApi api, Device dev, ulong phys, ulong size, DmaDirection dir, DmaAttrs attrs = DmaAttrs.None)
    {
        var a = api.MapPhys(dev, new PhysAddr(phys), size, dir, attrs);
        Assert.Equal(Errno.None, api.MappingError(dev, a));
        return a;
    }

    public static string[] Checks(this DmaDebug d) => [.. d.Reports.Select(r => r.Check)];
}
