using PhysDma.Core;

namespace PhysDma.Platform;

internal enum LogLevel
{
    Info,
    Notice,
    Warn,
    Err,
}

internal sealed record LogLine(ulong TimeNs, LogLevel Level, string Message);

/// <summary>
/// The kernel log (dmesg) with the kernel's printing rules: <c>WARN_ONCE</c>/<c>dev_WARN_ONCE</c> print once
/// per call site, ratelimited messages allow a burst of 10 per 5 s of modelled time.
/// </summary>
internal sealed class KernelLog(Clock clock)
{
    private const int RatelimitBurst = 10;
    private const ulong RatelimitIntervalNs = 5_000_000_000;
    private readonly Lock _lock = new();
    private readonly AppendLog<LogLine> _lines = new();
    private readonly HashSet<string> _once = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (ulong Begin, int Printed)> _ratelimit = new(StringComparer.Ordinal);

    public int Count => _lines.Count;

    public IReadOnlyList<LogLine> Lines => _lines.Snapshot();

    public void Print(LogLevel level, string message) => _lines.Add(new LogLine(clock.NowNs, level, message));

    /// <summary>True if this call site has not fired yet (and marks it fired).</summary>
    public bool FirstTime(string callSite)
    {
        lock (_lock)
        {
            return _once.Add(callSite);
        }
    }

    /// <summary><c>WARN_ONCE</c>: prints on the first time <paramref name="callSite"/> fires.</summary>
    public void WarnOnce(string callSite, Func<string> message)
    {
        if (FirstTime(callSite))
        {
            Print(LogLevel.Warn, message());
        }
    }

    /// <summary>A <c>__ratelimit</c>-guarded message: 10 per 5 s per site.</summary>
    public void Ratelimited(string callSite, LogLevel level, Func<string> message)
    {
        bool print;
        lock (_lock)
        {
            var now = clock.NowNs;
            // Reset only once the interval has fully passed: time_is_before_jiffies(begin + interval).
            if (!_ratelimit.TryGetValue(callSite, out var state) || now - state.Begin > RatelimitIntervalNs)
            {
                state = (now, 0);
            }
            print = state.Printed < RatelimitBurst;
            if (print)
            {
                state.Printed++;
            }
            _ratelimit[callSite] = state;
        }
        if (print)
        {
            Print(level, message());
        }
    }
}
