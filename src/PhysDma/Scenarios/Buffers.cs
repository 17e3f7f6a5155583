using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>A named region of physical address space a scenario allocated, with the CPU's view of it.</summary>
internal sealed class Buffer
{
    public required string Name { get; init; }
    public required BufferKind Kind { get; init; }
    public required ulong Size { get; init; }

    /// <summary>Kernel virtual address of byte 0.</summary>
    public required KernelVirt Va { get; init; }

    /// <summary>Physical address of each page the buffer touches, in virtual order (offsets are page-relative to the first).</summary>
    public required PhysAddr[] Pages { get; init; }

    /// <summary>Offset of byte 0 inside the first page.</summary>
    public required ulong FirstOffset { get; init; }

    public required bool HasStructPage { get; init; }

    /// <summary>What to give back on free: (base, size) ranges of RAM.</summary>
    public IReadOnlyList<(PhysAddr Base, ulong Size)> Owned { get; init; } = [];

    public bool Freed { get; set; }

    public ulong PageSize { get; init; }

    public PhysAddr Phys => PhysAt(0);

    public PhysAddr PhysAt(ulong offset)
    {
        var o = FirstOffset + offset;
        var idx = (int)Math.Min((ulong)(Pages.Length - 1), o / PageSize);
        return Pages[idx] + (o - ((ulong)idx * PageSize));
    }

    public string KindName => Kind switch
    {
        BufferKind.Ram => "ram",
        BufferKind.Kmalloc => "kmalloc",
        BufferKind.Stack => "stack",
        BufferKind.Vmalloc => "vmalloc",
        BufferKind.P2PMem => "p2pmem",
        BufferKind.Bar => "bar",
        BufferKind.Coherent => "coherent",
        BufferKind.KernelText => "kernel_text",
        _ => "resource",
    };
}

/// <summary>
/// Places scenario buffers the way the kernel's allocators would, deterministically: pages at the lowest
/// free address (in the requested zone first), kmalloc objects packed into slabs by size class (so small
/// objects share cache lines), vmapped stacks and vmalloc areas whose pages are not physically contiguous,
/// and page-less device memory mapped with ioremap.
/// </summary>
internal sealed class BufferAllocator(Machine machine, DmaApi api)
{
    /// <summary>
    /// The most pages one allocation may span: the model keeps a struct-page-like entry and a kernel PTE
    /// per page, so a step's work and memory follow its page count (1 GiB at 4 KiB pages).
    /// </summary>
    public const ulong MaxPagesPerBuffer = 1UL << 18;

    /// <summary>THREAD_SIZE: 16 KiB, or one page where pages are bigger (arm64 with 64 KiB pages).</summary>
    private ulong ThreadSize => Math.Max(16 * 1024, PageSize);
    private readonly Dictionary<ulong, (PhysAddr Base, ulong Used, ulong SlabSize)> _slabs = [];
    private (PhysAddr[] Pages, KernelVirt Va, ulong Used)? _stack;

    private ulong PageSize => machine.PageSize;

    public Buffer Allocate(AllocStep s, Func<string, string, ScenarioError> error)
    {
        CheckSpan(s, error);
        return s.Kind switch
        {
            BufferKind.Ram => Ram(s, error),
            BufferKind.Kmalloc => Kmalloc(s, error),
            BufferKind.Stack => Stack(s, error),
            BufferKind.KernelText => KernelText(s, error),
            BufferKind.Vmalloc => Vmalloc(s, error),
            BufferKind.Bar => Bar(s, error),
            BufferKind.Resource => Resource(s, error),
            _ => P2PMem(s, error),
        };
    }

    /// <summary>
    /// The range an allocation names must exist in a 64-bit address space and span a page count the model can
    /// keep: a size that wraps past 2^64 once placed, or more than <see cref="MaxPagesPerBuffer"/> pages, is
    /// bad input here rather than an overflow later.
    /// </summary>
    private void CheckSpan(AllocStep s, Func<string, string, ScenarioError> error)
    {
        if (s.Size == 0)
        {
            throw error("size", "size 0: an allocation has at least one byte");
        }
        var start = (s.Phys ?? 0) + s.Offset;
        if (start < s.Offset || start + s.Size < start || start + s.Size > ulong.MaxValue - PageSize)
        {
            throw error("size", $"{Hex.Format(start)} + size {Hex.Format(s.Size)} runs past the end of the 64-bit address space");
        }
        var pages = Sizes.DivRoundUp((start & (PageSize - 1)) + s.Size, PageSize);
        if (pages > MaxPagesPerBuffer)
        {
            throw error("size", $"{s.Size} bytes span {pages} pages; the model keeps per-page state and allows at most {MaxPagesPerBuffer} pages ({MaxPagesPerBuffer * PageSize} bytes) per buffer");
        }
    }

    public void Free(Buffer b)
    {
        foreach (var (p, size) in b.Owned)
        {
            machine.Allocator.Free(p, size);
        }
        if (b.Kind == BufferKind.P2PMem && api.P2P.ProviderAt(b.Phys) is { } provider)
        {
            // pci_free_p2pmem: the pages' pgmap references go; a removal waiting for them may now finish.
            api.P2P.FreeP2PMem(provider.Owner, b.Size);
        }
    }

    private (ulong Lo, ulong Hi)[] ZoneOrder(Zone? zone) => zone switch
    {
        null => [(0, ulong.MaxValue)],
        Zone.Dma => [machine.ZoneBounds(Zone.Dma)],
        Zone.Dma32 => [machine.ZoneBounds(Zone.Dma32), machine.ZoneBounds(Zone.Dma)],
        Zone.Normal => [machine.ZoneBounds(Zone.Normal), machine.ZoneBounds(Zone.Dma32), machine.ZoneBounds(Zone.Dma)],
        _ => [machine.ZoneBounds(Zone.HighMem), machine.ZoneBounds(Zone.Normal), machine.ZoneBounds(Zone.Dma32), machine.ZoneBounds(Zone.Dma)],
    };

    private PhysAddr Place(AllocStep s, ulong size, ulong align, Func<string, string, ScenarioError> error)
    {
        if (s.Phys is { } exact)
        {
            var first = Sizes.AlignDown(exact, PageSize);
            var span = Sizes.AlignUp(exact + size, PageSize) - first;
            if (!machine.Allocator.Reserve(new PhysAddr(first), span))
            {
                throw error("phys", $"{Hex.Format(exact)}+{Hex.Format(size)} is not free RAM on this machine");
            }
            return new PhysAddr(first);
        }
        foreach (var (lo, hi) in ZoneOrder(s.Zone))
        {
            if (machine.Allocator.Alloc(size, align, lo, hi) is { } p)
            {
                return p;
            }
        }
        throw error("size", $"no free RAM for {size} bytes{(s.Zone is null ? "" : $" in zone {s.Zone.ToString()!.ToLowerInvariant()}")}");
    }

    private KernelVirt MapRam(PhysAddr[] pages)
    {
        // Lowmem RAM is in the linear map; highmem needs a kernel mapping of its own.
        if (pages.All(p => machine.Config.HighmemAbove is not { } h || p.Value < h) && IsContiguous(pages))
        {
            return machine.Kmap.PhysToVirt(pages[0]);
        }
        return machine.Kmap.Vmap(pages, cached: true);
    }

    private bool IsContiguous(PhysAddr[] pages)
    {
        for (var i = 1; i < pages.Length; i++)
        {
            if (pages[i].Value != pages[0].Value + ((ulong)i * PageSize))
            {
                return false;
            }
        }
        return true;
    }

    private PhysAddr[] PagesFrom(PhysAddr first, ulong offset, ulong size)
    {
        var n = Sizes.DivRoundUp(offset + size, PageSize);
        var pages = new PhysAddr[n];
        for (ulong i = 0; i < n; i++)
        {
            pages[i] = first + (i * PageSize);
        }
        return pages;
    }

    /// <summary>
    /// A buffer of the step's size at <paramref name="phys"/> (anywhere in its page), seen by the CPU at
    /// <paramref name="va"/>, over the physically consecutive pages under it; nothing of it is freed with it.
    /// </summary>
    private Buffer At(AllocStep s, PhysAddr phys, KernelVirt va, bool hasStructPage = true)
    {
        var offset = phys.Value & (PageSize - 1);
        return new Buffer
        {
            Name = s.Name,
            Kind = s.Kind,
            Size = s.Size,
            Va = va,
            Pages = PagesFrom(new PhysAddr(phys.Value - offset), offset, s.Size),
            FirstOffset = offset,
            HasStructPage = hasStructPage,
            Owned = [],
            PageSize = PageSize,
        };
    }

    private Buffer Ram(AllocStep s, Func<string, string, ScenarioError> error)
    {
        var align = Math.Max(PageSize, s.Align ?? PageSize);
        var offset = s.Phys is { } exact ? exact & (PageSize - 1) : 0;
        var span = Sizes.AlignUp(offset + s.Size, PageSize);
        var first = Place(s, s.Size, align, error);
        var pages = PagesFrom(first, offset, s.Size);
        var va = MapRam(pages);
        return new Buffer
        {
            Name = s.Name,
            Kind = s.Kind,
            Size = s.Size,
            Va = va + offset,
            Pages = pages,
            FirstOffset = offset,
            HasStructPage = true,
            Owned = [(first, span)],
            PageSize = PageSize,
        };
    }

    private Buffer Kmalloc(AllocStep s, Func<string, string, ScenarioError> error)
    {
        if (s.Phys is { } at && s.Size <= Slab.LargestCache && SlabHolding(at) is { } slab0)
        {
            return KmallocOnSlab(s, at, slab0, error);
        }
        if (s.Phys is not null || s.Size > Slab.LargestCache)
        {
            // kmalloc_large, or an object placed by hand: whole pages underneath.
            return Ram(s, error);
        }
        var cls = Slab.KmallocSizeRoundup(s.Size, api.KmallocMinAlign, PageSize);
        var slabSize = Math.Max(PageSize, cls);
        if (!_slabs.TryGetValue(cls, out var slab) || slab.Used + cls > slab.SlabSize || s.Zone is not null)
        {
            var p = Place(s with { Phys = null }, slabSize, slabSize, error);
            slab = (p, 0, slabSize);
        }
        var objPhys = slab.Base + slab.Used;
        _slabs[cls] = (slab.Base, slab.Used + cls, slab.SlabSize);
        return At(s, objPhys, machine.Kmap.PhysToVirt(objPhys));
    }

    /// <summary>The slab page (base, size) that holds <paramref name="phys"/>, if a kmalloc slab does.</summary>
    private (PhysAddr Base, ulong Size)? SlabHolding(ulong phys)
    {
        foreach (var (b, _, size) in _slabs.Values)
        {
            if (phys >= b.Value && phys - b.Value < size)
            {
                return (b, size);
            }
        }
        return null;
    }

    /// <summary>
    /// A kmalloc object placed by hand inside a slab page that already holds kmalloc objects: allowed at the
    /// machine's kmalloc alignment (ARCH_KMALLOC_MINALIGN), and only if it stays inside that slab page.
    /// </summary>
    private Buffer KmallocOnSlab(AllocStep s, ulong phys, (PhysAddr Base, ulong Size) slab, Func<string, string, ScenarioError> error)
    {
        var align = api.KmallocMinAlign;
        if (phys % align != 0)
        {
            throw error("phys", $"{Hex.Format(phys)} is not aligned for kmalloc: objects on this machine are aligned to {align} bytes (ARCH_KMALLOC_MINALIGN)");
        }
        if (s.Size > slab.Base.Value + slab.Size - phys)
        {
            throw error("size", $"{Hex.Format(phys)}+{Hex.Format(s.Size)} runs past the slab page at {Hex.Format(slab.Base.Value)} ({slab.Size} bytes)");
        }
        return At(s, new PhysAddr(phys), machine.Kmap.PhysToVirt(new PhysAddr(phys)));
    }

    private ulong _textUsed;

    /// <summary>
    /// An object in the kernel image (a table in .rodata, say): packed from the top of the image down,
    /// reached through the linear map like the rest of it, owned by nobody (it is never freed).
    /// </summary>
    private Buffer KernelText(AllocStep s, Func<string, string, ScenarioError> error)
    {
        var text = machine.Config.KernelText ?? throw error("kind", "this machine has no kernel_text region");
        var aligned = Sizes.AlignUp(s.Size, 64);
        if (aligned < s.Size || aligned > text.Size - _textUsed)
        {
            throw error("size", $"the kernel image has only {text.Size} bytes");
        }
        _textUsed += aligned;
        var phys = new PhysAddr(text.Base + text.Size - _textUsed);
        return At(s, phys, machine.Kmap.PhysToVirt(phys));
    }

    private Buffer Stack(AllocStep s, Func<string, string, ScenarioError> error)
    {
        if (_stack is null)
        {
            var n = (int)Math.Max(1, ThreadSize / PageSize);
            var pages = new PhysAddr[n];
            for (var i = 0; i < n; i++)
            {
                pages[i] = machine.Allocator.Alloc(PageSize, PageSize) ?? throw error("size", "no free RAM for a task stack");
            }
            var va = machine.Kmap.Vmap(pages, cached: true);
            // The scenario's driver runs in one task; dma-debug's stack check knows its stack pages.
            for (var i = 0; i < n; i++)
            {
                machine.Stacks.Register(pages[i], va + ((ulong)i * PageSize));
            }
            _stack = (pages, va, 0);
        }
        var (stackPages, stackVa, used) = _stack.Value;
        var aligned = Sizes.AlignUp(s.Size, 16);
        if (aligned < s.Size || aligned > ThreadSize - 256 - used)
        {
            throw error("size", $"stack buffers may use at most {ThreadSize - 256} bytes of the {ThreadSize}-byte task stack");
        }
        // The stack grows down: each new buffer sits below the previous one.
        var top = ThreadSize - 256 - used - aligned;
        _stack = (stackPages, stackVa, used + aligned);
        var firstPage = (int)(top / PageSize);
        var lastPage = (int)((top + s.Size - 1) / PageSize);
        return new Buffer
        {
            Name = s.Name,
            Kind = s.Kind,
            Size = s.Size,
            Va = stackVa + top,
            Pages = stackPages[firstPage..(lastPage + 1)],
            FirstOffset = top % PageSize,
            HasStructPage = true,
            Owned = [],
            PageSize = PageSize,
        };
    }

    private Buffer Vmalloc(AllocStep s, Func<string, string, ScenarioError> error)
    {
        var n = (int)Sizes.DivRoundUp(s.Size, PageSize);
        var block = Place(s with { Phys = null }, (ulong)n * PageSize, PageSize, error);
        // vmalloc pages come one by one from the page allocator: model that by mapping the block backwards,
        // so virtually consecutive pages are never physically consecutive.
        var pages = Enumerable.Range(0, n).Select(i => block + ((ulong)(n - 1 - i) * PageSize)).ToArray();
        return new Buffer
        {
            Name = s.Name,
            Kind = s.Kind,
            Size = s.Size,
            Va = machine.Kmap.Vmap(pages, cached: true),
            Pages = pages,
            FirstOffset = 0,
            HasStructPage = true,
            Owned = [(block, (ulong)n * PageSize)],
            PageSize = PageSize,
        };
    }

    private Buffer DeviceMemory(AllocStep s, PhysAddr phys) => At(s, phys, machine.Kmap.Ioremap(phys, s.Size), hasStructPage: false);

    private Buffer P2PMem(AllocStep s, Func<string, string, ScenarioError> error)
    {
        if (s.Phys is not null)
        {
            // pci_alloc_p2pmem(pdev, size) takes no address: the provider's pool chooses.
            throw error("phys", "p2pmem comes from the provider's pool (pci_alloc_p2pmem takes no address); for a fixed place in a BAR use kind: bar with from, bar and offset");
        }
        if (!api.P2P.HasPool(s.From!))
        {
            throw error("from", $"device '{s.From}' has no p2pmem pool (give it 'p2pmem: {{ bar: N, size: ... }}' in the machine)");
        }
        var phys = api.P2P.AllocP2PMem(s.From!, s.Size) ?? throw error("size", $"the p2pmem pool of '{s.From}' has no room for {s.Size} bytes");
        // p2pmem is mapped for the CPU like the BAR it lives in: uncached, write-combining at best.
        return At(s, phys, machine.Kmap.Ioremap(phys, s.Size));
    }

    private Buffer Bar(AllocStep s, Func<string, string, ScenarioError> error)
    {
        var dev = machine.Device(s.From!);
        var bar = dev.Config.Bars.FirstOrDefault(b => b.Bar == s.Bar)
            ?? throw error("bar", $"device '{dev.Name}' has no BAR {s.Bar}");
        if (s.Offset > bar.Size || s.Size > bar.Size - s.Offset)
        {
            throw error("size", $"offset {Hex.Format(s.Offset)} + size {Hex.Format(s.Size)} runs past BAR {s.Bar} ({Hex.Format(bar.Size)} bytes)");
        }
        return DeviceMemory(s, new PhysAddr(bar.Base + s.Offset));
    }

    private Buffer Resource(AllocStep s, Func<string, string, ScenarioError> error)
    {
        if (s.Phys is null)
        {
            // from: + bar: (+ offset:): a register inside a device's BAR, wherever the machine put that BAR.
            var dev = machine.Device(s.From!);
            var bar = dev.Config.Bars.FirstOrDefault(b => b.Bar == s.Bar)
                ?? throw error("bar", $"device '{dev.Name}' has no BAR {s.Bar}");
            if (s.Offset + s.Size > bar.Size)
            {
                throw error("size", $"offset {Hex.Format(s.Offset)} + size {Hex.Format(s.Size)} runs past BAR {s.Bar} ({Hex.Format(bar.Size)} bytes)");
            }
            s = s with { Phys = bar.Base + s.Offset };
        }
        var phys = new PhysAddr(s.Phys!.Value);
        var end = phys.Value + s.Size;
        if (machine.Map.Regions.Any(r => r.IsRam && r.Base.Value < end && phys.Value < r.End.Value))
        {
            throw error("phys", $"{Hex.Format(s.Phys.Value)}+{Hex.Format(s.Size)} overlaps RAM; a resource is device memory (MMIO)");
        }
        if (machine.Map.Find(phys) is { } listed)
        {
            if (end > listed.End.Value)
            {
                throw error("size", $"{Hex.Format(s.Phys.Value)}+{Hex.Format(s.Size)} runs past the end of '{listed.Name}' ({listed.Base}+{Hex.Format(listed.Size)}); a resource lies inside one region of the memory map or where none is listed");
            }
        }
        else
        {
            // A register block the memory map did not list yet: it is MMIO from now on, unless it runs into a
            // region that is listed (a device's BAR, another resource).
            var size = Sizes.AlignUp(s.Size, PageSize);
            if (machine.Map.Regions.FirstOrDefault(r => r.Base.Value - phys.Value < size) is { } clash)
            {
                throw error("size", $"{Hex.Format(s.Phys.Value)}+{Hex.Format(s.Size)} runs into '{clash.Name}' at {clash.Base}; a resource lies inside one region of the memory map or where none is listed");
            }
            machine.Map.Add(new MemRegion(phys, size, MemKind.Mmio, $"resource {s.Name}"));
        }
        return DeviceMemory(s, phys);
    }
}
