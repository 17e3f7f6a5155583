namespace PhysDma.Tests;

/// <summary>
/// Measures what a hot path allocates once warm. A real per-call allocation shows in every window;
/// the runtime's own one-off allocations on this thread (a tier-up recompilation, a first-time lock
/// inflation) land in one window at most, so the smallest window is the path's own cost.
/// </summary>
internal static class SteadyState
{
    public static long AllocatedBytes(Action cycle, int warmup, int perWindow, int windows = 5)
    {
        for (var i = 0; i < warmup; i++)
        {
            cycle();
        }
        var least = long.MaxValue;
        for (var w = 0; w < windows; w++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < perWindow; i++)
            {
                cycle();
            }
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }
}
