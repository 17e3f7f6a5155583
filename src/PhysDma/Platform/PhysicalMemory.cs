using System.Collections.Concurrent;
using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// The bytes of the physical address space (RAM and device memory alike). Sparse: a page costs memory
/// only once something writes it; an untouched page reads as zeroes. Which addresses exist at all is the
/// <see cref="MemoryMap"/>'s business, not this store's.
/// </summary>
internal sealed class PhysicalMemory : IMemoryAccess<PhysAddr>
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
        foreach (var (a, at, n) in Chunks.Split(addr.Value, dest.Length, ChunkSize))
        {
            if (_chunks.TryGetValue(a >> ChunkShift, out var chunk))
            {
                chunk.AsSpan((int)(a & (ChunkSize - 1)), n).CopyTo(dest[at..]);
            }
            else
            {
                dest.Slice(at, n).Clear();
            }
        }
    }

    public void Write(PhysAddr addr, ReadOnlySpan<byte> src)
    {
        foreach (var (a, at, n) in Chunks.Split(addr.Value, src.Length, ChunkSize))
        {
            var key = a >> ChunkShift;
            if (n == (int)ChunkSize && Uniform.ValueOf(src.Slice(at, n)) is { } v)
            {
                // A page of one value (a fill, zeroes) shares one read-only array.
                _chunks[key] = Uniform.Of(v, (int)ChunkSize);
                continue;
            }
            var chunk = _chunks.GetOrAdd(key, static _ => new byte[ChunkSize]);
            while (Uniform.IsShared(chunk))
            {
                var own = (byte[])chunk.Clone();
                chunk = _chunks.TryUpdate(key, own, chunk) ? own : _chunks[key];
            }
            src.Slice(at, n).CopyTo(chunk.AsSpan((int)(a & (ChunkSize - 1)), n));
        }
    }

    /// <summary>Copies inside physical memory (no cache involved: used by hardware, not the CPU).</summary>
    public void Copy(PhysAddr dst, PhysAddr src, ulong len) => MemoryAccess.Copy(this, dst, src, len);
}
