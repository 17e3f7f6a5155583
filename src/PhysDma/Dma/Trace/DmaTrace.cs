using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Dma.Trace;

/// <summary>One trace record: the event name, the CPU and time it fired, and its payload as ftrace prints it.</summary>
internal sealed record TraceRecord(int Cpu, ulong TimeNs, string Event, string Payload)
{
    /// <summary>The task every modelled call runs as.</summary>
    public const string Comm = "physdma";

    public const int Pid = 1;

    /// <summary>
    /// One line of the tracefs <c>trace</c> file (<c>trace_print_context</c> with the five irq-info flags):
    /// <c>%16s-%-7d [%03d] ..... %5lu.%06lu: event: payload</c>.
    /// </summary>
    public string ToFtraceLine()
    {
        var secs = TimeNs / 1_000_000_000;
        var usecs = TimeNs / 1000 % 1_000_000;
        return string.Create(CultureInfo.InvariantCulture,
            $"{Comm,16}-{Pid,-7} [{Cpu:D3}] ..... {secs,5}.{usecs:D6}: {Event}: {Payload}");
    }
}

/// <summary>The event systems <c>trace-cmd record -e</c> selects; PhysDma models these three.</summary>
[Flags]
internal enum TraceEvents
{
    None = 0,
    Dma = 1,
    Swiotlb = 2,
    Iommu = 4,
}

/// <summary>
/// The trace events of the DMA layer: the <c>dma</c> system (include/trace/events/dma.h, Linux 6.18),
/// <c>swiotlb:swiotlb_bounced</c> and the IOMMU core's <c>iommu:map</c>, <c>iommu:unmap</c> and
/// <c>iommu:io_page_fault</c>. Off by default; each hook is one flag test until a system is switched on.
/// Records are kept in order and written as the tracefs <c>trace</c> file would show them.
/// </summary>
internal sealed class DmaTrace(Clock clock) : IIommuTraceSink
{
    private readonly Lock _lock = new();
    private readonly List<TraceRecord> _records = [];
    private TraceEvents _events;
    private bool _dma;
    private bool _swiotlb;
    private IommuUnit? _iommu;

    /// <summary>The selected event systems.</summary>
    public TraceEvents Events
    {
        get => _events;
        set
        {
            _events = value;
            _dma = (value & TraceEvents.Dma) != 0;
            _swiotlb = (value & TraceEvents.Swiotlb) != 0;
            _iommu?.TraceSink = (value & TraceEvents.Iommu) != 0 ? this : null;
        }
    }

    /// <summary>Any event on. Setting it selects <c>dma</c> and <c>swiotlb</c> (or nothing).</summary>
    public bool Enabled
    {
        get => _events != TraceEvents.None;
        set => Events = value ? TraceEvents.Dma | TraceEvents.Swiotlb : TraceEvents.None;
    }

    /// <summary>
    /// Whether the <c>dma</c> events are traced. As with a tracepoint's static key, the caller tests it before
    /// calling an event method (which formats and records unconditionally), so a disabled trace costs one load.
    /// </summary>
    public bool DmaEnabled => _dma;

    /// <summary>Whether <c>swiotlb:swiotlb_bounced</c> is traced (tested by the caller, as <see cref="DmaEnabled"/>).</summary>
    public bool SwiotlbEnabled => _swiotlb;

    /// <summary>The IOMMU whose core events this trace records when <see cref="TraceEvents.Iommu"/> is selected.</summary>
    internal void AttachIommu(IommuUnit unit)
    {
        _iommu = unit;
        Events = _events;
    }

    /// <summary>Parses <c>dma,swiotlb,iommu</c> (any subset, in any order); null with an error message otherwise.</summary>
    public static TraceEvents? ParseEvents(string text, out string? error)
    {
        var ev = TraceEvents.None;
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            switch (part)
            {
                case "dma":
                    ev |= TraceEvents.Dma;
                    break;
                case "swiotlb":
                    ev |= TraceEvents.Swiotlb;
                    break;
                case "iommu":
                    ev |= TraceEvents.Iommu;
                    break;
                default:
                    error = $"unknown event system '{part}' (known: dma, swiotlb, iommu)";
                    return null;
            }
        }
        error = null;
        return ev;
    }

    public IReadOnlyList<TraceRecord> Records
    {
        get
        {
            lock (_lock)
            {
                return [.. _records];
            }
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _records.Count;
            }
        }
    }

    private void Emit(string ev, string payload)
    {
        lock (_lock)
        {
            _records.Add(new TraceRecord(Machine.CurrentCpu, clock.NowNs, ev, payload));
        }
    }

    /// <summary><c>dev_name</c>: the PCI address for a PCI device, else the device's name.</summary>
    public static string DevName(Device dev) => dev.Config.Bdf ?? dev.Name;

    /// <summary><c>dir=</c> rendering: symbolic, or <c>0x%lx</c> for an unknown value.</summary>
    public static string Dir(DmaDirection dir) => dir switch
    {
        DmaDirection.Bidirectional => "BIDIRECTIONAL",
        DmaDirection.ToDevice => "TO_DEVICE",
        DmaDirection.FromDevice => "FROM_DEVICE",
        DmaDirection.None => "NONE",
        _ => "0x" + ((ulong)dir).ToString("x", CultureInfo.InvariantCulture),
    };

    /// <summary><c>attrs=</c> rendering: flags in table order joined by <c>|</c>, unknown bits as <c>0x%lx</c>, empty for 0.</summary>
    public static string Attrs(DmaAttrs attrs)
    {
        var sb = new StringBuilder();
        var left = (ulong)attrs;
        foreach (var (flag, _, kernel) in DmaNames.AttrTable)
        {
            if ((left & (ulong)flag) != 0)
            {
                if (sb.Length > 0)
                {
                    sb.Append('|');
                }
                sb.Append(kernel);
                left &= ~(ulong)flag;
            }
        }
        if (left != 0)
        {
            if (sb.Length > 0)
            {
                sb.Append('|');
            }
            sb.Append("0x").Append(left.ToString("x", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    /// <summary>
    /// <c>%p</c> of a kernel pointer: hashed to 32 bits and printed as 16 hex digits, as the kernel does
    /// (NULL is printed as zeros, unhashed). The kernel keys its hash randomly at boot; the model's key
    /// is fixed so runs stay repeatable.
    /// </summary>
    public static string HashedPointer(ulong ptr)
    {
        if (ptr == 0)
        {
            return "0000000000000000";
        }
        var z = ptr + 0x9e3779b97f4a7c15UL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
        z ^= z >> 31;
        return (z & 0xffffffffUL).ToString("x16", CultureInfo.InvariantCulture);
    }

    /// <summary>An array as ftrace prints u64 items: <c>{0x1,0x2000}</c>.</summary>
    public static string Array(IEnumerable<ulong> items) =>
        "{" + string.Join(",", items.Select(i => "0x" + i.ToString("x", CultureInfo.InvariantCulture))) + "}";

    /// <summary>A u32 array as ftrace prints it: <c>0x%x</c> items.</summary>
    public static string SizeArray(IEnumerable<uint> items) =>
        "{" + string.Join(",", items.Select(i => "0x" + i.ToString("x", CultureInfo.InvariantCulture))) + "}";

    /// <summary>The most entries <c>dma_map_sg</c> records (<c>DMA_TRACE_MAX_ENTRIES</c>).</summary>
    public const int MaxSgEntries = 128;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public void MapPhys(Device dev, PhysAddr phys, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs) =>
        Emit("dma_map_phys", $"{DevName(dev)} dir={Dir(dir)} dma_addr={Hex.Llx(addr.Value)} size={size} phys_addr={Hex.Llx(phys.Value)} attrs={Attrs(attrs)}");

    [MethodImpl(MethodImplOptions.NoInlining)]
    public void UnmapPhys(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs) =>
        Emit("dma_unmap_phys", $"{DevName(dev)} dir={Dir(dir)} dma_addr={Hex.Llx(addr.Value)} size={size} attrs={Attrs(attrs)}");

    [MethodImpl(MethodImplOptions.NoInlining)]
    public void SyncSingle(bool forCpu, Device dev, DmaAddr addr, ulong size, DmaDirection dir) =>
        Emit(forCpu ? "dma_sync_single_for_cpu" : "dma_sync_single_for_device",
            $"{DevName(dev)} dir={Dir(dir)} dma_addr={Hex.Llx(addr.Value)} size={size}");

    /// <summary><c>swiotlb:swiotlb_bounced</c>; <paramref name="force"/> prints FORCE, else NORMAL.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void SwiotlbBounced(Device dev, ulong devAddr, ulong size, bool force)
    {
        var mask = dev.HasDmaMask ? dev.DmaMask : 0;
        Emit("swiotlb_bounced", $"dev_name: {DevName(dev)} dma_mask={Hex.Llx(mask)} dev_addr={Hex.Llx(devAddr)} size={size} {(force ? "FORCE" : "NORMAL")}");
    }

    /// <summary><c>dma_map_sg</c>: at most 128 entries of each array, the full counts, and <c>[TRUNCATED]</c> when entries were dropped.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, int ents, DmaDirection dir, DmaAttrs attrs)
    {
        var shownNents = Math.Min(nents, MaxSgEntries);
        var shownEnts = Math.Min(ents, MaxSgEntries);
        var truncated = nents > MaxSgEntries || ents > MaxSgEntries;
        var dma = Array(sgl.Take(shownEnts).Select(s => s.DmaAddress.Value));
        var sizes = SizeArray(sgl.Take(shownEnts).Select(s => s.DmaLength));
        var phys = Array(sgl.Take(shownNents).Select(s => s.Phys.Value));
        Emit("dma_map_sg", string.Create(CultureInfo.InvariantCulture,
            $"{DevName(dev)} dir={Dir(dir)} nents={shownNents}/{nents} ents={shownEnts}/{ents}{(truncated ? " [TRUNCATED]" : "")} dma_addrs={dma} sizes={sizes} phys_addrs={phys} attrs={Attrs(attrs)}"));
    }

    /// <summary><c>dma_map_sg_err</c>: the array labelled dma_addrs really holds the physical addresses.</summary>
    public void MapSgErr(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, int err, DmaDirection dir, DmaAttrs attrs)
    {
        Emit("dma_map_sg_err", string.Create(CultureInfo.InvariantCulture,
            $"{DevName(dev)} dir={Dir(dir)} dma_addrs={Array(sgl.Take(nents).Select(s => s.Phys.Value))} err={err} attrs={Attrs(attrs)}"));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public void UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        Emit("dma_unmap_sg", $"{DevName(dev)} dir={Dir(dir)} phys_addrs={Array(sgl.Take(nents).Select(s => s.Phys.Value))} attrs={Attrs(attrs)}");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public void SyncSg(bool forCpu, Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir)
    {
        Emit(forCpu ? "dma_sync_sg_for_cpu" : "dma_sync_sg_for_device",
            $"{DevName(dev)} dir={Dir(dir)} dma_addrs={Array(sgl.Take(nents).Select(s => s.DmaAddress.Value))} sizes={SizeArray(sgl.Take(nents).Select(s => s.DmaLength))}");
    }

    /// <summary>
    /// <c>dma_alloc</c> (from <c>dma_alloc_attrs</c>): direction BIDIRECTIONAL, the gfp flags the caller
    /// passed, and the CPU address as a hashed <c>%p</c>.
    /// </summary>
    public void Alloc(Device dev, KernelVirt? cpuAddr, DmaAddr addr, ulong size, string gfp, DmaAttrs attrs)
    {
        Emit("dma_alloc", $"{DevName(dev)} dir={Dir(DmaDirection.Bidirectional)} dma_addr={Hex.Llx(addr.Value)} size={size} virt_addr={HashedPointer(cpuAddr?.Value ?? 0)} flags={gfp} attrs={Attrs(attrs)}");
    }

    /// <summary><c>dma_free</c> (from <c>dma_free_attrs</c>).</summary>
    public void Free(Device dev, KernelVirt cpuAddr, DmaAddr addr, ulong size, DmaAttrs attrs)
    {
        Emit("dma_free", $"{DevName(dev)} dir={Dir(DmaDirection.Bidirectional)} dma_addr={Hex.Llx(addr.Value)} size={size} virt_addr={HashedPointer(cpuAddr.Value)} attrs={Attrs(attrs)}");
    }

    void IIommuTraceSink.Map(ulong iova, ulong paddr, ulong size) =>
        Emit("map", string.Create(CultureInfo.InvariantCulture,
            $"IOMMU: iova={Hex.Padded16(iova)} - {Hex.Padded16(iova + size)} paddr={Hex.Padded16(paddr)} size={size}"));

    void IIommuTraceSink.Unmap(ulong iova, ulong size, ulong unmappedSize) =>
        Emit("unmap", string.Create(CultureInfo.InvariantCulture,
            $"IOMMU: iova={Hex.Padded16(iova)} - {Hex.Padded16(iova + size)} size={size} unmapped_size={unmappedSize}"));

    void IIommuTraceSink.IoPageFault(Device dev, ulong iova, bool write) =>
        Emit("io_page_fault", string.Create(CultureInfo.InvariantCulture,
            $"IOMMU:{DmaDebug.DriverName(dev)} {DevName(dev)} iova={Hex.Padded16(iova)} flags=0x{(write ? 1 : 0):x4}"));

    /// <summary>
    /// The tracefs <c>trace</c> file: the header the nop tracer prints (buffer counts, CPU count, the
    /// column legend), then one line per record.
    /// </summary>
    public string ToText(int cpus = 1)
    {
        var records = Records;
        var sb = new StringBuilder();
        AppendHeader(sb, records.Count, cpus);
        foreach (var r in records)
        {
            sb.Append(r.ToFtraceLine()).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>Writes <see cref="ToText"/> to a file without building the whole text in memory.</summary>
    public void WriteTo(TextWriter w, int cpus = 1)
    {
        var records = Records;
        var sb = new StringBuilder();
        AppendHeader(sb, records.Count, cpus);
        w.Write(sb.ToString());
        foreach (var r in records)
        {
            w.Write(r.ToFtraceLine());
            w.Write('\n');
        }
    }

    private static void AppendHeader(StringBuilder sb, int entries, int cpus)
    {
        sb.Append("# tracer: nop\n");
        sb.Append("#\n");
        sb.Append(CultureInfo.InvariantCulture, $"# entries-in-buffer/entries-written: {entries}/{entries}   #P:{cpus}\n");
        sb.Append("#\n");
        sb.Append("#                                _-----=> irqs-off/BH-disabled\n");
        sb.Append("#                               / _----=> need-resched\n");
        sb.Append("#                              | / _---=> hardirq/softirq\n");
        sb.Append("#                              || / _--=> preempt-depth\n");
        sb.Append("#                              ||| / _-=> migrate-disable\n");
        sb.Append("#                              |||| /     delay\n");
        sb.Append("#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n");
        sb.Append("#              | |         |   |||||     |         |\n");
    }
}
