using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace PhysDma.Core;

/// <summary>
/// A spinlock as the kernel's <c>spin_lock</c>, for per-CPU state and short critical sections: one atomic
/// exchange to take it and a plain store to drop it. Meant for locks that are almost always free (a
/// CPU's own cache, a page table between PTE writes), where it is cheaper than a general lock. Not
/// reentrant. Take it with <c>using (x.Enter()) { ... }</c>.
/// </summary>
[StructLayout(LayoutKind.Explicit)]
internal sealed class KernelSpinLock
{
    // The word sits a cache line into the object with a cache line after it, so two CPUs' locks (or a lock and
    // whatever the allocator put next to it) never share a line. Explicit offsets, because the runtime reorders
    // the fields of an ordinary class and padding fields would not stay around the word.
    [FieldOffset(CacheLine.Size)]
    private KernelSpinLockWord _word;

#pragma warning disable IDE0044, IDE0051, CS0169 // the cache line after the word
    [FieldOffset((2 * CacheLine.Size) - 4)]
    private int _tail;
#pragma warning restore IDE0044, IDE0051, CS0169

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public KernelSpinLockWord.Scope Enter() => _word.Enter();

    /// <summary>Takes the lock without a scope, for a lock dropped elsewhere (see <see cref="KernelSpinLockWord.Take"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Take() => _word.Take();

    /// <summary>Drops a lock taken with <see cref="Take"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release() => _word.Release();
}

/// <summary>
/// The spinlock word itself, embedded in the object it guards (the
/// kernel's <c>spinlock_t</c> inside a per-CPU struct): taking it costs no extra pointer load. Take it with
/// <c>using (obj.Lock.Enter()) { ... }</c> on a field, never on a copy. <see cref="KernelSpinLock"/> is the same
/// word alone in a padded object.
/// </summary>
internal struct KernelSpinLockWord
{
    private int _held;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    [System.Diagnostics.CodeAnalysis.UnscopedRef]
    public Scope Enter()
    {
        Take();
        return new Scope(ref _held);
    }

    /// <summary>
    /// Takes the lock without a scope, for a critical section that cannot throw (no allocation, no call that
    /// can fail): the caller pairs it with <see cref="Release"/> on every path, as kernel code pairs
    /// <c>spin_lock</c> with <c>spin_unlock</c>. Saves the try/finally a scope costs on the hottest paths.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Take()
    {
        if (Interlocked.Exchange(ref _held, 1) != 0)
        {
            EnterContended(ref _held);
        }
    }

    /// <summary>Drops a lock taken with <see cref="Take"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release() => Volatile.Write(ref _held, 0);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void EnterContended(ref int held)
    {
        var spin = new SpinWait();
        while (Volatile.Read(ref held) != 0 || Interlocked.Exchange(ref held, 1) != 0)
        {
            spin.SpinOnce();
        }
    }

    public readonly ref struct Scope
    {
        private readonly ref int _held;

        internal Scope(ref int held) => _held = ref held;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Dispose() => Volatile.Write(ref _held, 0);
    }
}
