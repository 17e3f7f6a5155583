namespace PhysDma.Core;

/// <summary>
/// A record that any thread appends to and readers take as a snapshot (faults, stale accesses, kernel log
/// lines, dma-debug reports, injected faults): the lock and the copy written once.
/// </summary>
internal sealed class AppendLog<T>
{
    private readonly List<T> _items = [];
    private readonly Lock _lock = new();

    public void Add(T item)
    {
        lock (_lock)
        {
            _items.Add(item);
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _items.Count;
            }
        }
    }

    /// <summary>A copy of everything added so far, in order.</summary>
    public IReadOnlyList<T> Snapshot()
    {
        lock (_lock)
        {
            return [.. _items];
        }
    }

    /// <summary>What was added after the first <paramref name="start"/> items (how a runner attributes them to a step).</summary>
    public IReadOnlyList<T> Since(int start)
    {
        lock (_lock)
        {
            return start >= _items.Count ? [] : _items.GetRange(start, _items.Count - start);
        }
    }
}
