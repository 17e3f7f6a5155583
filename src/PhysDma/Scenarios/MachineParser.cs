using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// Reads a scenario's <c>machine:</c> block (docs/machines.md) into a <see cref="MachineConfig"/>: a profile name, a path to a
/// machine file, or a mapping (optionally <c>base: NAME</c> plus overrides; devices and PCI nodes that name an
/// existing one override its fields, new names are added).
/// </summary>
internal static class MachineParser
{
    private static readonly string[] MachineFields = FieldDoc.Names(MachineCatalogue.Machine);
    private static readonly string[] DeviceFields = FieldDoc.Names(MachineCatalogue.Device);


    /// <summary>Resolves a <c>machine:</c> value; <paramref name="baseDir"/> anchors relative machine-file paths.</summary>
    public static MachineConfig Resolve(YNode node, string baseDir)
    {
        if (node.IsScalar)
        {
            var name = node.Scalar;
            if (Profiles.TryGet(name, out var profile))
            {
                return profile;
            }
            var path = Path.IsPathRooted(name) ? name : Path.Combine(baseDir, name);
            if (name.EndsWith(".yaml", StringComparison.Ordinal) || name.EndsWith(".yml", StringComparison.Ordinal) || name.EndsWith(".json", StringComparison.Ordinal))
            {
                if (!File.Exists(path))
                {
                    throw node.Error($"machine file '{name}' does not exist");
                }
                return LoadFile(path);
            }
            throw node.Error($"unknown machine '{name}' (built-in: {string.Join(", ", Profiles.Names)}; or a path to a .yaml machine file)");
        }
        return Parse(node, baseDir);
    }

    /// <summary>A machine file: either the machine mapping itself or a document with a <c>machine:</c> key.</summary>
    /// <summary>The machine files being loaded on this thread, outermost first: a file that names one of them is a cycle.</summary>
    [ThreadStatic]
    private static List<string>? _loading;

    public static MachineConfig LoadFile(string path)
    {
        var full = Path.GetFullPath(path);
        _loading ??= [];
        if (_loading.Contains(full, StringComparer.Ordinal))
        {
            var chain = string.Join(" -> ", _loading.SkipWhile(f => f != full).Append(full).Select(Path.GetFileName));
            throw new ScenarioError(path, 1, "machine", $"machine files name each other in a cycle ({chain})");
        }
        _loading.Add(full);
        try
        {
            return LoadFileOnce(path);
        }
        finally
        {
            _loading.RemoveAt(_loading.Count - 1);
        }
    }

    private static MachineConfig LoadFileOnce(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ScenarioError(path, 1, "", $"cannot read machine file: {e.Message}");
        }
        var root = YNode.Load(text, path);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        if (root.IsMapping && root.Fields().Get("machine") is { } inner)
        {
            root.Fields("machine");
            if (inner.IsScalar)
            {
                return Resolve(inner, dir);
            }
            root = inner;
        }
        // A machine written in a file, whether whole or as overrides of a base, is shown under the file's name.
        return Parse(root, dir) with { Name = Path.GetFileNameWithoutExtension(path) };
    }

    public static MachineConfig Parse(YNode node, string baseDir)
    {
        var f = node.Fields(MachineFields);
        var cfg = new MachineConfig();
        if (f.Get("base") is { } b)
        {
            if (!Profiles.TryGet(b.Scalar, out var baseCfg))
            {
                throw b.Error($"unknown base profile '{b.Scalar}' (built-in: {string.Join(", ", Profiles.Names)})");
            }
            cfg = baseCfg with { Name = baseCfg.Name + "+" };
        }
        return Apply(cfg, f);
    }

    private static MachineConfig Apply(MachineConfig cfg, Fields f)
    {
        foreach (var (key, v) in f.All)
        {
            cfg = key switch
            {
                "base" or "description" => cfg,
                "arch" => cfg with { Arch = v.AsEnum(("x86_64", Arch.X86_64), ("arm64", Arch.Arm64)) },
                "page_size" => cfg with { PageSize = v.AsSize() },
                "cache_line" => cfg with { CacheLine = v.AsSize() },
                "dma_minalign" => cfg with { DmaMinAlign = v.AsSize() },
                "bounce_unaligned_kmalloc" => cfg with { BounceUnalignedKmalloc = v.AsBool() },
                "cpus" => cfg with { Cpus = v.AsInt(1, 1024) },
                "debug" => cfg with { Debug = v.AsBool() },
                "kernel_quirks" => cfg with { KernelQuirks = [.. v.Items().Select(Quirk)] },
                "ram" => cfg with { Ram = [.. v.Items().Select(Range)] },
                "highmem_above" => cfg with { HighmemAbove = v.IsNull ? null : v.AsAddress() },
                "kernel_text" => cfg with { KernelText = v.IsNull ? null : Range(v) },
                "swiotlb" => cfg with { Swiotlb = Swiotlb(v, cfg) },
                "iommu" => cfg with { Iommu = Iommu(v, cfg) },
                "mem_encrypt_bit" => cfg with { MemEncryptBit = v.IsNull ? 0 : v.AsAddress() },
                "pci" => cfg with { Pci = MergeByName(cfg.Pci, v, p => p.Name, PciNode) },
                "devices" => cfg with { Devices = MergeByName(cfg.Devices, v, d => d.Name, Device) },
                _ => throw v.Error($"unknown field '{key}'"),
            };
        }
        return cfg;
    }

    private static string Quirk(YNode n)
    {
        var q = n.Scalar;
        if (!KernelQuirk.All.Contains(q))
        {
            throw n.Error($"unknown kernel quirk '{q}' (known: {string.Join(", ", KernelQuirk.All)})");
        }
        return q;
    }

    private static AddrRange Range(YNode n)
    {
        var f = n.Fields(FieldDoc.Names(MachineCatalogue.Range));
        var size = f.Required("size").AsSize();
        if (size == 0)
        {
            throw f.Required("size").Error("size must not be 0");
        }
        return new AddrRange(f.Required("base").AsAddress(), size);
    }

    private static SwiotlbConfig? Swiotlb(YNode v, MachineConfig cfg)
    {
        if (v.IsNull || (v.IsScalar && !v.AsBool()))
        {
            return null;
        }
        var start = cfg.Swiotlb ?? new SwiotlbConfig(64 * Sizes.MiB, 0, false, false, null);
        if (v.IsScalar)
        {
            return start;
        }
        var f = v.Fields(FieldDoc.Names(MachineCatalogue.Swiotlb));
        return start with
        {
            Size = f.Get("size")?.AsSize() ?? start.Size,
            Areas = f.Get("areas")?.AsInt(0, 1 << 16) ?? start.Areas,
            Force = f.Get("force")?.AsBool() ?? start.Force,
            Dynamic = f.Get("dynamic")?.AsBool() ?? start.Dynamic,
            Base = f.Get("base") is { } b ? (b.IsNull ? null : b.AsAddress()) : start.Base,
        };
    }

    private static IommuConfig? Iommu(YNode v, MachineConfig cfg)
    {
        if (v.IsNull || (v.IsScalar && !v.AsBool()))
        {
            return null;
        }
        var msi = cfg.Arch == Arch.X86_64 ? new[] { new AddrRange(0xfee00000, Sizes.MiB) } : [];
        var start = cfg.Iommu ?? new IommuConfig(IommuMode.Lazy, [4 * Sizes.KiB, 2 * Sizes.MiB, Sizes.GiB], 48, false,
            new FlushQueueConfig(256, 10), msi);
        if (v.IsScalar)
        {
            return start;
        }
        var f = v.Fields(FieldDoc.Names(MachineCatalogue.Iommu));
        var fq = start.FlushQueue;
        if (f.Get("flush_queue") is { } fqn)
        {
            var ff = fqn.Fields(FieldDoc.Names(MachineCatalogue.FlushQueue));
            fq = new FlushQueueConfig(ff.Get("entries")?.AsInt(2, 1 << 20) ?? fq.Entries, ff.Get("timeout_ms")?.AsInt(1, 1_000_000) ?? fq.TimeoutMs);
        }
        IReadOnlyList<ulong> pageSizes = start.PageSizes;
        if (f.Get("page_sizes") is { } ps)
        {
            pageSizes = [.. ps.Items().Select(p =>
            {
                var s = p.AsSize();
                if (!Sizes.IsPowerOfTwo(s) || s < 4096)
                {
                    throw p.Error($"IOMMU page size {s} is not a power of two of at least 4 KiB");
                }
                return s;
            })];
            if (pageSizes.Count == 0)
            {
                throw ps.Error("at least one IOMMU page size is needed");
            }
        }
        return start with
        {
            Mode = f.Get("mode")?.AsEnum(("strict", IommuMode.Strict), ("lazy", IommuMode.Lazy), ("passthrough", IommuMode.Passthrough)) ?? start.Mode,
            PageSizes = pageSizes,
            ApertureBits = f.Get("aperture_bits")?.AsInt(32, 64) ?? start.ApertureBits,
            ForceDac = f.Get("forcedac")?.AsBool() ?? start.ForceDac,
            FlushQueue = fq,
            Reserved = f.Get("reserved") is { } r ? [.. r.Items().Select(Range)] : start.Reserved,
        };
    }

    private static IReadOnlyList<T> MergeByName<T>(IReadOnlyList<T> existing, YNode list, Func<T, string> nameOf, Func<YNode, T?, T> parse)
    {
        var result = new List<T>(existing);
        foreach (var item in list.Items())
        {
            var name = item.Fields().Get("name")?.AsName() ?? throw item.Error("missing field 'name'");
            var idx = result.FindIndex(e => nameOf(e) == name);
            if (idx >= 0)
            {
                result[idx] = parse(item, result[idx]);
            }
            else
            {
                result.Add(parse(item, default));
            }
        }
        return result;
    }

    private static PciNodeConfig PciNode(YNode n, PciNodeConfig? start)
    {
        var f = n.Fields(FieldDoc.Names(MachineCatalogue.PciNode));
        var type = f.Get("type")?.AsEnum(("host_bridge", PciNodeType.HostBridge), ("root_port", PciNodeType.RootPort), ("switch", PciNodeType.Switch))
            ?? start?.Type ?? throw n.Error("missing field 'type'");
        return new PciNodeConfig(
            f.Required("name").AsName(),
            type,
            f.Get("parent") is { } p ? (p.IsNull ? null : p.AsName()) : start?.Parent,
            f.Get("vendor") is { } ve ? (uint)ve.AsInt(0, 0xffff) : start?.Vendor ?? 0,
            f.Get("device") is { } de ? (uint)de.AsInt(0, 0xffff) : start?.DeviceId ?? 0,
            f.Get("p2p_allowed")?.AsBool() ?? start?.P2PAllowed ?? false,
            f.Get("windows") is { } w ? [.. w.Items().Select(Range)] : start?.Windows ?? [],
            f.Get("acs_redirect")?.AsBool() ?? start?.AcsRedirect ?? false)
        {
            Bdf = f.Get("bdf") is { } b ? (b.IsNull ? null : Bdf(b)) : start?.Bdf,
            ExternalFacing = f.Get("external_facing")?.AsBool() ?? start?.ExternalFacing ?? false,
        };
    }

    private static DeviceConfig Device(YNode n, DeviceConfig? start)
    {
        var f = n.Fields(DeviceFields);
        var d = start ?? new DeviceConfig { Name = f.Required("name").AsName() };
        foreach (var (key, v) in f.All)
        {
            d = key switch
            {
                "name" => d,
                "parent" => d with { Parent = v.IsNull ? null : v.AsName() },
                "bdf" => d with { Bdf = v.IsNull ? null : Bdf(v) },
                "bars" => d with { Bars = [.. v.Items().Select(Bar)] },
                "p2pmem" => d with { P2PMem = v.IsNull ? null : P2PMem(v) },
                "dma_mask" => d with { DmaMaskBits = v.IsNull ? null : v.AsInt(1, 64) },
                "coherent_dma_mask" => d with { CoherentDmaMaskBits = v.AsInt(1, 64) },
                "coherent" => d with { Coherent = v.IsNull ? null : v.AsBool() },
                "iommu" => d with { Iommu = v.IsNull ? null : v.AsBool() },
                "untrusted" => d with { Untrusted = v.AsBool() },
                "bus_dma_limit" => d with { BusDmaLimit = v.AsAddress() },
                "dma_ranges" => d with { DmaRanges = [.. v.Items().Select(DmaRange)] },
                "min_align_mask" => d with { MinAlignMask = v.AsAddress() },
                "max_seg_size" => d with { MaxSegSize = v.AsSize() },
                "seg_boundary_mask" => d with { SegBoundaryMask = v.AsAddress() },
                "force_bounce" => d with { ForceBounce = v.AsBool() },
                "restricted_pool" => d with { RestrictedPool = v.IsNull ? null : Range(v) },
                "ops" => d with
                {
                    Ops = v.AsEnum(("none", DeviceOpsKind.None), ("legacy", DeviceOpsKind.Legacy),
                        ("legacy_no_resource", DeviceOpsKind.LegacyNoResource), ("phys", DeviceOpsKind.Phys),
                        ("phys_no_mmio", DeviceOpsKind.PhysNoMmio)),
                },
                _ => throw v.Error($"unknown field '{key}'"),
            };
        }
        return d;
    }

    private static string Bdf(YNode v)
    {
        // The domain has four hex digits, or more for a VMD-style synthetic domain ("10000:e1:00.0").
        var s = v.Scalar;
        var d = s.Length - 8;
        var ok = d is >= 4 and <= 8 && s[d] == ':' && s[d + 3] == ':' && s[d + 6] == '.' && s[d + 7] is >= '0' and <= '7'
            && s.Where((c, i) => i != d && i != d + 3 && i != d + 6).All(Uri.IsHexDigit);
        if (!ok)
        {
            throw v.Error($"'{s}' is not a PCI address (write \"0000:03:00.0\")");
        }
        return s.ToLowerInvariant();
    }

    private static BarConfig Bar(YNode n)
    {
        var f = n.Fields(FieldDoc.Names(MachineCatalogue.Bar));
        var @base = f.Required("base").AsAddress();
        return new BarConfig(f.Required("bar").AsInt(0, 5), @base, f.Required("size").AsSize(), f.Get("bus_base")?.AsAddress() ?? @base);
    }

    private static P2PMemConfig P2PMem(YNode n)
    {
        var f = n.Fields(FieldDoc.Names(MachineCatalogue.P2PMem));
        return new P2PMemConfig(f.Required("bar").AsInt(0, 5), f.Get("offset")?.AsSize() ?? 0, f.Required("size").AsSize());
    }

    private static DmaRangeConfig DmaRange(YNode n)
    {
        var f = n.Fields(FieldDoc.Names(MachineCatalogue.DmaRange));
        return new DmaRangeConfig(f.Required("cpu").AsAddress(), f.Required("dma").AsAddress(), f.Required("size").AsSize());
    }
}
