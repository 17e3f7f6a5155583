using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// dma-iommu (drivers/iommu/dma-iommu.c, 6.18): streaming DMA for devices behind a translating IOMMU.
/// Builds the IOMMU from the machine's description and gives every translated device its default
/// domain; maps by allocating an IOVA and writing PTEs with the prot <see cref="InfoToProt"/> gives;
/// unmaps strictly (IOTLB invalidated before returning) or lazily through the flush queue; bounces
/// unaligned buffers of untrusted devices through swiotlb with zeroed padding.
/// </summary>
internal sealed partial class DmaIommu
{
    private readonly DmaApi _api;
    private readonly Machine _m;
    private readonly List<IommuDmaCookie> _cookies = [];

    internal DmaIommu(DmaApi api, IommuConfig config)
    {
        _api = api;
        _m = api.Machine;
        Unit = new IommuUnit(config, _m.PageSize, _m.Clock);
        foreach (var dev in _m.Devices)
        {
            var translated = dev.Config.Iommu ?? dev.IsPci;
            if (!translated)
            {
                continue;
            }
            // iommu_get_def_domain_type: external-facing devices always get a strict DMA domain.
            var type = dev.Untrusted ? IommuDomainType.Dma : config.Mode switch
            {
                IommuMode.Strict => IommuDomainType.Dma,
                IommuMode.Lazy => IommuDomainType.DmaFq,
                _ => IommuDomainType.Identity,
            };
            var domain = Unit.AllocDomain(type);
            if (domain.IsPaging)
            {
                var cookie = InitDomain(dev, domain, config);
                _api.State(dev).Cookie = cookie;
                _cookies.Add(cookie);
                dev.DmaIommu = true;
                dev.Pci32BitWorkaround = dev.IsPci && !config.ForceDac;
            }
            Unit.Attach(dev, domain);
        }
    }

    /// <summary>The IOMMU hardware.</summary>
    public IommuUnit Unit { get; }

    public IommuDmaCookie? CookieOf(Device dev) => _api.State(dev).Cookie;

    public IommuDomain? DomainOf(Device dev) => Unit.DomainOf(dev);

    /// <summary>IOVA pages in live mappings over every DMA domain (results' <c>iova_pages_in_use</c>).</summary>
    public ulong IovaPagesInUse => _cookies.Aggregate(0UL, (n, c) => n + c.PagesInUse);

    /// <summary>IOTLB entries (results' <c>iotlb_entries</c>).</summary>
    public int IotlbEntries => Unit.Iotlb.Count;

    /// <summary>
    /// <c>iommu_dma_init_domain</c>: the IOVA space from the aperture (never pfn 0), the PCI host-bridge
    /// windows and the IOMMU's reserved regions carved out, and for DMA_FQ the flush queue.
    /// </summary>
    private IommuDmaCookie InitDomain(Device dev, IommuDomain domain, IommuConfig config)
    {
        var shift = domain.GranuleShift;
        var iovad = new IovaDomain(domain.Granule, Math.Max(1UL, domain.ApertureStart >> shift), _m.Cpus, _m.Clock);
        // iova_reserve_pci_windows: host-bridge MEM windows are reserved in every IOVA domain (peer addresses, not memory).
        foreach (var node in _m.Config.Pci)
        {
            if (node.Type != PciNodeType.HostBridge)
            {
                continue;
            }
            foreach (var w in node.Windows)
            {
                if (w.Size != 0)
                {
                    iovad.ReserveIova(w.Base >> shift, (w.End - 1) >> shift);
                }
            }
        }
        foreach (var r in config.Reserved)
        {
            if (r.Size != 0)
            {
                iovad.ReserveIova(r.Base >> shift, (r.End - 1) >> shift);
            }
        }
        IovaFlushQueue? fq = null;
        if (domain.Type == IommuDomainType.DmaFq)
        {
            fq = new IovaFlushQueue(iovad, domain.FlushIotlbAll, _m.Clock, _m.Cpus, config.FlushQueue.Entries, config.FlushQueue.TimeoutMs);
        }
        return new IommuDmaCookie(domain, iovad, fq);
    }

    private IommuDmaCookie Cookie(Device dev) => _api.State(dev).Cookie ?? NoDomain(dev);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static IommuDmaCookie NoDomain(Device dev) =>
        throw new ModelViolation($"{dev.Name}: dma-iommu call for a device without a DMA domain");

    /// <summary><c>dma_info_to_prot</c>.</summary>
    public static int InfoToProt(DmaDirection dir, bool coherent, DmaAttrs attrs)
    {
        var prot = (attrs & DmaAttrs.Mmio) != 0 ? IommuProt.Mmio : coherent ? IommuProt.Cache : 0;
        if ((attrs & DmaAttrs.Privileged) != 0)
        {
            prot |= IommuProt.Priv;
        }
        return dir switch
        {
            DmaDirection.Bidirectional => prot | IommuProt.Read | IommuProt.Write,
            DmaDirection.ToDevice => prot | IommuProt.Read,
            DmaDirection.FromDevice => prot | IommuProt.Write,
            _ => 0,
        };
    }

    /// <summary><c>dev_use_swiotlb</c>: untrusted devices, and kmalloc buffers a non-coherent device could corrupt.</summary>
    public bool DevUseSwiotlb(Device dev, ulong size, DmaDirection dir) =>
        dev.Untrusted || _api.Direct.KmallocNeedsBounce(dev, size, dir);

    /// <summary><c>iommu_dma_map_phys</c>.</summary>
    public DmaAddr MapPhys(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var coherent = dev.Coherent;
        var prot = InfoToProt(dir, coherent, attrs);
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var mmio = (attrs & DmaAttrs.Mmio) != 0;
        var bounced = false;

        if (_api.Recorder?.Why is { } why)
        {
            if (DevUseSwiotlb(dev, size, dir))
            {
                DmaWhy.UseSwiotlb(why, dev, phys, size, iovad.Granule, ((phys.Value | size) & (iovad.Granule - 1)) != 0);
            }
            DmaWhy.Prot(why, coherent, attrs, prot);
        }
        if (DevUseSwiotlb(dev, size, dir) && ((phys.Value | size) & (iovad.Granule - 1)) != 0)
        {
            if (mmio)
            {
                // Device memory cannot be copied into a bounce buffer: fail without a word.
                return DmaAddr.MappingError;
            }
            phys = MapSwiotlb(dev, iovad, phys, size, dir, attrs);
            if (phys.IsInvalid)
            {
                return DmaAddr.MappingError;
            }
            bounced = true;
        }

        if (!coherent && (attrs & (DmaAttrs.SkipCpuSync | DmaAttrs.Mmio)) == 0)
        {
            _m.ArchCache.SyncForDevice(phys, size, dir);
        }

        // dma_get_mask: a zero mask means the 32-bit default.
        var mask = dev.DmaMask != 0 ? dev.DmaMask : Sizes.DmaBitMask(32);
        var iova = Map(dev, cookie, phys, size, prot, mask);
        if (iova.IsError)
        {
            if (!mmio)
            {
                _api.Swiotlb.TblUnmapSingle(dev, phys, size, dir, attrs);
            }
            return iova;
        }
        if (_api.Recorder is { } rec)
        {
            rec.Path = bounced ? DmaPath.IommuSwiotlb : DmaPath.Iommu;
            rec.IommuProt = prot;
            if (bounced)
            {
                rec.Bounce = phys;
            }
        }
        return iova;
    }

    /// <summary>
    /// <c>iommu_dma_map_swiotlb</c>: bounce through a granule-aligned swiotlb slot; for untrusted devices
    /// the slot bytes before and after the data, up to the granule edges, are zeroed so the device sees
    /// no stale kernel data through the page it is given.
    /// </summary>
    private PhysAddr MapSwiotlb(Device dev, IovaDomain iovad, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var sw = _api.Swiotlb;
        if (!sw.IsActive(dev))
        {
            WarnBounceInactive(dev);
            return PhysAddr.Invalid;
        }
        if (_api.Trace.SwiotlbEnabled)
        {
            _api.Trace.SwiotlbBounced(dev, phys.Value, size, sw.IsForceBounce(dev));
        }
        var tlb = sw.TblMapSingle(dev, phys, size, iovad.Granule - 1, dir, attrs);
        if (!tlb.IsInvalid && dev.Untrusted)
        {
            var virt = _m.Kmap.PhysToVirt(tlb);
            var pre = iovad.IovaOffset(virt.Value);
            _m.Cpu.Memset(new KernelVirt(virt.Value - pre), 0, pre);
            var end = virt + size;
            _m.Cpu.Memset(end, 0, iovad.IovaAlign(end.Value) - end.Value);
        }
        return tlb;
    }

    private void WarnBounceInactive(Device dev) =>
        _api.Log.WarnOnce("iommu_dma_map_swiotlb:inactive:" + dev.Name,
            () => $"{dev.PrintkPrefix}: DMA bounce buffers are inactive, unable to map unaligned transaction.");

    /// <summary>
    /// <c>__iommu_dma_map</c>: IOVA for the granule-aligned span around [phys, phys+size), PTEs written,
    /// the in-granule offset carried over to the returned address.
    /// </summary>
    private DmaAddr Map(Device dev, IommuDmaCookie cookie, PhysAddr phys, ulong size, int prot, ulong dmaMask)
    {
        var iovad = cookie.Iovad;
        if (dev.MinAlignMask > iovad.Granule - 1)
        {
            WarnAlignment(dev);
            return DmaAddr.MappingError;
        }
        var off = iovad.IovaOffset(phys.Value);
        var len = iovad.IovaAlign(size + off);
        var iova = AllocIova(dev, cookie, len, dmaMask);
        if (iova == 0)
        {
            return DmaAddr.MappingError;
        }
        if (IommuMap(cookie.Domain, iova, phys - off, len, prot) != Errno.None)
        {
            // A failed map never went live, so its IOVA skips the flush queue.
            FreeIova(cookie, iova, len, queued: false);
            return DmaAddr.MappingError;
        }
        return new DmaAddr(iova + off);
    }

    private void WarnAlignment(Device dev) =>
        _api.Log.WarnOnce("__iommu_dma_map:min_align:" + dev.Name, () => $"WARNING: {dev.Name}: Unsupported alignment constraint");

    /// <summary>
    /// <c>iommu_dma_alloc_iova</c>: below the device's limit (clipped to the aperture); PCI devices with a
    /// wider mask try the 32-bit space first until that fails once, then say so and stop trying.
    /// Returns the IOVA, or 0.
    /// </summary>
    public ulong AllocIova(Device dev, IommuDmaCookie cookie, ulong size, ulong dmaLimit)
    {
        var iovad = cookie.Iovad;
        var shift = iovad.Shift;
        var pages = size >> shift;
        dmaLimit = Sizes.MinNotZero(dmaLimit, dev.BusDmaLimit);
        if (cookie.Domain.ForceAperture)
        {
            dmaLimit = Math.Min(dmaLimit, cookie.Domain.ApertureEnd);
        }
        if (dmaLimit > Sizes.DmaBitMask(32) && dev.Pci32BitWorkaround)
        {
            var pfn32 = _m.Inject.Fail(FaultPoint.AllocIovaFast) ? 0 : iovad.AllocIovaFast(pages, Sizes.DmaBitMask(32) >> shift, flushRcache: false);
            if (pfn32 != 0)
            {
                if (_api.Recorder?.Why is { } low)
                {
                    DmaWhy.AllocIova(low, dev, dmaLimit, triedLow: true, pfn32 << shift, size);
                }
                return pfn32 << shift;
            }
            dev.Pci32BitWorkaround = false;
            NoticeDac(dev, dmaLimit);
        }
        var iova = (_m.Inject.Fail(FaultPoint.AllocIovaFast) ? 0 : iovad.AllocIovaFast(pages, dmaLimit >> shift, flushRcache: true)) << shift;
        if (_api.Recorder?.Why is { } why)
        {
            DmaWhy.AllocIova(why, dev, dmaLimit, triedLow: false, iova, size);
        }
        return iova;
    }

    private void NoticeDac(Device dev, ulong dmaLimit) =>
        _api.Log.Print(LogLevel.Notice, $"{dev.PrintkPrefix}: Using {Sizes.Fls64(dmaLimit)}-bit DMA addresses");

    /// <summary><c>iommu_dma_free_iova</c>: through the flush queue when the unmap was queued, else straight back.</summary>
    private static void FreeIova(IommuDmaCookie cookie, ulong iova, ulong size, bool queued)
    {
        var iovad = cookie.Iovad;
        if (queued)
        {
            cookie.Fq!.Queue(iovad.IovaPfn(iova), size >> iovad.Shift);
        }
        else
        {
            iovad.FreeIovaFast(iovad.IovaPfn(iova), size >> iovad.Shift);
        }
    }

    /// <summary><c>iommu_dma_unmap_phys</c>.</summary>
    public void UnmapPhys(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var cookie = Cookie(dev);
        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            UnmapIova(dev, cookie, addr, size);
            return;
        }
        var phys = cookie.Domain.IovaToPhys(addr.Value);
        if (phys.Value == 0)
        {
            WarnUnmapped(dev);
            return;
        }
        if ((attrs & DmaAttrs.SkipCpuSync) == 0 && !dev.Coherent)
        {
            _m.ArchCache.SyncForCpu(phys, size, dir);
        }
        UnmapIova(dev, cookie, addr, size);
        _api.Swiotlb.TblUnmapSingle(dev, phys, size, dir, attrs);
    }

    private void WarnUnmapped(Device dev) =>
        _api.Log.Print(LogLevel.Warn, $"WARNING: {dev.Name}: iommu_dma_unmap_phys: WARN_ON(!phys)");

    /// <summary>
    /// <c>__iommu_dma_unmap</c>: clear the PTEs of the granule-aligned span; strict domains invalidate the
    /// IOTLB before returning and free the IOVA at once, DMA_FQ domains leave the IOTLB alone and queue it.
    /// </summary>
    private void UnmapIova(Device dev, IommuDmaCookie cookie, DmaAddr addr, ulong size)
    {
        var iovad = cookie.Iovad;
        var off = iovad.IovaOffset(addr.Value);
        var iova = addr.Value - off;
        var len = iovad.IovaAlign(size + off);
        var gather = IotlbGather.Init();
        gather.Queued = cookie.Fq is not null;
        var unmapped = cookie.Domain.UnmapFast(iova, len, ref gather);
        if (unmapped != len)
        {
            WarnShortUnmap(dev, unmapped, len);
        }
        if (!gather.Queued)
        {
            cookie.Domain.IotlbSync(ref gather);
        }
        FreeIova(cookie, iova, len, gather.Queued);
    }

    private void WarnShortUnmap(Device dev, ulong unmapped, ulong len) =>
        _api.Log.Print(LogLevel.Warn, $"WARNING: {dev.Name}: __iommu_dma_unmap: WARN_ON(unmapped != size) ({unmapped} != {len})");

    /// <summary><c>iommu_dma_sync_single_for_cpu</c>.</summary>
    public void SyncSingleForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (dev.Coherent && !DevUseSwiotlb(dev, size, dir))
        {
            return;
        }
        var phys = Cookie(dev).Domain.IovaToPhys(addr.Value);
        if (!dev.Coherent)
        {
            _m.ArchCache.SyncForCpu(phys, size, dir);
        }
        _api.Swiotlb.SyncSingleForCpu(dev, phys, size, dir);
    }

    /// <summary><c>iommu_dma_sync_single_for_device</c>.</summary>
    public void SyncSingleForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (dev.Coherent && !DevUseSwiotlb(dev, size, dir))
        {
            return;
        }
        var phys = Cookie(dev).Domain.IovaToPhys(addr.Value);
        _api.Swiotlb.SyncSingleForDevice(dev, phys, size, dir);
        if (!dev.Coherent)
        {
            _m.ArchCache.SyncForDevice(phys, size, dir);
        }
    }

    /// <summary><c>iommu_dma_max_mapping_size</c>: untrusted devices may need to bounce the whole buffer.</summary>
    public ulong MaxMappingSize(Device dev) => dev.Untrusted ? _api.Swiotlb.MaxMappingSize(dev) : ulong.MaxValue;

    /// <summary><c>iommu_dma_opt_mapping_size</c> = <c>iova_rcache_range</c>: the largest size the IOVA caches serve.</summary>
    public ulong OptMappingSize() => _m.PageSize << (IovaDomain.RangeCacheMaxSize - 1);

    /// <summary><c>iommu_dma_get_merge_boundary</c>.</summary>
    public ulong MergeBoundary(Device dev) => Cookie(dev).Iovad.Granule - 1;

    /// <summary>
    /// A full IOTLB flush now (the scenario op <c>iommu_flush</c>): every lazy domain runs what its flush
    /// queue timer would (flush, then free what may be freed); the IOTLB of every other domain is flushed.
    /// </summary>
    /// <summary>
    /// <c>iommu_map</c> as dma-iommu calls it: an injected failure (<see cref="FaultPoint.IommuMap"/>) is the
    /// IO page-table page allocation failing, -ENOMEM, before anything is mapped.
    /// </summary>
    internal Errno IommuMap(IommuDomain domain, ulong iova, PhysAddr phys, ulong size, int prot) =>
        _m.Inject.Fail(FaultPoint.IommuMap) ? Errno.ENOMEM : domain.Map(iova, phys, size, prot);

    public void FlushAll()
    {
        foreach (var c in _cookies)
        {
            if (c.Fq is { } fq)
            {
                fq.FlushNow();
            }
        }
        Unit.FlushAll();
    }
}
