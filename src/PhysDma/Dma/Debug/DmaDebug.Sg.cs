using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

// Scatter-gather: debug_dma_map_sg, debug_dma_unmap_sg and debug_dma_sync_sg_for_{cpu,device}, reached
// through DmaApi's scatterlist hooks or, in tests, with the segments given directly.
internal sealed partial class DmaDebug
{
    /// <summary>The segments one sg call hands over, read one at a time so that no list is built.</summary>
    private interface ISgSource
    {
        int Count { get; }

        DebugSg this[int i] { get; }
    }

    private readonly ref struct SpanSg(ReadOnlySpan<DebugSg> segments) : ISgSource
    {
        private readonly ReadOnlySpan<DebugSg> _s = segments;

        public int Count => _s.Length;

        public DebugSg this[int i] => _s[i];
    }

    private readonly struct ListSg(IReadOnlyList<ScatterEntry> sgl) : ISgSource
    {
        public int Count => sgl.Count;

        public DebugSg this[int i]
        {
            get
            {
                var s = sgl[i];
                return new DebugSg(s.Phys, s.Length, s.DmaAddress, s.DmaLength);
            }
        }
    }

    /// <summary>Connects the scatter-gather hooks of <see cref="DmaApi"/> (where mapping.c calls dma-debug).</summary>
    private void HookScatterGather()
    {
        _api.SgMapped = OnSgMapped;
        _api.SgUnmapping = OnSgUnmapping;
        _api.SgSynced = OnSgSynced;
    }

    private void OnSgMapped(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, int ents, DmaDirection dir, DmaAttrs attrs) =>
        MapSgCore(dev, new ListSg(sgl), nents, ents, dir, attrs);

    private void OnSgUnmapping(Device dev, IReadOnlyList<ScatterEntry> sgl, int nelems, DmaDirection dir) =>
        UnmapSgCore(dev, new ListSg(sgl), nelems, dir);

    private void OnSgSynced(Device dev, IReadOnlyList<ScatterEntry> sgl, int nelems, DmaDirection dir, bool toCpu, long opsOnNonRamBefore)
    {
        if (!_globalDisable)
        {
            SyncSgCore(dev, new ListSg(sgl), nelems, dir, toCpu);
            if (ArchCacheHooks.OpsOnNonRamByThisThread != opsOnNonRamBefore)
            {
                // Name the first segment whose CPU side is not RAM: that is where the cache operations went.
                var n = Math.Min(nelems, sgl.Count);
                var culprit = n > 0 ? sgl[0] : null;
                for (var i = 0; i < n; i++)
                {
                    if (!_m.Map.IsRam(sgl[i].Phys, sgl[i].Length))
                    {
                        culprit = sgl[i];
                        break;
                    }
                }
                if (culprit is not null)
                {
                    CheckCacheOpOnMmio(dev, culprit.DmaAddress, culprit.DmaLength, toCpu, opsOnNonRamBefore, "sync_sg");
                }
            }
        }
    }

    /// <summary>
    /// <c>debug_dma_map_sg</c>: stack and kernel-image checks on all <paramref name="nents"/> CPU segments, then
    /// one entry per mapped DMA segment (the segment's CPU address paired with its DMA address and length,
    /// as the kernel pairs them), each checked against the device's segment limits.
    /// </summary>
    public void MapSg(Device dev, ReadOnlySpan<DebugSg> sg, int nents, int mappedEnts, DmaDirection dir, DmaAttrs attrs) =>
        MapSgCore(dev, new SpanSg(sg), nents, mappedEnts, dir, attrs);

    /// <summary>
    /// <c>debug_dma_unmap_sg</c>: each of the <paramref name="nelems"/> segments the driver passes is checked as
    /// an unmap, stopping after as many as the first segment's entry says were mapped.
    /// </summary>
    public void UnmapSg(Device dev, ReadOnlySpan<DebugSg> sg, int nelems, DmaDirection dir) =>
        UnmapSgCore(dev, new SpanSg(sg), nelems, dir);

    /// <summary>
    /// <c>debug_dma_sync_sg_for_cpu</c> / <c>_for_device</c>: like unmap, but when the first segment is not
    /// found nothing at all is checked (the kernel stops at zero mapped entries).
    /// </summary>
    public void SyncSg(Device dev, ReadOnlySpan<DebugSg> sg, int nelems, DmaDirection dir, bool toCpu) =>
        SyncSgCore(dev, new SpanSg(sg), nelems, dir, toCpu);

    private void MapSgCore<T>(Device dev, T sg, int nents, int mappedEnts, DmaDirection dir, DmaAttrs attrs)
        where T : ISgSource, allows ref struct
    {
        if (_globalDisable)
        {
            return;
        }
        var count = sg.Count;
        for (var i = 0; i < nents && i < count; i++)
        {
            var s = sg[i];
            CheckForStack(dev, s.Phys);
            if (!PhysHighMem(s.Phys))
            {
                CheckForIllegalArea(dev, s.Phys, s.Length);
            }
        }
        DebugEntry? first = null;
        for (var i = 0; i < mappedEnts && i < count; i++)
        {
            if (EntryAlloc() is not { } entry)
            {
                return;
            }
            first ??= entry;
            var s = sg[i];
            entry.Set(dev, DebugEntryType.ScatterGather, s.Phys, s.DmaAddress, s.DmaLength, dir, attrs);
            entry.SgCallEnts = nents;
            entry.SgMappedEnts = mappedEnts;
            // Ownership follows the CPU segment: after IOMMU merging the DMA length spans other segments.
            entry.OwnPhys = s.Phys;
            entry.OwnLen = s.Length;
            CheckSgSegment(dev, s);
            AddDmaEntry(entry, attrs);
        }
        if (first is not null)
        {
            for (var i = mappedEnts; i < nents && i < count; i++)
            {
                var s = sg[i];
                OwnershipTrackSegment(first, s.Phys, s.Length);
            }
        }
    }

    private void UnmapSgCore<T>(Device dev, T sg, int nelems, DmaDirection dir)
        where T : ISgSource, allows ref struct => CheckSgCore(dev, sg, nelems, dir, syncToCpu: null);

    private void SyncSgCore<T>(Device dev, T sg, int nelems, DmaDirection dir, bool toCpu)
        where T : ISgSource, allows ref struct => CheckSgCore(dev, sg, nelems, dir, toCpu);

    /// <summary>
    /// The segment walk of unmap (<paramref name="syncToCpu"/> null) and sync: each segment is checked until as
    /// many as the first segment's entry says were mapped. When the first segment has no entry, an unmap
    /// checks every segment and a sync checks none.
    /// </summary>
    private void CheckSgCore<T>(Device dev, T sg, int nelems, DmaDirection dir, bool? syncToCpu)
        where T : ISgSource, allows ref struct
    {
        if (_globalDisable)
        {
            return;
        }
        var mappedEnts = 0;
        var count = sg.Count;
        for (var i = 0; i < nelems && i < count; i++)
        {
            var s = sg[i];
            var r = new DebugRef(dev, s.DmaAddress, s.DmaLength, DebugEntryType.ScatterGather, dir, nelems, s.Phys);
            if (i == 0)
            {
                mappedEnts = NrMappedEntries(r);
            }
            if (i >= mappedEnts && (mappedEnts != 0 || syncToCpu is not null))
            {
                break;
            }
            if (syncToCpu is { } toCpu)
            {
                CheckSync(dev, r, toCpu);
            }
            else
            {
                CheckUnmap(r);
            }
        }
    }
}
