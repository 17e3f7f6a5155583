using PhysDma.Core;

namespace PhysDma.Scenarios;

/// <summary>Coherent allocations: <c>alloc_coherent</c> (which also makes a buffer for the CPU side) and <c>free_coherent</c>.</summary>
internal sealed class CoherentOps(RunState s)
{
    public void Register(OpTable t)
    {
        t.On<AllocCoherentStep, AllocCoherentResult>(Alloc);
        t.On<FreeCoherentStep, FreeCoherentResult>(Free);
    }

    private void Alloc(AllocCoherentStep step, AllocCoherentResult r)
    {
        var dev = s.M.Device(step.Dev);
        var spanPages = Sizes.DivRoundUp(step.Size, s.M.PageSize);
        if (spanPages > BufferAllocator.MaxPagesPerBuffer && step.Size <= s.M.Allocator.FreeBytes)
        {
            // An allocation the free RAM could hold but the model's per-page state bounds (beyond the free RAM,
            // dma_alloc_attrs itself fails with NULL, as the kernel's does).
            throw s.Error(step, "size", $"{step.Size} bytes span {spanPages} pages; the model keeps per-page state and allows at most {BufferAllocator.MaxPagesPerBuffer} pages per buffer");
        }
        r.Handle = step.As;
        r.Dev = dev.Name;
        r.Size = step.Size;
        r.Attrs = FlagSet.Of(step.Attrs);
        KernelVirt? va;
        DmaAddr dma;
        using (s.Measure(r))
        {
            va = s.Api.AllocAttrs(dev, step.Size, out dma, step.Attrs);
        }
        r.DmaAddr = new HexAddr(dma.Value);
        if (va is not { } cpu)
        {
            r.Path = "none";
            r.Error = "ENOMEM";
            return;
        }
        var pageSize = s.M.PageSize;
        var npages = (int)((step.Size + pageSize - 1) / pageSize);
        var pages = new PhysAddr[npages];
        for (var i = 0; i < npages; i++)
        {
            pages[i] = s.M.Kmap.VirtToPhys(cpu + ((ulong)i * pageSize));
        }
        var buf = new Buffer
        {
            Name = step.As,
            Kind = BufferKind.Coherent,
            Size = step.Size,
            Va = cpu,
            Pages = pages,
            FirstOffset = 0,
            HasStructPage = true,
            PageSize = pageSize,
        };
        s.Buffers[step.As] = buf;
        s.Handles[step.As] = new Handle
        {
            Name = step.As,
            Dev = dev,
            Buf = buf,
            Phys = pages[0],
            Size = step.Size,
            Dir = DmaDirection.Bidirectional,
            Attrs = step.Attrs,
            Api = MapApi.Phys,
            Addr = dma,
        };
        r.Phys = new HexAddr(pages[0].Value);
        r.Path = dev.DmaIommu ? "iommu" : s.Api.Swiotlb.IsSwiotlbBuffer(dev, pages[0]) ? "swiotlb" : "direct";
        r.IommuProt = s.Recorder.IommuProt is { } prot ? FlagSet.Prot(prot) : null;
    }

    private void Free(FreeCoherentStep step, FreeCoherentResult r)
    {
        var h = s.Handles[step.Handle];
        if (h.Unmapped)
        {
            throw s.Error(step, "handle", $"coherent allocation '{step.Handle}' was already freed");
        }
        r.Handle = step.Handle;
        r.Dev = h.Dev.Name;
        r.DmaAddr = new HexAddr(h.Addr.Value);
        r.Size = h.Size;
        if (!h.Addr.IsError)
        {
            s.Api.FreeAttrs(h.Dev, h.Size, h.Buf.Va + step.CpuOffset, h.Addr, h.Attrs);
        }
        h.Unmapped = true;
        h.Buf.Freed = true;
    }
}
