using System.Globalization;
using System.Text;
using PhysDma.Core;

namespace PhysDma.Scenarios;

/// <summary>Scalar formats shared by scenario and machine files.</summary>
public static class Values
{
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
            return d;
        }
        throw at.Error($"'{v}' is not an address (use an integer or 0x hex)");
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
public sealed class DataSpec
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
        for (var i = 0; i < length; i++)
        {
            r[i] = _bytes is { } b ? b[i % b.Length] : _seq is { } s ? (byte)((s + i) & 0xff) : _fill;
        }
        return r;
    }
}
