using PhysDma.Platform;

namespace PhysDma.Tests.Platform;

public sealed class ClockAndLogTests
{
    [Fact]
    public void Timers_fire_in_due_order_ties_in_arm_order_at_their_due_time()
    {
        var clock = new Clock();
        var fired = new List<(string, ulong)>();
        clock.Schedule(300, () => fired.Add(("c", clock.NowNs)));
        clock.Schedule(100, () => fired.Add(("a", clock.NowNs)));
        clock.Schedule(300, () => fired.Add(("d", clock.NowNs)));
        clock.Schedule(200, () => fired.Add(("b", clock.NowNs)));
        clock.Schedule(1000, () => fired.Add(("late", clock.NowNs)));

        clock.Advance(300);

        Assert.Equal([("a", 100UL), ("b", 200UL), ("c", 300UL), ("d", 300UL)], fired);
        Assert.Equal(300UL, clock.NowNs);
        Assert.Equal(1, clock.PendingTimers);
    }

    [Fact]
    public void Timer_armed_by_a_timer_fires_in_the_same_advance_if_due()
    {
        var clock = new Clock();
        var fired = new List<ulong>();
        clock.Schedule(10, () =>
        {
            fired.Add(clock.NowNs);
            clock.Schedule(10, () => fired.Add(clock.NowNs));
            clock.Schedule(100, () => fired.Add(clock.NowNs));
        });
        clock.Advance(50);
        Assert.Equal([10UL, 20UL], fired);
        Assert.Equal(50UL, clock.NowNs);
        clock.Advance(60);
        Assert.Equal([10UL, 20UL, 110UL], fired);
        Assert.Equal(110UL / 1_000_000, clock.NowMs);
    }

    [Fact]
    public void Warn_once_prints_once_per_call_site_and_builds_the_message_once()
    {
        var log = new KernelLog(new Clock());
        var built = 0;
        for (var i = 0; i < 3; i++)
        {
            log.WarnOnce("site-a", () => $"a{++built}");
        }
        log.WarnOnce("site-b", () => "b");
        Assert.Equal(["a1", "b"], log.Lines.Select(l => l.Message));
        Assert.Equal(1, built);
        Assert.All(log.Lines, l => Assert.Equal(LogLevel.Warn, l.Level));
        Assert.False(log.FirstTime("site-a"));
    }

    [Fact]
    public void Ratelimited_burst_of_ten_per_five_seconds_per_site()
    {
        var clock = new Clock();
        var log = new KernelLog(clock);
        for (var i = 0; i < 15; i++)
        {
            log.Ratelimited("s", LogLevel.Warn, () => "x");
        }
        log.Ratelimited("other", LogLevel.Err, () => "y");
        Assert.Equal(11, log.Count);

        // __ratelimit resets only once the interval has fully passed (time_is_before_jiffies(begin + interval)).
        clock.Advance(5_000_000_000);
        log.Ratelimited("s", LogLevel.Warn, () => "x");
        Assert.Equal(11, log.Count);

        clock.Advance(1);
        for (var i = 0; i < 12; i++)
        {
            log.Ratelimited("s", LogLevel.Warn, () => "x");
        }
        Assert.Equal(21, log.Count);
        Assert.Equal(5_000_000_001UL, log.Lines[^1].TimeNs);
    }
}
