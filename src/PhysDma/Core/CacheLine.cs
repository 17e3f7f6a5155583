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
