using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Iommu;

/// <summary>x86_64 machines with an IOMMU, built in code for the IOMMU tests.</summary>
internal static class IommuMachines
{
    public const ulong MsiBase = 0xfee00000;

    /// <summary>The window the brief's test machine has: it covers 0xc0000000-0xffffffff.</summary>
    public const ulong FullWindowSize = Sizes.GiB;

    /// <summary>A typical x86 layout: the MEM window stops below the IOAPIC/MSI/firmware area at 0xfec00000.</summary>
    public const ulong LowWindowSize = 0xfec00000 - 0xc0000000;

    public static MachineConfig Config(IommuMode mode, int cpus = 2, ulong windowSize = LowWindowSize,
        int fqEntries = 256, bool forceDac = false, IReadOnlyList<DeviceConfig>? extraDevices = null)
    {
        var devices = new List<DeviceConfig>
        {
            // A 64-bit coherent PCIe NIC.
            new() { Name = "nic0", Parent = "rp0", Bdf = "0000:01:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64 },
            // A device that only drives 32 address bits.
            new() { Name = "dev32", Parent = "rp0", Bdf = "0000:02:00.0", DmaMaskBits = 32, CoherentDmaMaskBits = 32 },
            // An external Thunderbolt device.
            new() { Name = "tb0", Parent = "rp0", Bdf = "0000:05:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64, Untrusted = true },
            // NVMe keeps in-page offsets.
            new() { Name = "nvme0", Parent = "rp0", Bdf = "0000:03:00.0", DmaMaskBits = 64, CoherentDmaMaskBits = 64, MinAlignMask = 0xfff },
            // A platform device behind the IOMMU (no PCI 32-bit workaround).
            new() { Name = "plat0", Iommu = true, DmaMaskBits = 64, CoherentDmaMaskBits = 64 },
        };
        if (extraDevices is not null)
        {
            devices.AddRange(extraDevices);
        }
        return new MachineConfig
        {
            Name = "test-iommu-" + mode.ToString().ToLowerInvariant(),
            Arch = Arch.X86_64,
            Cpus = cpus,
            Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(4 * Sizes.GiB, 13 * Sizes.GiB)],
            Swiotlb = new SwiotlbConfig(64 * Sizes.MiB, 2, false, false, null),
            Iommu = new IommuConfig(mode, [4 * Sizes.KiB, 2 * Sizes.MiB, Sizes.GiB], 48, forceDac,
                new FlushQueueConfig(fqEntries, 10), [new AddrRange(MsiBase, Sizes.MiB)]),
            Pci =
            [
                new PciNodeConfig("hb0", PciNodeType.HostBridge, null, 0x8086, 0x2020, true, [new AddrRange(0xc0000000, windowSize)], false),
                new PciNodeConfig("rp0", PciNodeType.RootPort, "hb0", 0x8086, 0x2021, true, [], false),
            ],
            Devices = devices,
        };
    }

    public static (Machine M, DmaApi Api) Build(IommuMode mode, int cpus = 2, ulong windowSize = LowWindowSize,
        int fqEntries = 256, bool forceDac = false, IReadOnlyList<DeviceConfig>? extraDevices = null)
    {
        var m = new Machine(Config(mode, cpus, windowSize, fqEntries, forceDac, extraDevices));
        return (m, new DmaApi(m));
    }

    public static byte[] Seq(int n, int seed = 7)
    {
        var b = new byte[n];
        for (var i = 0; i < n; i++)
        {
            b[i] = (byte)(seed + i);
        }
        return b;
    }

    /// <summary>The CPU writes bytes at a physical RAM address through the linear map.</summary>
    public static void CpuWrite(Machine m, PhysAddr p, byte[] data) => m.Cpu.Write(m.Kmap.PhysToVirt(p), data);

    public static byte[] CpuRead(Machine m, PhysAddr p, int n)
    {
        var b = new byte[n];
        m.Cpu.Read(m.Kmap.PhysToVirt(p), b);
        return b;
    }
}
