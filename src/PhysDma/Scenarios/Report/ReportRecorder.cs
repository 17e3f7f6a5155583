using System.Text.Json.Nodes;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Scenarios.Report;

/// <summary>
/// Takes what the HTML report draws from a run, after every step: the swiotlb slots in use and which mapping
/// holds each, each translated device's IOVA space (mapped, freed but still allocated or cached in the IOTLB,
/// reserved), and what physical memory each device could reach. At the end it adds the PCI topology with the
/// P2P map type of every provider/client pair. Attached only when a report is asked for.
/// </summary>
internal sealed class ReportRecorder
{
    private readonly RunState _s;
    private readonly JsonArray _snapshots = [];
    private readonly Dictionary<string, int> _madeAt = new(StringComparer.Ordinal);

    private ReportRecorder(RunState s) => _s = s;

    /// <summary>Starts recording a runner's steps (replaces any other <see cref="ScenarioRunner.AfterStep"/>).</summary>
    public static ReportRecorder Attach(ScenarioRunner runner)
    {
        var rec = new ReportRecorder(runner.State);
        runner.AfterStep = rec.Take;
        return rec;
    }

    /// <summary>The run's report data: the result document plus <c>snapshots</c> and <c>topology</c>.</summary>
    public JsonObject Build(RunResult result, string file)
    {
        var doc = (JsonObject)result.Json.DeepClone();
        doc["file"] = file;
        doc["snapshots"] = _snapshots.DeepClone();
        doc["topology"] = Topology();
        return doc;
    }

    private static string Hex(ulong v) => Core.Hex.Format(v);

    private void Take(Step step, StepResult r)
    {
        switch (step)
        {
            case MapStep m: _madeAt[m.As] = step.Index; break;
            case P2PMapStep p: _madeAt[p.As] = step.Index; break;
            case MapSgStep sg: _madeAt[sg.As] = step.Index; break;
            case AllocCoherentStep c: _madeAt[c.As] = step.Index; break;
            case IovaAllocStep i: _madeAt[i.As] = step.Index; break;
        }
        _snapshots.Add(new JsonObject
        {
            ["step"] = step.Index,
            ["swiotlb"] = Slots(),
            ["iova"] = IovaSpaces(),
            ["reach"] = Reach(),
        });
    }

    /// <summary>Live mappings as (device, name, phys, size, dma address, size on the device side).</summary>
    private IEnumerable<(Device Dev, string Name, ulong Phys, ulong Size, ulong Dma, ulong DmaSize)> Live()
    {
        foreach (var h in _s.Handles.Values.Where(h => !h.Unmapped && !h.Addr.IsError))
        {
            yield return (h.Dev, h.Name, h.Phys.Value, h.Size, h.Addr.Value, h.Size);
        }
        foreach (var (name, iova) in _s.Iova.Where(kv => kv.Value.Fallback))
        {
            foreach (var l in iova.Links.Where(l => !l.Unmapped && !l.Addr.IsError))
            {
                yield return (iova.Dev, name, l.Phys.Value, l.Size, l.Addr.Value, l.Size);
            }
        }
        foreach (var sg in _s.Sg.Values.Where(h => h.Mapped && !h.Unmapped))
        {
            var nents = Math.Max(1, sg.Table.Nents);
            for (var i = 0; i < sg.Table.Sgl.Count; i++)
            {
                var e = sg.Table.Sgl[i];
                var dma = i < nents ? sg.Table.Sgl[i] : null;
                yield return (sg.Dev, sg.Name, e.Phys.Value, e.Length, dma?.DmaAddress.Value ?? 0, dma?.DmaLength ?? 0);
            }
        }
    }

    private string Holder(ulong orig) =>
        Live().Where(l => orig >= l.Phys && orig < l.Phys + Math.Max(1, l.Size)).Select(l => l.Name).FirstOrDefault() ?? "phys " + Hex(orig);

    private JsonArray Slots()
    {
        var list = new JsonArray();
        foreach (var mem in _s.Api.Swiotlb.Mems)
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
                    var holder = Holder(info.OrigAddr.Value);
                    list.Add(new JsonObject
                    {
                        ["mem"] = mem.Name,
                        ["slot"] = (long)((pool.SlotAddr(i).Value - _s.Api.Swiotlb.DefaultMem.Pools[0].Start.Value) >> IoTlb.Shift),
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

    private JsonObject IovaSpaces()
    {
        var o = new JsonObject();
        if (_s.Api.Iommu is not { } iommu)
        {
            return o;
        }
        var live = Live().ToList();
        foreach (var dev in _s.M.Devices.OrderBy(d => d.Name, StringComparer.Ordinal))
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
            foreach (var e in iommu.Unit.Iotlb.EntriesOf(domain.Id))
            {
                var b = e.IovaBase + e.Size - 1;
                var held = mine.Any(l => l.Dma <= b && l.Dma + l.DmaSize - 1 >= e.IovaBase);
                ranges.Add(Range(held ? "iotlb" : "iotlb_stale", e.IovaBase, b, null, e.PhysBase.Value));
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
    private JsonObject Reach()
    {
        var o = new JsonObject();
        var live = Live().ToList();
        var swiotlb = _s.Api.Swiotlb;
        foreach (var dev in _s.M.Devices.OrderBy(d => d.Name, StringComparer.Ordinal))
        {
            var list = new JsonArray();
            foreach (var l in live.Where(l => l.Dev == dev))
            {
                var bounced = l.DmaSize > 0 && _s.Handles.TryGetValue(l.Name, out var h) && h.P2P is null && Bounce(h) is { } slot ? slot : (ulong?)null;
                if (bounced is { } b)
                {
                    list.Add(Range("bounce", b, b + l.Size - 1, l.Name));
                }
                else
                {
                    list.Add(Range("mapped", l.Phys, l.Phys + Math.Max(1, l.Size) - 1, l.Name));
                }
            }
            if (_s.Api.Iommu is { } iommu && iommu.DomainOf(dev) is { } domain && dev.DmaIommu)
            {
                var mine = live.Where(l => l.Dev == dev).ToList();
                foreach (var e in iommu.Unit.Iotlb.EntriesOf(domain.Id))
                {
                    var b = e.IovaBase + e.Size - 1;
                    if (!mine.Any(l => l.DmaSize > 0 && l.Dma <= b && l.Dma + l.DmaSize - 1 >= e.IovaBase))
                    {
                        list.Add(Range("lazy", e.PhysBase.Value, e.PhysBase.Value + e.Size - 1, null));
                    }
                }
            }
            _ = swiotlb;
            o[dev.Name] = list;
        }
        return o;
    }

    /// <summary>The bounce slot a live single mapping holds, from the swiotlb slot whose original address is the mapping's.</summary>
    private ulong? Bounce(Handle h)
    {
        foreach (var mem in _s.Api.Swiotlb.Mems)
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
                    if (!info.IsFree && info.AllocSize != 0 && info.OrigAddr.Value == h.Phys.Value)
                    {
                        return pool.SlotAddr(i).Value + (h.Phys.Value & (IoTlb.Size - 1) & h.Dev.MinAlignMask);
                    }
                }
            }
        }
        return null;
    }

    private JsonObject Topology()
    {
        var cfg = _s.M.Config;
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
                var (type, dist) = _s.Api.P2P.Distance(provider.Name, client.Name);
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
