using System.Globalization;
using System.Text;
using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma.Trace;

/// <summary>One trace record: the event name, the CPU and time it fired, and its payload as ftrace prints it.</summary>
public sealed record TraceRecord(int Cpu, ulong TimeNs, string Event, string Payload)
{
    /// <summary>One line of <c>trace</c> text: <c>comm-pid [cpu] flags timestamp: event: payload</c>.</summary>
    public string ToFtraceLine()
    {
        var secs = TimeNs / 1_000_000_000;
        var usecs = TimeNs / 1000 % 1_000_000;
        return string.Create(CultureInfo.InvariantCulture,
            $"         physdma-1       [{Cpu:D3}] ..... {secs,5}.{usecs:D6}: {Event}: {Payload}");
    }
}

/// <summary>
/// The <c>dma</c> trace events of include/trace/events/dma.h (post-series) and <c>swiotlb_bounced</c>.
/// Off by default; when on, records are kept in order and can be written as ftrace text.
/// </summary>
public sealed class DmaTrace(Clock clock)
{
    private readonly Lock _lock = new();
    private readonly List<TraceRecord> _records = [];

    public bool Enabled { get; set; }

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

    /// <summary>An array as ftrace prints u64 items: <c>{0x1,0x2000}</c>.</summary>
    public static string Array(IEnumerable<ulong> items) =>
        "{" + string.Join(",", items.Select(i => "0x" + i.ToString("x", CultureInfo.InvariantCulture))) + "}";

    public void MapPhys(Device dev, PhysAddr phys, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (Enabled)
        {
            Emit("dma_map_phys", $"{dev.Name} dir={Dir(dir)} dma_addr={Hex.Llx(addr.Value)} size={size} phys_addr={Hex.Llx(phys.Value)} attrs={Attrs(attrs)}");
        }
    }

    public void UnmapPhys(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        if (Enabled)
        {
            Emit("dma_unmap_phys", $"{dev.Name} dir={Dir(dir)} dma_addr={Hex.Llx(addr.Value)} size={size} attrs={Attrs(attrs)}");
        }
    }

    public void SyncSingle(bool forCpu, Device dev, DmaAddr addr, ulong size, DmaDirection dir)
    {
        if (Enabled)
        {
            Emit(forCpu ? "dma_sync_single_for_cpu" : "dma_sync_single_for_device",
                $"{dev.Name} dir={Dir(dir)} dma_addr={Hex.Llx(addr.Value)} size={size}");
        }
    }

    /// <summary><c>swiotlb:swiotlb_bounced</c>; <paramref name="force"/> prints FORCE, else NORMAL.</summary>
    public void SwiotlbBounced(Device dev, ulong devAddr, ulong size, bool force)
    {
        if (Enabled)
        {
            var mask = dev.HasDmaMask ? dev.DmaMask : 0;
            Emit("swiotlb_bounced", $"dev_name: {dev.Name} dma_mask={Hex.Llx(mask)} dev_addr={Hex.Llx(devAddr)} size={size} {(force ? "FORCE" : "NORMAL")}");
        }
    }

    public string ToText()
    {
        var sb = new StringBuilder();
        sb.Append("# tracer: nop\n#\n");
        foreach (var r in Records)
        {
            sb.Append(r.ToFtraceLine()).Append('\n');
        }
        return sb.ToString();
    }

    public void MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, int ents, DmaDirection dir, DmaAttrs attrs)
    {
        if (Enabled)
        {
            var dma = Array(sgl.Take(ents).Select(s => s.DmaAddress.Value));
            var sizes = SizeArray(sgl.Take(ents).Select(s => s.DmaLength));
            var phys = Array(sgl.Take(nents).Select(s => s.Phys.Value));
            Emit("dma_map_sg", $"{dev.Name} dir={Dir(dir)} dma_addrs={dma} sizes={sizes} phys_addrs={phys} attrs={Attrs(attrs)}");
        }
    }

    /// <summary><c>dma_map_sg_err</c>: the array labelled dma_addrs really holds the physical addresses.</summary>
    public void MapSgErr(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, int err, DmaDirection dir, DmaAttrs attrs)
    {
        if (Enabled)
        {
            Emit("dma_map_sg_err", $"{dev.Name} dir={Dir(dir)} dma_addrs={Array(sgl.Take(nents).Select(s => s.Phys.Value))} err={err} attrs={Attrs(attrs)}");
        }
    }

    public void UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        if (Enabled)
        {
            Emit("dma_unmap_sg", $"{dev.Name} dir={Dir(dir)} phys_addrs={Array(sgl.Take(nents).Select(s => s.Phys.Value))} attrs={Attrs(attrs)}");
        }
    }

    public void SyncSg(bool forCpu, Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir)
    {
        if (Enabled)
        {
            Emit(forCpu ? "dma_sync_sg_for_cpu" : "dma_sync_sg_for_device",
                $"{dev.Name} dir={Dir(dir)} dma_addrs={Array(sgl.Take(nents).Select(s => s.DmaAddress.Value))} sizes={SizeArray(sgl.Take(nents).Select(s => s.DmaLength))}");
        }
    }

    /// <summary>A u32 array as ftrace prints it: <c>0x%x</c> items.</summary>
    public static string SizeArray(IEnumerable<uint> items) =>
        "{" + string.Join(",", items.Select(i => "0x" + i.ToString("x", CultureInfo.InvariantCulture))) + "}";
}
