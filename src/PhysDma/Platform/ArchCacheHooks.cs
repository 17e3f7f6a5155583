using PhysDma.Core;

namespace PhysDma.Platform;

internal enum CacheOpKind
{
    Clean,
    Invalidate,
    Flush,
}

/// <summary>One cache maintenance operation an arch hook performed.</summary>
internal readonly record struct CacheOp(CacheOpKind Op, PhysAddr Phys, ulong Size, bool OnRam)
{
    public string Name => Op switch
    {
        CacheOpKind.Clean => "clean",
        CacheOpKind.Invalidate => "invalidate",
        _ => "flush",
    };
}

/// <summary>
/// The architecture's DMA cache hooks (<c>arch_sync_dma_for_device</c>, <c>arch_sync_dma_for_cpu</c>,
/// <c>arch_dma_prep_coherent</c>). x86_64 has none: every device is coherent there. arm64 cleans to the
/// point of coherency for the device in every direction, and invalidates for the CPU unless the buffer
/// only went to the device. The hooks name the range by its linear-map address, as the kernel does.
/// </summary>
internal sealed class ArchCacheHooks
{
    private readonly KernelMappings _kmap;
    private readonly CpuCache _cache;
    private readonly MemoryMap _map;

    internal ArchCacheHooks(Arch arch, KernelMappings kmap, CpuCache cache, MemoryMap map)
    {
        Arch = arch;
        _kmap = kmap;
        _cache = cache;
        _map = map;
    }

    public Arch Arch { get; }

    /// <summary>Whether the architecture can have non-coherent devices at all (<c>ARCH_HAS_SYNC_DMA_*</c>).</summary>
    public bool HasNonCoherentDma => Arch == Arch.Arm64;

    /// <summary>When set, every operation is appended here (the scenario runner's per-step log).</summary>
    public List<CacheOp>? Log { get; set; }

    [ThreadStatic]
    private static long t_opsOnNonRam;

    private long _opsOnNonRam;

    /// <summary>Every operation on an address that is not RAM, whoever asked, on every CPU (counted always; cheap).</summary>
    public long OpsOnNonRam => Interlocked.Read(ref _opsOnNonRam);

    /// <summary>
    /// Operations on non-RAM made by the calling thread (the modelled CPU running it). A DMA API call runs on
    /// one thread from start to end, so comparing this before and after the call counts the call's own
    /// operations, never another CPU's done meanwhile.
    /// </summary>
    public static long OpsOnNonRamByThisThread => t_opsOnNonRam;

    public void SyncForDevice(PhysAddr p, ulong size, DmaDirection dir)
    {
        if (Arch != Arch.Arm64)
        {
            return;
        }
        Do(CacheOpKind.Clean, p, size);
    }

    public void SyncForCpu(PhysAddr p, ulong size, DmaDirection dir)
    {
        if (Arch != Arch.Arm64 || dir == DmaDirection.ToDevice)
        {
            return;
        }
        Do(CacheOpKind.Invalidate, p, size);
    }

    /// <summary><c>arch_sync_dma_for_cpu_all</c>: nothing on arm64 or x86_64 (MIPS needs it).</summary>
    public void SyncForCpuAll()
    {
    }

    /// <summary><c>arch_dma_prep_coherent</c>: flush a buffer about to be used uncached.</summary>
    public void PrepCoherent(PhysAddr p, ulong size)
    {
        if (Arch != Arch.Arm64)
        {
            return;
        }
        Do(CacheOpKind.Flush, p, size);
    }

    private void Do(CacheOpKind op, PhysAddr p, ulong size)
    {
        _kmap.PhysToVirtForCacheOp(p);
        var onRam = _map.IsRam(p, size);
        if (!onRam)
        {
            Interlocked.Increment(ref _opsOnNonRam);
            t_opsOnNonRam++;
        }
        Log?.Add(new CacheOp(op, p, size, onRam));
        switch (op)
        {
            case CacheOpKind.Clean:
                _cache.Clean(p, size);
                break;
            case CacheOpKind.Invalidate:
                _cache.Invalidate(p, size);
                break;
            default:
                _cache.Flush(p, size);
                break;
        }
    }
}
