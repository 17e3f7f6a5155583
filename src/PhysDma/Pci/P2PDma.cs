using System.Globalization;
using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Pci;

/// <summary>
/// PCI peer-to-peer DMA (drivers/pci/p2pdma.c): providers per BAR, the optional p2pmem pool with
/// ZONE_DEVICE pages, and the map-type decision between a provider and a client, computed once per
/// pair and cached in the provider.
/// </summary>
internal sealed class P2PDma
{
    /// <summary>The host-bridge allowlist: (vendor, device, only when both ends share the bridge). Device 0xffff = any.</summary>
    private static readonly (uint Vendor, uint Device, bool SameHostBridge)[] Allowlist =
    [
        (0x8086, 0x3c00, true), (0x8086, 0x3c01, true), (0x8086, 0x2f00, true), (0x8086, 0x2f01, true),
        (0x8086, 0x2030, false), (0x8086, 0x2031, false), (0x8086, 0x2032, false), (0x8086, 0x2033, false),
        (0x8086, 0x2020, false), (0x8086, 0x09a2, false),
        (0x1ae0, 0xffff, false),
    ];

    private readonly Machine _m;
    private readonly Dictionary<(string, int), P2PProvider> _providers = [];
    private readonly Dictionary<string, P2PProvider> _byPgmap = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(ulong Off, ulong Size)>> _poolFree = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Dictionary<ulong, P2PMapType>> _mapTypes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _poolPagesHeld = new(StringComparer.Ordinal);
    private readonly AppendLog<P2PRemovalEvent> _removals = new();
    private readonly Lock _lock = new();

    public P2PDma(Machine machine, PciTopology topology)
    {
        _m = machine;
        Topology = topology;
        foreach (var bar in topology.Bars)
        {
            _providers[(bar.Owner, bar.Index)] = new P2PProvider(bar.Owner, bar.Index, bar.CpuBase, bar.Size, bar.BusOffset);
        }
        for (var i = 0; i < machine.Config.Devices.Count; i++)
        {
            var d = machine.Config.Devices[i];
            if (d.P2PMem is not { } pm)
            {
                continue;
            }
            if (!_providers.TryGetValue((d.Name, pm.Bar), out var provider))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.P2PMem)).Then(nameof(P2PMemConfig.Bar)), $"device '{d.Name}' has no BAR {pm.Bar} for its p2pmem pool");
            }
            if (pm.Offset + pm.Size > provider.Size || pm.Size == 0 || !Sizes.IsAligned(pm.Offset | pm.Size, machine.PageSize))
            {
                throw new MachineConfigException(ConfigProperty.Item(nameof(MachineConfig.Devices), i).Then(nameof(DeviceConfig.P2PMem)),
                    $"p2pmem pool {Hex.Format(pm.Offset)}+{Hex.Format(pm.Size)} must be page aligned and inside BAR {pm.Bar} ({Hex.Format(provider.Size)} bytes)");
            }
            // pci_p2pdma_add_resource: ZONE_DEVICE pages with a P2PDMA pgmap over the pool.
            var pgmap = $"p2pdma:{d.Name}:bar{pm.Bar}";
            provider.Pgmap = pgmap;
            _byPgmap[pgmap] = provider;
            machine.MemMap.AddDevicePages(provider.CpuBase + pm.Offset, pm.Size, pgmap);
            _poolFree[d.Name] = [(pm.Offset, pm.Size)];
        }
    }

    public PciTopology Topology { get; }

    /// <summary>How many times the map type was computed rather than found in a provider's cache.</summary>
    public int Computations { get; private set; }

    public P2PProvider? Provider(string device, int bar) => _providers.TryGetValue((device, bar), out var p) ? p : null;

    public P2PProvider? ProviderForPgmap(string pgmap) => _byPgmap.TryGetValue(pgmap, out var p) ? p : null;

    /// <summary>The provider whose BAR holds CPU address <paramref name="p"/>.</summary>
    public P2PProvider? ProviderAt(PhysAddr p) =>
        Topology.BarAtCpu(p) is { } bar ? _providers[(bar.Owner, bar.Index)] : null;

    /// <summary><c>pci_alloc_p2pmem</c>: page-granular, lowest free offset in the device's pool; null if none fits.</summary>
    public PhysAddr? AllocP2PMem(string device, ulong size)
    {
        lock (_lock)
        {
            if (!_poolFree.TryGetValue(device, out var free))
            {
                return null;
            }
            var pm = _m.Config.Devices.First(d => d.Name == device).P2PMem!;
            if (_providers[(device, pm.Bar)].State != P2PProviderState.Live)
            {
                // percpu_ref_tryget_live on the killed pgmap reference fails (or pdev->p2pdma is already NULL).
                return null;
            }
            var need = Sizes.AlignUp(size, _m.PageSize);
            for (var i = 0; i < free.Count; i++)
            {
                var (off, sz) = free[i];
                if (sz >= need)
                {
                    free[i] = (off + need, sz - need);
                    if (free[i].Size == 0)
                    {
                        free.RemoveAt(i);
                    }
                    // Each allocated page holds a reference on the pgmap until it is freed.
                    _poolPagesHeld[device] = _poolPagesHeld.GetValueOrDefault(device) + (long)(need >> _m.PageShift);
                    return _providers[(device, pm.Bar)].CpuBase + off;
                }
            }
            return null;
        }
    }

    public bool HasPool(string device) => _poolFree.ContainsKey(device);

    /// <summary>Whether <c>pci_alloc_p2pmem</c> on the device's pool can still succeed (its provider is live).</summary>
    public bool PoolLive(string device)
    {
        var pm = _m.Config.Devices.FirstOrDefault(d => d.Name == device)?.P2PMem;
        return pm is not null && _providers.TryGetValue((device, pm.Bar), out var p) && p.State == P2PProviderState.Live;
    }

    /// <summary>
    /// <c>pci_free_p2pmem</c>: drops the page references of an allocation (the pool keeps its space, a
    /// simplification). The last reference of a dying provider lets its teardown finish.
    /// </summary>
    public void FreeP2PMem(string device, ulong size)
    {
        lock (_lock)
        {
            var pm = _m.Config.Devices.First(d => d.Name == device).P2PMem!;
            var held = _poolPagesHeld[device] = Math.Max(0, _poolPagesHeld.GetValueOrDefault(device) - (long)(Sizes.AlignUp(size, _m.PageSize) >> _m.PageShift));
            var provider = _providers[(device, pm.Bar)];
            if (held == 0 && provider.State == P2PProviderState.Dying)
            {
                Complete(provider);
            }
        }
    }

    /// <summary>Pages of the device's p2pmem pool allocated and not freed (each holds a pgmap reference).</summary>
    public long PagesHeld(string device)
    {
        lock (_lock)
        {
            return _poolPagesHeld.GetValueOrDefault(device);
        }
    }

    /// <summary>
    /// The provider of <paramref name="device"/>'s BAR <paramref name="bar"/> goes away (driver unbind or hot
    /// removal: devres runs in reverse). With a p2pmem pool whose pages are still referenced, the teardown
    /// blocks in <c>memunmap_pages</c> until they are freed (the provider is <see cref="P2PProviderState.Dying"/>);
    /// otherwise <c>pci_p2pdma_release</c> runs at once, the map-type cache is destroyed and the BAR stops
    /// decoding. Returns the event (also kept for <see cref="RemovalsSince"/>).
    /// </summary>
    public P2PRemovalEvent Remove(string device, int bar)
    {
        lock (_lock)
        {
            var provider = _providers[(device, bar)];
            if (provider.State != P2PProviderState.Live)
            {
                var again = new P2PRemovalEvent(device, bar, provider.State == P2PProviderState.Removed, (int)_poolPagesHeld.GetValueOrDefault(device));
                _removals.Add(again);
                return again;
            }
            var held = provider.Pgmap is not null ? _poolPagesHeld.GetValueOrDefault(device) : 0;
            if (held > 0)
            {
                provider.State = P2PProviderState.Dying;
                var blocked = new P2PRemovalEvent(device, bar, false, (int)held);
                _removals.Add(blocked);
                return blocked;
            }
            return Complete(provider);
        }
    }

    private P2PRemovalEvent Complete(P2PProvider provider)
    {
        provider.State = P2PProviderState.Removed;
        // xa_destroy(&p2pdma->map_types): a later lookup finds pdev->p2pdma NULL before any cache.
        _mapTypes.Remove(provider.Owner);
        _m.DisableBar(provider.Owner, provider.Bar);
        var done = new P2PRemovalEvent(provider.Owner, provider.Bar, true, 0);
        _removals.Add(done);
        return done;
    }

    public int RemovalCount => _removals.Count;

    public IReadOnlyList<P2PRemovalEvent> RemovalsSince(int index) => _removals.Since(index);

    /// <summary><c>pci_p2pdma_bus_addr_map</c>: the PCI bus address of a provider's CPU address.</summary>
    public static DmaAddr BusAddrMap(P2PProvider provider, PhysAddr p) => new(p.Value + provider.BusOffset);

    private static ulong MapTypesIndex(string bdf)
    {
        // (domain << 16) | bus << 8 | devfn, as map_types_idx() keys the cache. The address ends in ":BB:DD.F";
        // the domain before it has four hex digits, or up to eight for a VMD-style synthetic domain.
        var n = bdf.Length;
        var domain = ulong.Parse(bdf.AsSpan(0, n - 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var bus = ulong.Parse(bdf.AsSpan(n - 7, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var dev = ulong.Parse(bdf.AsSpan(n - 4, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var fn = ulong.Parse(bdf.AsSpan(n - 1, 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return (domain << 16) | (bus << 8) | (dev << 3) | fn;
    }

    /// <summary><c>pci_p2pdma_map_type</c>: from the provider's cache, else computed (with its warnings) and cached.</summary>
    public P2PMapType MapType(P2PProvider provider, Device client)
    {
        if (provider.State == P2PProviderState.Removed)
        {
            // pdev->p2pdma is NULL after pci_p2pdma_release.
            return P2PMapType.NotSupported;
        }
        var clientBdf = Topology.Bdf(client.Name);
        if (clientBdf is null)
        {
            return P2PMapType.NotSupported;
        }
        var idx = MapTypesIndex(clientBdf);
        lock (_lock)
        {
            if (_mapTypes.TryGetValue(provider.Owner, out var cache) && cache.TryGetValue(idx, out var hit))
            {
                return hit;
            }
        }
        var (type, _) = CalcMapTypeAndDist(provider.Owner, client.Name, verbose: true);
        lock (_lock)
        {
            Computations++;
            if (!_mapTypes.TryGetValue(provider.Owner, out var cache))
            {
                cache = [];
                _mapTypes[provider.Owner] = cache;
            }
            cache[idx] = type;
        }
        return type;
    }

    /// <summary><c>pci_p2pdma_distance</c>: the map type and distance without the cache or warnings.</summary>
    public (P2PMapType Type, int Distance) Distance(string provider, string client) => CalcMapTypeAndDist(provider, client, verbose: false);

    /// <summary>
    /// <c>calc_map_type_and_dist</c>: walk up from the provider; for each bridge, look for it on the client's
    /// path. A common bridge with no ACS redirect on either path means bus addresses work; otherwise the
    /// transfer goes through the host bridge, which must be allowed.
    /// </summary>
    private (P2PMapType, int) CalcMapTypeAndDist(string providerName, string clientName, bool verbose)
    {
        var provider = Topology.Endpoint(providerName);
        var client = Topology.Endpoint(clientName);
        if (provider is null || client is null)
        {
            return (P2PMapType.NotSupported, -1);
        }
        var acs = new List<string>();
        var distA = 0;
        var distB = 0;
        PciNode? common = null;
        for (var a = provider; a is not null; a = a.Upstream, distA++)
        {
            distB = 0;
            if (a.AcsRedirect)
            {
                acs.Add(a.Address);
            }
            for (var bb = client; bb is not null; bb = bb.Upstream, distB++)
            {
                if (ReferenceEquals(a, bb))
                {
                    common = a;
                    break;
                }
            }
            if (common is not null)
            {
                break;
            }
        }
        var dist = distA + distB;
        var acsRedirects = false;
        if (common is not null)
        {
            for (var bb = client; bb is not null && !ReferenceEquals(bb, common); bb = bb.Upstream)
            {
                if (bb.AcsRedirect)
                {
                    acs.Add(bb.Address);
                }
            }
            if (acs.Count == 0)
            {
                return (P2PMapType.BusAddr, dist);
            }
            if (verbose)
            {
                Warn(clientName, $"ACS redirect is set between the client and provider ({Name(providerName)})");
                Warn(clientName, $"to disable ACS redirect for this path, add the kernel parameter: pci=disable_acs_redir={string.Join(";", acs)}");
            }
            acsRedirects = true;
        }
        _ = acsRedirects;
        if (!HostBridgeAllows(provider, client))
        {
            if (verbose)
            {
                Warn(clientName, $"cannot be used for peer-to-peer DMA as the client and provider ({Name(providerName)}) do not share an upstream bridge or whitelisted host bridge");
            }
            return (P2PMapType.NotSupported, dist);
        }
        return (P2PMapType.ThruHostBridge, dist);
    }

    private string Name(string device) => Topology.Bdf(device) ?? device;

    private void Warn(string device, string message) => _m.Log.Print(LogLevel.Warn, $"{device} {Name(device)}: {message}");

    /// <summary><c>host_bridge_whitelist</c>, with the machine's <c>p2p_allowed</c> standing for "this bridge is known good".</summary>
    public bool HostBridgeAllows(PciNode a, PciNode b)
    {
        var ha = Topology.HostBridge(a.HostBridge);
        var hb = Topology.HostBridge(b.HostBridge);
        if (ha.Name == hb.Name)
        {
            return Allowed(ha, sameHostBridge: true);
        }
        return Allowed(ha, sameHostBridge: false) && Allowed(hb, sameHostBridge: false);
    }

    private static bool Allowed(PciNodeConfig hb, bool sameHostBridge)
    {
        if (hb.P2PAllowed)
        {
            return true;
        }
        foreach (var (vendor, device, same) in Allowlist)
        {
            if (hb.Vendor == vendor && (device == 0xffff || hb.DeviceId == device))
            {
                return !same || sameHostBridge;
            }
        }
        return false;
    }
}

/// <summary>
/// <c>struct pci_p2pdma_map_state</c>: remembers the last provider seen in a transfer so a run of pages
/// from one provider costs one map-type lookup.
/// </summary>
internal struct P2PMapState
{
    public P2PProvider? Provider;
    public P2PMapType Map;

    /// <summary><c>pci_p2pdma_state</c> for a page already read as <paramref name="page"/>.</summary>
    public P2PMapType State(P2PDma p2p, Device dev, in PageDesc page)
    {
        if (!page.IsP2PDma)
        {
            return P2PMapType.None;
        }
        var provider = p2p.ProviderForPgmap(page.Pgmap!);
        if (provider is null)
        {
            return P2PMapType.NotSupported;
        }
        if (!ReferenceEquals(provider, Provider))
        {
            Provider = provider;
            Map = p2p.MapType(provider, dev);
        }
        return Map;
    }
}

/// <summary>
/// Routing of a PCI device's memory transactions. A bus address that falls in a peer's BAR reachable below a
/// common switch without ACS redirect is routed there directly (it never reaches the IOMMU). Everything
/// else goes upstream: through the device's translation (IOMMU or bus map); if it lands in another device's
/// BAR, the host bridges on the way must allow peer-to-peer, else the access faults <c>p2p_blocked</c>.
/// </summary>
internal sealed class PciRouting(P2PDma p2p, IDeviceTranslation upstream) : IDeviceTranslation
{
    public IDeviceTranslation Upstream { get; } = upstream;

    public Translated Translate(Device dev, DmaAddr addr, DmaAccess access)
    {
        var topo = p2p.Topology;
        var me = topo.Endpoint(dev.Name);
        if (me is not null && topo.BarAtBus(addr.Value) is { } peerBar && peerBar.Owner != dev.Name
            && p2p.Distance(peerBar.Owner, dev.Name).Type == P2PMapType.BusAddr)
        {
            var off = addr.Value - peerBar.BusBase;
            return new Translated(peerBar.CpuBase + off, peerBar.Size - off, FaultReason.None);
        }
        var t = Upstream.Translate(dev, addr, access);
        if (t.Ok && me is not null && topo.BarAtCpu(t.Phys) is { } target && target.Owner != dev.Name
            && !p2p.HostBridgeAllows(topo.Endpoint(target.Owner)!, me))
        {
            return new Translated(t.Phys, 0, FaultReason.P2PBlocked);
        }
        return t;
    }
}
