using System.Globalization;
using System.Numerics;

namespace PhysDma.Core;

/// <summary>A CPU physical address (the kernel's <c>phys_addr_t</c>).</summary>
public readonly record struct PhysAddr(ulong Value) : IAddress<PhysAddr>
{
    /// <summary>The kernel's <c>INVALID_PHYS_ADDR</c> / <c>(phys_addr_t)-1</c>.</summary>
    public static readonly PhysAddr Invalid = new(ulong.MaxValue);

    /// <summary>Whether this is <see cref="Invalid"/>.</summary>
    public bool IsInvalid => Value == ulong.MaxValue;
    internal Pfn Pfn(int pageShift) => new(Value >> pageShift);
    /// <summary>The offset inside its page (<c>offset_in_page</c>) for pages of <paramref name="pageSize"/> bytes.</summary>
    public ulong OffsetInPage(ulong pageSize) => Value & (pageSize - 1);

    static PhysAddr IAddress<PhysAddr>.At(ulong value) => new(value);
    /// <summary>The address <paramref name="b"/> bytes further on.</summary>
    public static PhysAddr operator +(PhysAddr a, ulong b) => new(a.Value + b);

    /// <summary>Orders addresses by value.</summary>
    public int CompareTo(PhysAddr other) => Value.CompareTo(other.Value);

    /// <summary>The address in hex, as the kernel prints it (<c>0x1000</c>).</summary>
    public override string ToString() => Hex.Format(Value);
}

/// <summary>An address as a device puts it on the bus (the kernel's <c>dma_addr_t</c>).</summary>
public readonly record struct DmaAddr(ulong Value) : IAddress<DmaAddr>
{
    /// <summary>The kernel's <c>DMA_MAPPING_ERROR</c>: all ones.</summary>
    public static readonly DmaAddr MappingError = new(ulong.MaxValue);

    /// <summary>Whether this is <see cref="MappingError"/> (what <c>dma_mapping_error</c> tests).</summary>
    public bool IsError => Value == ulong.MaxValue;

    static DmaAddr IAddress<DmaAddr>.At(ulong value) => new(value);
    /// <summary>The address <paramref name="b"/> bytes further on.</summary>
    public static DmaAddr operator +(DmaAddr a, ulong b) => new(a.Value + b);

    /// <summary>Orders addresses by value.</summary>
    public int CompareTo(DmaAddr other) => Value.CompareTo(other.Value);

    /// <summary>The address in hex, as the kernel prints it (<c>0x1000</c>).</summary>
    public override string ToString() => Hex.Format(Value);
}

/// <summary>An address type: a 64-bit value with byte offsets and an order.</summary>
internal interface IAddress<TSelf> : IComparable<TSelf>, IAdditionOperators<TSelf, ulong, TSelf>
    where TSelf : struct, IAddress<TSelf>
{
    ulong Value { get; }

    static abstract TSelf At(ulong value);
}

/// <summary>The arithmetic and comparisons every address type shares, written once.</summary>
internal static class AddressOperators
{
    extension<T>(T) where T : struct, IAddress<T>
    {
        public static T operator -(T a, ulong b) => T.At(a.Value - b);
        public static ulong operator -(T a, T b) => a.Value - b.Value;
        public static bool operator <(T a, T b) => a.Value < b.Value;
        public static bool operator >(T a, T b) => a.Value > b.Value;
        public static bool operator <=(T a, T b) => a.Value <= b.Value;
        public static bool operator >=(T a, T b) => a.Value >= b.Value;
    }
}

/// <summary>A page frame number.</summary>
internal readonly record struct Pfn(ulong Value) : IComparable<Pfn>
{
    public PhysAddr ToPhys(int pageShift) => new(Value << pageShift);
    public int CompareTo(Pfn other) => Value.CompareTo(other.Value);
    public override string ToString() => Hex.Format(Value);
}

/// <summary>An I/O virtual address inside an IOMMU domain.</summary>
internal readonly record struct Iova(ulong Value) : IComparable<Iova>
{
    public int CompareTo(Iova other) => Value.CompareTo(other.Value);
    public override string ToString() => Hex.Format(Value);
}

/// <summary>A kernel virtual address (linear map, kmap slot, vmalloc or stack area).</summary>
internal readonly record struct KernelVirt(ulong Value) : IAdditionOperators<KernelVirt, ulong, KernelVirt>
{
    public static KernelVirt operator +(KernelVirt a, ulong b) => new(a.Value + b);
    public override string ToString() => Hex.Format(Value);
}

/// <summary>Hex formatting shared by results, messages and traces.</summary>
internal static class Hex
{
    /// <summary>Lowercase hex with <c>0x</c> and no padding, as results require.</summary>
    public static string Format(ulong value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    /// <summary>Hex without prefix, as the kernel's <c>%llx</c> prints it.</summary>
    public static string Llx(ulong value) => value.ToString("x", CultureInfo.InvariantCulture);

    /// <summary><c>0x%016llx</c>.</summary>
    public static string Padded16(ulong value) => "0x" + value.ToString("x16", CultureInfo.InvariantCulture);
}
