namespace PhysDma.Iommu;

// iommu_map_nosync / iommu_sync_map: the split the two-step IOVA API uses to write many PTEs and
// make them visible once.
internal sealed partial class IommuDomain
{
    private long _syncMapCalls;
    private ulong _lastSyncMapIova;
    private ulong _lastSyncMapSize;

    /// <summary>
    /// <c>iommu_map_nosync</c>: writes the PTEs of [iova, iova+size) and does not call the driver's
    /// <c>iotlb_sync_map</c>; the caller owes an <see cref="SyncMap"/> before the device uses the range.
    /// </summary>
    public Core.Errno MapNoSync(ulong iova, Core.PhysAddr phys, ulong size, int prot) => Map(iova, phys, size, prot);

    /// <summary>
    /// <c>iommu_sync_map</c>: the driver's <c>iotlb_sync_map</c> over [iova, iova+size) (flushes
    /// non-present entries some IOMMUs cache). Counted, so tests can see when it happened.
    /// </summary>
    public Core.Errno SyncMap(ulong iova, ulong size)
    {
        using (_ptLock.Enter())
        {
            _syncMapCalls++;
            _lastSyncMapIova = iova;
            _lastSyncMapSize = size;
        }
        return Core.Errno.None;
    }

    /// <summary>Explicit <c>iommu_sync_map</c> calls on this domain so far.</summary>
    public long SyncMapCalls
    {
        get
        {
            using (_ptLock.Enter())
            {
                return _syncMapCalls;
            }
        }
    }

    /// <summary>The range of the last <see cref="SyncMap"/> (IOVA, size); (0, 0) before the first.</summary>
    public (ulong Iova, ulong Size) LastSyncMap
    {
        get
        {
            using (_ptLock.Enter())
            {
                return (_lastSyncMapIova, _lastSyncMapSize);
            }
        }
    }
}
