using System.Globalization;
using System.Text;
using PhysDma.Core;

namespace PhysDma.Scenarios;

/// <summary>Scalar formats shared by scenario and machine files.</summary>
internal static class Values
{
    /// <summary>
    /// The most bytes one <c>cpu_read</c> or <c>dev_read</c> may read: the result prints every byte read
    /// (three characters each), so a read is bounded by what a result can show.
    /// </summary>
    public const ulong MaxReadLength = 1024 * 1024;

    public static bool IsName(string v) =>
        v.Length > 0 && v.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_' or '.' or '-');

    public static ulong ParseSize(string v, YNode at)
    {
        var s = v.Trim();
        if (s.StartsWith('-'))
        {
            throw at.Error($"negative size '{v}'");
        }
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            return ParseAddress(s, at);
        }
        var units = new (string Suffix, ulong Mult)[]
        {
            ("KiB", Sizes.KiB), ("MiB", Sizes.MiB), ("GiB", Sizes.GiB), ("TiB", Sizes.TiB), ("B", 1),
        };
        ulong mult = 1;
        foreach (var (suffix, m) in units)
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal))
            {
                s = s[..^suffix.Length].Trim();
                mult = m;
                break;
            }
        }
        if (!ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            throw at.Error($"'{v}' is not a size (use bytes or a unit: 4096, 4KiB, 2MiB, 16GiB)");
        }
        RefuseLeadingZero(s, v, at);
        var r = n * mult;
        if (mult != 0 && r / mult != n)
        {
            throw at.Error($"size '{v}' does not fit in 64 bits");
        }
        return r;
    }

    public static ulong ParseAddress(string v, YNode at)
    {
        var s = v.Trim();
        if (s.StartsWith('-'))
        {
            throw at.Error($"negative address '{v}'");
        }
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            var digits = s[2..].Replace("_", "", StringComparison.Ordinal);
            if (digits.Length is > 0 and <= 16 && ulong.TryParse(digits, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var h))
            {
                return h;
            }
            throw at.Error($"'{v}' is not a 64-bit hex address");
        }
        if (ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var d))
        {
            RefuseLeadingZero(s, v, at);
            return d;
        }
        throw at.Error($"'{v}' is not an address (use an integer or 0x hex)");
    }

    /// <summary>
    /// A decimal integer written with a leading zero (<c>010</c>) is octal in C and YAML 1.1 and decimal in
    /// YAML 1.2: ambiguous, so refused rather than guessed.
    /// </summary>
    public static void RefuseLeadingZero(string digits, string original, YNode at)
    {
        if (digits.Length > 1 && digits[0] == '0' && char.IsAsciiDigit(digits[1]))
        {
            throw at.Error($"'{original}' has a leading zero, which C and YAML 1.1 read as octal: write it without the zero, or as 0x hex");
        }
    }

    /// <summary>Lowercase hex bytes separated by spaces, as results print data.</summary>
    public static string HexBytes(ReadOnlySpan<byte> data)
    {
        var sb = new StringBuilder(data.Length * 3);
        foreach (var b in data)
        {
            if (sb.Length > 0)
            {
                sb.Append(' ');
            }
            sb.Append(b.ToString("x2", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }
}

/// <summary>
/// A scenario's <c>data</c>: hex bytes, <c>{ fill: 0xAA }</c> or <c>{ seq: 7 }</c>, each repeated or cut to the
/// length needed.
/// </summary>
internal sealed class DataSpec
{
    private readonly byte[]? _bytes;
    private readonly byte _fill;
    private readonly int? _seq;

    private DataSpec(byte[]? bytes, byte fill, int? seq)
    {
        _bytes = bytes;
        _fill = fill;
        _seq = seq;
    }

    /// <summary>Whether every byte of the pattern is the same (a fill): long runs of it cost no memory.</summary>
    public bool IsUniform => _bytes is null ? _seq is null : Uniform(_bytes);

    private static bool Uniform(byte[] b) => b.AsSpan().IndexOfAnyExcept(b[0]) < 0;

    /// <summary>The natural length (hex bytes given), or null when the pattern has none (fill, seq).</summary>
    public int? NaturalLength => _bytes?.Length;

    public static DataSpec Parse(YNode node)
    {
        if (node.IsMapping)
        {
            var f = node.Fields("fill", "seq");
            if (f.Get("fill") is { } fill)
            {
                if (f.Has("seq"))
                {
                    throw node.Error("give either fill or seq, not both");
                }
                return new DataSpec(null, (byte)fill.AsInt(0, 255), null);
            }
            if (f.Get("seq") is { } seq)
            {
                return new DataSpec(null, 0, seq.AsInt(0, 255));
            }
            throw node.Error("data mapping needs 'fill' or 'seq'");
        }
        var s = node.Scalar.Replace(" ", "", StringComparison.Ordinal).Replace("\t", "", StringComparison.Ordinal);
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            s = s[2..];
        }
        if (s.Length == 0 || s.Length % 2 != 0)
        {
            throw node.Error($"'{node.Scalar}' is not hex bytes (write e.g. \"de ad be ef\")");
        }
        var bytes = new byte[s.Length / 2];
        for (var i = 0; i < bytes.Length; i++)
        {
            if (!byte.TryParse(s.AsSpan(i * 2, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out bytes[i]))
            {
                throw node.Error($"'{node.Scalar}' is not hex bytes (write e.g. \"de ad be ef\")");
            }
        }
        return new DataSpec(bytes, 0, null);
    }

    public byte[] Expand(int length)
    {
        var r = new byte[length];
        Fill(r, 0);
        return r;
    }

    /// <summary>Bytes <paramref name="start"/>.. of the pattern into <paramref name="dest"/>: long data is made a piece at a time.</summary>
    public void Fill(Span<byte> dest, ulong start)
    {
        if (_bytes is null && _seq is null)
        {
            dest.Fill(_fill);
            return;
        }
        // One period of the pattern, then doubling copies (every prefix length stays a multiple of the period).
        var period = _bytes?.Length ?? 256;
        var first = Math.Min(dest.Length, period);
        for (var i = 0; i < first; i++)
        {
            var at = start + (ulong)i;
            dest[i] = _bytes is { } b ? b[(int)(at % (ulong)b.Length)] : (byte)(((ulong)_seq!.Value + at) & 0xff);
        }
        for (var done = first; done < dest.Length; done *= 2)
        {
            dest[..Math.Min(done, dest.Length - done)].CopyTo(dest[done..]);
        }
    }

    /// <summary>
    /// Hands the pattern's first <paramref name="length"/> bytes to <paramref name="write"/> in pieces of at most
    /// 1 MiB (offset into the data, the piece); stops early when it returns false.
    /// </summary>
    public void Stream(ulong length, Func<ulong, ReadOnlySpan<byte>, bool> write)
    {
        var piece = new byte[(int)Math.Min(length, 1024 * 1024)];
        for (ulong done = 0; done < length;)
        {
            var n = (int)Math.Min((ulong)piece.Length, length - done);
            Fill(piece.AsSpan(0, n), done);
            if (!write(done, piece.AsSpan(0, n)))
            {
                return;
            }
            done += (ulong)n;
        }
    }
}
