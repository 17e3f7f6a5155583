using System.Numerics;

namespace PhysDma.Platform;

/// <summary>Byte loads and stores by some kind of address (kernel virtual through the CPU, physical by hardware).</summary>
internal interface IMemoryAccess<TAddr>
{
    void Read(TAddr addr, Span<byte> dest);

    void Write(TAddr addr, ReadOnlySpan<byte> src);
}

/// <summary>Copy and fill built on <see cref="IMemoryAccess{TAddr}"/>, through a small stack buffer.</summary>
internal static class MemoryAccess
{
    private const int BufferSize = 256;
    private const int FillBufferSize = 4096;

    /// <summary>Copies <paramref name="len"/> bytes from <paramref name="src"/> to <paramref name="dst"/>, front to back.</summary>
    public static void Copy<TMem, TAddr>(TMem mem, TAddr dst, TAddr src, ulong len)
        where TMem : IMemoryAccess<TAddr>
        where TAddr : IAdditionOperators<TAddr, ulong, TAddr>
    {
        Span<byte> buf = stackalloc byte[BufferSize];
        for (ulong done = 0; done < len;)
        {
            var n = (int)Math.Min(len - done, BufferSize);
            mem.Read(src + done, buf[..n]);
            mem.Write(dst + done, buf[..n]);
            done += (ulong)n;
        }
    }

    /// <summary>Sets <paramref name="len"/> bytes at <paramref name="dst"/> to <paramref name="value"/>.</summary>
    public static void Fill<TMem, TAddr>(TMem mem, TAddr dst, byte value, ulong len)
        where TMem : IMemoryAccess<TAddr>
        where TAddr : IAdditionOperators<TAddr, ulong, TAddr>
    {
        // A page at a time, so whole pages and cache blocks of one value are stored shared (memset of a
        // coherent buffer, __GFP_ZERO) instead of line by line.
        Span<byte> buf = stackalloc byte[FillBufferSize];
        buf.Fill(value);
        for (ulong done = 0; done < len;)
        {
            var n = (int)Math.Min(len - done, FillBufferSize);
            mem.Write(dst + done, buf[..n]);
            done += (ulong)n;
        }
    }
}
