using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// CPU loads and stores by kernel virtual address: cacheable mappings go through the cache model,
/// uncached ones (ioremap) straight to memory. Which modelled CPU runs the caller is a thread binding
/// (<see cref="Machine.OnCpu"/>); the data cache is shared, as a coherent CPU cluster's is.
/// </summary>
public sealed class Cpu : IMemoryAccess<KernelVirt>
{
    private readonly KernelMappings _kmap;
    private readonly CpuCache _cache;
    private readonly PhysicalMemory _memory;
    private readonly ulong _pageSize;

    internal Cpu(KernelMappings kmap, CpuCache cache, PhysicalMemory memory, ulong pageSize)
    {
        _kmap = kmap;
        _cache = cache;
        _memory = memory;
        _pageSize = pageSize;
    }

    public void Read(KernelVirt va, Span<byte> dest)
    {
        foreach (var (a, at, n) in Chunks.Split(va.Value, dest.Length, _pageSize))
        {
            var (p, cached) = _kmap.Translate(new KernelVirt(a));
            if (cached)
            {
                _cache.Load(p, dest.Slice(at, n));
            }
            else
            {
                _memory.Read(p, dest.Slice(at, n));
            }
        }
    }

    public void Write(KernelVirt va, ReadOnlySpan<byte> src)
    {
        foreach (var (a, at, n) in Chunks.Split(va.Value, src.Length, _pageSize))
        {
            var (p, cached) = _kmap.Translate(new KernelVirt(a));
            if (cached)
            {
                _cache.Store(p, src.Slice(at, n));
            }
            else
            {
                _memory.Write(p, src.Slice(at, n));
            }
        }
    }

    /// <summary><c>memcpy</c> between two kernel virtual addresses, through the cache as the CPU does it.</summary>
    public void Memcpy(KernelVirt dst, KernelVirt src, ulong len) => MemoryAccess.Copy(this, dst, src, len);

    /// <summary><c>memset</c> through the cache.</summary>
    public void Memset(KernelVirt dst, byte value, ulong len) => MemoryAccess.Fill(this, dst, value, len);
}
