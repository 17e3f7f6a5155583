using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// CPU loads and stores by kernel virtual address: cacheable mappings go through the cache model,
/// uncached ones (ioremap) straight to memory. Which modelled CPU runs the caller is a thread binding
/// (<see cref="Machine.OnCpu"/>); the data cache is shared, as a coherent CPU cluster's is.
/// </summary>
internal sealed class Cpu : IMemoryAccess<KernelVirt>
{
    private readonly Machine _m;

    /// <summary>The CPU of <paramref name="m"/>: its kernel mappings, cache and memory must exist already.</summary>
    internal Cpu(Machine m) => _m = m;

    public void Read(KernelVirt va, Span<byte> dest)
    {
        foreach (var (a, at, n) in Chunks.Split(va.Value, dest.Length, _m.PageSize))
        {
            var (p, cached) = _m.Kmap.Translate(new KernelVirt(a));
            Target(cached).Read(p, dest.Slice(at, n));
        }
    }

    public void Write(KernelVirt va, ReadOnlySpan<byte> src)
    {
        foreach (var (a, at, n) in Chunks.Split(va.Value, src.Length, _m.PageSize))
        {
            var (p, cached) = _m.Kmap.Translate(new KernelVirt(a));
            Target(cached).Write(p, src.Slice(at, n));
        }
    }

    /// <summary>Where a CPU access goes: the cache for a cacheable mapping, memory itself for an uncached one (ioremap).</summary>
    private IMemoryAccess<PhysAddr> Target(bool cached) => cached ? _m.Cache : _m.Memory;

    /// <summary><c>memcpy</c> between two kernel virtual addresses, through the cache as the CPU does it.</summary>
    public void Memcpy(KernelVirt dst, KernelVirt src, ulong len) => MemoryAccess.Copy(this, dst, src, len);

    /// <summary><c>memset</c> through the cache.</summary>
    public void Memset(KernelVirt dst, byte value, ulong len) => MemoryAccess.Fill(this, dst, value, len);
}
