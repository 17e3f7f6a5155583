using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// CPU loads and stores by kernel virtual address: cacheable mappings go through the cache model,
/// uncached ones (ioremap) straight to memory. Which modelled CPU runs the caller is a thread binding
/// (<see cref="Machine.OnCpu"/>); the data cache is shared, as a coherent CPU cluster's is.
/// </summary>
public sealed class Cpu
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
        while (!dest.IsEmpty)
        {
            var n = (int)Math.Min((ulong)dest.Length, _pageSize - (va.Value & (_pageSize - 1)));
            var (p, cached) = _kmap.Translate(va);
            if (cached)
            {
                _cache.Load(p, dest[..n]);
            }
            else
            {
                _memory.Read(p, dest[..n]);
            }
            dest = dest[n..];
            va += (ulong)n;
        }
    }

    public void Write(KernelVirt va, ReadOnlySpan<byte> src)
    {
        while (!src.IsEmpty)
        {
            var n = (int)Math.Min((ulong)src.Length, _pageSize - (va.Value & (_pageSize - 1)));
            var (p, cached) = _kmap.Translate(va);
            if (cached)
            {
                _cache.Store(p, src[..n]);
            }
            else
            {
                _memory.Write(p, src[..n]);
            }
            src = src[n..];
            va += (ulong)n;
        }
    }

    /// <summary><c>memcpy</c> between two kernel virtual addresses, through the cache as the CPU does it.</summary>
    public void Memcpy(KernelVirt dst, KernelVirt src, ulong len)
    {
        Span<byte> buf = stackalloc byte[256];
        while (len > 0)
        {
            var n = (int)Math.Min(len, (ulong)buf.Length);
            Read(src, buf[..n]);
            Write(dst, buf[..n]);
            src += (ulong)n;
            dst += (ulong)n;
            len -= (ulong)n;
        }
    }

    /// <summary><c>memset</c> through the cache (a page at a time, so whole cache blocks of one value stay shared).</summary>
    public void Memset(KernelVirt dst, byte value, ulong len)
    {
        Span<byte> buf = stackalloc byte[4096];
        buf.Fill(value);
        while (len > 0)
        {
            var n = (int)Math.Min(len, (ulong)buf.Length);
            Write(dst, buf[..n]);
            dst += (ulong)n;
            len -= (ulong)n;
        }
    }
}
