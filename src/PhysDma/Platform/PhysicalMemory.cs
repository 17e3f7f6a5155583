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

    /// <summary>Host bytes the written pages hold (pages of one repeated value share an array and count nothing).</summary>
    public ulong HeldBytes => (ulong)_chunks.Values.Count(c => !Uniform.IsShared(c)) * ChunkSize;

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
            if (n == (int)ChunkSize && Uniform.ValueOf(src[..n]) is { } v)
            {
                // A page of one value (a fill, zeroes) shares one read-only array.
                _chunks[a >> ChunkShift] = Uniform.Of(v, (int)ChunkSize);
            }
            else
            {
                var key = a >> ChunkShift;
                var chunk = _chunks.GetOrAdd(key, static _ => new byte[ChunkSize]);
                while (Uniform.IsShared(chunk))
                {
                    var own = (byte[])chunk.Clone();
                    chunk = _chunks.TryUpdate(key, own, chunk) ? own : _chunks[key];
                }
                src[..n].CopyTo(chunk.AsSpan(off, n));
            }
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
