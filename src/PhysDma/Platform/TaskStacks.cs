using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>
/// The pages of the running tasks' kernel stacks. Stacks are vmapped (CONFIG_VMAP_STACK, the default on
/// x86_64 and arm64), so a stack page is known by its frame and by the virtual address the task sees it
/// at. dma-debug asks whether a buffer it is handed lies on a stack; the scenario layer registers
/// <c>alloc kind: stack</c> buffers here. The model treats every registered page as the current task's,
/// since a scenario's steps all run as one driver task.
/// </summary>
internal sealed class TaskStacks
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, KernelVirt> _pages = [];
    private volatile int _count;
    private readonly int _pageShift;

    public TaskStacks(int pageShift)
    {
        _pageShift = pageShift;
    }

    public int Count => _count;

    /// <summary>Registers the stack page containing <paramref name="page"/>, seen by the task at <paramref name="va"/>.</summary>
    public void Register(PhysAddr page, KernelVirt va)
    {
        lock (_lock)
        {
            _pages[page.Value >> _pageShift] = new KernelVirt(va.Value >> _pageShift << _pageShift);
            _count = _pages.Count;
        }
    }

    public void Unregister(PhysAddr page)
    {
        lock (_lock)
        {
            _pages.Remove(page.Value >> _pageShift);
            _count = _pages.Count;
        }
    }

    /// <summary>True if <paramref name="phys"/> lies in a stack page (a page-frame match).</summary>
    public bool Contains(PhysAddr phys) => TryGetPage(phys, out _);

    /// <summary>The stack page's virtual address when <paramref name="phys"/> lies in a registered stack page.</summary>
    public bool TryGetPage(PhysAddr phys, out KernelVirt pageVa)
    {
        pageVa = default;
        if (_count == 0)
        {
            return false;
        }
        lock (_lock)
        {
            return _pages.TryGetValue(phys.Value >> _pageShift, out pageVa);
        }
    }
}
