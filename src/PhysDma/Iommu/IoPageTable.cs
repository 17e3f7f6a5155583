using PhysDma.Core;

namespace PhysDma.Iommu;

/// <summary>A leaf the page-table walk found: the page's IOVA base, its size as a shift, where it points and its prot.</summary>
internal readonly record struct IoPte(ulong IovaBase, int SizeShift, PhysAddr PhysBase, int Prot)
{
    public ulong Size => 1UL << SizeShift;
}

/// <summary>
/// A multi-level IO page table in the style of the x86 and Arm formats (io-pgtable): tables of 8-byte
/// entries one granule in size, so each level resolves <c>granule_shift - 3</c> bits. Every level whose
/// page size is in the configured bitmap may hold leaves (2 MiB and 1 GiB blocks with a 4 KiB granule).
/// Table pages, once allocated, stay: the kernel frees them only when a whole table is unmapped, which
/// the DMA paths here never rely on, and keeping them makes steady-state map/unmap allocation-free.
/// Like the kernel's io-pgtable code it takes no lock: CPUs map and unmap disjoint IOVA ranges at the
/// same time, a missing table is installed with a compare-and-exchange (the loser uses the winner's),
/// and leaf entries are single 64-bit stores. Mapping the same range twice concurrently is a driver
/// bug the IOVA allocator never produces.
/// </summary>
internal sealed class IoPageTable
{
    private const ulong Valid = 1;
    private const ulong Leaf = 2;
    private const int ProtShift = 2;
    private const ulong ProtMask = 0x3fUL << ProtShift;

    private sealed class Table(int entries)
    {
        public readonly ulong[] Pte = new ulong[HeaderSlots + entries];

        // Pointers to next-level tables, made on first use: a last-level table never has any, and
        // a machine with a million mappings has thousands of those.
        private Table?[]? _next;

        public Table? Child(int idx) => Volatile.Read(ref _next) is { } n ? Volatile.Read(ref n[idx]) : null;

        /// <summary>Installs <paramref name="fresh"/> at <paramref name="idx"/> unless another CPU got there first; returns the table now there.</summary>
        public Table InstallChild(int idx, Table fresh)
        {
            var n = Volatile.Read(ref _next);
            if (n is null)
            {
                var made = new Table?[Pte.Length];
                n = Interlocked.CompareExchange(ref _next, made, null) ?? made;
            }
            return Interlocked.CompareExchange(ref n[idx], fresh, null) ?? fresh;
        }
    }

    private readonly Table _root;
    private readonly int _bitsPerLevel;
    private readonly ulong _leafSizes;

    /// <param name="granuleShift">log2 of the smallest page size.</param>
    /// <param name="apertureBits">IOVA bits the table resolves.</param>
    /// <param name="pageSizeBitmap">The supported page sizes (<c>pgsize_bitmap</c>); each must be a level's size.</param>
    public IoPageTable(int granuleShift, int apertureBits, ulong pageSizeBitmap)
    {
        GranuleShift = granuleShift;
        _bitsPerLevel = granuleShift - 3;
        Levels = (apertureBits - granuleShift + _bitsPerLevel - 1) / _bitsPerLevel;
        ApertureBits = apertureBits;
        _leafSizes = pageSizeBitmap;
        _root = new Table(1 << _bitsPerLevel);
        _tablePages = 1;
    }

    public int GranuleShift { get; }
    public int Levels { get; }
    public int ApertureBits { get; }

    private int _tablePages;

    /// <summary>Table pages allocated so far.</summary>
    public int TablePages => Volatile.Read(ref _tablePages);

    /// <summary>Leaf entries currently present, counted by a walk of every table.</summary>
    public long LeafCount => Census().Leaves;

    /// <summary>Bytes of IOVA space currently mapped, counted by a walk of every table.</summary>
    public ulong MappedBytes => Census().Bytes;

    /// <summary>
    /// Counts the leaves and the bytes they map by visiting every table: map and unmap keep no count of their own,
    /// as the kernel's io-pgtable code keeps none. Counts kept on every map and unmap cost two atomic adds on each:
    /// four of the nine locked instructions a lazy map and unmap of one page took, for figures that only tests
    /// read. Exact once mapping stops; while other CPUs map, a snapshot taken table by table.
    /// </summary>
    private (long Leaves, ulong Bytes) Census()
    {
        long leaves = 0;
        ulong bytes = 0;
        var pending = new Stack<(Table Table, int Level)>();
        pending.Push((_root, 0));
        while (pending.Count > 0)
        {
            var (t, level) = pending.Pop();
            for (var slot = HeaderSlots; slot < t.Pte.Length; slot++)
            {
                var pte = Volatile.Read(ref t.Pte[slot]);
                if ((pte & Leaf) != 0)
                {
                    leaves++;
                    bytes += 1UL << LevelShift(level);
                }
                else if (level < Levels - 1 && t.Child(slot) is { } sub)
                {
                    pending.Push((sub, level + 1));
                }
            }
        }
        return (leaves, bytes);
    }

    /// <summary>Whether <paramref name="shift"/> is the page size of some level of this format.</summary>
    public static bool IsLevelSize(int granuleShift, int shift) =>
        shift >= granuleShift && (shift - granuleShift) % (granuleShift - 3) == 0;

    private int LevelShift(int level) => GranuleShift + (_bitsPerLevel * (Levels - 1 - level));

    // Slots left empty at the start of a table's array: the line that holds the array's length, which every
    // bounds check on every CPU reads, never holds an entry another CPU writes.
    private const int HeaderSlots = 8;

    /// <summary>
    /// The slot in a table's arrays that holds the entry <paramref name="iova"/> selects at <paramref name="level"/>:
    /// the hardware index, after <see cref="HeaderSlots"/>. Entries keep the hardware's order, eight to a 64-byte
    /// line, so a mapping of several pages writes as few lines as the kernel's does. (A rotated order that put
    /// neighbouring entries a line apart was tried: it did not help two CPUs at 4 KiB, and a 32 KiB mapping then
    /// wrote eight lines instead of one, which cost two CPUs on one device up to a third of their throughput.)
    /// </summary>
    private int Index(ulong iova, int level) =>
        HeaderSlots + (int)((uint)(iova >> LevelShift(level)) & ((1u << _bitsPerLevel) - 1));

    /// <summary>
    /// Installs one leaf of size <c>1 &lt;&lt; shift</c>. False when something is already mapped there
    /// (the formats refuse to overwrite a live entry).
    /// </summary>
    public bool MapOne(ulong iova, PhysAddr phys, int shift, int prot)
    {
        var t = _root;
        for (var level = 0; ; level++)
        {
            var idx = Index(iova, level);
            if (LevelShift(level) == shift)
            {
                var leaf = phys.Value | (((ulong)prot << ProtShift) & ProtMask) | Leaf | Valid;
                if (level == Levels - 1)
                {
                    // A last-level entry is a leaf or empty: one compare-exchange against empty both checks
                    // and installs, taking the line once instead of reading it and then writing it.
                    if (Interlocked.CompareExchange(ref t.Pte[idx], leaf, 0) != 0)
                    {
                        return false;
                    }
                }
                else
                {
                    // A live leaf, or a table that still maps something, is in the way.
                    var cur = t.Pte[idx];
                    if ((cur & Leaf) != 0 || (t.Child(idx) is { } sub && HasAny(sub)) ||
                        Interlocked.CompareExchange(ref t.Pte[idx], leaf, cur) != cur)
                    {
                        return false;
                    }
                }
                return true;
            }
            if ((t.Pte[idx] & Leaf) != 0)
            {
                return false;
            }
            var next = t.Child(idx);
            if (next is null)
            {
                var fresh = new Table(1 << _bitsPerLevel);
                next = t.InstallChild(idx, fresh);
                if (next == fresh)
                {
                    Interlocked.CompareExchange(ref t.Pte[idx], Valid, 0);
                    Interlocked.Increment(ref _tablePages);
                }
            }
            t = next;
        }
    }

    private static bool HasAny(Table t)
    {
        foreach (var p in t.Pte)
        {
            if (p != 0)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The leaf mapping <paramref name="iova"/>, if any (<c>iova_to_phys</c> without the offset).</summary>
    public bool Walk(ulong iova, out IoPte leaf)
    {
        if (ApertureBits < 64 && iova >> ApertureBits != 0)
        {
            leaf = default;
            return false;
        }
        var t = _root;
        for (var level = 0; level < Levels; level++)
        {
            var idx = Index(iova, level);
            var pte = t.Pte[idx];
            if ((pte & Valid) == 0)
            {
                break;
            }
            if ((pte & Leaf) != 0)
            {
                var shift = LevelShift(level);
                var mask = (1UL << shift) - 1;
                leaf = new IoPte(iova & ~mask, shift, new PhysAddr(pte & ~((1UL << GranuleShift) - 1)), (int)((pte & ProtMask) >> ProtShift));
                return true;
            }
            t = t.Child(idx)!;
        }
        leaf = default;
        return false;
    }

    /// <summary>Clears the leaf covering <paramref name="iova"/>; returns its size, or 0 if nothing was mapped.</summary>
    public ulong UnmapOne(ulong iova)
    {
        var t = _root;
        for (var level = 0; level < Levels; level++)
        {
            var idx = Index(iova, level);
            var pte = t.Pte[idx];
            if ((pte & Valid) == 0)
            {
                return 0;
            }
            if ((pte & Leaf) != 0)
            {
                t.Pte[idx] = t.Child(idx) is null ? 0 : Valid;
                return 1UL << LevelShift(level);
            }
            t = t.Child(idx)!;
        }
        return 0;
    }

    /// <summary><c>iommu_pgsize</c>: the largest supported page that fits alignment of both addresses and the remaining size.</summary>
    public int PickPageShift(ulong iova, PhysAddr phys, ulong size)
    {
        var best = GranuleShift;
        var sizes = _leafSizes;
        while (sizes != 0)
        {
            var shift = System.Numerics.BitOperations.TrailingZeroCount(sizes);
            sizes &= sizes - 1;
            var s = 1UL << shift;
            if (s <= size && ((iova | phys.Value) & (s - 1)) == 0 && shift > best)
            {
                best = shift;
            }
        }
        return best;
    }
}
