using System.Numerics;
using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// A write-back, write-allocate, physically tagged CPU data cache shared by all CPUs. Lines stay until a
/// maintenance operation removes them (no spontaneous eviction), so a missing invalidate always shows as
/// stale data and a missing clean always leaves the device reading old memory: the worst case, repeatably.
/// Coherent devices snoop it; non-coherent devices bypass it.
/// </summary>
internal sealed class CpuCache : IMemoryAccess<PhysAddr>
{
    /// <summary>
    /// 64 consecutive lines kept together (one bit each for present and dirty) so a cached byte costs about
    /// one byte of host memory. A block whose every byte is one value shares a read-only array until written.
    /// </summary>
    private sealed class Block(byte[] data)
    {
        public byte[] Data = data;
        public ulong Present;
        public ulong Dirty;
    }

    private readonly int _linesPerBlock;
    private readonly ulong _fullMask;
    private readonly PhysicalMemory _memory;
    private readonly Dictionary<ulong, Block> _blocks = [];
    private readonly Lock _lock = new();
    private readonly ulong _blockSize;
    private readonly int _lineShift;

    public CpuCache(PhysicalMemory memory, ulong lineSize)
    {
        if (!Sizes.IsPowerOfTwo(lineSize))
        {
            throw new ArgumentException($"cache_line must be a power of two, not {lineSize}");
        }
        _memory = memory;
        LineSize = lineSize;
        // A block is at most a 4 KiB page's worth of lines (64 of 64 bytes, 32 of 128), so a page written
        // whole is whole blocks; up to 64 lines, one bit each in the masks.
        _linesPerBlock = (int)Math.Clamp(4096 / lineSize, 1, 64);
        _fullMask = _linesPerBlock == 64 ? ulong.MaxValue : (1UL << _linesPerBlock) - 1;
        _blockSize = lineSize * (ulong)_linesPerBlock;
        _lineShift = Sizes.Log2(lineSize);
    }

    public ulong LineSize { get; }

    /// <summary>Host bytes the cached lines hold (shared uniform blocks count nothing).</summary>
    public ulong HeldBytes
    {
        get
        {
            lock (_lock)
            {
                return (ulong)_blocks.Values.Count(b => !Uniform.IsShared(b.Data)) * _blockSize;
            }
        }
    }

    public int LineCount
    {
        get
        {
            lock (_lock)
            {
                return _blocks.Values.Sum(b => BitOperations.PopCount(b.Present));
            }
        }
    }

    private (ulong BlockAddr, int Bit) Locate(ulong a)
    {
        var blockAddr = a & ~(_blockSize - 1);
        return (blockAddr, (int)((a - blockAddr) >> _lineShift));
    }

    public bool IsCached(PhysAddr p)
    {
        lock (_lock)
        {
            var (ba, bit) = Locate(p.Value);
            return _blocks.TryGetValue(ba, out var b) && (b.Present & (1UL << bit)) != 0;
        }
    }

    public bool IsDirty(PhysAddr p)
    {
        lock (_lock)
        {
            var (ba, bit) = Locate(p.Value);
            return _blocks.TryGetValue(ba, out var b) && (b.Dirty & (1UL << bit)) != 0;
        }
    }

    private Block GetBlock(ulong blockAddr)
    {
        if (!_blocks.TryGetValue(blockAddr, out var b))
        {
            b = new Block(Uniform.Zeroes((int)_blockSize));
            _blocks.Add(blockAddr, b);
        }
        return b;
    }

    private static void Own(Block b)
    {
        if (Uniform.IsShared(b.Data))
        {
            b.Data = (byte[])b.Data.Clone();
        }
    }

    /// <summary>The line at <paramref name="lineAddr"/>, filled from memory if it was not cached.</summary>
    private Block Fill(ulong lineAddr)
    {
        var (ba, bit) = Locate(lineAddr);
        var b = GetBlock(ba);
        if ((b.Present & (1UL << bit)) == 0)
        {
            Own(b);
            _memory.Read(new PhysAddr(lineAddr), b.Data.AsSpan(bit << _lineShift, (int)LineSize));
            b.Present |= 1UL << bit;
        }
        return b;
    }

    /// <summary>A CPU load of cacheable memory.</summary>
    public void Load(PhysAddr p, Span<byte> dest)
    {
        lock (_lock)
        {
            var a = p.Value;
            while (!dest.IsEmpty)
            {
                var lineAddr = Sizes.AlignDown(a, LineSize);
                var n = Math.Min(dest.Length, (int)(lineAddr + LineSize - a));
                var b = Fill(lineAddr);
                b.Data.AsSpan((int)(a & (_blockSize - 1)), n).CopyTo(dest);
                dest = dest[n..];
                a += (ulong)n;
            }
        }
    }

    void IMemoryAccess<PhysAddr>.Read(PhysAddr addr, Span<byte> dest) => Load(addr, dest);

    void IMemoryAccess<PhysAddr>.Write(PhysAddr addr, ReadOnlySpan<byte> src) => Store(addr, src);

    /// <summary>A CPU store to cacheable memory (write-allocate; memory is updated only by a clean).</summary>
    public void Store(PhysAddr p, ReadOnlySpan<byte> src)
    {
        lock (_lock)
        {
            var a = p.Value;
            while (!src.IsEmpty)
            {
                var (ba, _) = Locate(a);
                if (a == ba && (ulong)src.Length >= _blockSize)
                {
                    // A whole block: no line needs filling from memory first.
                    var whole = src[..(int)_blockSize];
                    var b = GetBlock(ba);
                    b.Data = Uniform.ValueOf(whole) is { } v ? Uniform.Of(v, (int)_blockSize) : whole.ToArray();
                    b.Present = b.Dirty = _fullMask;
                    src = src[(int)_blockSize..];
                    a += _blockSize;
                    continue;
                }
                var lineAddr = Sizes.AlignDown(a, LineSize);
                var n = Math.Min(src.Length, (int)(lineAddr + LineSize - a));
                var line = Fill(lineAddr);
                Own(line);
                src[..n].CopyTo(line.Data.AsSpan((int)(a & (_blockSize - 1)), n));
                line.Dirty |= 1UL << Locate(lineAddr).Bit;
                src = src[n..];
                a += (ulong)n;
            }
        }
    }

    private enum Op
    {
        Clean,
        Invalidate,
        Flush,
    }

    /// <summary>
    /// Applies a maintenance operation to every cached line touching [start, start+size). The work is
    /// proportional to the lines cached, not to the size named: a 16 TiB range over four cached lines visits
    /// four lines.
    /// </summary>
    private void Maintain(ulong start, ulong size, Op op)
    {
        var end = start + size < start ? ulong.MaxValue : start + size;
        var first = Sizes.AlignDown(start, _blockSize);
        var blocksInRange = ((end - 1 - first) / _blockSize) + 1;
        if (blocksInRange <= 4096 || blocksInRange <= (ulong)_blocks.Count)
        {
            // The usual case, and allocation-free: walk the range's blocks.
            for (ulong i = 0; i < blocksInRange; i++)
            {
                MaintainBlock(first + (i * _blockSize), start, end, op);
            }
            return;
        }
        MaintainCachedBlocks(start, end, op);
    }

    /// <summary>
    /// A range far larger than what is cached (a 16 TiB sync): visit only the cached blocks inside it. Kept
    /// apart from <see cref="Maintain"/> so the hot path allocates no closure.
    /// </summary>
    private void MaintainCachedBlocks(ulong start, ulong end, Op op)
    {
        foreach (var ba in _blocks.Keys.Where(k => k + _blockSize > start && k < end).Order().ToList())
        {
            MaintainBlock(ba, start, end, op);
        }
    }

    private void MaintainBlock(ulong ba, ulong start, ulong end, Op op)
    {
        if (!_blocks.TryGetValue(ba, out var b))
        {
            return;
        }
        for (var bit = 0; bit < _linesPerBlock; bit++)
        {
            var lineAddr = ba + ((ulong)bit << _lineShift);
            if ((b.Present & (1UL << bit)) == 0 || lineAddr + LineSize <= start || lineAddr >= end)
            {
                continue;
            }
            if (op != Op.Invalidate || lineAddr < start || lineAddr + LineSize > end)
            {
                WriteBack(b, lineAddr, bit);
            }
            if (op != Op.Clean)
            {
                Drop(b, bit);
            }
        }
        if (b.Present == 0)
        {
            _blocks.Remove(ba);
        }
    }

    /// <summary>Clean (write back) every dirty line touching the range; lines stay cached.</summary>
    public void Clean(PhysAddr p, ulong size)
    {
        if (size == 0)
        {
            return;
        }
        lock (_lock)
        {
            Maintain(p.Value, size, Op.Clean);
        }
    }

    /// <summary>
    /// Invalidate the range. Lines only partly inside it are cleaned first (as arm64's
    /// <c>dcache_inval_poc</c> does with <c>dc civac</c>), so bytes outside the range are not lost.
    /// </summary>
    public void Invalidate(PhysAddr p, ulong size)
    {
        if (size == 0)
        {
            return;
        }
        lock (_lock)
        {
            Maintain(p.Value, size, Op.Invalidate);
        }
    }

    /// <summary>Clean and invalidate.</summary>
    public void Flush(PhysAddr p, ulong size)
    {
        if (size == 0)
        {
            return;
        }
        lock (_lock)
        {
            Maintain(p.Value, size, Op.Flush);
        }
    }

    private static void Drop(Block b, int bit)
    {
        b.Present &= ~(1UL << bit);
        b.Dirty &= ~(1UL << bit);
    }

    private void WriteBack(Block b, ulong lineAddr, int bit)
    {
        if ((b.Dirty & (1UL << bit)) != 0)
        {
            _memory.Write(new PhysAddr(lineAddr), b.Data.AsSpan(bit << _lineShift, (int)LineSize));
            b.Dirty &= ~(1UL << bit);
        }
    }

    /// <summary>A coherent device's read: memory, with dirty lines supplied by the cache.</summary>
    public void SnoopRead(PhysAddr p, Span<byte> dest)
    {
        lock (_lock)
        {
            _memory.Read(p, dest);
            var a = p.Value;
            var endAddr = p.Value + (ulong)dest.Length;
            for (var lineAddr = Sizes.AlignDown(a, LineSize); lineAddr < endAddr; lineAddr += LineSize)
            {
                var (ba, bit) = Locate(lineAddr);
                if (_blocks.TryGetValue(ba, out var b) && (b.Dirty & (1UL << bit)) != 0)
                {
                    var from = Math.Max(lineAddr, a);
                    var to = Math.Min(lineAddr + LineSize, endAddr);
                    b.Data.AsSpan((int)(from - ba), (int)(to - from)).CopyTo(dest[(int)(from - a)..]);
                }
            }
        }
    }

    /// <summary>A coherent device's write: dirty lines are written back and every touched line dropped, then memory written.</summary>
    public void SnoopWrite(PhysAddr p, ReadOnlySpan<byte> src)
    {
        lock (_lock)
        {
            Maintain(p.Value, (ulong)src.Length, Op.Flush);
            _memory.Write(p, src);
        }
    }
}

/// <summary>
/// Read-only arrays of one repeated byte, shared by every page or cache block whose bytes are all that
/// value (a <c>fill</c>, or never written): a 4 GiB fill costs a pointer per page, not 4 GiB.
/// </summary>
internal static class Uniform
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(byte, int), byte[]> Shared = new();

    public static byte[] Of(byte value, int size) => Shared.GetOrAdd((value, size), static k =>
    {
        var a = new byte[k.Item2];
        a.AsSpan().Fill(k.Item1);
        return a;
    });

    public static byte[] Zeroes(int size) => Of(0, size);

    public static bool IsShared(byte[] a) => a.Length > 0 && Shared.TryGetValue((a[0], a.Length), out var s) && ReferenceEquals(s, a);

    /// <summary>The one value every byte has, or null.</summary>
    public static byte? ValueOf(ReadOnlySpan<byte> data) =>
        data.IsEmpty ? null : data.IndexOfAnyExcept(data[0]) < 0 ? data[0] : null;
}
