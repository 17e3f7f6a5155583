using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// A write-back, write-allocate, physically tagged CPU data cache shared by all CPUs. Lines stay until a
/// maintenance operation removes them (no spontaneous eviction), so a missing invalidate always shows as
/// stale data and a missing clean always leaves the device reading old memory: the worst case, repeatably.
/// Coherent devices snoop it; non-coherent devices bypass it.
/// </summary>
public sealed class CpuCache : IMemoryAccess<PhysAddr>
{
    private sealed class Line(byte[] data)
    {
        public readonly byte[] Data = data;
        public bool Dirty;
    }

    private readonly PhysicalMemory _memory;
    private readonly Dictionary<ulong, Line> _lines = [];
    private readonly Lock _lock = new();

    public CpuCache(PhysicalMemory memory, ulong lineSize)
    {
        if (!Sizes.IsPowerOfTwo(lineSize))
        {
            throw new ArgumentException($"the cache line size must be a power of two, not {lineSize}");
        }
        _memory = memory;
        LineSize = lineSize;
    }

    public ulong LineSize { get; }

    public int LineCount
    {
        get
        {
            lock (_lock)
            {
                return _lines.Count;
            }
        }
    }

    public bool IsCached(PhysAddr p)
    {
        lock (_lock)
        {
            return _lines.ContainsKey(Sizes.AlignDown(p.Value, LineSize));
        }
    }

    public bool IsDirty(PhysAddr p)
    {
        lock (_lock)
        {
            return _lines.TryGetValue(Sizes.AlignDown(p.Value, LineSize), out var l) && l.Dirty;
        }
    }

    private Line Fill(ulong lineAddr)
    {
        if (!_lines.TryGetValue(lineAddr, out var line))
        {
            line = new Line(new byte[LineSize]);
            _memory.Read(new PhysAddr(lineAddr), line.Data);
            _lines.Add(lineAddr, line);
        }
        return line;
    }

    /// <summary>A CPU load of cacheable memory.</summary>
    public void Load(PhysAddr p, Span<byte> dest)
    {
        lock (_lock)
        {
            foreach (var (a, at, n) in Chunks.Split(p.Value, dest.Length, LineSize))
            {
                var lineAddr = Sizes.AlignDown(a, LineSize);
                Fill(lineAddr).Data.AsSpan((int)(a - lineAddr), n).CopyTo(dest[at..]);
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
            foreach (var (a, at, n) in Chunks.Split(p.Value, src.Length, LineSize))
            {
                var lineAddr = Sizes.AlignDown(a, LineSize);
                var line = Fill(lineAddr);
                src.Slice(at, n).CopyTo(line.Data.AsSpan((int)(a - lineAddr), n));
                line.Dirty = true;
            }
        }
    }

    private enum Maintenance
    {
        Clean,
        Invalidate,
        Flush,
    }

    /// <summary>Clean (write back) every dirty line touching the range; lines stay cached.</summary>
    public void Clean(PhysAddr p, ulong size) => Maintain(p, size, Maintenance.Clean);

    /// <summary>
    /// Invalidate the range. Lines only partly inside it are cleaned first (as arm64's
    /// <c>dcache_inval_poc</c> does with <c>dc civac</c>), so bytes outside the range are not lost.
    /// </summary>
    public void Invalidate(PhysAddr p, ulong size) => Maintain(p, size, Maintenance.Invalidate);

    /// <summary>Clean and invalidate.</summary>
    public void Flush(PhysAddr p, ulong size) => Maintain(p, size, Maintenance.Flush);

    private void Maintain(PhysAddr p, ulong size, Maintenance op)
    {
        if (size == 0)
        {
            return;
        }
        lock (_lock)
        {
            MaintainLocked(p.Value, p.Value + size, op);
        }
    }

    /// <summary>One maintenance operation on every line touching <c>[start, end)</c>.</summary>
    private void MaintainLocked(ulong start, ulong end, Maintenance op)
    {
        for (var a = Sizes.AlignDown(start, LineSize); a < end; a += LineSize)
        {
            if (op != Maintenance.Invalidate || a < start || a + LineSize > end)
            {
                WriteBack(a);
            }
            if (op != Maintenance.Clean)
            {
                _lines.Remove(a);
            }
        }
    }

    private void WriteBack(ulong lineAddr)
    {
        if (_lines.TryGetValue(lineAddr, out var line) && line.Dirty)
        {
            _memory.Write(new PhysAddr(lineAddr), line.Data);
            line.Dirty = false;
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
                if (_lines.TryGetValue(lineAddr, out var line) && line.Dirty)
                {
                    var from = Math.Max(lineAddr, a);
                    var to = Math.Min(lineAddr + LineSize, endAddr);
                    line.Data.AsSpan((int)(from - lineAddr), (int)(to - from)).CopyTo(dest[(int)(from - a)..]);
                }
            }
        }
    }

    /// <summary>A coherent device's write: dirty lines are written back and every touched line dropped, then memory written.</summary>
    public void SnoopWrite(PhysAddr p, ReadOnlySpan<byte> src)
    {
        lock (_lock)
        {
            MaintainLocked(p.Value, p.Value + (ulong)src.Length, Maintenance.Flush);
            _memory.Write(p, src);
        }
    }
}
