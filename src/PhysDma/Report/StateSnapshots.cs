using System.Text.Json.Nodes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Report;

/// <summary>
/// A live mapping as the HTML report draws it: the device, the name the report shows (a scenario's <c>as:</c>
/// name, a trace line), the CPU-side range and the device-side range. <paramref name="Single"/> is set for a
/// single streaming mapping of RAM, the only kind whose bounce slot the report looks up.
/// </summary>
internal readonly record struct ReportMapping(Device Dev, string Name, ulong Phys, ulong Size, ulong Dma, ulong DmaSize, bool Single);

/// <summary>
/// An unmapped IOVA range whose translation the device may still hold in its IOTLB (the lazy window), named
/// by the mapping it belonged to: for a feeder that does not model the device's accesses (a trace replay
/// assumes the device used every mapping it was given), from the unmap to the flush queue's IOTLB flush.
/// </summary>
internal readonly record struct ReportLazyRange(Device Dev, string Name, ulong Iova, ulong Phys, ulong Size);

/// <summary>
/// What the HTML report draws of a machine, taken after every step of a run or every event of a replay: the
/// swiotlb slots in use and which mapping holds each, each translated device's IOVA space (mapped, freed but
/// still allocated or cached in the IOTLB, reserved), and what physical memory each device could reach; and,
/// once, the PCI topology with the P2P map type of every provider/client pair. Whoever drives it (the
/// scenario runner, the trace replay) says which mappings are live and which step made each, and may add
/// lazy windows the IOTLB model cannot know of (<paramref name="lazy"/>).
/// </summary>
internal sealed class StateSnapshots(Machine machine, DmaApi api, Func<IEnumerable<ReportMapping>> live,
    Func<IEnumerable<ReportLazyRange>>? lazy = null)
{
    private readonly Dictionary<string, long> _madeAt = new(StringComparer.Ordinal);

    // Spans still open: by chart, device and key, the span and the step it was last seen at.
    private readonly Dictionary<(string Chart, string Dev, string Key), (JsonObject Span, long Seq)> _open = [];
    private readonly List<(string Chart, string Dev, JsonObject Span, long Seq)> _closed = [];
    private readonly List<(string Chart, string Dev, string Key)> _gone = [];
    private readonly HashSet<(string Chart, string Dev, string Key)> _seen = [];
    private long _seq;

    /// <summary>The last step a snapshot was taken after (-1 before the first).</summary>
    public long LastStep { get; private set; } = -1;

    /// <summary>How many snapshots were taken.</summary>
    public long Taken { get; private set; }

    /// <summary>Notes that the mapping called <paramref name="name"/> was made at <paramref name="step"/>.</summary>
    public void MadeAt(string name, long step) => _madeAt[name] = step;

    /// <summary>
    /// Takes the machine's state after <paramref name="step"/>. What stays the same from one step to the next
    /// extends a span rather than being stored again, so the data grows with the changes, not with the steps.
    /// </summary>
    public void Take(long step)
    {
        var now = live().ToList();
        var windows = lazy?.Invoke().ToList() ?? [];
        _seen.Clear();
        foreach (var sl in Slots(now))
        {
            var o = sl!.AsObject();
            Seen("swiotlb", "", $"{o["holder"]}|{o["holder_step"]}|{o["slot"]}|{o["slots"]}|{o["addr"]}", o, step);
        }
        foreach (var (chart, byDev) in new[] { ("iova", IovaSpaces(now, windows)), ("reach", Reach(now, windows)) })
        {
            foreach (var (dev, ranges) in byDev)
            {
                foreach (var r in ranges!.AsArray())
                {
                    var o = r!.AsObject();
                    Seen(chart, dev, $"{o["kind"]}|{o["lo"]}|{o["hi"]}", o, step);
                }
            }
        }
        _gone.Clear();
        foreach (var k in _open.Keys)
        {
            if (!_seen.Contains(k))
            {
                _gone.Add(k);
            }
        }
        foreach (var k in _gone)
        {
            var (span, seq) = _open[k];
            _open.Remove(k);
            _closed.Add((k.Chart, k.Dev, span, seq));
        }
        LastStep = step;
        Taken++;
    }

    private void Seen(string chart, string dev, string key, JsonObject fact, long step)
    {
        var k = (chart, dev, key);
        if (!_seen.Add(k))
        {
            return;
        }
        if (_open.TryGetValue(k, out var open))
        {
            open.Span["to"] = step + 1;
            return;
        }
        var span = (JsonObject)fact.DeepClone();
        span["from"] = step;
        span["to"] = step + 1;
        _open[k] = (span, _seq++);
    }

    /// <summary>
    /// What the report draws: every fact with the steps it held for, <c>from</c> (the first step) to <c>to</c>
    /// (one past the last): <c>swiotlb</c> (a mapping's slots), and by device <c>iova</c> (IOVA ranges: mapped,
    /// freed but allocated, in the IOTLB, reserved) and <c>reach</c> (physical ranges the device can reach:
    /// mapped, bounce slot, lazy window). In the order they first appeared.
    /// </summary>
    public JsonObject Spans()
    {
        var all = _closed.Concat(_open.Select(kv => (kv.Key.Chart, kv.Key.Dev, kv.Value.Span, kv.Value.Seq))).OrderBy(x => x.Item4).ToList();
        var swiotlb = new JsonArray();
        var iova = new JsonObject();
        var reach = new JsonObject();
        foreach (var (chart, dev, span, _) in all)
        {
            if (chart == "swiotlb")
            {
                swiotlb.Add(span.DeepClone());
                continue;
            }
            var byDev = chart == "iova" ? iova : reach;
            if (byDev[dev] is not JsonArray list)
            {
                byDev[dev] = list = [];
            }
            list.Add(span.DeepClone());
        }
        return new JsonObject { ["swiotlb"] = swiotlb, ["iova"] = iova, ["reach"] = reach, ["last_step"] = LastStep };
    }

    private static string Hex(ulong v) => Core.Hex.Format(v);

    private static string Holder(List<ReportMapping> live, ulong orig) =>
        live.Where(l => orig >= l.Phys && orig < l.Phys + Math.Max(1, l.Size)).Select(l => l.Name).FirstOrDefault() ?? "phys " + Hex(orig);

    private JsonArray Slots(List<ReportMapping> live)
    {
        var list = new JsonArray();
        foreach (var mem in api.Swiotlb.Mems)
        {
            foreach (var pool in mem.Pools)
            {
                if (pool.Used == 0)
                {
                    continue;
                }
                var i = 0;
                while (i < pool.NSlabs)
                {
                    var info = pool.Slot(i);
                    if (info.IsFree || info.AllocSize == 0)
                    {
                        i++;
                        continue;
                    }
                    // A mapping's slots: the first carries alloc_size; the run ends at the next free or next first slot.
                    var n = (int)IoTlb.NrSlots(info.AllocSize);
                    var holder = Holder(live, info.OrigAddr.Value);
                    list.Add(new JsonObject
                    {
                        ["mem"] = mem.Name,
                        ["slot"] = (long)((pool.SlotAddr(i).Value - api.Swiotlb.DefaultMem.Pools[0].Start.Value) >> IoTlb.Shift),
                        ["slots"] = n,
                        ["addr"] = Hex(pool.SlotAddr(i).Value),
                        ["orig"] = Hex(info.OrigAddr.Value),
                        ["size"] = info.AllocSize,
                        ["holder"] = holder,
                        ["holder_step"] = _madeAt.TryGetValue(holder, out var at) ? at : null,
                    });
                    i += Math.Max(1, n);
                }
            }
        }
        return list;
    }

    private JsonObject IovaSpaces(List<ReportMapping> live, List<ReportLazyRange> windows)
    {
        var o = new JsonObject();
        if (api.Iommu is not { } iommu)
        {
            return o;
        }
        foreach (var dev in machine.Devices.OrderBy(d => d.Name, StringComparer.Ordinal))
        {
            if (iommu.CookieOf(dev) is not { } cookie || iommu.DomainOf(dev) is not { } domain)
            {
                continue;
            }
            var shift = cookie.Iovad.Shift;
            var ranges = new JsonArray();
            foreach (var (lo, hi) in cookie.Iovad.ReservedRanges())
            {
                ranges.Add(Range("reserved", lo << shift, ((hi + 1) << shift) - 1, null));
            }
            var mine = live.Where(l => l.Dev == dev && l.DmaSize > 0).ToList();
            foreach (var (lo, hi) in cookie.Iovad.AllocatedRanges())
            {
                var a = lo << shift;
                var b = ((hi + 1) << shift) - 1;
                var holder = mine.FirstOrDefault(l => l.Dma <= b && l.Dma + l.DmaSize - 1 >= a);
                ranges.Add(Range(holder.Name is null ? "freed_queued" : "mapped", a, b, holder.Name));
            }
            var cached = iommu.Unit.Iotlb.EntriesOf(domain.Id).ToList();
            foreach (var e in cached)
            {
                var b = e.IovaBase + e.Size - 1;
                var held = mine.Any(l => l.Dma <= b && l.Dma + l.DmaSize - 1 >= e.IovaBase);
                ranges.Add(Range(held ? "iotlb" : "iotlb_stale", e.IovaBase, b, null, e.PhysBase.Value));
            }
            foreach (var w in windows.Where(w => w.Dev == dev))
            {
                var b = w.Iova + w.Size - 1;
                if (!cached.Any(e => e.IovaBase <= b && e.IovaBase + e.Size - 1 >= w.Iova)
                    && !mine.Any(l => l.Dma <= b && l.Dma + l.DmaSize - 1 >= w.Iova))
                {
                    ranges.Add(Range("iotlb_stale", w.Iova, b, w.Name, w.Phys));
                }
            }
            o[dev.Name] = ranges;
        }
        return o;
    }

    private static JsonObject Range(string kind, ulong lo, ulong hi, string? holder, ulong? phys = null)
    {
        var r = new JsonObject { ["kind"] = kind, ["lo"] = Hex(lo), ["hi"] = Hex(hi) };
        if (holder is not null)
        {
            r["holder"] = holder;
        }
        if (phys is { } p)
        {
            r["phys"] = Hex(p);
        }
        return r;
    }

    /// <summary>
    /// What each device could reach: the physical ranges of its live mappings (the bounce slot, when bounced),
    /// and, behind an IOMMU, what stale IOTLB entries still translate to (the lazy window).
    /// </summary>
    private JsonObject Reach(List<ReportMapping> live, List<ReportLazyRange> windows)
    {
        var o = new JsonObject();
        foreach (var dev in machine.Devices.OrderBy(d => d.Name, StringComparer.Ordinal))
        {
            var list = new JsonArray();
            var mine = live.Where(l => l.Dev == dev).ToList();
            foreach (var l in mine)
            {
                if (l.DmaSize > 0 && l.Single && Bounce(l) is { } b)
                {
                    list.Add(Range("bounce", b, b + l.Size - 1, l.Name));
                }
                else
                {
                    list.Add(Range("mapped", l.Phys, l.Phys + Math.Max(1, l.Size) - 1, l.Name));
                }
            }
            if (api.Iommu is { } iommu && iommu.DomainOf(dev) is { } domain && dev.DmaIommu)
            {
                var stale = new List<(ulong Iova, ulong Size)>();
                foreach (var e in iommu.Unit.Iotlb.EntriesOf(domain.Id))
                {
                    var b = e.IovaBase + e.Size - 1;
                    if (!mine.Any(l => l.DmaSize > 0 && l.Dma <= b && l.Dma + l.DmaSize - 1 >= e.IovaBase))
                    {
                        list.Add(Range("lazy", e.PhysBase.Value, e.PhysBase.Value + e.Size - 1, null));
                        stale.Add((e.IovaBase, e.Size));
                    }
                }
                foreach (var w in windows.Where(w => w.Dev == dev))
                {
                    var b = w.Iova + w.Size - 1;
                    if (!stale.Any(e => e.Iova <= b && e.Iova + e.Size - 1 >= w.Iova)
                        && !mine.Any(l => l.DmaSize > 0 && l.Dma <= b && l.Dma + l.DmaSize - 1 >= w.Iova))
                    {
                        list.Add(Range("lazy", w.Phys, w.Phys + w.Size - 1, w.Name));
                    }
                }
            }
            o[dev.Name] = list;
        }
        return o;
    }

    /// <summary>The bounce slot a live single mapping holds, from the swiotlb slot whose original address is the mapping's.</summary>
    private ulong? Bounce(ReportMapping m)
    {
        foreach (var mem in api.Swiotlb.Mems)
        {
            foreach (var pool in mem.Pools)
            {
                if (pool.Used == 0)
                {
                    continue;
                }
                for (var i = 0; i < pool.NSlabs; i++)
                {
                    var info = pool.Slot(i);
                    if (!info.IsFree && info.AllocSize != 0 && info.OrigAddr.Value == m.Phys)
                    {
                        return pool.SlotAddr(i).Value + (m.Phys & (IoTlb.Size - 1) & m.Dev.MinAlignMask);
                    }
                }
            }
        }
        return null;
    }

    /// <summary>The PCI tree and the P2P map type of every provider/client pair (<c>pci_p2pdma_map_type</c>).</summary>
    public JsonObject Topology()
    {
        var cfg = machine.Config;
        var nodes = new JsonArray();
        foreach (var p in cfg.Pci)
        {
            nodes.Add(new JsonObject
            {
                ["name"] = p.Name,
                ["type"] = p.Type.ToString(),
                ["parent"] = p.Parent,
                ["detail"] = p.Type == PciNodeType.HostBridge ? $"{p.Vendor:x4}:{p.DeviceId:x4} p2p_allowed {(p.P2PAllowed ? "yes" : "no")}" : p.AcsRedirect ? "ACS redirect" : "",
            });
        }
        foreach (var d in cfg.Devices)
        {
            nodes.Add(new JsonObject { ["name"] = d.Name, ["type"] = "device", ["parent"] = d.Parent, ["detail"] = d.P2PMem is not null ? "p2pmem provider" : "" });
        }
        var pairs = new JsonArray();
        var pci = cfg.Devices.Where(d => d.Parent is not null).ToList();
        foreach (var provider in pci.Where(d => d.Bars.Count > 0))
        {
            foreach (var client in pci.Where(c => c.Name != provider.Name))
            {
                var (type, dist) = api.P2P.Distance(provider.Name, client.Name);
                pairs.Add(new JsonObject
                {
                    ["provider"] = provider.Name,
                    ["client"] = client.Name,
                    ["type"] = MapTypeName(type),
                    ["distance"] = dist,
                });
            }
        }
        return new JsonObject { ["nodes"] = nodes, ["pairs"] = pairs };
    }

    public static string MapTypeName(P2PMapType t) => t switch
    {
        P2PMapType.BusAddr => "PCI_P2PDMA_MAP_BUS_ADDR",
        P2PMapType.ThruHostBridge => "PCI_P2PDMA_MAP_THRU_HOST_BRIDGE",
        P2PMapType.NotSupported => "PCI_P2PDMA_MAP_NOT_SUPPORTED",
        _ => "PCI_P2PDMA_MAP_UNKNOWN",
    };
}
