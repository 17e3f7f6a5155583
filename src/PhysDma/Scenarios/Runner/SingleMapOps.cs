using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>Single mappings: <c>map</c> (every entry point), <c>p2p_map</c>, <c>unmap</c>, <c>mapping_error</c>, <c>sync</c>.</summary>
internal sealed class SingleMapOps(RunState s)
{
    public void Register(OpTable t)
    {
        t.On<MapStep, MapResult>(Map);
        t.On<P2PMapStep, MapResult>(P2PMap);
        t.On<UnmapStep, UnmapResult>(Unmap);
        t.On<MappingErrorStep, MappingErrorResult>(MappingError);
        t.On<SyncStep, SyncResult>(Sync);
    }

    public static string MapTypeName(P2PMapType t) => t switch
    {
        P2PMapType.BusAddr => "bus_addr",
        P2PMapType.ThruHostBridge => "thru_host_bridge",
        P2PMapType.NotSupported => "not_supported",
        _ => "none",
    };

    /// <summary>
    /// What <c>map</c> and <c>p2p_map</c> share before the call: the device, the buffer and the range inside
    /// it (an offset past the end is bad input), recorded in the step's result.
    /// </summary>
    private (Device Dev, Buffer Buf, ulong Size, PhysAddr Phys) Begin(
        Step step, string devName, string bufName, ulong offset, ulong? sizeOpt, DmaDirection dir, DmaAttrs attrs, string handle, MapResult r)
    {
        var dev = s.M.Device(devName);
        var b = s.Buffers[bufName];
        if (offset >= b.Size)
        {
            throw s.Error(step, "offset", $"offset {offset} is outside buffer '{b.Name}' ({b.Size} bytes)");
        }
        var size = sizeOpt ?? b.Size - offset;
        var phys = b.PhysAt(offset);
        if (phys.Value + size < phys.Value)
        {
            throw s.Error(step, "size", $"{phys} + size {Hex.Format(size)} runs past the end of the 64-bit address space");
        }
        var pages = Sizes.DivRoundUp(phys.OffsetInPage(s.M.PageSize) + size, s.M.PageSize);
        if (pages > BufferAllocator.MaxPagesPerBuffer)
        {
            // A mapping may run past its buffer (drivers get lengths wrong), but the model keeps per-page state
            // (PTEs, IO page tables, dma-debug's view): a step spans a bounded number of pages.
            throw s.Error(step, "size", $"size {size} spans {pages} pages; the model keeps per-page state and allows at most {BufferAllocator.MaxPagesPerBuffer} pages per mapping");
        }
        r.Handle = handle;
        r.Dev = dev.Name;
        r.Phys = new HexAddr(phys.Value);
        r.Size = size;
        r.Dir = dir.ScenarioName();
        r.Attrs = FlagSet.Of(attrs);
        return (dev, b, size, phys);
    }

    /// <summary>
    /// What both map ops do after the call: the handle is registered under its <c>as:</c> name (a failed map too:
    /// a driver may still unmap it), and the outcome fields are filled; bounce and prot only for a mapping made.
    /// </summary>
    private void End(MapResult r, Handle h, string? error, bool ok, string p2p)
    {
        s.Handles[h.Name] = h;
        var addr = h.Addr;
        r.Error = error;
        r.DmaAddr = new HexAddr(addr.Value);
        r.Path = ok ? DmaRecorder.PathName(s.Recorder.Path) : "none";
        r.P2p = p2p;
        r.Bounce = s.Recorder.Bounce is { } bounce && ok ? new HexAddr(bounce.Value) : null;
        r.IommuProt = s.Recorder.IommuProt is { } prot && ok ? FlagSet.Prot(prot) : null;
    }

    private void Map(MapStep step, MapResult r)
    {
        var (dev, b, size, phys) = Begin(step, step.Dev, step.Buf, step.Offset, step.Size, step.Dir, step.Attrs, step.As, r);
        if (step.Api == MapApi.Page && !b.HasStructPage)
        {
            throw s.Error(step, "api", $"api page needs a struct page, and buffer '{b.Name}' ({b.KindName}) has none; use api phys or resource with mmio");
        }
        DmaAddr addr;
        using (s.Measure(r))
        {
            var api = s.Api;
            addr = step.Api switch
            {
                MapApi.Page => api.MapPage(dev, new Page(phys.Pfn(s.M.PageShift)), phys.OffsetInPage(s.M.PageSize), size, step.Dir, step.Attrs),
                MapApi.Single when step.Kmap => api.MapSingle(dev, s.M.Kmap.KmapLocalPfn(phys.Pfn(s.M.PageShift)) + phys.OffsetInPage(s.M.PageSize), size, step.Dir, step.Attrs),
                MapApi.Single => api.MapSingle(dev, b.Va + step.Offset, size, step.Dir, step.Attrs),
                MapApi.Resource => api.MapResource(dev, phys, size, step.Dir, step.Attrs),
                _ => api.MapPhys(dev, phys, size, step.Dir, step.Attrs),
            };
            var h = new Handle { Name = step.As, Dev = dev, Buf = b, Phys = phys, Size = size, Dir = step.Dir, Attrs = step.Attrs, Api = step.Api, Addr = addr };
            End(r, h, addr.IsError ? "DMA_MAPPING_ERROR" : null, !addr.IsError, "none");
        }
    }

    private void P2PMap(P2PMapStep step, MapResult r)
    {
        var (dev, b, size, phys) = Begin(step, step.Dev, step.Buf, step.Offset, step.Size, step.Dir, step.Attrs, step.As, r);
        using (s.Measure(r))
        {
            P2PMapping m;
            if (b.HasStructPage)
            {
                // Block layer / HMM: the page's pgmap says whether and whose P2P memory this is.
                var state = default(P2PMapState);
                m = s.Importer.MapPage(ref state, dev, new Page(phys.Pfn(s.M.PageShift)), phys, size, step.Dir, step.Attrs);
            }
            else if (s.Api.P2P.ProviderAt(phys) is { } provider)
            {
                // VFIO dma-buf: the exporter hands over the provider with the page-less range.
                m = s.Importer.MapProvider(provider, dev, phys, size, step.Dir, step.Attrs);
            }
            else
            {
                throw s.Error(step, "buf", $"buffer '{b.Name}' ({b.KindName}) is neither memory with struct page nor part of a PCI BAR: no importer can map it");
            }
            var h = new Handle { Name = step.As, Dev = dev, Buf = b, Phys = phys, Size = size, Dir = step.Dir, Attrs = step.Attrs, Api = MapApi.Phys, Addr = m.Addr, P2P = m };
            End(r, h, m.Error != Errno.None ? m.Error.ToString() : m.Addr.IsError ? "DMA_MAPPING_ERROR" : null, m.Ok, MapTypeName(m.Type));
        }
    }

    private void Unmap(UnmapStep step, UnmapResult r)
    {
        var h = s.Handles[step.Handle];
        var size = step.Size ?? h.Size;
        var dir = step.Dir ?? h.Dir;
        var attrs = step.Attrs ?? h.Attrs;
        r.Handle = h.Name;
        r.Dev = h.Dev.Name;
        r.DmaAddr = new HexAddr(h.Addr.Value);
        r.Size = size;
        r.Dir = dir.ScenarioName();
        r.Attrs = FlagSet.Of(attrs);
        using (s.Measure(r))
        {
            if (h.P2P is { } p2p)
            {
                s.Importer.Unmap(h.Dev, p2p, size, dir, attrs);
            }
            else
            {
                switch (step.Api ?? h.Api)
                {
                    case MapApi.Page:
                        s.Api.UnmapPage(h.Dev, h.Addr, size, dir, attrs);
                        break;
                    case MapApi.Single:
                        s.Api.UnmapSingle(h.Dev, h.Addr, size, dir, attrs);
                        break;
                    case MapApi.Resource:
                        s.Api.UnmapResource(h.Dev, h.Addr, size, dir, attrs);
                        break;
                    default:
                        s.Api.UnmapPhys(h.Dev, h.Addr, size, dir, attrs);
                        break;
                }
            }
            h.Unmapped = true;
        }
    }

    private void MappingError(MappingErrorStep step, MappingErrorResult r)
    {
        var h = s.Handles[step.Handle];
        r.Handle = h.Name;
        r.Dev = h.Dev.Name;
        r.DmaAddr = new HexAddr(h.Addr.Value);
        var ret = s.Api.MappingError(h.Dev, h.Addr);
        r.Ret = -(long)ret;
        r.Error = ret == Errno.None ? null : ret.ToString();
    }

    private void Sync(SyncStep step, SyncResult r)
    {
        var h = s.Handles[step.Handle];
        var size = step.Size ?? h.Size - Math.Min(step.Offset, h.Size);
        var dir = step.Dir ?? h.Dir;
        var addr = h.Addr + step.Offset;
        r.Handle = h.Name;
        r.Dev = h.Dev.Name;
        r.DmaAddr = new HexAddr(addr.Value);
        r.Size = size;
        r.Dir = dir.ScenarioName();
        r.For = step.ForCpu ? "cpu" : "device";
        using (s.Measure(r))
        {
            if (step.ForCpu)
            {
                s.Api.SyncSingleForCpu(h.Dev, addr, size, dir);
            }
            else
            {
                s.Api.SyncSingleForDevice(h.Dev, addr, size, dir);
            }
        }
    }
}
