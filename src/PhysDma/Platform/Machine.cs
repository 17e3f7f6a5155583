using PhysDma.Core;

namespace PhysDma.Platform;

/// <summary>A device access that did not reach memory.</summary>
public sealed record DmaFault(string Dev, DmaAddr Addr, DmaAccess Access, FaultReason Reason);

/// <summary>
/// The modelled hardware: memory with bytes, the memory map, struct pages, kernel mappings, the CPU cache
/// and arch hooks, modelled time, and devices that do DMA through their translation.
/// </summary>
internal sealed class Machine
{
    [ThreadStatic]
    private static int t_cpu;

    private readonly Dictionary<string, Device> _devices = new(StringComparer.Ordinal);
    private readonly AppendLog<DmaFault> _faults = new();
    private readonly HashSet<(string Owner, int Bar)> _disabledBars = [];
    private volatile bool _anyBarDisabled;

    public Machine(MachineConfig config)
    {
        // PCI devices without a bdf get the address firmware would give them; devices below an
        // external-facing port are untrusted.
        config = PciAddressing.Complete(config);
        Config = config;
        Arch = config.Arch;
        if (!Sizes.IsPowerOfTwo(config.PageSize) || config.PageSize < 4096)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.PageSize)), $"the page size must be a power of two of at least 4096, not {config.PageSize}");
        }
        if (config.HighmemAbove is { } hm && (config.Arch == Arch.Arm64 || !Sizes.IsAligned(hm, config.PageSize)))
        {
            // arm64 maps all RAM linearly (no CONFIG_HIGHMEM); elsewhere highmem starts at a page frame.
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.HighmemAbove)), config.Arch == Arch.Arm64
                ? "arm64 has no highmem: every page of RAM is in the linear map"
                : $"highmem must start at a page boundary ({config.PageSize}), not {hm}");
        }
        if (!Sizes.IsPowerOfTwo(config.CacheLine) || config.CacheLine > config.PageSize)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.CacheLine)), $"the cache line must be a power of two no larger than a page, not {config.CacheLine}");
        }
        if (!Sizes.IsPowerOfTwo(config.DmaMinAlign))
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.DmaMinAlign)), $"ARCH_DMA_MINALIGN must be a power of two, not {config.DmaMinAlign}");
        }
        if (config.Cpus is < 1 or > 1024)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Cpus)), $"the number of CPUs must be between 1 and 1024, not {config.Cpus}");
        }
        PageSize = config.PageSize;
        PageShift = Sizes.Log2(config.PageSize);

        Map = new MemoryMap();
        for (var i = 0; i < config.Ram.Count; i++)
        {
            var r = config.Ram[i];
            if (!Sizes.IsAligned(r.Base, PageSize) || !Sizes.IsAligned(r.Size, PageSize))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Ram), i), $"RAM range {Hex.Format(r.Base)}+{Hex.Format(r.Size)} is not page aligned");
            }
            AddRegion(ConfigProperty.Item(nameof(MachineConfig.Ram), i), new MemRegion(new PhysAddr(r.Base), r.Size, MemKind.Ram, "System RAM"));
        }
        if (config.Ram.Count == 0)
        {
            throw new MachineConfigException(ConfigProperty.Of(nameof(MachineConfig.Ram)), "a machine needs at least one RAM range");
        }
        if (config.KernelText is { } kt)
        {
            AddRegion(ConfigProperty.Of(nameof(MachineConfig.KernelText)), new MemRegion(new PhysAddr(kt.Base), kt.Size, MemKind.KernelText, "Kernel code"));
        }
        foreach (var (d, di) in config.Devices.Select((d, i) => (d, i)))
        {
            foreach (var (bar, bi) in d.Bars.Select((b, i) => (b, i)))
            {
                AddRegion(ConfigProperty.Item(nameof(MachineConfig.Devices), di).Then(nameof(DeviceConfig.Bars), bi),
                    new MemRegion(new PhysAddr(bar.Base), bar.Size, MemKind.DeviceMemory, $"{d.Name} BAR {bar.Bar}", d.Name, bar.Bar));
            }
        }

        Counters = new ModelCounters();
        Memory = new PhysicalMemory();
        MemMap = new MemMap(Map, Counters, PageShift, ZoneOf);
        Kmap = new KernelMappings(Arch, Map, Counters, PageShift, config.HighmemAbove);
        Cache = new CpuCache(Memory, config.CacheLine);
        ArchCache = new ArchCacheHooks(Arch, Kmap, Cache, Map);
        Cpu = new Cpu(this);
        Stacks = new TaskStacks(PageShift);
        Clock = new Clock();
        Log = new KernelLog(Clock);
        Allocator = new PhysAllocator(Map.Regions.Where(r => r.Kind == MemKind.Ram));
        // x86 firmware owns the first page (real-mode IVT/BDA); memblock never hands it out.
        if (Arch == Arch.X86_64 && Map.IsRam(new PhysAddr(0)))
        {
            Allocator.Reserve(new PhysAddr(0), PageSize);
        }
        BusTranslation = new BusTranslation(config.MemEncryptBit, Map);

        var pciNames = new HashSet<string>(config.Pci.Select(p => p.Name), StringComparer.Ordinal);
        foreach (var (d, i) in config.Devices.Select((d, i) => (d, i)))
        {
            if (_devices.ContainsKey(d.Name))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.Name)), $"device '{d.Name}' is defined twice");
            }
            if (d.Parent is not null && !pciNames.Contains(d.Parent))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.Parent)), $"device '{d.Name}': parent '{d.Parent}' is not a PCI node of this machine");
            }
            var coherent = d.Coherent ?? Arch != Arch.Arm64;
            if (!coherent && !ArchCache.HasNonCoherentDma)
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.Coherent)),
                    $"device '{d.Name}': {ArchName} has no non-coherent DMA (every device is cache coherent there)");
            }
            var isPci = d.Parent is not null;
            var translated = d.Iommu ?? (isPci && config.Iommu is not null);
            if (translated && config.Iommu is null)
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.Iommu)), $"device '{d.Name}' is behind an IOMMU but the machine has none");
            }
            var dev = new Device(d, coherent, isPci, translated && config.Iommu!.Mode != IommuMode.Passthrough)
            {
                Translation = BusTranslation,
                Index = _devices.Count,
            };
            _devices.Add(d.Name, dev);
        }
    }

    private void AddRegion(ConfigProperty property, MemRegion region)
    {
        try
        {
            Map.Add(region);
        }
        catch (ArgumentException e)
        {
            throw new MachineConfigException(property, e.Message);
        }
    }

    public MachineConfig Config { get; }
    public Arch Arch { get; }
    public string ArchName => Arch == Arch.Arm64 ? "arm64" : "x86_64";
    public ulong PageSize { get; }
    public int PageShift { get; }
    public ulong CacheLine => Config.CacheLine;
    public ulong DmaMinAlign => Config.DmaMinAlign;
    public int Cpus => Config.Cpus;

    public MemoryMap Map { get; }
    public ModelCounters Counters { get; }
    public PhysicalMemory Memory { get; }
    public MemMap MemMap { get; }
    public KernelMappings Kmap { get; }

    /// <summary>Kernel stack pages of the running tasks (dma-debug's stack check).</summary>
    public TaskStacks Stacks { get; }
    public CpuCache Cache { get; }

    /// <summary>Deterministic fault injection (a scenario's <c>faults:</c>): which kernel calls fail.</summary>
    public FaultInjector Inject { get; } = new();
    public ArchCacheHooks ArchCache { get; }
    public Cpu Cpu { get; }
    public Clock Clock { get; }

    /// <summary>The kernel log (dmesg) every layer prints to.</summary>
    public KernelLog Log { get; }
    public PhysAllocator Allocator { get; }
    public BusTranslation BusTranslation { get; }

    public IReadOnlyCollection<Device> Devices => _devices.Values;

    public Device Device(string name) =>
        _devices.TryGetValue(name, out var d) ? d : throw new KeyNotFoundException($"no device '{name}'");

    public bool TryGetDevice(string name, out Device dev) => _devices.TryGetValue(name, out dev!);

    /// <summary>The modelled CPU the calling thread runs on.</summary>
    public static int CurrentCpu => t_cpu;

    /// <summary>Binds the calling thread to CPU <paramref name="cpu"/> until the result is disposed.</summary>
    public CpuBinding OnCpu(int cpu)
    {
        if (cpu < 0 || cpu >= Cpus)
        {
            throw new ArgumentOutOfRangeException(nameof(cpu), $"cpu {cpu} does not exist (machine has {Cpus})");
        }
        var prev = t_cpu;
        t_cpu = cpu;
        return new CpuBinding(prev);
    }

    public readonly struct CpuBinding(int previous) : IDisposable
    {
        public void Dispose() => t_cpu = previous;
    }

    /// <summary>The zone a RAM address belongs to.</summary>
    public Zone ZoneOf(PhysAddr p)
    {
        if (Config.HighmemAbove is { } h && p.Value >= h)
        {
            return Zone.HighMem;
        }
        return ZoneRange(Zone.Dma).Contains(p.Value) ? Zone.Dma
            : ZoneRange(Zone.Dma32).Contains(p.Value) ? Zone.Dma32
            : Zone.Normal;
    }

    /// <summary>The address range of a zone: x86_64 has DMA below 16 MiB and DMA32 below 4 GiB; arm64's ZONE_DMA is the 32-bit range.</summary>
    public (ulong Lo, ulong Hi) ZoneBounds(Zone zone) => (zone, Arch) switch
    {
        (Zone.Dma, Arch.X86_64) => (0, 16 * Sizes.MiB),
        (Zone.Dma, _) => (0, 4 * Sizes.GiB),
        (Zone.Dma32, Arch.X86_64) => (16 * Sizes.MiB, 4 * Sizes.GiB),
        (Zone.Dma32, _) => (0, 4 * Sizes.GiB),
        (Zone.Normal, _) => (4 * Sizes.GiB, Config.HighmemAbove ?? ulong.MaxValue),
        (Zone.HighMem, _) => (Config.HighmemAbove ?? ulong.MaxValue, ulong.MaxValue),
        _ => (0, 0),
    };

    private ZoneSpan ZoneRange(Zone z)
    {
        var (lo, hi) = ZoneBounds(z);
        return new ZoneSpan(lo, hi);
    }

    private readonly record struct ZoneSpan(ulong Lo, ulong Hi)
    {
        public bool Contains(ulong p) => p >= Lo && p < Hi;
    }

    public IReadOnlyList<DmaFault> Faults => _faults.Snapshot();

    /// <summary>
    /// A device's BAR stops decoding (its provider was removed): a memory read that lands in it completes
    /// with Unsupported Request, which the requester sees as all-ones data; a write is dropped. Both are
    /// recorded as <see cref="FaultReason.BarRemoved"/>.
    /// </summary>
    public void DisableBar(string owner, int bar)
    {
        lock (_disabledBars)
        {
            _disabledBars.Add((owner, bar));
            _anyBarDisabled = true;
        }
    }

    public bool IsBarDisabled(string owner, int bar)
    {
        if (!_anyBarDisabled)
        {
            return false;
        }
        lock (_disabledBars)
        {
            return _disabledBars.Contains((owner, bar));
        }
    }

    private bool Disabled(MemRegion region) => region.Owner is { } owner && IsBarDisabled(owner, region.Bar);

    public int FaultCount => _faults.Count;

    private DmaFault RecordFault(Device dev, DmaAddr addr, DmaAccess access, FaultReason reason)
    {
        var f = new DmaFault(dev.Name, addr, access, reason);
        _faults.Add(f);
        return f;
    }

    /// <summary>
    /// The device reads <paramref name="dest"/>.Length bytes at bus address <paramref name="addr"/> through its
    /// translation, bypassing the CPU cache unless the device is coherent (then it snoops). Returns the
    /// fault that stopped it, or null.
    /// </summary>
    public DmaFault? DeviceRead(Device dev, DmaAddr addr, Span<byte> dest) => DeviceAccess(dev, addr, dest, DmaAccess.Read);

    /// <summary>The device writes <paramref name="src"/> at bus address <paramref name="addr"/>.</summary>
    public DmaFault? DeviceWrite(Device dev, DmaAddr addr, ReadOnlySpan<byte> src)
    {
        var a = addr;
        DmaFault? removed = null;
        while (!src.IsEmpty)
        {
            var t = Resolve(dev, a, DmaAccess.Write, (ulong)src.Length, out var region, out var n);
            if (!t.Ok || region is null)
            {
                return RecordFault(dev, a, DmaAccess.Write, t.Ok ? FaultReason.OutOfRange : t.Fault);
            }
            if (Disabled(region))
            {
                // Posted write to a BAR that no longer decodes: dropped (the completer logs Unsupported Request).
                removed ??= RecordFault(dev, a, DmaAccess.Write, FaultReason.BarRemoved);
            }
            else if (region.IsRam && dev.Coherent)
            {
                Cache.SnoopWrite(t.Phys, src[..n]);
            }
            else
            {
                Memory.Write(t.Phys, src[..n]);
            }
            src = src[n..];
            a += (ulong)n;
        }
        return removed;
    }

    private DmaFault? DeviceAccess(Device dev, DmaAddr addr, Span<byte> dest, DmaAccess access)
    {
        var a = addr;
        DmaFault? removed = null;
        while (!dest.IsEmpty)
        {
            var t = Resolve(dev, a, access, (ulong)dest.Length, out var region, out var n);
            if (!t.Ok || region is null)
            {
                return RecordFault(dev, a, access, t.Ok ? FaultReason.OutOfRange : t.Fault);
            }
            if (Disabled(region))
            {
                // Unsupported Request completion: the requester gets all-ones data.
                dest[..n].Fill(0xff);
                removed ??= RecordFault(dev, a, access, FaultReason.BarRemoved);
            }
            else if (region.IsRam && dev.Coherent)
            {
                Cache.SnoopRead(t.Phys, dest[..n]);
            }
            else
            {
                Memory.Read(t.Phys, dest[..n]);
            }
            dest = dest[n..];
            a += (ulong)n;
        }
        return removed;
    }

    private Translated Resolve(Device dev, DmaAddr a, DmaAccess access, ulong want, out MemRegion? region, out int n)
    {
        var translation = dev.Translation ?? BusTranslation;
        var t = translation.Translate(dev, a, access);
        region = null;
        n = 0;
        if (!t.Ok)
        {
            return t;
        }
        region = Map.Find(t.Phys);
        if (region is null)
        {
            return t;
        }
        var chunk = Math.Min(want, Math.Min(t.Contiguous, region.End - t.Phys));
        // Stay inside one page per step so a translation change at a page boundary is honoured.
        chunk = Math.Min(chunk, PageSize - (a.Value & (PageSize - 1)));
        n = (int)Math.Max(1, chunk);
        return t;
    }
}
