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
              - { name: rp1, type: root_port, parent: hb0 }
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
              - name: legacy32
                parent: rp1
                bdf: "0000:10:00.0"
                bars:
                  - { bar: 0, base: 0xc0100000, size: 64KiB, bus_base: 0xc0100000 }
                dma_mask: 32
                coherent_dma_mask: 32
                max_seg_size: 65536
                seg_boundary_mask: 0xffffffff
            """),
        ("default", IommuMachine("lazy", "x86_64 server with an IOMMU in lazy mode (the kernel's default), the same machine as x86-iommu-lazy")),
        ("x86-iommu-lazy", IommuMachine("lazy", "x86_64 server with an IOMMU in lazy mode; unmaps are flushed from the IOTLB by a per-CPU queue every 10 ms")),
        ("x86-iommu-strict", IommuMachine("strict", "x86_64 server with an IOMMU in strict mode; every unmap invalidates the IOTLB before it returns")),
        ("coco", """
            description: x86_64 confidential guest (SEV-style); memory is encrypted, every device bounces through shared swiotlb buffers
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
              - { base: 0x100000000, size: 5GiB }
            highmem_above: null
            kernel_text: { base: 0x1000000, size: 32MiB }
            mem_encrypt_bit: 0x800000000000
            swiotlb: { size: 64MiB, areas: 2, force: true, dynamic: false, base: null }
            iommu: off
            pci:
              - { name: hb0, type: host_bridge, vendor: 0x1af4, device: 0x1000, p2p_allowed: true,
                  windows: [{ base: 0xc0000000, size: 1GiB }, { base: 0x3800000000, size: 64GiB }] }
              - { name: rp0, type: root_port, parent: hb0 }
              - { name: sw0, type: switch, parent: rp0, acs_redirect: false }
              - { name: rp1, type: root_port, parent: hb0 }
            devices:
              - name: gpu0
                parent: sw0
                bdf: "0000:04:00.0"
                bars:
                  - { bar: 1, base: 0x3800000000, size: 16GiB, bus_base: 0x800000000 }
                p2pmem: { bar: 1, offset: 0, size: 1GiB }
                dma_mask: 64
                coherent_dma_mask: 64
                force_bounce: true
              - name: nvme0
                parent: sw0
                bdf: "0000:05:00.0"
                bars:
                  - { bar: 0, base: 0xc0100000, size: 16KiB, bus_base: 0xc0100000 }
                dma_mask: 64
                coherent_dma_mask: 64
                min_align_mask: 0xfff
                max_seg_size: 0xffffffff
                seg_boundary_mask: 0xffffffff
                force_bounce: true
              - name: nic0
                parent: rp1
                bdf: "0000:02:00.0"
                bars:
                  - { bar: 0, base: 0xc0000000, size: 1MiB, bus_base: 0xc0000000 }
                dma_mask: 64
                coherent_dma_mask: 64
                max_seg_size: 65536
                seg_boundary_mask: 0xffffffff
                force_bounce: true
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

    /// <summary>
    /// The IOMMU machines: a GPU and an NVMe drive behind one PCIe switch (peers by bus address), a NIC
    /// on its own root port (peers through the host bridge), a 32-bit-only device and an untrusted
    /// Thunderbolt device (strict domain, bounced sub-granule buffers).
    /// </summary>
    private static string IommuMachine(string mode, string description) => $$"""
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
          - { base: 0x100000000, size: 13GiB }
        highmem_above: null
        kernel_text: { base: 0x1000000, size: 32MiB }
        swiotlb: { size: 64MiB, areas: 2, force: false, dynamic: false, base: null }
        iommu:
          mode: {{mode}}
          page_sizes: [4KiB, 2MiB, 1GiB]
          aperture_bits: 48
          forcedac: false
          flush_queue: { entries: 256, timeout_ms: 10 }
          reserved: [{ base: 0xfee00000, size: 1MiB }]
        pci:
          - { name: hb0, type: host_bridge, vendor: 0x8086, device: 0x2020, p2p_allowed: true,
              windows: [{ base: 0xc0000000, size: 1GiB }, { base: 0x3800000000, size: 64GiB }] }
          - { name: rp0, type: root_port, parent: hb0 }
          - { name: sw0, type: switch, parent: rp0, acs_redirect: false }
          - { name: rp1, type: root_port, parent: hb0 }
          - { name: rp2, type: root_port, parent: hb0 }
          - { name: rp3, type: root_port, parent: hb0 }
        devices:
          - name: gpu0
            parent: sw0
            bdf: "0000:04:00.0"
            bars:
              - { bar: 1, base: 0x3800000000, size: 16GiB, bus_base: 0x800000000 }
            p2pmem: { bar: 1, offset: 0, size: 1GiB }
            dma_mask: 64
            coherent_dma_mask: 64
          - name: nvme0
            parent: sw0
            bdf: "0000:05:00.0"
            bars:
              - { bar: 0, base: 0xc0100000, size: 16KiB, bus_base: 0xc0100000 }
            dma_mask: 64
            coherent_dma_mask: 64
            min_align_mask: 0xfff
            max_seg_size: 0xffffffff
            seg_boundary_mask: 0xffffffff
          - name: nic0
            parent: rp1
            bdf: "0000:02:00.0"
            bars:
              - { bar: 0, base: 0xc0000000, size: 1MiB, bus_base: 0xc0000000 }
            dma_mask: 64
            coherent_dma_mask: 64
            max_seg_size: 65536
            seg_boundary_mask: 0xffffffff
          - name: legacy32
            parent: rp2
            bdf: "0000:06:00.0"
            bars:
              - { bar: 0, base: 0xc0200000, size: 64KiB, bus_base: 0xc0200000 }
            dma_mask: 32
            coherent_dma_mask: 32
            max_seg_size: 65536
            seg_boundary_mask: 0xffffffff
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
