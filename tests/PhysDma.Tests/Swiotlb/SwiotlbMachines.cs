using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Tests.Swiotlb;

/// <summary>Machines for the swiotlb tests, built from <see cref="MachineConfig"/> in code.</summary>
internal static class SwiotlbMachines
{
    public const ulong FourGiB = 4 * Sizes.GiB;

    /// <summary>Where the default 64 MiB pool lands on <see cref="X86"/>: the top of the RAM below 4 GiB.</summary>
    public const ulong X86PoolStart = 3 * Sizes.GiB - 64 * Sizes.MiB;

    public static DeviceConfig Dev(string name, int maskBits = 32, ulong minAlignMask = 0, ulong segBoundary = 0xffffffff,
        bool forceBounce = false, AddrRange? restricted = null, bool? coherent = null) => new()
        {
            Name = name,
            DmaMaskBits = maskBits,
            CoherentDmaMaskBits = maskBits,
            MinAlignMask = minAlignMask,
            SegBoundaryMask = segBoundary,
            ForceBounce = forceBounce,
            RestrictedPool = restricted,
            Coherent = coherent,
        };

    /// <summary>x86_64, RAM {0, 3 GiB} and {4 GiB, 13 GiB}, swiotlb 64 MiB in 2 areas, a 32-bit NIC.</summary>
    public static MachineConfig X86(SwiotlbConfig? swiotlb = null, ulong memEncryptBit = 0, params DeviceConfig[] devices) => new()
    {
        Name = "x86-swiotlb-test",
        Arch = Arch.X86_64,
        Cpus = 4,
        Ram = [new AddrRange(0, 3 * Sizes.GiB), new AddrRange(FourGiB, 13 * Sizes.GiB)],
        Swiotlb = swiotlb ?? new SwiotlbConfig(64 * Sizes.MiB, 2, false, false, null),
        MemEncryptBit = memEncryptBit,
        Devices = devices.Length > 0 ? devices : [Dev("nic0")],
    };

    /// <summary>arm64 with DRAM at 2 GiB (2 GiB) and 32 GiB (4 GiB), a non-coherent 32-bit device.</summary>
    public static MachineConfig Arm64(SwiotlbConfig? swiotlb = null, params DeviceConfig[] devices) => new()
    {
        Name = "arm64-swiotlb-test",
        Arch = Arch.Arm64,
        Cpus = 2,
        Ram = [new AddrRange(0x80000000, 2 * Sizes.GiB), new AddrRange(0x800000000, 4 * Sizes.GiB)],
        Swiotlb = swiotlb ?? new SwiotlbConfig(16 * Sizes.MiB, 2, false, false, null),
        Devices = devices.Length > 0 ? devices : [Dev("dev0", coherent: false)],
    };

    public static (Machine M, DmaApi Api) Build(MachineConfig cfg)
    {
        var m = new Machine(cfg);
        return (m, new DmaApi(m));
    }

    /// <summary>Allocates RAM at or above <paramref name="lo"/> and returns it with its linear address.</summary>
    public static (PhysAddr Phys, KernelVirt Va) Buffer(Machine m, ulong size, ulong lo = FourGiB, ulong align = 4096)
    {
        var p = m.Allocator.Alloc(size, align, lo) ?? throw new InvalidOperationException("no RAM for the buffer");
        return (p, m.Kmap.PhysToVirt(p));
    }

    public static byte[] Seq(int len, int seed)
    {
        var b = new byte[len];
        for (var i = 0; i < len; i++)
        {
            b[i] = (byte)(seed + i);
        }
        return b;
    }

    public static byte[] CpuRead(Machine m, KernelVirt va, int len)
    {
        var b = new byte[len];
        m.Cpu.Read(va, b);
        return b;
    }

    public static byte[] DevRead(Machine m, Device dev, DmaAddr a, int len)
    {
        var b = new byte[len];
        Assert.Null(m.DeviceRead(dev, a, b));
        return b;
    }

    /// <summary>
    /// swiotlb's free-list bookkeeping for one pool: every free slot's list is the number of free slots from it to the
    /// end of its segment (and the pool), every used slot's list is 0, and the areas' counts add up.
    /// <paramref name="used"/> says which slots the caller believes are allocated.
    /// </summary>
    public static string? CheckFreeList(IoTlbPool pool, bool[] used)
    {
        var run = 0;
        for (var i = pool.NSlabs - 1; i >= 0; i--)
        {
            if (i % IoTlb.SegSize == IoTlb.SegSize - 1)
            {
                run = 0;
            }
            run = used[i] ? 0 : run + 1;
            var s = pool.Slot(i);
            if (s.List != run)
            {
                return $"slot {i}: list {s.List}, expected {run} ({(used[i] ? "used" : "free")})";
            }
            if (!used[i] && (!s.OrigAddr.IsInvalid || s.AllocSize != 0 || s.PadSlots != 0))
            {
                return $"free slot {i} still has orig {s.OrigAddr}, alloc_size {s.AllocSize}, pad {s.PadSlots}";
            }
        }
        var usedCount = used.Count(u => u);
        return pool.Used != usedCount ? $"areas count {pool.Used} used slots, {usedCount} really used" : null;
    }
}
