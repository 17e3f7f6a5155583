using System.Collections.Concurrent;
using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// The bytes of the physical address space (RAM and device memory alike). Sparse: a page costs memory
/// only once something writes it; an untouched page reads as zeroes. Which addresses exist at all is the
/// <see cref="MemoryMap"/>'s business, not this store's.
/// </summary>
public sealed class PhysicalMemory
{
    private const int ChunkShift = 12;
    private const ulong ChunkSize = 1UL << ChunkShift;
    private readonly ConcurrentDictionary<ulong, byte[]> _chunks = new();

    /// <summary>How many 4 KiB chunks hold bytes.</summary>
    public int TouchedChunks => _chunks.Count;

    public void Read(PhysAddr addr, Span<byte> dest)
    {
        var a = addr.Value;
        while (!dest.IsEmpty)
        {
            var off = (int)(a & (ChunkSize - 1));
            var n = Math.Min(dest.Length, (int)ChunkSize - off);
            if (_chunks.TryGetValue(a >> ChunkShift, out var chunk))
            {
                chunk.AsSpan(off, n).CopyTo(dest);
            }
            else
            {
                dest[..n].Clear();
            }
            dest = dest[n..];
            a += (ulong)n;
        }
    }

    public void Write(PhysAddr addr, ReadOnlySpan<byte> src)
    {
        var a = addr.Value;
        while (!src.IsEmpty)
        {
            var off = (int)(a & (ChunkSize - 1));
            var n = Math.Min(src.Length, (int)ChunkSize - off);
            var chunk = _chunks.GetOrAdd(a >> ChunkShift, static _ => new byte[ChunkSize]);
            src[..n].CopyTo(chunk.AsSpan(off, n));
            src = src[n..];
            a += (ulong)n;
        }
    }

    /// <summary>Copies inside physical memory (no cache involved: used by hardware, not the CPU).</summary>
    public void Copy(PhysAddr dst, PhysAddr src, ulong len)
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
}
