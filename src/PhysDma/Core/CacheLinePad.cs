namespace PhysDma.Core;

/// <summary>
/// 64 bytes of nothing. A per-CPU object puts one before and one after its hot fields, so two CPUs'
/// objects allocated side by side never share a cache line (the kernel's <c>____cacheline_aligned</c>
/// per-CPU areas).
/// </summary>
internal struct CacheLinePad
{
#pragma warning disable CS0169, IDE0051 // never read: the space is the point
    private long _a, _b, _c, _d, _e, _f, _g, _h;
#pragma warning restore CS0169, IDE0051
}

/// <summary>A counter each CPU adds to in its own cache line; reading it sums them (statistics, not synchronisation).</summary>
internal sealed class PerCpuCounter
{
    private const int Stride = 16; // longs: 128 bytes between CPUs
    private readonly long[] _slots;
    private readonly int _cpus;

    public PerCpuCounter(int cpus)
    {
        _cpus = Math.Max(1, cpus);
        _slots = new long[(_cpus + 1) * Stride];
    }

    public void Add(int cpu, long delta)
    {
        var i = ((uint)cpu < (uint)_cpus ? cpu : cpu % _cpus) + 1;
        Interlocked.Add(ref _slots[i * Stride], delta);
    }

    public long Value
    {
        get
        {
            long n = 0;
            for (var i = 1; i <= _cpus; i++)
            {
                n += Volatile.Read(ref _slots[i * Stride]);
            }
            return n;
        }
    }
}
