namespace PhysDma.Iommu;

/// <summary>
/// What dma-iommu hangs on a DMA domain (<c>struct iommu_dma_cookie</c>): the IOVA space and, for a
/// DMA_FQ domain, the flush queue.
/// </summary>
internal sealed class IommuDmaCookie(IommuDomain domain, IovaDomain iovad, IovaFlushQueue? fq)
{
    public IommuDomain Domain { get; } = domain;
    public IovaDomain Iovad { get; } = iovad;

    /// <summary><c>fq_domain</c>: non-null when unmaps are invalidated lazily.</summary>
    public IovaFlushQueue? Fq { get; } = fq;

    /// <summary>IOVA pages handed out and not yet unmapped: in the tree, but neither cached nor queued.</summary>
    public ulong PagesInUse
    {
        get
        {
            // Read the queue first: entries move queue -> cache -> tree, never backwards.
            var queued = Fq?.QueuedPages ?? 0;
            var cached = Iovad.CachedPages;
            var tree = Iovad.TreePages;
            var idle = queued + cached;
            return tree > idle ? tree - idle : 0;
        }
    }
}
