using PhysDma.Core;
using PhysDma.Dma;

namespace PhysDma.Scenarios;

/// <summary>The two-step IOVA API: <c>iova_alloc</c>, <c>iova_link</c>, <c>iova_sync</c>, <c>iova_unlink</c>, <c>iova_free</c>, <c>iova_destroy</c>.</summary>
internal sealed class IovaOps(RunState s)
{
    public void Register(OpTable t)
    {
        t.On<IovaAllocStep, IovaAllocResult>(Alloc);
        t.On<IovaLinkStep, IovaLinkResult>(Link);
        t.On<IovaSyncStep, IovaSyncResult>(Sync);
        t.On<IovaUnlinkStep, IovaUnlinkResult>(Unlink);
        t.On<IovaFreeStep, IovaFreeResult>(Free);
        t.On<IovaDestroyStep, IovaDestroyResult>(Destroy);
    }

    /// <summary>The IOVA state a step names, with its name and device put in the result.</summary>
    private IovaHandle Open<TStep>(TStep step, IIovaStateResult r)
        where TStep : Step, IIovaStateStep
    {
        var h = s.IovaState(step, step.State);
        r.Handle = step.State;
        r.Dev = h.Dev.Name;
        return h;
    }

    private void Alloc(IovaAllocStep step, IovaAllocResult r)
    {
        var dev = s.M.Device(step.Dev);
        var phys = step.PhysOf is { } po ? s.Buffers[po].PhysAt(step.PhysOfOffset) : new PhysAddr(0);
        var state = new DmaIovaState();
        var ok = s.Api.Iommu is not null && s.Api.IovaTryAlloc(dev, state, phys, step.Size);
        var fallback = !ok && step.FallbackMapPhys;
        s.Iova[step.As] = new IovaHandle { Dev = dev, State = state, Done = !ok && !fallback, Fallback = fallback };
        r.Handle = step.As;
        r.Dev = dev.Name;
        r.Size = step.Size;
        r.DmaAddr = ok ? new HexAddr(state.Addr.Value) : null;
        r.UseIova = DmaApi.UseIova(state);
        r.Error = null;
    }

    private void Link(IovaLinkStep step, IovaLinkResult r)
    {
        var h = Open(step, r);
        var b = s.Buffers[step.Buf];
        s.CheckRange(step, b, step.Offset, step.Size, "size");
        var phys = b.PhysAt(step.Offset);
        r.Phys = new HexAddr(phys.Value);
        r.Size = step.Size;
        r.At = step.At;
        r.Dir = step.Dir.ScenarioName();
        r.Attrs = FlagSet.Of(step.Attrs);
        if (h.Fallback)
        {
            LinkByMapPhys(h, step, phys, r);
            return;
        }
        using (s.Measure(r))
        {
            var ret = s.Api.IovaLink(h.Dev, h.State, phys, step.At, step.Size, step.Dir, step.Attrs);
            var ok = ret == Errno.None;
            r.DmaAddr = ok ? new HexAddr((h.State.Addr + step.At).Value) : null;
            r.Ret = -(long)ret;
            r.Error = ok ? null : ret.ToString();
            r.Bounce = s.Recorder.Bounce is { } bounce && ok ? new HexAddr(bounce.Value) : null;
            r.IommuProt = s.Recorder.IommuProt is { } prot && ok ? FlagSet.Prot(prot) : null;
        }
    }

    /// <summary>The fallback: the driver maps the link on its own with <c>dma_map_phys</c> and checks it.</summary>
    private void LinkByMapPhys(IovaHandle h, IovaLinkStep step, PhysAddr phys, IovaLinkResult r)
    {
        r.Fallback = "dma_map_phys";
        using (s.Measure(r))
        {
            var addr = s.Api.MapPhys(h.Dev, phys, step.Size, step.Dir, step.Attrs);
            var ok = s.Api.MappingError(h.Dev, addr) == Errno.None;
            h.Links.Add(new FallbackLink(step.At, phys, step.Size, step.Dir, step.Attrs, ok ? addr : DmaAddr.MappingError));
            r.Path = ok ? DmaRecorder.PathName(s.Recorder.Path) : "none";
            r.DmaAddr = ok ? new HexAddr(addr.Value) : null;
            r.Ret = ok ? 0 : -(long)Errno.EIO;
            r.Error = ok ? null : "DMA_MAPPING_ERROR";
            r.Bounce = s.Recorder.Bounce is { } bounce && ok ? new HexAddr(bounce.Value) : null;
            r.IommuProt = s.Recorder.IommuProt is { } prot && ok ? FlagSet.Prot(prot) : null;
        }
    }

    /// <summary>The fallback's unmap of every mapped link inside [at, at + size).</summary>
    private void UnmapLinks(IovaHandle h, ulong at, ulong size)
    {
        foreach (var l in h.Links.Where(l => !l.Unmapped && l.At >= at && l.At - at < size))
        {
            if (!l.Addr.IsError)
            {
                s.Api.UnmapPhys(h.Dev, l.Addr, l.Size, l.Dir, l.Attrs);
            }
            l.Unmapped = true;
        }
    }

    private void Sync(IovaSyncStep step, IovaSyncResult r)
    {
        var h = Open(step, r);
        r.At = step.At;
        r.Size = step.Size;
        if (h.Fallback)
        {
            // Streaming mappings are visible to the device once mapped: nothing to sync.
            r.Ret = 0;
            return;
        }
        var ret = s.Api.IovaSync(h.Dev, h.State, step.At, step.Size);
        r.Ret = -(long)ret;
        r.Error = ret == Errno.None ? null : ret.ToString();
    }

    private void Unlink(IovaUnlinkStep step, IovaUnlinkResult r)
    {
        var h = Open(step, r);
        r.At = step.At;
        r.Size = step.Size;
        r.Dir = step.Dir.ScenarioName();
        r.Attrs = FlagSet.Of(step.Attrs);
        using (s.Measure(r))
        {
            if (h.Fallback)
            {
                UnmapLinks(h, step.At, step.Size);
                return;
            }
            s.Api.IovaUnlink(h.Dev, h.State, step.At, step.Size, step.Dir, step.Attrs);
        }
    }

    private void Free(IovaFreeStep step, IovaFreeResult r)
    {
        var h = Open(step, r);
        if (!h.Fallback)
        {
            s.Api.IovaFree(h.Dev, h.State);
        }
        h.Done = true;
    }

    private void Destroy(IovaDestroyStep step, IovaDestroyResult r)
    {
        var h = Open(step, r);
        r.MappedLen = step.MappedLen;
        r.Dir = step.Dir.ScenarioName();
        r.Attrs = FlagSet.Of(step.Attrs);
        using (s.Measure(r))
        {
            if (h.Fallback)
            {
                UnmapLinks(h, 0, ulong.MaxValue);
            }
            else
            {
                s.Api.IovaDestroy(h.Dev, h.State, step.MappedLen, step.Dir, step.Attrs);
            }
        }
        h.Done = true;
    }
}
