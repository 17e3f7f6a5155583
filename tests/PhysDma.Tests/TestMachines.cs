using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;

namespace PhysDma.Tests;

/// <summary>A machine, its DMA API and the device under test, built in code.</summary>
internal sealed record Rig(Machine Machine, DmaApi Api, Device Dev)
{
    public ModelCounters Counters => Machine.Counters;

    public Device Device(string name) => Machine.Device(name);

    /// <summary>Turns on the arch cache-op log and returns it.</summary>
    public List<CacheOp> CacheLog()
    {
        var log = new List<CacheOp>();
        Machine.ArchCache.Log = log;
        return log;
    }

    /// <summary>Kernel messages printed since the machine booted (boot messages such as swiotlb's are left out).</summary>
    public string[] LogText => [.. Api.Log.Lines.Skip(BootLines).Select(l => l.Message)];

    /// <summary>How many lines the kernel log held when the rig was built.</summary>
    public int BootLines { get; init; }

    /// <summary>Writes bytes as the CPU does (through the linear map and the cache).</summary>
    public void CpuWrite(PhysAddr p, ReadOnlySpan<byte> bytes) => Machine.Cpu.Write(Machine.Kmap.PhysToVirt(p), bytes);

    public byte[] CpuRead(PhysAddr p, int n)
    {
        var buf = new byte[n];
        Machine.Cpu.Read(Machine.Kmap.PhysToVirt(p), buf);
        return buf;
    }

    public byte[] DevRead(DmaAddr a, int n, Device? dev = null)
    {
        var buf = new byte[n];
        var fault = Machine.DeviceRead(dev ?? Dev, a, buf);
        Assert.Null(fault);
        return buf;
    }

    public void DevWrite(DmaAddr a, ReadOnlySpan<byte> bytes, Device? dev = null) =>
        Assert.Null(Machine.DeviceWrite(dev ?? Dev, a, bytes));
}

/// <summary>
/// Machines for tests. x86_64: RAM {0, 3 GiB} and {4 GiB, 13 GiB}, kernel text at 16 MiB, no swiotlb, no
/// IOMMU, a coherent 64-bit NIC. arm64: 4 GiB of RAM at 2 GiB, 64-byte lines, 128-byte ARCH_DMA_MINALIGN,
/// unaligned kmalloc bouncing, a non-coherent NIC. Variants are <c>with</c> expressions on the configs.
/// </summary>
internal static class TestMachines
{
    public const string Nic = "nic0";

    /// <summary>BAR of the x86 GPU: in the PCI hole below 4 GiB.</summary>
    public static readonly PhysAddr X86Bar = new(0xd000_0000);

    /// <summary>A BAR above every RAM byte (64 GiB), out of reach of a 32-bit mask.</summary>
    public static readonly PhysAddr HighBar = new(0x10_0000_0000);

    /// <summary>BAR of the arm64 GPU: below DRAM.</summary>
    public static readonly PhysAddr ArmBar = new(0x4000_0000);

    public static DeviceConfig Nic64 => new() { Name = Nic, DmaMaskBits = 64, CoherentDmaMaskBits = 64 };

    /// <summary>A peer device owning MMIO BARs (BAR 0 at <paramref name="bar"/>, 1 MiB; BAR 2 at <see cref="HighBar"/>).</summary>
    public static DeviceConfig Gpu(PhysAddr bar) => new()
    {
        Name = "gpu0",
        DmaMaskBits = 64,
        CoherentDmaMaskBits = 64,
        Bars = [new BarConfig(0, bar.Value, 1 * MiB, bar.Value), new BarConfig(2, HighBar.Value, 1 * MiB, HighBar.Value)],
    };

    public static MachineConfig X86Config(params DeviceConfig[] devices) => new()
    {
        Name = "x86-test",
        Arch = Arch.X86_64,
        Ram = [new AddrRange(0, 3 * GiB), new AddrRange(4 * GiB, 13 * GiB)],
        KernelText = new AddrRange(0x100_0000, 32 * MiB),
        Swiotlb = null,
        Iommu = null,
        Devices = devices.Length == 0 ? [Nic64, Gpu(X86Bar)] : devices,
    };

    public static MachineConfig Arm64Config(params DeviceConfig[] devices) => new()
    {
        Name = "arm64-test",
        Arch = Arch.Arm64,
        CacheLine = 64,
        DmaMinAlign = 128,
        BounceUnalignedKmalloc = true,
        Ram = [new AddrRange(0x8000_0000, 4 * GiB)],
        Swiotlb = null,
        Iommu = null,
        Devices = devices.Length == 0 ? [Nic64 with { Coherent = false }, Gpu(ArmBar)] : devices,
    };

    /// <summary>A 64 MiB swiotlb with two areas, placed by the model at the top of low RAM.</summary>
    public static SwiotlbConfig Swiotlb64M => new(64 * MiB, 2, Force: false, Dynamic: false, Base: null);

    public static Rig Build(MachineConfig config, string dev = Nic)
    {
        var m = new Machine(config);
        var api = new DmaApi(m);
        api.Trace.Enabled = true;
        return new Rig(m, api, m.Device(dev)) { BootLines = api.Log.Lines.Count };
    }

    public static Rig X86(params DeviceConfig[] devices) => Build(X86Config(devices));

    public static Rig Arm64(params DeviceConfig[] devices) => Build(Arm64Config(devices));

    /// <summary>x86 with the NIC changed by <paramref name="change"/> (the GPU stays).</summary>
    public static Rig X86Nic(Func<DeviceConfig, DeviceConfig> change) => X86(change(Nic64), Gpu(X86Bar));

    /// <summary>arm64 with the non-coherent NIC changed by <paramref name="change"/> (the GPU stays).</summary>
    public static Rig Arm64Nic(Func<DeviceConfig, DeviceConfig> change) => Arm64(change(Nic64 with { Coherent = false }), Gpu(ArmBar));

    public static byte[] Pattern(int n, byte seed)
    {
        var b = new byte[n];
        for (var i = 0; i < n; i++)
        {
            b[i] = (byte)(seed + (i * 7));
        }
        return b;
    }
}
