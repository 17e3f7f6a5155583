using System.Buffers;
using System.Text;

namespace PhysDma.Replay;

/// <summary>What one line of a trace is.</summary>
internal enum TraceLineKind
{
    /// <summary>An event line: context, event name and payload.</summary>
    Event,

    /// <summary>A header or comment (<c># ...</c>, <c>cpus=2</c>, <c>version = 6</c>, <c>CPU 1 is empty</c>) or a blank line.</summary>
    Header,
}

/// <summary>A line that is neither an event nor a header: where it is and what it says.</summary>
internal sealed class TraceFormatException(long line, string text, string message) : Exception(message)
{
    public long Line { get; } = line;
    public string Text { get; } = text;
}

/// <summary>
/// Reads the text of a tracefs <c>trace</c> or <c>trace_pipe</c> file, or of <c>trace-cmd report</c>, one
/// line at a time from a stream: only the current line is held, in a pooled buffer, and the parts of it
/// (event name, device, payload) are spans into that buffer, valid until the next <see cref="Read"/>.
/// </summary>
internal sealed class TraceReader : IDisposable
{
    private const int MaxLine = 1 << 20;
    private readonly TextReader _text;
    private char[] _buf;
    private int _start;
    private int _end;
    private bool _eof;
    private int _lineStart;
    private int _lineLength;
    private int _nameStart;
    private int _nameLength;
    private int _payloadStart;

    public TraceReader(Stream stream)
    {
        _text = new StreamReader(stream, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16);
        _buf = ArrayPool<char>.Shared.Rent(1 << 16);
    }

    /// <summary>The 1-based number of the current line.</summary>
    public long LineNumber { get; private set; }

    /// <summary>Bytes of the underlying stream consumed so far (for progress), when it can tell.</summary>
    public long Position => _text is StreamReader { BaseStream.CanSeek: true } s ? s.BaseStream.Position : 0;

    public TraceLineKind Kind { get; private set; }

    /// <summary>The current line, without its line ending.</summary>
    public ReadOnlySpan<char> Line => _buf.AsSpan(_lineStart, _lineLength);

    /// <summary>The event name (without its system), for an event line.</summary>
    public ReadOnlySpan<char> EventName => _buf.AsSpan(_nameStart, _nameLength);

    /// <summary>Everything after <c>event: </c>.</summary>
    public ReadOnlySpan<char> Payload => _buf.AsSpan(_payloadStart, _lineStart + _lineLength - _payloadStart);

    /// <summary>The CPU the event fired on.</summary>
    public int Cpu { get; private set; }

    /// <summary>The event's timestamp in nanoseconds.</summary>
    public ulong TimeNs { get; private set; }

    /// <summary>Set when the last line of the input ended without a newline (a cut-off capture); that line is not returned.</summary>
    public string? TruncatedLastLine { get; private set; }

    /// <summary>Moves to the next line; false at the end. Throws <see cref="TraceFormatException"/> for a line that is not a trace line.</summary>
    public bool Read()
    {
        while (true)
        {
            var span = _buf.AsSpan(_start, _end - _start);
            var nl = span.IndexOf('\n');
            if (nl < 0)
            {
                if (_eof)
                {
                    if (_end > _start)
                    {
                        LineNumber++;
                        TruncatedLastLine = new string(span.TrimEnd('\r'));
                        _start = _end;
                    }
                    return false;
                }
                Fill();
                continue;
            }
            LineNumber++;
            _lineStart = _start;
            _lineLength = nl > 0 && span[nl - 1] == '\r' ? nl - 1 : nl;
            _start += nl + 1;
            Classify();
            return true;
        }
    }

    private void Fill()
    {
        if (_start > 0)
        {
            Array.Copy(_buf, _start, _buf, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buf.Length)
        {
            if (_buf.Length >= MaxLine)
            {
                throw new TraceFormatException(LineNumber + 1, new string(_buf, 0, 200) + "...", $"line longer than {MaxLine} characters");
            }
            var bigger = ArrayPool<char>.Shared.Rent(_buf.Length * 2);
            Array.Copy(_buf, bigger, _end);
            ArrayPool<char>.Shared.Return(_buf);
            _buf = bigger;
        }
        var n = _text.Read(_buf, _end, _buf.Length - _end);
        if (n == 0)
        {
            _eof = true;
        }
        _end += n;
    }

    private void Classify()
    {
        var line = Line;
        var trimmed = line.TrimStart(' ');
        if (trimmed.IsEmpty || trimmed[0] == '#')
        {
            Kind = TraceLineKind.Header;
        }
        else if (TryParseEvent(line))
        {
            Kind = TraceLineKind.Event;
        }
        else if (IsReportHeader(trimmed))
        {
            Kind = TraceLineKind.Header;
        }
        else
        {
            throw new TraceFormatException(LineNumber, new string(line),
                "not a trace line (expected TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: PAYLOAD)");
        }
    }

    /// <summary>The lines <c>trace-cmd report</c> prints before and between events.</summary>
    private static bool IsReportHeader(ReadOnlySpan<char> s) =>
        s.StartsWith("cpus=") || s.StartsWith("version") || s.StartsWith("CPU ") || s.StartsWith("CPU:")
        || s.StartsWith("trace-cmd") || s.StartsWith("TRACE_") || s.StartsWith("tracing");

    private bool TryParseEvent(ReadOnlySpan<char> line)
    {
        // The CPU field "[ddd]" follows the task (which may itself hold spaces, brackets or colons).
        var cpuOpen = -1;
        for (var i = line.IndexOf('['); i >= 0 && i < line.Length;)
        {
            var close = line[(i + 1)..].IndexOf(']');
            if (close > 0 && IsDigits(line.Slice(i + 1, close)) && i > 0 && line[i - 1] == ' ')
            {
                cpuOpen = i;
                Cpu = ParseInt(line.Slice(i + 1, close));
                i = i + 1 + close + 1;
                line = line[i..];
                break;
            }
            var next = line[(i + 1)..].IndexOf('[');
            i = next < 0 ? -1 : i + 1 + next;
        }
        if (cpuOpen < 0)
        {
            return false;
        }
        var consumed = _lineLength - line.Length;
        // Optional irq-info flags, then the timestamp "secs.frac:".
        line = SkipSpaces(line, ref consumed);
        var tok = line.IndexOf(' ');
        if (tok < 0)
        {
            return false;
        }
        if (!TryTimestamp(line[..tok]))
        {
            line = SkipSpaces(Advance(line, tok, ref consumed), ref consumed);
            tok = line.IndexOf(' ');
            if (tok < 0 || !TryTimestamp(line[..tok]))
            {
                return false;
            }
        }
        line = SkipSpaces(Advance(line, tok, ref consumed), ref consumed);
        // "event:" or "system:event:".
        var colon = line.IndexOf(':');
        if (colon <= 0)
        {
            return false;
        }
        var nameStart = consumed;
        var nameLength = colon;
        var after = line[(colon + 1)..];
        var second = after.IndexOf(':');
        if (second > 0 && !after[..second].ContainsAny(' ', '\t'))
        {
            nameStart = consumed + colon + 1;
            nameLength = second;
            colon += 1 + second;
        }
        _nameStart = _lineStart + nameStart;
        _nameLength = nameLength;
        line = Advance(line, colon + 1, ref consumed);
        line = SkipSpaces(line, ref consumed);
        _payloadStart = _lineStart + consumed;
        return true;
    }

    private bool TryTimestamp(ReadOnlySpan<char> tok)
    {
        if (tok.Length < 3 || tok[^1] != ':')
        {
            return false;
        }
        tok = tok[..^1];
        var dot = tok.IndexOf('.');
        if (dot <= 0 || !IsDigits(tok[..dot]) || !IsDigits(tok[(dot + 1)..]) || tok.Length - dot - 1 > 9)
        {
            return false;
        }
        ulong secs = 0;
        foreach (var c in tok[..dot])
        {
            secs = secs * 10 + (ulong)(c - '0');
        }
        ulong frac = 0;
        var digits = 0;
        foreach (var c in tok[(dot + 1)..])
        {
            frac = frac * 10 + (ulong)(c - '0');
            digits++;
        }
        for (; digits < 9; digits++)
        {
            frac *= 10;
        }
        TimeNs = secs * 1_000_000_000 + frac;
        return true;
    }

    private static ReadOnlySpan<char> SkipSpaces(ReadOnlySpan<char> s, scoped ref int consumed)
    {
        var n = 0;
        while (n < s.Length && (s[n] == ' ' || s[n] == '\t'))
        {
            n++;
        }
        consumed += n;
        return s[n..];
    }

    private static ReadOnlySpan<char> Advance(ReadOnlySpan<char> s, int n, scoped ref int consumed)
    {
        consumed += n;
        return s[n..];
    }

    private static bool IsDigits(ReadOnlySpan<char> s)
    {
        if (s.IsEmpty)
        {
            return false;
        }
        foreach (var c in s)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }
        }
        return true;
    }

    private static int ParseInt(ReadOnlySpan<char> s)
    {
        var v = 0;
        foreach (var c in s)
        {
            v = (v * 10) + (c - '0');
        }
        return v;
    }

    public void Dispose()
    {
        _text.Dispose();
        ArrayPool<char>.Shared.Return(_buf);
        _buf = [];
    }
}
