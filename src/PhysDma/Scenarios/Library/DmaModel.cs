using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using YamlDotNet.RepresentationModel;

namespace PhysDma.Scenarios;

/// <summary>A buffer of RAM a test allocated for its driver: where it lies and how long it is.</summary>
/// <param name="Phys">Physical address of the first byte (page-aligned).</param>
/// <param name="Size">Length in bytes.</param>
public sealed record DmaBuffer(PhysAddr Phys, ulong Size)
{
    /// <summary>The physical address <paramref name="offset"/> bytes into the buffer.</summary>
    /// <param name="offset">Offset from the start of the buffer.</param>
    /// <returns>The address; throws <see cref="ArgumentOutOfRangeException"/> past the end.</returns>
    public PhysAddr At(ulong offset) =>
        offset < Size ? Phys + offset : throw new ArgumentOutOfRangeException(nameof(offset), $"offset {offset} is past the {Size}-byte buffer");
}

/// <summary>
/// A modelled machine with the Linux DMA API on it, for C# tests of a driver's DMA usage: allocate buffers,
/// write and read them as the CPU (through the CPU cache model), map, sync and unmap them for a device exactly
/// as the kernel's <c>dma_map_phys</c> family does, let the device read and write at the DMA addresses it was
/// given, and inspect what dma-debug reported and which device accesses faulted. Every call runs the same code
/// as <c>physdma run</c>. The machine and its DMA API are <see cref="Machine"/> and <see cref="Api"/> for anything
/// beyond this surface.
/// </summary>
public sealed class DmaModel
{
    private DmaModel(MachineConfig config)
    {
        Machine = new Machine(config);
        Api = new DmaApi(Machine);
    }

    /// <summary>The names of the built-in machines (<c>default</c>, <c>x86-iommu-strict</c>, <c>arm64-noncoherent</c>, ...).</summary>
    public static IReadOnlyList<string> BuiltInMachines => [.. Profiles.Names];

    /// <summary>Builds a machine: a built-in one by name, or a machine file (<c>.yaml</c>, <c>.yml</c>, <c>.json</c>) by path.</summary>
    /// <param name="machine">A name from <see cref="BuiltInMachines"/> or a path (relative to the current directory).</param>
    /// <returns>The model, with dma-debug on unless the machine turns it off.</returns>
    /// <exception cref="ScenarioError">The name is unknown or the file is not a valid machine (the message names file, line and field).</exception>
    public static DmaModel Create(string machine) =>
        new(MachineParser.Resolve(new YNode(new YamlScalarNode(machine), "machine", ""), Directory.GetCurrentDirectory()));

    /// <summary>Builds a machine from machine-file text (see docs/machines.md), e.g. <c>base: default</c> plus overrides.</summary>
    /// <param name="yaml">The machine mapping, as in a machine file.</param>
    /// <param name="name">The file name to report errors against.</param>
    /// <returns>The model.</returns>
    /// <exception cref="ScenarioError">The text is not a valid machine.</exception>
    public static DmaModel FromYaml(string yaml, string name = "machine.yaml") =>
        new(MachineParser.Parse(YNode.Load(yaml, name), Directory.GetCurrentDirectory()));

    /// <summary>The machine's name (a built-in name, or <c>custom</c> / a file's name).</summary>
    public string Name => Machine.Config.Name;

    /// <summary>The modelled hardware: memory, CPU cache, IOMMU, PCI topology, devices, kernel log.</summary>
    internal Machine Machine { get; }

    /// <summary>The kernel's DMA API on this machine (<c>dma_map_phys</c> and every other entry point).</summary>
    internal DmaApi Api { get; }

    /// <summary>A device of the machine by its name in the machine file (<c>nic0</c>, <c>nvme0</c>, ...).</summary>
    /// <param name="name">The device's name.</param>
    /// <returns>The device, to pass to the DMA calls.</returns>
    public Device Device(string name) => Machine.Device(name);

    /// <summary>Allocates page-aligned RAM from the page allocator, as a driver's <c>alloc_pages</c> would.</summary>
    /// <param name="size">Bytes (rounded up to whole pages).</param>
    /// <returns>The buffer; throws <see cref="InvalidOperationException"/> when RAM is exhausted.</returns>
    public DmaBuffer AllocRam(ulong size)
    {
        var bytes = Sizes.AlignUp(Math.Max(size, 1), Machine.PageSize);
        var p = Machine.Allocator.Alloc(bytes, Machine.PageSize) ?? throw new InvalidOperationException($"no free RAM for {bytes} bytes");
        return new DmaBuffer(p, size);
    }

    /// <summary>Gives a buffer from <see cref="AllocRam"/> back to the page allocator.</summary>
    /// <param name="buffer">The buffer.</param>
    public void Free(DmaBuffer buffer) => Machine.Allocator.Free(buffer.Phys, Sizes.AlignUp(Math.Max(buffer.Size, 1), Machine.PageSize));

    /// <summary>
    /// The CPU stores bytes into a buffer through its linear mapping and the CPU cache model. With dma-debug on,
    /// a store into a buffer the device owns is reported (<c>cpu_write_while_device_owns</c>).
    /// </summary>
    /// <param name="buffer">The buffer.</param>
    /// <param name="offset">Where in the buffer.</param>
    /// <param name="data">The bytes.</param>
    public void CpuWrite(DmaBuffer buffer, ulong offset, ReadOnlySpan<byte> data)
    {
        CheckRange(buffer, offset, (ulong)data.Length);
        if (data.Length > 0)
        {
            Api.Debug?.CheckCpuAccess(buffer.At(offset), (ulong)data.Length, write: true);
        }
        Machine.Cpu.Write(Machine.Kmap.PhysToVirt(buffer.At(offset)), data);
    }

    /// <summary>
    /// The CPU loads bytes from a buffer through its linear mapping and the CPU cache model. With dma-debug on,
    /// a load from a buffer the device owns is reported (<c>cpu_read_while_device_owns</c>).
    /// </summary>
    /// <param name="buffer">The buffer.</param>
    /// <param name="offset">Where in the buffer.</param>
    /// <param name="length">How many bytes.</param>
    /// <returns>The bytes the CPU sees (stale ones, if a sync was missed on a non-coherent machine).</returns>
    public byte[] CpuRead(DmaBuffer buffer, ulong offset, int length)
    {
        CheckRange(buffer, offset, (ulong)length);
        var data = new byte[length];
        if (length > 0)
        {
            Api.Debug?.CheckCpuAccess(buffer.At(offset), (ulong)length, write: false);
        }
        Machine.Cpu.Read(Machine.Kmap.PhysToVirt(buffer.At(offset)), data);
        return data;
    }

    /// <summary><c>dma_map_phys</c>: maps part of a buffer for a device.</summary>
    /// <param name="dev">The device.</param>
    /// <param name="buffer">The buffer.</param>
    /// <param name="offset">Offset of the mapped range in the buffer.</param>
    /// <param name="size">Length of the mapped range.</param>
    /// <param name="dir">The DMA direction.</param>
    /// <param name="attrs"><c>DMA_ATTR_*</c> flags.</param>
    /// <returns>The DMA address for the device, or <see cref="DmaAddr.MappingError"/> (check with <see cref="MappingError"/>).</returns>
    public DmaAddr Map(Device dev, DmaBuffer buffer, ulong offset, ulong size, DmaDirection dir, DmaAttrs attrs = DmaAttrs.None)
    {
        CheckRange(buffer, offset, size);
        return Api.MapPhys(dev, buffer.At(offset), size, dir, attrs);
    }

    /// <summary><c>dma_unmap_phys</c>: unmaps what <see cref="Map"/> returned, with the same size, direction and attrs.</summary>
    /// <param name="dev">The device.</param>
    /// <param name="addr">The DMA address the map returned.</param>
    /// <param name="size">The mapped size.</param>
    /// <param name="dir">The mapped direction.</param>
    /// <param name="attrs"><c>DMA_ATTR_*</c> flags.</param>
    public void Unmap(Device dev, DmaAddr addr, ulong size, DmaDirection dir, DmaAttrs attrs = DmaAttrs.None) =>
        Api.UnmapPhys(dev, addr, size, dir, attrs);

    /// <summary><c>dma_mapping_error</c>: whether a map failed (dma-debug notes that the driver checked).</summary>
    /// <param name="dev">The device.</param>
    /// <param name="addr">The DMA address the map returned.</param>
    /// <returns>True when the map failed.</returns>
    public bool MappingError(Device dev, DmaAddr addr) => Api.MappingError(dev, addr) != Errno.None;

    /// <summary><c>dma_sync_single_for_cpu</c>: gives the buffer back to the CPU before it reads what the device wrote.</summary>
    /// <param name="dev">The device.</param>
    /// <param name="addr">The DMA address (of the mapping, or inside it).</param>
    /// <param name="size">Bytes to sync.</param>
    /// <param name="dir">The mapping's direction.</param>
    public void SyncForCpu(Device dev, DmaAddr addr, ulong size, DmaDirection dir) => Api.SyncSingleForCpu(dev, addr, size, dir);

    /// <summary><c>dma_sync_single_for_device</c>: gives the buffer to the device after the CPU wrote it.</summary>
    /// <param name="dev">The device.</param>
    /// <param name="addr">The DMA address (of the mapping, or inside it).</param>
    /// <param name="size">Bytes to sync.</param>
    /// <param name="dir">The mapping's direction.</param>
    public void SyncForDevice(Device dev, DmaAddr addr, ulong size, DmaDirection dir) => Api.SyncSingleForDevice(dev, addr, size, dir);

    /// <summary>The device reads at a DMA address through its translation (bus offset, or IOMMU and IOTLB).</summary>
    /// <param name="dev">The device.</param>
    /// <param name="addr">The DMA address.</param>
    /// <param name="length">How many bytes.</param>
    /// <param name="fault">The fault when the access could not be translated (the bytes are then zero; all-ones from a removed BAR), else null.</param>
    /// <returns>The bytes the device got.</returns>
    public byte[] DeviceRead(Device dev, DmaAddr addr, int length, out DmaFault? fault)
    {
        var data = new byte[length];
        fault = Machine.DeviceRead(dev, addr, data);
        return data;
    }

    /// <summary>The device writes at a DMA address through its translation.</summary>
    /// <param name="dev">The device.</param>
    /// <param name="addr">The DMA address.</param>
    /// <param name="data">The bytes.</param>
    /// <returns>The fault when the access could not be translated, else null.</returns>
    public DmaFault? DeviceWrite(Device dev, DmaAddr addr, ReadOnlySpan<byte> data) => Machine.DeviceWrite(dev, addr, data);

    /// <summary>Modelled time passes: the lazy IOMMU flush-queue timer and other deferred work run.</summary>
    /// <param name="ms">Milliseconds.</param>
    public void Tick(ulong ms) => Machine.Clock.Advance(ms * 1_000_000);

    /// <summary>Driver unbind: dma-debug reports every mapping still live for the device (<c>leak_on_unbind</c>).</summary>
    /// <param name="dev">The device.</param>
    public void RemoveDevice(Device dev) => Api.Debug?.RemoveDevice(dev);

    /// <summary>
    /// The P2PDMA provider of a device's BAR goes away (as <c>faults: remove_p2p_provider</c>): at once, or
    /// blocked until the p2pmem pages still allocated from it are freed. Afterwards the BAR reads all-ones
    /// and drops writes (<see cref="FaultReason.BarRemoved"/> faults).
    /// </summary>
    /// <param name="device">The PCI device.</param>
    /// <param name="bar">The BAR.</param>
    /// <returns>Whether the removal completed (false: it waits for page references).</returns>
    public bool RemoveP2PProvider(string device, int bar) =>
        Api.P2P.Provider(device, bar) is null
            ? throw new ArgumentException($"BAR {bar} of '{device}' is not a P2PDMA provider on this machine", nameof(bar))
            : Api.P2P.Remove(device, bar).Completed;

    /// <summary>Every dma-debug report so far, in order (empty when the machine has <c>debug: off</c>).</summary>
    public IReadOnlyList<DebugReport> DebugReports => Api.Debug?.Reports ?? [];

    /// <summary>Every device access the fabric or the IOMMU refused so far, in order.</summary>
    public IReadOnlyList<DmaFault> Faults => Machine.Faults;

    /// <summary>The kernel log so far (dmesg lines, without timestamps).</summary>
    public IReadOnlyList<string> KernelLog => [.. Machine.Log.Lines.Select(l => l.Message)];

    private static void CheckRange(DmaBuffer buffer, ulong offset, ulong length)
    {
        if (offset > buffer.Size || length > buffer.Size - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside the {buffer.Size}-byte buffer");
        }
    }
}
