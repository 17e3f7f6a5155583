namespace PhysDma.Platform;

/// <summary>
/// What the model counts on every call, whether or not anyone looks: reads of struct page and the kernel
/// mapping calls. One increment each (DESIGN: the only modelling cost paid when everything is off).
/// </summary>
internal sealed class ModelCounters
{
    private long _pageReads;
    private long _physToPage;
    private long _pfnValid;
    private long _physToVirt;
    private long _kmapLocal;

    /// <summary>Reads of a <c>struct page</c> (flags, zone, pgmap).</summary>
    public long PageReads => Volatile.Read(ref _pageReads);

    /// <summary><c>phys_to_page</c>/<c>pfn_to_page</c> computations.</summary>
    public long PhysToPage => Volatile.Read(ref _physToPage);

    public long PfnValid => Volatile.Read(ref _pfnValid);
    public long PhysToVirt => Volatile.Read(ref _physToVirt);
    public long KmapLocal => Volatile.Read(ref _kmapLocal);

    /// <summary><c>phys_to_virt</c> plus <c>kmap_local_pfn</c>: the result's <c>kernel_mappings</c>.</summary>
    public long KernelMappings => PhysToVirt + KmapLocal;

    internal void CountPageRead() => Interlocked.Increment(ref _pageReads);
    internal void CountPhysToPage() => Interlocked.Increment(ref _physToPage);
    internal void CountPfnValid() => Interlocked.Increment(ref _pfnValid);
    internal void CountPhysToVirt() => Interlocked.Increment(ref _physToVirt);
    internal void CountKmapLocal() => Interlocked.Increment(ref _kmapLocal);

    public CounterSnapshot Snapshot() => new(PageReads, PhysToPage, PfnValid, PhysToVirt, KmapLocal);
}

internal readonly record struct CounterSnapshot(long PageReads, long PhysToPage, long PfnValid, long PhysToVirt, long KmapLocal)
{
    public long KernelMappings => PhysToVirt + KmapLocal;

    public static CounterSnapshot operator -(CounterSnapshot a, CounterSnapshot b) =>
        new(a.PageReads - b.PageReads, a.PhysToPage - b.PhysToPage, a.PfnValid - b.PfnValid,
            a.PhysToVirt - b.PhysToVirt, a.KmapLocal - b.KmapLocal);
}
