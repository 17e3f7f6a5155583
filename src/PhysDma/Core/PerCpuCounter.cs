namespace PhysDma.Core;

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
