namespace PhysDma.Iommu;

/// <summary>
/// The set of IOVA ranges [lo, hi] (in pfns), as the kernel's rbtree of <c>struct iova</c>: nodes keep
/// their identity for as long as they live (the IOVA domain caches node numbers as the kernel caches
/// node pointers), have parent links so <see cref="Prev"/> and <see cref="Next"/> step in order as
/// <c>rb_prev</c>/<c>rb_next</c> do, and may be stretched downwards in place (<c>reserve_iova</c>).
/// A treap (a search tree kept balanced by random priorities, so inserting and removing at the same
/// place costs expected O(1) rotations, as the kernel's red-black tree does) in one array of nodes (no
/// allocation once grown), augmented with, per node, the free gap
/// just below it and the largest such gap in its subtree, so "highest free aligned block below a limit"
/// is also found in O(log n) when walking node by node would take long. Not thread-safe: the IOVA
/// domain's lock guards it.
/// </summary>
internal sealed class IovaTree
{
    public const ulong NotFound = ulong.MaxValue;

    private struct Node
    {
        public ulong Lo;
        public ulong Hi;
        public ulong GapLo;   // first free pfn below this node: predecessor's hi + 1, or 0
        public ulong MaxGap;  // largest (Lo - GapLo) in the subtree
        public int Left;
        public int Right;
        public int Parent;
        public uint Flags;    // bit 0: reserved; bits 1-31: treap priority (a parent's is never below its children's)

        public readonly uint Prio => Flags >> 1;

        public readonly bool Reserved => (Flags & 1) != 0;
    }

    private Node[] _n;
    private int _root = -1;
    private int _free = -1;
    private int _used;
    private uint _seed = 0x9e3779b9;

    public IovaTree(int capacity = 64)
    {
        _n = new Node[capacity];
    }

    public int Count { get; private set; }

    /// <summary>Pages in allocated (not reserved) nodes.</summary>
    public ulong AllocatedPages { get; private set; }

    public ulong ReservedPages { get; private set; }

    public ulong Lo(int n) => _n[n].Lo;

    public ulong Hi(int n) => _n[n].Hi;

    public bool IsReserved(int n) => _n[n].Reserved;

    /// <summary>Whether node <paramref name="n"/> holds <paramref name="pfn"/>.</summary>
    public bool Contains(int n, ulong pfn) => pfn >= _n[n].Lo && pfn <= _n[n].Hi;

    private int NewNode(ulong lo, ulong hi, bool reserved)
    {
        int x;
        if (_free >= 0)
        {
            x = _free;
            _free = _n[x].Left;
        }
        else
        {
            if (_used == _n.Length)
            {
                Array.Resize(ref _n, _n.Length * 2);
            }
            x = _used++;
        }
        ref var node = ref _n[x];
        node.Lo = lo;
        node.Hi = hi;
        node.Left = -1;
        node.Right = -1;
        node.Parent = -1;
        // xorshift32: a fixed sequence, so the shape (and the speed) of a run is repeatable.
        var r = _seed;
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        _seed = r;
        node.Flags = (r << 1) | (reserved ? 1u : 0u);
        return x;
    }

    private void Account(ulong pages, bool reserved, bool add)
    {
        if (reserved)
        {
            ReservedPages = add ? ReservedPages + pages : ReservedPages - pages;
        }
        else
        {
            AllocatedPages = add ? AllocatedPages + pages : AllocatedPages - pages;
        }
    }

    private ulong MaxGapOf(int n) => n < 0 ? 0 : _n[n].MaxGap;

    private void Update(int n)
    {
        ref var x = ref _n[n];
        var g = OwnGap(ref x);
        var lg = MaxGapOf(x.Left);
        var rg = MaxGapOf(x.Right);
        if (lg > g)
        {
            g = lg;
        }
        x.MaxGap = rg > g ? rg : g;
    }

    /// <summary>
    /// The gap below a node as the subtree maxima count it. The last node (the domain's anchor at pfn ~0)
    /// counts as unbounded: the space below it reaches the top of the address space, far beyond any
    /// limit, so its exact size never prunes a search, and keeping it exact would make every allocation
    /// next to it rewrite the maxima all the way up to the root.
    /// </summary>
    private static ulong OwnGap(ref Node x) => x.Hi == ulong.MaxValue ? ulong.MaxValue : x.Lo - x.GapLo;

    /// <summary>Makes <paramref name="child"/> take <paramref name="old"/>'s place under <paramref name="parent"/>.</summary>
    private void ReplaceChild(int parent, int old, int child)
    {
        if (parent < 0)
        {
            _root = child;
        }
        else if (_n[parent].Left == old)
        {
            _n[parent].Left = child;
        }
        else
        {
            _n[parent].Right = child;
        }
        if (child >= 0)
        {
            _n[child].Parent = parent;
        }
    }

    private int RotateRight(int n)
    {
        var l = _n[n].Left;
        var p = _n[n].Parent;
        var lr = _n[l].Right;
        _n[n].Left = lr;
        if (lr >= 0)
        {
            _n[lr].Parent = n;
        }
        _n[l].Right = n;
        _n[n].Parent = l;
        ReplaceChild(p, n, l);
        Update(n);
        Update(l);
        return l;
    }

    private int RotateLeft(int n)
    {
        var r = _n[n].Right;
        var p = _n[n].Parent;
        var rl = _n[r].Left;
        _n[n].Right = rl;
        if (rl >= 0)
        {
            _n[rl].Parent = n;
        }
        _n[r].Left = n;
        _n[n].Parent = r;
        ReplaceChild(p, n, r);
        Update(n);
        Update(r);
        return r;
    }

    /// <summary>
    /// Recomputes the subtree maxima from <paramref name="n"/> up to the first node whose value did not
    /// change (nothing above it can change then). Each node's stored value must be the one its parent
    /// last saw, so a climb starts at the parent of a node that was added, moved or removed.
    /// </summary>
    private void RefreshGap(int n)
    {
        while (n >= 0)
        {
            var old = _n[n].MaxGap;
            Update(n);
            if (_n[n].MaxGap == old)
            {
                return;
            }
            n = _n[n].Parent;
        }
    }

    /// <summary>The node holding <paramref name="pfn"/>, or -1 (<c>private_find_iova</c>).</summary>
    public int FindContaining(ulong pfn)
    {
        var n = _root;
        var nodes = _n;
        while (n >= 0)
        {
            ref var x = ref nodes[n];
            if (pfn < x.Lo)
            {
                n = x.Left;
            }
            else if (pfn > x.Hi)
            {
                n = x.Right;
            }
            else
            {
                return n;
            }
        }
        return -1;
    }

    /// <summary>The lowest node whose hi is at least <paramref name="pfn"/>, or -1.</summary>
    public int FirstEndingAtOrAbove(ulong pfn)
    {
        var n = _root;
        var best = -1;
        while (n >= 0)
        {
            if (_n[n].Hi >= pfn)
            {
                best = n;
                n = _n[n].Left;
            }
            else
            {
                n = _n[n].Right;
            }
        }
        return best;
    }

    /// <summary>The node before <paramref name="n"/> in address order, or -1 (<c>rb_prev</c>).</summary>
    public int Prev(int n)
    {
        var nodes = _n;
        var l = nodes[n].Left;
        if (l >= 0)
        {
            while (nodes[l].Right >= 0)
            {
                l = nodes[l].Right;
            }
            return l;
        }
        var p = nodes[n].Parent;
        while (p >= 0 && nodes[p].Left == n)
        {
            n = p;
            p = nodes[p].Parent;
        }
        return p;
    }

    /// <summary>The node after <paramref name="n"/> in address order, or -1 (<c>rb_next</c>).</summary>
    public int Next(int n)
    {
        var nodes = _n;
        var r = nodes[n].Right;
        if (r >= 0)
        {
            while (nodes[r].Left >= 0)
            {
                r = nodes[r].Left;
            }
            return r;
        }
        var p = nodes[n].Parent;
        while (p >= 0 && nodes[p].Right == n)
        {
            n = p;
            p = nodes[p].Parent;
        }
        return p;
    }

    /// <summary>Inserts [lo, hi], which overlaps nothing; returns its node.</summary>
    public int Insert(ulong lo, ulong hi, bool reserved = false)
    {
        // The successor: the lowest node above lo.
        var n = _root;
        var succ = -1;
        while (n >= 0)
        {
            if (_n[n].Lo > lo)
            {
                succ = n;
                n = _n[n].Left;
            }
            else
            {
                n = _n[n].Right;
            }
        }
        return InsertBefore(succ, lo, hi, reserved);
    }

    /// <summary>
    /// Inserts [lo, hi] just before <paramref name="succ"/> in address order (-1: after every node); the
    /// caller guarantees it fits between <paramref name="succ"/> and its predecessor. This is the kernel's
    /// insertion from the node the allocation walk stopped at.
    /// </summary>
    public int InsertBefore(int succ, ulong lo, ulong hi, bool reserved = false)
    {
        var x = NewNode(lo, hi, reserved);
        int pred;
        if (succ < 0)
        {
            pred = _root < 0 ? -1 : Rightmost(_root);
            if (pred < 0)
            {
                _root = x;
            }
            else
            {
                _n[pred].Right = x;
                _n[x].Parent = pred;
            }
        }
        else if (_n[succ].Left < 0)
        {
            pred = Prev(succ);
            _n[succ].Left = x;
            _n[x].Parent = succ;
        }
        else
        {
            pred = Rightmost(_n[succ].Left);
            _n[pred].Right = x;
            _n[x].Parent = pred;
        }
        _n[x].GapLo = pred >= 0 ? _n[pred].Hi + 1 : 0;
        _n[x].MaxGap = OwnGap(ref _n[x]);
        if (succ >= 0)
        {
            // The successor's gap now ends at the new node.
            _n[succ].GapLo = hi + 1;
        }
        // Up while the new node's priority beats its parent's (expected fewer than two rotations).
        while (_n[x].Parent is var p && p >= 0 && _n[p].Prio < _n[x].Prio)
        {
            if (_n[p].Left == x)
            {
                RotateRight(p);
            }
            else
            {
                RotateLeft(p);
            }
        }
        RefreshGap(_n[x].Parent);
        RefreshGap(succ);
        Count++;
        Account(hi - lo + 1, reserved, add: true);
        return x;
    }

    private int Rightmost(int n)
    {
        while (_n[n].Right >= 0)
        {
            n = _n[n].Right;
        }
        return n;
    }

    /// <summary>Removes node <paramref name="x"/>; every other node keeps its number.</summary>
    public void Remove(int x)
    {
        Account(_n[x].Hi - _n[x].Lo + 1, _n[x].Reserved, add: false);
        var s = Next(x);
        // With a right subtree the successor is in it (below x); without one it is an ancestor.
        var sBelow = _n[x].Right >= 0;
        if (s >= 0)
        {
            // The successor's gap now reaches down to where the removed node's did.
            _n[s].GapLo = _n[x].GapLo;
        }
        var p0 = _n[x].Parent;
        // Down, swapping with the child of higher priority, until at most one child is left.
        while (_n[x].Left >= 0 && _n[x].Right >= 0)
        {
            if (_n[_n[x].Left].Prio > _n[_n[x].Right].Prio)
            {
                RotateRight(x);
            }
            else
            {
                RotateLeft(x);
            }
        }
        var p = _n[x].Parent;
        var c = _n[x].Left >= 0 ? _n[x].Left : _n[x].Right;
        ReplaceChild(p, x, c);
        // Everything that moved or changed is below x's old parent, whose value is still what its own
        // parent saw: recompute up to it, then climb on only while values change.
        UpdateUpTo(p, p0);
        if (sBelow)
        {
            UpdateUpTo(s, p0);
        }
        RefreshGap(p0);
        if (!sBelow && s >= 0)
        {
            RefreshGap(s);
        }
        _n[x].Left = _free;
        _free = x;
        Count--;
    }

    private void UpdateUpTo(int n, int stop)
    {
        while (n != stop)
        {
            Update(n);
            n = _n[n].Parent;
        }
    }

    /// <summary>
    /// Moves node <paramref name="n"/>'s start down to <paramref name="lo"/>, which must not reach its
    /// predecessor (<c>__adjust_overlap_range</c> stretching a node over a reservation).
    /// </summary>
    public void StretchDown(int n, ulong lo)
    {
        Account(_n[n].Lo - lo, _n[n].Reserved, add: true);
        _n[n].Lo = lo;
        RefreshGap(n);
    }

    /// <summary>
    /// The highest pfn p with p aligned to <c>~alignMask</c>, low ≤ p, p + size ≤ high and [p, p+size)
    /// free; <see cref="NotFound"/> if none. This is what the kernel's backwards walk from a starting
    /// node finds, without visiting every node on the way.
    /// </summary>
    public ulong FindHighestFit(ulong low, ulong high, ulong size, ulong alignMask)
    {
        if (high < size || high - size < low)
        {
            return NotFound;
        }
        return Search(_root, low, high, size, alignMask);
    }

    private ulong Search(int n, ulong low, ulong high, ulong size, ulong alignMask)
    {
        if (n < 0 || _n[n].MaxGap < size)
        {
            return NotFound;
        }
        // Gaps of the right subtree start above this node.
        if (_n[n].Hi + 1 < high)
        {
            var r = Search(_n[n].Right, low, high, size, alignMask);
            if (r != NotFound)
            {
                return r;
            }
        }
        var gl = Math.Max(_n[n].GapLo, low);
        var gh = Math.Min(_n[n].Lo, high);
        if (gh > gl && gh - gl >= size)
        {
            var p = (gh - size) & alignMask;
            if (p >= gl)
            {
                return p;
            }
        }
        // Gaps of the left subtree end below this node's gap.
        if (_n[n].GapLo > low)
        {
            return Search(_n[n].Left, low, high, size, alignMask);
        }
        return NotFound;
    }

    /// <summary>Every node in order (tests and reports).</summary>
    public List<(ulong Lo, ulong Hi, bool Reserved)> Nodes()
    {
        var list = new List<(ulong, ulong, bool)>(Count);
        Walk(_root, list);
        return list;
    }

    private void Walk(int n, List<(ulong, ulong, bool)> list)
    {
        if (n < 0)
        {
            return;
        }
        Walk(_n[n].Left, list);
        list.Add((_n[n].Lo, _n[n].Hi, _n[n].Reserved));
        Walk(_n[n].Right, list);
    }

    /// <summary>Checks ordering, no overlap, links, balance and the gap augmentation; returns the first problem or null.</summary>
    public string? Check()
    {
        var nodes = Nodes();
        for (var i = 0; i < nodes.Count; i++)
        {
            if (nodes[i].Lo > nodes[i].Hi)
            {
                return $"node {i} has lo > hi";
            }
            if (i > 0 && nodes[i].Lo <= nodes[i - 1].Hi)
            {
                return $"nodes {i - 1} and {i} overlap: [{nodes[i - 1].Lo:x},{nodes[i - 1].Hi:x}] [{nodes[i].Lo:x},{nodes[i].Hi:x}]";
            }
        }
        if (nodes.Count != Count)
        {
            return $"count {Count} but {nodes.Count} nodes";
        }
        if (_root >= 0 && _n[_root].Parent != -1)
        {
            return "the root has a parent";
        }
        var prevHi = -1L;
        return CheckNode(_root, ref prevHi, out _);
    }

    private string? CheckNode(int n, ref long prevHi, out ulong maxGap)
    {
        maxGap = 0;
        if (n < 0)
        {
            return null;
        }
        foreach (var c in (ReadOnlySpan<int>)[_n[n].Left, _n[n].Right])
        {
            if (c >= 0 && _n[c].Parent != n)
            {
                return $"node [{_n[c].Lo:x},{_n[c].Hi:x}] has a wrong parent link";
            }
            if (c >= 0 && _n[c].Prio > _n[n].Prio)
            {
                return $"node [{_n[c].Lo:x},{_n[c].Hi:x}] outranks its parent";
            }
        }
        var e = CheckNode(_n[n].Left, ref prevHi, out var lg);
        if (e is not null)
        {
            return e;
        }
        var expectGapLo = (ulong)(prevHi + 1);
        if (_n[n].GapLo != expectGapLo)
        {
            return $"node [{_n[n].Lo:x},{_n[n].Hi:x}] gapLo {_n[n].GapLo:x}, expected {expectGapLo:x}";
        }
        prevHi = (long)_n[n].Hi;
        e = CheckNode(_n[n].Right, ref prevHi, out var rg);
        if (e is not null)
        {
            return e;
        }
        maxGap = Math.Max(OwnGap(ref _n[n]), Math.Max(lg, rg));
        if (_n[n].MaxGap != maxGap)
        {
            return $"node [{_n[n].Lo:x},{_n[n].Hi:x}] stale augmentation";
        }
        return null;
    }
}
