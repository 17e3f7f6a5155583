using PhysDma.Core;
using PhysDma.Dma.Trace;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// The driver-facing DMA API (kernel/dma/mapping.c, 6.18): one phys-based entry point,
/// <see cref="MapPhys"/>/<see cref="UnmapPhys"/>, with the page, single and resource wrappers, the
/// single-buffer syncs and the mask and size queries on top. It picks the backend for each device
/// (dma-direct, dma-iommu or the device's legacy ops) and runs the hooks after it.
/// </summary>
internal sealed partial class DmaApi
{
    public DmaApi(Machine machine)
    {
        Machine = machine;
        _devState = NewDeviceStates(machine);
        Trace = new DmaTrace(machine.Clock);
        Direct = new DmaDirect(this);
        Swiotlb = new Swiotlb(this);
        // dma-debug: built only when configured, so "off" is one null check per hook.
        Debug = machine.Config.Debug ? new DmaDebug(this) : null;
        // Default domains are set up at IOMMU probe, before any driver sets a mask.
        Iommu = machine.Config.Iommu is { } iommuConfig ? new DmaIommu(this, iommuConfig) : null;
        if (Iommu is not null)
        {
            Debug?.WatchIommu(Iommu.Unit);
            Trace.AttachIommu(Iommu.Unit);
        }
        foreach (var dev in machine.Devices)
        {
            if (dev.Config.Ops != DeviceOpsKind.None)
            {
                State(dev).Ops = new DmaOps(this, dev.Config.Ops);
            }
            // What the driver's probe does: dma_set_mask_and_coherent().
            if (dev.HasDmaMask)
            {
                if (SetMask(dev, dev.DmaMask) != Errno.None)
                {
                    var index = machine.Config.Devices.ToList().IndexOf(dev.Config);
                    throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), index).Then(nameof(DeviceConfig.DmaMaskBits)),
                        $"device '{dev.Name}': dma_set_mask({Hex.Format(dev.DmaMask)}) fails with -EIO: the mask cannot reach ZONE_DMA");
                }
                SetCoherentMask(dev, dev.CoherentDmaMask);
            }
        }

        // PCI enumeration: the hierarchy, P2PDMA providers and pools, and peer routing of every PCI
        // device's transactions (wrapping whatever translation the device got above).
        Pci = new PciTopology(machine.Config);
        P2P = new P2PDma(machine, Pci);
        foreach (var dev in machine.Devices)
        {
            if (Pci.IsPci(dev.Name))
            {
                dev.Translation = new PciRouting(P2P, dev.Translation ?? machine.BusTranslation);
            }
        }
    }

    public Machine Machine { get; }
    public KernelLog Log => Machine.Log;
    public DmaTrace Trace { get; }
    public DmaDirect Direct { get; }
    public Swiotlb Swiotlb { get; }
    public PciTopology Pci { get; }
    public P2PDma P2P { get; }

    /// <summary>dma-debug and PhysDma's own checks; null when the machine has <c>debug: off</c>.</summary>
    public DmaDebug? Debug { get; }

    /// <summary>dma-iommu and the IOMMU behind it; null when the machine has no IOMMU.</summary>
    public DmaIommu? Iommu { get; }

    /// <summary>CONFIG_DMA_API_DEBUG (the machine's <c>debug</c> field).</summary>
    public bool DebugConfig => Machine.Config.Debug;

    /// <summary>When set, layers record the path, bounce slot and prot of each call here.</summary>
    public DmaRecorder? Recorder { get; set; }

    /// <summary><c>arch_dma_map_phys_direct</c> (powerpc only); null means the generic <c>false</c>.</summary>
    public Func<Device, PhysAddr, bool>? ArchMapPhysDirect { get; set; }

    /// <summary><c>arch_dma_unmap_phys_direct</c> (powerpc only); null means the generic <c>false</c>.</summary>
    public Func<Device, DmaAddr, bool>? ArchUnmapPhysDirect { get; set; }

    /// <summary><c>dma_get_cache_alignment</c>.</summary>
    public ulong CacheAlignment => Machine.DmaMinAlign;

    /// <summary>
    /// <c>__kmalloc_minalign</c>: 8 when unaligned kmalloc buffers can be bounced (the option is on and a swiotlb
    /// is allocated), else ARCH_DMA_MINALIGN.
    /// </summary>
    public ulong KmallocMinAlign =>
        Machine.Config.BounceUnalignedKmalloc && Machine.Config.Swiotlb is not null ? 8 : Math.Max(8, Machine.DmaMinAlign);

    /// <summary><c>get_dma_ops</c>.</summary>
    public DmaOps? GetOps(Device dev) => _devState[dev.Index].Ops;

    /// <summary><c>dma_go_direct</c> with the device's streaming mask (<c>dma_map_direct</c>).</summary>
    internal static bool GoDirect(Device dev, DmaOps? ops)
    {
        if (dev.DmaIommu)
        {
            return false;
        }
        return ops is null;
    }

    /// <summary>
    /// A device's <c>WARN_ONCE</c>. Kept out of line: a lambda capturing a parameter makes C# allocate
    /// its closure on every entry to the method that declares it, warning or not.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private void WarnDev(string callSite, Device dev, string text) =>
        Log.WarnOnce(callSite, () => $"WARNING: {dev.Name}: {text}");

    internal static void CheckDirection(DmaDirection dir)
    {
        if (!dir.IsValidForMapping())
        {
            throw new KernelBug($"kernel BUG: invalid DMA direction {(int)dir} (BUG_ON(!valid_dma_direction(dir)))");
        }
    }

    /// <summary><c>dma_map_phys</c>.</summary>
    public DmaAddr MapPhys(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var ops = GetOps(dev);
        var isMmio = (attrs & DmaAttrs.Mmio) != 0;
        CheckDirection(dir);
        if (!dev.HasDmaMask)
        {
            WarnDev("dma_map_phys:dma_mask", dev, "dma_map_phys: dev->dma_mask is NULL");
            return DmaAddr.MappingError;
        }

        if (Recorder?.Why is { } why)
        {
            DmaWhy.Dispatch(why, dev, ops, isMmio, !isMmio && ArchMapPhysDirect is { } a && a(dev, phys + size));
        }
        DmaAddr addr;
        if (GoDirect(dev, ops) || (!isMmio && ArchMapPhysDirect is { } arch && arch(dev, phys + size)))
        {
            addr = Direct.MapPhys(dev, phys, size, dir, attrs);
        }
        else if (dev.DmaIommu)
        {
            addr = Iommu!.MapPhys(dev, phys, size, dir, attrs);
        }
        else if (isMmio)
        {
            if (ops!.HasMapPhys)
            {
                addr = ops.MapPhys(dev, phys, size, dir, attrs);
            }
            else if (ops.HasMapResource)
            {
                addr = ops.MapResource(dev, phys, size, dir, attrs);
            }
            else
            {
                // 6.18: no map_resource means no way to map MMIO, and no hooks run.
                return DmaAddr.MappingError;
            }
        }
        else if (ops!.HasMapPhys)
        {
            addr = ops.MapPhys(dev, phys, size, dir, attrs);
        }
        else
        {
            var page = Machine.MemMap.PhysToPage(phys);
            addr = ops.MapPage(dev, page, phys.OffsetInPage(Machine.PageSize), size, dir, attrs);
        }

        // kmsan_handle_dma() would run here for !MMIO; KMSAN is not part of the modelled kernel config.
        if (Trace.DmaEnabled)
        {
            Trace.MapPhys(dev, phys, addr, size, dir, attrs);
        }
        // dma-debug hook: debug_dma_map_phys() (ignores an ERROR address).
        Debug?.MapPhys(dev, phys, size, dir, addr, attrs);
        return addr;
    }

    /// <summary><c>dma_unmap_phys</c>.</summary>
    public void UnmapPhys(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var ops = GetOps(dev);
        var isMmio = (attrs & DmaAttrs.Mmio) != 0;
        CheckDirection(dir);
        if (GoDirect(dev, ops) || (!isMmio && ArchUnmapPhysDirect is { } arch && arch(dev, addr + size)))
        {
            Direct.UnmapPhys(dev, addr, size, dir, attrs);
        }
        else if (dev.DmaIommu)
        {
            Iommu!.UnmapPhys(dev, addr, size, dir, attrs);
        }
        else if (ops!.HasMapPhys)
        {
            ops.UnmapPhys(dev, addr, size, dir, attrs);
        }
        else if (isMmio)
        {
            if (ops.HasMapResource)
            {
                ops.UnmapResource(dev, addr, size, dir, attrs);
            }
        }
        else
        {
            ops.UnmapPage(dev, addr, size, dir, attrs);
        }
        if (Trace.DmaEnabled)
        {
            Trace.UnmapPhys(dev, addr, size, dir, attrs);
        }
        // dma-debug hook: debug_dma_unmap_phys().
        Debug?.UnmapPhys(dev, addr, size, dir);
    }

    /// <summary><c>dma_map_page_attrs</c>: refuses MMIO, and ZONE_DEVICE pages when DMA-API debugging is built in.</summary>
    public DmaAddr MapPage(Device dev, Page page, ulong offset, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var phys = page.ToPhys(Machine.PageShift) + offset;
        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            return DmaAddr.MappingError;
        }
        if (DebugConfig && Machine.MemMap.Read(page).IsZoneDevice)
        {
            WarnDev("dma_map_page_attrs:zone_device", dev, "dma_map_page_attrs: is_zone_device_page(page)");
            return DmaAddr.MappingError;
        }
        return MapPhys(dev, phys, size, dir, attrs);
    }

    /// <summary><c>dma_unmap_page_attrs</c>: with MMIO it silently does nothing at all.</summary>
    public void UnmapPage(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if ((attrs & DmaAttrs.Mmio) != 0)
        {
            return;
        }
        UnmapPhys(dev, addr, size, dir, attrs);
    }

    /// <summary><c>dma_map_single_attrs</c>: a linear-map pointer; vmalloc addresses are refused.</summary>
    public DmaAddr MapSingle(Device dev, KernelVirt ptr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (Machine.Kmap.IsVmallocAddr(ptr))
        {
            WarnDev("dma_map_single_attrs:vmalloc", dev, "rejecting DMA map of vmalloc memory");
            return DmaAddr.MappingError;
        }
        // dma-debug hook: debug_dma_map_single().
        Debug?.MapSingle(dev, ptr, size);
        var phys = Machine.Kmap.VirtToPhys(ptr);
        var page = new Page(phys.Pfn(Machine.PageShift));
        return MapPage(dev, page, phys.OffsetInPage(Machine.PageSize), size, dir, attrs);
    }

    /// <summary><c>dma_unmap_single_attrs</c>.</summary>
    public void UnmapSingle(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs) =>
        UnmapPage(dev, addr, size, dir, attrs);

    /// <summary><c>dma_map_resource</c>: MMIO by definition; a RAM frame is refused when debugging is built in.</summary>
    public DmaAddr MapResource(Device dev, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (DebugConfig && Machine.MemMap.PfnValid(phys.Pfn(Machine.PageShift)))
        {
            WarnDev("dma_map_resource:pfn_valid", dev, "dma_map_resource: pfn_valid(PHYS_PFN(phys_addr))");
            return DmaAddr.MappingError;
        }
        return MapPhys(dev, phys, size, dir, attrs | DmaAttrs.Mmio);
    }

    /// <summary><c>dma_unmap_resource</c>.</summary>
    public void UnmapResource(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs) =>
        UnmapPhys(dev, addr, size, dir, attrs | DmaAttrs.Mmio);

    /// <summary><c>dma_mapping_error</c>: -ENOMEM for the error cookie, else 0.</summary>
    public Errno MappingError(Device dev, DmaAddr addr)
    {
        // dma-debug hook: debug_dma_mapping_error().
        Debug?.MappingError(dev, addr);
        return addr.IsError ? Errno.ENOMEM : Errno.None;
    }

    /// <summary><c>dma_dev_need_sync</c>: false only when syncs were found unnecessary and debugging is not built in.</summary>
    public bool DevNeedSync(Device dev) => !dev.DmaSkipSync || DebugConfig;

    /// <summary><c>dma_sync_single_for_cpu</c>.</summary>
    public void SyncSingleForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (DevNeedSync(dev))
        {
            SyncSingle(dev, addr, size, dir, forCpu: true);
        }
    }

    /// <summary><c>dma_sync_single_for_device</c>.</summary>
    public void SyncSingleForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (DevNeedSync(dev))
        {
            SyncSingle(dev, addr, size, dir, forCpu: false);
        }
    }

    private void SyncSingle(Device dev, DmaAddr addr, ulong size, DmaDirection dir, bool forCpu)
    {
        // Every backend has both sync callbacks (a legacy ops table with none is not modelled: HasSync is true).
        SyncBackend(dev, dir, Debug is not null, out var opsOnNonRamBefore).SyncSingle(dev, addr, size, dir, forCpu);
        if (Trace.DmaEnabled)
        {
            Trace.SyncSingle(forCpu, dev, addr, size, dir);
        }
        // dma-debug hook: debug_dma_sync_single_for_{cpu,device}().
        Debug?.SyncSingle(dev, addr, size, dir, forCpu, opsOnNonRamBefore);
    }

    /// <summary><c>dma_need_sync</c>.</summary>
    public bool NeedSync(Device dev, DmaAddr addr)
    {
        if (!DevNeedSync(dev))
        {
            return false;
        }
        return GoDirect(dev, GetOps(dev)) ? Direct.NeedSync(dev, addr) : true;
    }

    /// <summary><c>dma_need_unmap</c>.</summary>
    public bool NeedUnmap(Device dev) =>
        !GoDirect(dev, GetOps(dev)) || !dev.DmaSkipSync || DebugConfig;

    /// <summary><c>dma_supported</c>.</summary>
    public bool Supported(Device dev, ulong mask) =>
        dev.DmaIommu || GetOps(dev) is not null || Direct.Supported(dev, mask);

    /// <summary><c>dma_set_mask</c>: -EIO if the mask pointer is NULL or the mask is not supported.</summary>
    public Errno SetMask(Device dev, ulong mask)
    {
        if (!dev.HasDmaMask || !Supported(dev, mask))
        {
            return Errno.EIO;
        }
        dev.DmaMask = mask;
        SetupNeedSync(dev);
        return Errno.None;
    }

    /// <summary><c>dma_set_coherent_mask</c>.</summary>
    public Errno SetCoherentMask(Device dev, ulong mask)
    {
        if (!Supported(dev, mask))
        {
            return Errno.EIO;
        }
        dev.CoherentDmaMask = mask;
        return Errno.None;
    }

    /// <summary><c>dma_setup_need_sync</c>: direct and iommu devices skip syncs iff coherent.</summary>
    private void SetupNeedSync(Device dev)
    {
        var ops = GetOps(dev);
        dev.DmaSkipSync = GoDirect(dev, ops) || dev.DmaIommu ? dev.Coherent : !ops!.HasSync;
    }

    /// <summary><c>dma_reset_need_sync</c>: once a device bounces, syncs are needed from then on.</summary>
    public void ResetNeedSync(Device dev) => dev.DmaSkipSync = false;

    /// <summary><c>dma_get_required_mask</c>.</summary>
    public ulong GetRequiredMask(Device dev) =>
        dev.DmaIommu ? Sizes.DmaBitMask(32) : Direct.GetRequiredMask(dev);

    /// <summary><c>dma_addressing_limited</c>.</summary>
    public bool AddressingLimited(Device dev)
    {
        if (Sizes.MinNotZero(dev.DmaMask, dev.BusDmaLimit) < GetRequiredMask(dev))
        {
            return true;
        }
        if (GetOps(dev) is not null || dev.DmaIommu)
        {
            return false;
        }
        return !Direct.AllRamMapped(dev);
    }

    /// <summary><c>dma_max_mapping_size</c>.</summary>
    public ulong MaxMappingSize(Device dev) =>
        GoDirect(dev, GetOps(dev)) ? Direct.MaxMappingSize(dev)
        : dev.DmaIommu ? Iommu!.MaxMappingSize(dev)
        : ulong.MaxValue;

    /// <summary><c>dma_opt_mapping_size</c>: with an IOMMU, the largest size its IOVA caches serve.</summary>
    public ulong OptMappingSize(Device dev) =>
        Math.Min(MaxMappingSize(dev), dev.DmaIommu ? Iommu!.OptMappingSize() : ulong.MaxValue);
}
