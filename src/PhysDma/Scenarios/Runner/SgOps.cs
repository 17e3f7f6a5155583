using PhysDma.Core;
using PhysDma.Dma;

namespace PhysDma.Scenarios;

/// <summary>Scatter-gather: <c>map_sg</c>, <c>unmap_sg</c>, <c>sync_sg</c>.</summary>
internal sealed class SgOps(RunState s)
{
    public void Register(OpTable t)
    {
        t.On<MapSgStep, MapSgResult>(MapSg);
        t.On<UnmapSgStep, UnmapSgResult>(UnmapSg);
        t.On<SyncSgStep, SyncSgResult>(SyncSg);
    }

    private static string ErrnoName(int ret) =>
        Enum.IsDefined(typeof(Errno), -ret) ? ((Errno)(-ret)).ToString() : ret.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private void MapSg(MapSgStep step, MapSgResult r)
    {
        var dev = s.M.Device(step.Dev);
        var entries = new List<ScatterEntry>();
        foreach (var seg in step.Segments)
        {
            var b = s.Buffers[seg.Buf];
            s.CheckRange(step, b, seg.Offset, seg.Size, "segments");
            if (!b.HasStructPage)
            {
                // sg_set_page needs a struct page: page-less MMIO is mapped with dma_map_resource, not a scatterlist.
                throw s.Error(step, "segments", $"buffer '{b.Name}' ({b.KindName}) has no struct page, so it cannot be put in a scatterlist; map it with map api: resource");
            }
            var phys = b.PhysAt(seg.Offset);
            if (b.PhysAt(seg.Offset + seg.Size - 1).Value != phys.Value + seg.Size - 1)
            {
                throw s.Error(step, "segments", $"segment {b.Name}+{seg.Offset} of {seg.Size} bytes is not physically contiguous (buffer '{b.Name}' is {b.KindName}); split it at page boundaries");
            }
            entries.Add(new ScatterEntry(phys, (uint)seg.Size));
        }
        var table = new SgTable(entries);
        r.Handle = step.As;
        r.Dev = dev.Name;
        r.Dir = step.Dir.ScenarioName();
        r.Attrs = FlagSet.Of(step.Attrs);
        using (s.Measure(r))
        {
            var ret = s.Api.MapSgtable(dev, table, step.Dir, step.Attrs);
            var mapped = ret == 0 && table.Nents > 0;
            s.Sg[step.As] = new SgHandle { Name = step.As, Dev = dev, Table = table, Dir = step.Dir, Attrs = step.Attrs, Mapped = mapped };
            r.Nents = ret == 0 ? table.Nents : 0;
            r.Segments = ret == 0
                ? [.. table.Sgl.Take(table.Nents).Select(e => new SegmentResult(new HexAddr(e.DmaAddress.Value), e.DmaLength))]
                : [];
            r.Error = ret == 0 ? null : ErrnoName(ret);
            r.Path = mapped ? DmaRecorder.PathName(s.Recorder.Path) : "none";
        }
    }

    /// <summary>The handle and entry count an unmap or sync names; more entries than the list has is bad input.</summary>
    private (SgHandle H, int Nents) Entries(Step step, string handle, int? nentsOpt)
    {
        var h = s.Sg[handle];
        var nents = nentsOpt ?? h.Table.OrigNents;
        if (nents > h.Table.Sgl.Count)
        {
            // The kernel would walk off the end of the list: an oops, not a debug report.
            throw s.Error(step, "nents", $"nents {nents} is more than the {h.Table.Sgl.Count} entries of '{handle}'");
        }
        return (h, nents);
    }

    private void UnmapSg(UnmapSgStep step, UnmapSgResult r)
    {
        var (h, nents) = Entries(step, step.Handle, step.Nents);
        var dir = step.Dir ?? h.Dir;
        var attrs = step.Attrs ?? h.Attrs;
        r.Handle = h.Name;
        r.Dev = h.Dev.Name;
        r.Dir = dir.ScenarioName();
        r.Attrs = FlagSet.Of(attrs);
        r.Nents = nents;
        using (s.Measure(r))
        {
            s.Api.UnmapSgAttrs(h.Dev, h.Table.Sgl, nents, dir, attrs);
            h.Unmapped = true;
        }
    }

    private void SyncSg(SyncSgStep step, SyncSgResult r)
    {
        var (h, nents) = Entries(step, step.Handle, step.Nents);
        var dir = step.Dir ?? h.Dir;
        r.Handle = h.Name;
        r.Dev = h.Dev.Name;
        r.Dir = dir.ScenarioName();
        r.For = step.ForCpu ? "cpu" : "device";
        r.Nents = nents;
        using (s.Measure(r))
        {
            if (step.ForCpu)
            {
                s.Api.SyncSgForCpu(h.Dev, h.Table.Sgl, nents, dir);
            }
            else
            {
                s.Api.SyncSgForDevice(h.Dev, h.Table.Sgl, nents, dir);
            }
        }
    }
}
