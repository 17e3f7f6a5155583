namespace PhysDma.Iommu;

/// <summary>
/// The set of allocated IOVA ranges [lo, hi] (in pfns), as the kernel's rbtree of <c>struct iova</c>.
/// An AVL tree kept in arrays (no allocation once grown) and augmented with, per node, the free gap
/// just below it and the largest such gap in its subtree, so "highest free aligned block below a limit"
/// is found in O(log n) instead of by walking every node. Not thread-safe: the IOVA domain's lock guards it.
/// </summary>
internal sealed class IovaTree
{
    public const ulong NotFound = ulong.MaxValue;

    private ulong[] _lo;
    private ulong[] _hi;
    private ulong[] _gapLo;   // first free pfn below this node: predecessor's hi + 1, or 0
    private ulong[] _maxGap;  // largest (lo - gapLo) in the subtree
    private int[] _left;
    private int[] _right;
    private int[] _height;
    private bool[] _reserved;
    private int _root = -1;
    private int _free = -1;
    private int _used;

    public IovaTree(int capacity = 64)
    {
        _lo = new ulong[capacity];
        _hi = new ulong[capacity];
        _gapLo = new ulong[capacity];
        _maxGap = new ulong[capacity];
        _left = new int[capacity];
        _right = new int[capacity];
        _height = new int[capacity];
        _reserved = new bool[capacity];
    }

    public int Count { get; private set; }

    /// <summary>Pages in allocated (not reserved) nodes.</summary>
    public ulong AllocatedPages { get; private set; }

    public ulong ReservedPages { get; private set; }

    private int NewNode(ulong lo, ulong hi, bool reserved)
    {
        int n;
        if (_free >= 0)
        {
            n = _free;
            _free = _left[n];
        }
        else
        {
            if (_used == _lo.Length)
            {
                var cap = _lo.Length * 2;
                Array.Resize(ref _lo, cap);
                Array.Resize(ref _hi, cap);
                Array.Resize(ref _gapLo, cap);
                Array.Resize(ref _maxGap, cap);
                Array.Resize(ref _left, cap);
                Array.Resize(ref _right, cap);
                Array.Resize(ref _height, cap);
                Array.Resize(ref _reserved, cap);
            }
            n = _used++;
        }
        _lo[n] = lo;
        _hi[n] = hi;
        _left[n] = -1;
        _right[n] = -1;
        _height[n] = 1;
        _reserved[n] = reserved;
        return n;
    }

    private void FreeNode(int n)
    {
        _left[n] = _free;
        _free = n;
    }

    private int H(int n) => n < 0 ? 0 : _height[n];

    private ulong MaxGap(int n) => n < 0 ? 0 : _maxGap[n];

    private void Update(int n)
    {
        _height[n] = 1 + Math.Max(H(_left[n]), H(_right[n]));
        _maxGap[n] = Math.Max(_lo[n] - _gapLo[n], Math.Max(MaxGap(_left[n]), MaxGap(_right[n])));
    }

    private int RotateRight(int n)
    {
        var l = _left[n];
        _left[n] = _right[l];
        _right[l] = n;
        Update(n);
        Update(l);
        return l;
    }

    private int RotateLeft(int n)
    {
        var r = _right[n];
        _right[n] = _left[r];
        _left[r] = n;
        Update(n);
        Update(r);
        return r;
    }

    private int Balance(int n)
    {
        Update(n);
        var bf = H(_left[n]) - H(_right[n]);
        if (bf > 1)
        {
            if (H(_left[_left[n]]) < H(_right[_left[n]]))
            {
                _left[n] = RotateLeft(_left[n]);
            }
            return RotateRight(n);
        }
        if (bf < -1)
        {
            if (H(_right[_right[n]]) < H(_left[_right[n]]))
            {
                _right[n] = RotateRight(_right[n]);
            }
            return RotateLeft(n);
        }
        return n;
    }

    /// <summary>The node holding <paramref name="pfn"/>, or -1 (<c>private_find_iova</c>).</summary>
    public int FindContaining(ulong pfn)
    {
        var n = _root;
        while (n >= 0)
        {
            if (pfn < _lo[n])
            {
                n = _left[n];
            }
            else if (pfn > _hi[n])
            {
                n = _right[n];
            }
            else
            {
                return n;
            }
        }
        return -1;
    }

    public ulong Lo(int n) => _lo[n];

    public ulong Hi(int n) => _hi[n];

    public bool IsReserved(int n) => _reserved[n];

    /// <summary>The node with the smallest lo greater than <paramref name="lo"/>, or -1 (<c>rb_next</c>).</summary>
    public int Successor(ulong lo)
    {
        var n = _root;
        var best = -1;
        while (n >= 0)
        {
            if (_lo[n] > lo)
            {
                best = n;
                n = _left[n];
            }
            else
            {
                n = _right[n];
            }
        }
        return best;
    }

    /// <summary>The node with the largest lo smaller than <paramref name="lo"/>, or -1 (<c>rb_prev</c>).</summary>
    public int Predecessor(ulong lo)
    {
        var n = _root;
        var best = -1;
        while (n >= 0)
        {
            if (_lo[n] < lo)
            {
                best = n;
                n = _right[n];
            }
            else
            {
                n = _left[n];
            }
        }
        return best;
    }

    /// <summary>Inserts [lo, hi]; the caller guarantees it overlaps nothing.</summary>
    public void Insert(ulong lo, ulong hi, bool reserved = false)
    {
        var pred = Predecessor(lo);
        var succ = Successor(lo);
        var x = NewNode(lo, hi, reserved);
        _gapLo[x] = pred >= 0 ? _hi[pred] + 1 : 0;
        _maxGap[x] = lo - _gapLo[x];
        if (succ >= 0)
        {
            // The successor is an ancestor of the new leaf, so the insertion path recomputes its subtree gap.
            _gapLo[succ] = hi + 1;
        }
        _root = InsertAt(_root, x);
        Count++;
        if (reserved)
        {
            ReservedPages += hi - lo + 1;
        }
        else
        {
            AllocatedPages += hi - lo + 1;
        }
    }

    private int InsertAt(int n, int x)
    {
        if (n < 0)
        {
            return x;
        }
        if (_lo[x] < _lo[n])
        {
            _left[n] = InsertAt(_left[n], x);
        }
        else
        {
            _right[n] = InsertAt(_right[n], x);
        }
        return Balance(n);
    }

    /// <summary>Removes the node starting at <paramref name="lo"/>.</summary>
    public void Remove(ulong lo)
    {
        var x = FindContaining(lo);
        if (x < 0 || _lo[x] != lo)
        {
            throw new InvalidOperationException($"no IOVA node starts at pfn {lo:x}");
        }
        var pages = _hi[x] - _lo[x] + 1;
        if (_reserved[x])
        {
            ReservedPages -= pages;
        }
        else
        {
            AllocatedPages -= pages;
        }
        var succ = Successor(lo);
        if (succ >= 0)
        {
            // The successor's gap now reaches down to where the removed node's did; it lies on the deletion path.
            _gapLo[succ] = _gapLo[x];
        }
        _root = RemoveAt(_root, lo);
        Count--;
    }

    private int RemoveAt(int n, ulong lo)
    {
        if (lo < _lo[n])
        {
            _left[n] = RemoveAt(_left[n], lo);
        }
        else if (lo > _lo[n])
        {
            _right[n] = RemoveAt(_right[n], lo);
        }
        else
        {
            if (_left[n] < 0 || _right[n] < 0)
            {
                var child = _left[n] >= 0 ? _left[n] : _right[n];
                var rightOnly = _left[n] < 0 && child >= 0;
                FreeNode(n);
                if (rightOnly)
                {
                    // The removed node's successor is the leftmost node of this right subtree and its gap
                    // just grew (Remove set it); that path is below the deletion path, so refresh it here.
                    UpdateLeftSpine(child);
                }
                return child;
            }
            var m = _right[n];
            while (_left[m] >= 0)
            {
                m = _left[m];
            }
            _lo[n] = _lo[m];
            _hi[n] = _hi[m];
            _gapLo[n] = _gapLo[m];
            _reserved[n] = _reserved[m];
            _right[n] = RemoveAt(_right[n], _lo[m]);
        }
        return Balance(n);
    }

    private void UpdateLeftSpine(int n)
    {
        if (_left[n] >= 0)
        {
            UpdateLeftSpine(_left[n]);
        }
        Update(n);
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
        if (n < 0 || _maxGap[n] < size)
        {
            return NotFound;
        }
        // Gaps of the right subtree start above this node.
        if (_hi[n] + 1 < high)
        {
            var r = Search(_right[n], low, high, size, alignMask);
            if (r != NotFound)
            {
                return r;
            }
        }
        var gl = Math.Max(_gapLo[n], low);
        var gh = Math.Min(_lo[n], high);
        if (gh > gl && gh - gl >= size)
        {
            var p = (gh - size) & alignMask;
            if (p >= gl)
            {
                return p;
            }
        }
        // Gaps of the left subtree end below this node's gap.
        if (_gapLo[n] > low)
        {
            return Search(_left[n], low, high, size, alignMask);
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
        Walk(_left[n], list);
        list.Add((_lo[n], _hi[n], _reserved[n]));
        Walk(_right[n], list);
    }

    /// <summary>Checks ordering, no overlap, balance and the gap augmentation; returns the first problem or null.</summary>
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
        var prevHi = -1L;
        return CheckNode(_root, ref prevHi, out _, out _);
    }

    private string? CheckNode(int n, ref long prevHi, out int height, out ulong maxGap)
    {
        height = 0;
        maxGap = 0;
        if (n < 0)
        {
            return null;
        }
        var e = CheckNode(_left[n], ref prevHi, out var lh, out var lg);
        if (e is not null)
        {
            return e;
        }
        var expectGapLo = (ulong)(prevHi + 1);
        if (_gapLo[n] != expectGapLo)
        {
            return $"node [{_lo[n]:x},{_hi[n]:x}] gapLo {_gapLo[n]:x}, expected {expectGapLo:x}";
        }
        prevHi = (long)_hi[n];
        e = CheckNode(_right[n], ref prevHi, out var rh, out var rg);
        if (e is not null)
        {
            return e;
        }
        if (Math.Abs(lh - rh) > 1)
        {
            return $"node [{_lo[n]:x},{_hi[n]:x}] unbalanced";
        }
        height = 1 + Math.Max(lh, rh);
        maxGap = Math.Max(_lo[n] - _gapLo[n], Math.Max(lg, rg));
        if (_height[n] != height || _maxGap[n] != maxGap)
        {
            return $"node [{_lo[n]:x},{_hi[n]:x}] stale augmentation";
        }
        return null;
    }
}
