using System.Collections.Concurrent;
using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// The bytes of the physical address space (RAM and device memory alike). Sparse: a page costs memory
/// only once something writes it; an untouched page reads as zeroes. Which addresses exist at all is the
/// <see cref="MemoryMap"/>'s business, not this store's.
/// </summary>
public sealed class PhysicalMemory : IMemoryAccess<PhysAddr>
{
    private const int ChunkShift = 12;
    private const ulong ChunkSize = 1UL << ChunkShift;
    private readonly ConcurrentDictionary<ulong, byte[]> _chunks = new();

    /// <summary>How many 4 KiB chunks hold bytes.</summary>
    public int TouchedChunks => _chunks.Count;

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
            var chunk = _chunks.GetOrAdd(a >> ChunkShift, static _ => new byte[ChunkSize]);
            src.Slice(at, n).CopyTo(chunk.AsSpan((int)(a & (ChunkSize - 1)), n));
        }
    }

    /// <summary>Copies inside physical memory (no cache involved: used by hardware, not the CPU).</summary>
    public void Copy(PhysAddr dst, PhysAddr src, ulong len) => MemoryAccess.Copy(this, dst, src, len);
}
