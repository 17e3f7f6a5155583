namespace PhysDma.Core;

/// <summary>One piece of a split range: its address, where it starts in the caller's span, and its length.</summary>
internal readonly record struct Chunk(ulong Addr, int At, int Length);

/// <summary>
/// Splits <c>[addr, addr + length)</c> at every multiple of a power-of-two boundary (a page, a cache line,
/// a storage chunk): the pieces every page-, line- or chunk-granular copy works on. A struct enumerator,
/// so <c>foreach</c> over it allocates nothing.
/// </summary>
internal struct Chunks
{
    private readonly ulong _boundary;
    private readonly int _length;
    private ulong _addr;
    private int _at;

    private Chunks(ulong addr, int length, ulong boundary)
    {
        _addr = addr;
        _length = length;
        _boundary = boundary;
        Current = default;
    }

    public static Chunks Split(ulong addr, int length, ulong boundary) => new(addr, length, boundary);

    public Chunk Current { get; private set; }

    public readonly Chunks GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_at >= _length)
        {
            return false;
        }
        var n = (int)Math.Min((ulong)(_length - _at), _boundary - (_addr & (_boundary - 1)));
        Current = new Chunk(_addr, _at, n);
        _addr += (ulong)n;
        _at += n;
        return true;
    }
}
