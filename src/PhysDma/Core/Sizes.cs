using System.Numerics;

namespace PhysDma.Core;

internal static class Sizes
{
    public const ulong KiB = 1024;
    public const ulong MiB = 1024 * KiB;
    public const ulong GiB = 1024 * MiB;
    public const ulong TiB = 1024 * GiB;

    /// <summary><c>DMA_BIT_MASK(n)</c>: the low n bits set; 64 gives all ones.</summary>
    public static ulong DmaBitMask(int bits) => bits >= 64 ? ulong.MaxValue : (1UL << bits) - 1;

    public static ulong AlignUp(ulong value, ulong align) => (value + align - 1) & ~(align - 1);
    public static ulong AlignDown(ulong value, ulong align) => value & ~(align - 1);
    public static bool IsAligned(ulong value, ulong align) => (value & (align - 1)) == 0;
    public static bool IsPowerOfTwo(ulong value) => value != 0 && (value & (value - 1)) == 0;
    public static ulong DivRoundUp(ulong n, ulong d) => (n + d - 1) / d;

    /// <summary><c>min_not_zero(a, b)</c>.</summary>
    public static ulong MinNotZero(ulong a, ulong b) => a == 0 ? b : b == 0 ? a : Math.Min(a, b);

    /// <summary><c>ilog2</c> of a power of two (or floor of log2).</summary>
    public static int Log2(ulong value) => BitOperations.Log2(value);

    /// <summary><c>roundup_pow_of_two</c>.</summary>
    public static ulong RoundUpPowerOfTwo(ulong value) => value <= 1 ? 1 : 1UL << (64 - BitOperations.LeadingZeroCount(value - 1));

    /// <summary>Number of bits needed for the highest set bit (<c>fls64</c>).</summary>
    public static int Fls64(ulong value) => value == 0 ? 0 : 64 - BitOperations.LeadingZeroCount(value);
}
