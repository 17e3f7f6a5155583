namespace PhysDma.Platform;

/// <summary>
/// Modelled time. Nothing reads the wall clock: time moves only when a scenario says <c>tick</c>, and
/// timers (flush-queue timeouts, deferred work) fire in due-time order, ties in the order they were armed.
/// </summary>
internal sealed class Clock
{
    private readonly Lock _lock = new();
    private readonly List<(ulong Due, long Seq, Action Fire)> _timers = [];
    private long _seq;

    public ulong NowNs { get; private set; }
    public ulong NowMs => NowNs / 1_000_000;

    /// <summary>Arms a one-shot timer <paramref name="delayNs"/> from now.</summary>
    public void Schedule(ulong delayNs, Action fire)
    {
        lock (_lock)
        {
            _timers.Add((NowNs + delayNs, _seq++, fire));
        }
    }

    public int PendingTimers
    {
        get
        {
            lock (_lock)
            {
                return _timers.Count;
            }
        }
    }

    /// <summary>Moves time forward, firing every timer that falls due on the way (timers may arm new ones).</summary>
    public void Advance(ulong ns)
    {
        var target = NowNs + ns;
        while (true)
        {
            (ulong Due, long Seq, Action Fire) next;
            lock (_lock)
            {
                var idx = -1;
                for (var i = 0; i < _timers.Count; i++)
                {
                    var t = _timers[i];
                    if (t.Due <= target && (idx < 0 || t.Due < _timers[idx].Due || (t.Due == _timers[idx].Due && t.Seq < _timers[idx].Seq)))
                    {
                        idx = i;
                    }
                }
                if (idx < 0)
                {
                    NowNs = target;
                    return;
                }
                next = _timers[idx];
                _timers.RemoveAt(idx);
                NowNs = Math.Max(NowNs, next.Due);
            }
            next.Fire();
        }
    }
}
