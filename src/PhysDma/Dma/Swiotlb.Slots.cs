using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

// The slot allocator alone, without the bounce copy: what the allocator benchmarks and the concurrency
// stress tests drive (swiotlb_find_slots and swiotlb_release_slots, nothing else).
internal sealed partial class Swiotlb
{
    /// <summary>
    /// <c>swiotlb_find_slots</c> for <paramref name="size"/> bytes of <paramref name="orig"/> in the device's
    /// allocator, bookkeeping as <see cref="TblMapSingle"/> leaves it but no copy. Returns the slot address or
    /// <see cref="PhysAddr.Invalid"/>.
    /// </summary>
    internal PhysAddr FindSlotsOnly(Device dev, PhysAddr orig, ulong size)
    {
        if (Mem(dev) is not { NSlabs: > 0 } mem)
        {
            return PhysAddr.Invalid;
        }
        var index = FindSlots(dev, mem, orig.Value, size, 0, out var pool);
        if (index < 0 || pool is null)
        {
            return PhysAddr.Invalid;
        }
        pool.Slots[index].OrigAddr = orig.Value;
        return pool.SlotAddr(index);
    }

    /// <summary><c>swiotlb_release_slots</c> of an address <see cref="FindSlotsOnly"/> returned.</summary>
    internal void ReleaseSlotsOnly(Device dev, PhysAddr tlb)
    {
        if (FindPool(dev, tlb) is { } pool)
        {
            ReleaseSlots(dev, Mem(dev)!, tlb, pool);
        }
    }
}
