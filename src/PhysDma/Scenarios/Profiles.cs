using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// The built-in machines. Each is written in the machine-file format itself, so
/// <c>physdma machines show NAME</c> prints exactly what the model runs and a user can copy it.
/// </summary>
internal static class Profiles
{
    private static readonly (string Name, string Yaml)[] All =
    [
        ("x86-noiommu", $$"""
            {{X86Head("x86_64 server without an IOMMU; PCIe devices use dma-direct, swiotlb catches what a mask cannot reach", "13GiB")}}
            swiotlb: { size: 64MiB, areas: 2, force: false, dynamic: false, base: null }
            iommu: off
            pci:
              - { name: hb0, type: host_bridge, vendor: 0x8086, device: 0x2020, p2p_allowed: true,
                  windows: [{ base: 0xc0000000, size: 1GiB }, { base: 0x3800000000, size: 64GiB }] }
              - { name: rp0, type: root_port, parent: hb0 }
              - { name: rp1, type: root_port, parent: hb0 }
              - { name: rp4, type: root_port, parent: hb0 }
              - { name: sw4, type: switch, parent: rp4, acs_redirect: false }
            devices:
            {{Nic("rp0", "0000:01:00.0")}}
            {{Legacy32("rp1", "0000:10:00.0", "0xc0100000")}}
            {{GpuAndNvme("", "0xc0200000", "sw4")}}
            """),
        ("default", """
            base: x86-iommu-lazy
            description: x86_64 server with an IOMMU in lazy mode (the kernel's default), the same machine as x86-iommu-lazy
            """),
        ("x86-iommu-lazy", $$"""
            {{X86Head("x86_64 server with an IOMMU in lazy mode; unmaps are flushed from the IOTLB by a per-CPU queue every 10 ms", "13GiB")}}
            swiotlb: { size: 64MiB, areas: 2, force: false, dynamic: false, base: null }
            iommu:
              mode: lazy
              page_sizes: [4KiB, 2MiB, 1GiB]
              aperture_bits: 48
              forcedac: false
              flush_queue: { entries: 256, timeout_ms: 10 }
              reserved: [{ base: 0xfee00000, size: 1MiB }]
            {{HostBridge("0x8086", "0x2020")}}
              - { name: rp2, type: root_port, parent: hb0 }
              - { name: rp3, type: root_port, parent: hb0 }
            devices:
            {{GpuAndNvme("")}}
            {{Nic("rp1", "0000:02:00.0")}}
            {{Legacy32("rp2", "0000:06:00.0", "0xc0200000")}}
              - name: tbt0
                parent: rp3
                bdf: "0000:07:00.0"
                bars:
                  - { bar: 0, base: 0xc0300000, size: 64KiB, bus_base: 0xc0300000 }
                dma_mask: 64
                coherent_dma_mask: 64
                untrusted: true
                max_seg_size: 65536
                seg_boundary_mask: 0xffffffff
            """),
        ("x86-iommu-strict", """
            base: x86-iommu-lazy
            description: x86_64 server with an IOMMU in strict mode; every unmap invalidates the IOTLB before it returns
            iommu:
              mode: strict
            """),
        ("coco", $$"""
            {{X86Head("x86_64 confidential guest (SEV-style); memory is encrypted, every device bounces through shared swiotlb buffers", "5GiB")}}
            mem_encrypt_bit: 0x800000000000
            swiotlb: { size: 64MiB, areas: 2, force: true, dynamic: false, base: null }
            iommu: off
            {{HostBridge("0x1af4", "0x1000")}}
              - { name: rp2, type: root_port, parent: hb0 }
            devices:
            {{GpuAndNvme(ForceBounce)}}
            {{Nic("rp1", "0000:02:00.0") + ForceBounce}}
            {{Legacy32("rp2", "0000:06:00.0", "0xc0200000") + ForceBounce}}
            """),
        ("arm64-noncoherent", $$"""
            description: arm64 SoC whose DMA masters do not snoop the CPU caches; every sync is cache maintenance
            arch: arm64
            page_size: 4096
            cache_line: 64
            dma_minalign: 128
            bounce_unaligned_kmalloc: true
            cpus: 2
            debug: on
            kernel_quirks: []
            ram:
              - { base: 0x80000000, size: 4GiB }
            highmem_above: null
            kernel_text: { base: 0x80200000, size: 32MiB }
            swiotlb: { size: 64MiB, areas: 2, force: false, dynamic: false, base: null }
            iommu: off
            pci:
              - { name: hb0, type: host_bridge, vendor: 0x1b36, device: 0x0008, p2p_allowed: false,
                  windows: [{ base: 0x40000000, size: 1GiB }, { base: 0x3800000000, size: 64GiB }] }
              - { name: rp0, type: root_port, parent: hb0 }
              - { name: sw0, type: switch, parent: rp0, acs_redirect: false }
              - { name: rp1, type: root_port, parent: hb0 }
            devices:
              - name: nic0
                bars:
                  - { bar: 0, base: 0x3ff00000, size: 1MiB, bus_base: 0x3ff00000 }
                dma_mask: 40
                coherent_dma_mask: 40
                coherent: false
                max_seg_size: 65536
                seg_boundary_mask: 0xffffffff
            {{GpuAndNvme(NonCoherent, "0x60100000")}}
            {{Legacy32("rp1", "0000:06:00.0", "0x60200000") + NonCoherent}}
            """),
    ];

    // The x86 machines share their CPU side, their PCIe hierarchy and some devices; these pieces are written
    // once and put together above (base: cannot drop devices or reorder them, so only the IOMMU modes use it).

    /// <summary>An x86_64 server's CPU side: 3 GiB of low RAM and <paramref name="highRam"/> above 4 GiB.</summary>
    private static string X86Head(string description, string highRam) => $$"""
        description: {{description}}
        arch: x86_64
        page_size: 4096
        cache_line: 64
        dma_minalign: 8
        bounce_unaligned_kmalloc: false
        cpus: 2
        debug: on
        kernel_quirks: []
        ram:
          - { base: 0x0, size: 3GiB }
          - { base: 0x100000000, size: {{highRam}} }
        highmem_above: null
        kernel_text: { base: 0x1000000, size: 32MiB }
        """;

    /// <summary>A host bridge with a 32-bit and a 64-bit window, a switch below root port 0 and a second root port.</summary>
    private static string HostBridge(string vendor, string device) => $$"""
        pci:
          - { name: hb0, type: host_bridge, vendor: {{vendor}}, device: {{device}}, p2p_allowed: true,
              windows: [{ base: 0xc0000000, size: 1GiB }, { base: 0x3800000000, size: 64GiB }] }
          - { name: rp0, type: root_port, parent: hb0 }
          - { name: sw0, type: switch, parent: rp0, acs_redirect: false }
          - { name: rp1, type: root_port, parent: hb0 }
        """;

    private const string ForceBounce = "\n    force_bounce: true";

    private const string NonCoherent = "\n    coherent: false";

    /// <summary>A GPU with a 1 GiB p2pmem pool and an NVMe drive, peers below switch sw0.</summary>
    private static string GpuAndNvme(string extra, string nvmeBar = "0xc0100000", string sw = "sw0") => $$"""
          - name: gpu0
            parent: {{sw}}
            bdf: "0000:04:00.0"
            bars:
              - { bar: 1, base: 0x3800000000, size: 16GiB, bus_base: 0x800000000 }
            p2pmem: { bar: 1, offset: 0, size: 1GiB }
            dma_mask: 64
            coherent_dma_mask: 64{{extra}}
          - name: nvme0
            parent: {{sw}}
            bdf: "0000:05:00.0"
            bars:
              - { bar: 0, base: {{nvmeBar}}, size: 16KiB, bus_base: {{nvmeBar}} }
            dma_mask: 64
            coherent_dma_mask: 64
            min_align_mask: 0xfff
            max_seg_size: 0xffffffff
            seg_boundary_mask: 0xffffffff{{extra}}
        """;

    /// <summary>A 64-bit NIC with a 1 MiB register BAR at the bottom of the 32-bit window.</summary>
    private static string Nic(string parent, string bdf) => Device("nic0", parent, bdf, "0xc0000000", "1MiB", 64);

    /// <summary>A device that can only address 32 bits.</summary>
    private static string Legacy32(string parent, string bdf, string bar) => Device("legacy32", parent, bdf, bar, "64KiB", 32);

    private static string Device(string name, string parent, string bdf, string bar, string barSize, int maskBits) => $$"""
          - name: {{name}}
            parent: {{parent}}
            bdf: "{{bdf}}"
            bars:
              - { bar: 0, base: {{bar}}, size: {{barSize}}, bus_base: {{bar}} }
            dma_mask: {{maskBits}}
            coherent_dma_mask: {{maskBits}}
            max_seg_size: 65536
            seg_boundary_mask: 0xffffffff
        """;

    private static readonly Dictionary<string, MachineConfig> Cache = new(StringComparer.Ordinal);
    private static readonly Lock CacheLock = new();

    public static IEnumerable<string> Names => All.Select(p => p.Name);

    public static bool TryGet(string name, out MachineConfig config)
    {
        lock (CacheLock)
        {
            if (Cache.TryGetValue(name, out config!))
            {
                return true;
            }
            var yaml = YamlOf(name);
            if (yaml is null)
            {
                return false;
            }
            var node = YNode.Load(yaml, $"<built-in profile {name}>");
            config = MachineParser.Parse(node, ".") with { Name = name };
            Cache[name] = config;
            return true;
        }
    }

    /// <summary>The profile as written: a whole machine file, or <c>base: NAME</c> and what differs.</summary>
    private static string? Source(string name)
    {
        foreach (var (n, y) in All)
        {
            if (n == name)
            {
                return y.EndsWith('\n') ? y : y + "\n";
            }
        }
        return null;
    }

    /// <summary>
    /// The profile's machine file text, or null: a profile written on <c>base:</c> is printed as the whole
    /// machine it is, so <c>physdma machines show</c> always prints a complete machine.
    /// </summary>
    public static string? YamlOf(string name) => Source(name) is { } text ? Expand(name, text) : null;

    /// <summary>
    /// A <c>base:</c> profile as a whole machine: the base's text with each overridden line replaced. Built-in
    /// profiles override only single values, at the top level or in a block mapping (the IOMMU mode).
    /// </summary>
    private static string Expand(string name, string text)
    {
        var fields = YNode.Load(text, $"<built-in profile {name}>").Fields();
        if (fields.Get("base") is not { } b)
        {
            return text;
        }
        var lines = (YamlOf(b.Scalar) ?? throw new InvalidOperationException($"profile {name}: unknown base {b.Scalar}")).Split('\n');
        foreach (var (key, value) in fields.All.Where(kv => kv.Key != "base"))
        {
            if (value.IsScalar)
            {
                Replace(lines, 0, lines.Length, "", key, value.Scalar, name);
                continue;
            }
            var start = Array.IndexOf(lines, key + ":") + 1;
            var end = start;
            while (start > 0 && end < lines.Length && lines[end].StartsWith("  ", StringComparison.Ordinal))
            {
                end++;
            }
            foreach (var (inner, v) in value.Fields().All)
            {
                Replace(lines, start, end, "  ", inner, v.Scalar, name);
            }
        }
        return string.Join('\n', lines);
    }

    private static void Replace(string[] lines, int start, int end, string indent, string key, string value, string profile)
    {
        var prefix = indent + key + ":";
        var i = Array.FindIndex(lines, start, end - start, l => l.StartsWith(prefix + " ", StringComparison.Ordinal));
        if (i < 0)
        {
            throw new InvalidOperationException($"profile {profile}: its base has no line '{prefix}' to override");
        }
        lines[i] = $"{prefix} {value}";
    }

    public static string Description(string name)
    {
        var yaml = YamlOf(name) ?? "";
        var line = yaml.Split('\n').FirstOrDefault(l => l.StartsWith("description:", StringComparison.Ordinal));
        return line is null ? "" : line["description:".Length..].Trim();
    }
}
