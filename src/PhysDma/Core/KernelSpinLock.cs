using System.Runtime.CompilerServices;

namespace PhysDma.Core;

/// <summary>
/// A spinlock as the kernel's <c>spin_lock</c>, for per-CPU state and short critical sections: one atomic
/// exchange to take it and a plain store to drop it. Meant for locks that are almost always free (a
/// CPU's own cache, a page table between PTE writes), where it is cheaper than a general lock. Not
/// reentrant. Take it with <c>using (x.Enter()) { ... }</c>.
/// </summary>
public sealed class KernelSpinLock
{
#pragma warning disable IDE0044, IDE0051, CS0169 // padding: two CPUs' locks never share a cache line
    private CacheLinePad _before;
    private int _held;
    private CacheLinePad _after;
#pragma warning restore IDE0044, IDE0051, CS0169

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Scope Enter()
    {
        if (Interlocked.Exchange(ref _held, 1) != 0)
        {
            EnterContended();
        }
        return new Scope(this);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended()
    {
        var spin = new SpinWait();
        while (Volatile.Read(ref _held) != 0 || Interlocked.Exchange(ref _held, 1) != 0)
        {
            spin.SpinOnce();
        }
    }

    public readonly ref struct Scope(KernelSpinLock owner)
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Dispose() => Volatile.Write(ref owner._held, 0);
    }
}
