using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// The built-in machines. Each is written in the machine-file format itself, so
/// <c>physdma machines show NAME</c> prints exactly what the model runs and a user can copy it.
/// </summary>
public static class Profiles
{
    private static readonly (string Name, string Yaml)[] All =
    [
        ("x86-noiommu", """
            description: x86_64 server without an IOMMU; PCIe devices use dma-direct, swiotlb catches what a mask cannot reach
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
              - { base: 0x100000000, size: 13GiB }
            highmem_above: null
            kernel_text: { base: 0x1000000, size: 32MiB }
            swiotlb: { size: 64MiB, areas: 2, force: false, dynamic: false, base: null }
            iommu: off
            pci:
              - { name: hb0, type: host_bridge, vendor: 0x8086, device: 0x2020, p2p_allowed: true,
                  windows: [{ base: 0xc0000000, size: 1GiB }] }
              - { name: rp0, type: root_port, parent: hb0 }
            devices:
              - name: nic0
                parent: rp0
                bdf: "0000:01:00.0"
                bars:
                  - { bar: 0, base: 0xc0000000, size: 1MiB, bus_base: 0xc0000000 }
                dma_mask: 64
                coherent_dma_mask: 64
                max_seg_size: 65536
                seg_boundary_mask: 0xffffffff
            """),
        ("arm64-noncoherent", """
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
            pci: []
            devices:
              - name: nic0
                dma_mask: 40
                coherent_dma_mask: 40
                coherent: false
                max_seg_size: 65536
                seg_boundary_mask: 0xffffffff
            """),
    ];

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

    /// <summary>The profile's machine file text, or null.</summary>
    public static string? YamlOf(string name)
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

    public static string Description(string name)
    {
        var yaml = YamlOf(name) ?? "";
        var line = yaml.Split('\n').FirstOrDefault(l => l.StartsWith("description:", StringComparison.Ordinal));
        return line is null ? "" : line["description:".Length..].Trim();
    }
}
