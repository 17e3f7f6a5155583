namespace PhysDma.Core;

/// <summary>
/// The cache line size the per-CPU objects keep apart by (the kernel's <c>____cacheline_aligned</c> per-CPU
/// areas). Classes that two CPUs write use <c>[StructLayout(LayoutKind.Explicit)]</c> with their hot fields at
/// <see cref="Size"/> and a field at the end of the next line: the runtime orders an ordinary class's fields by
/// kind, so padding fields declared around the hot ones would not stay around them.
/// </summary>
internal static class CacheLine
{
    public const int Size = 64;
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
