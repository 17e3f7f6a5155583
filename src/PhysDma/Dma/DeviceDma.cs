using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Dma;

/// <summary>
/// What the DMA layers keep per device, resolved once when the <see cref="DmaApi"/> is built and read
/// directly on every call, as the kernel reads <c>dev->dma_ops</c>, <c>domain->iova_cookie</c> and
/// <c>dev->dma_io_tlb_mem</c>: no lookup by device on the hot path.
/// </summary>
internal sealed class DeviceDma
{
    /// <summary><c>get_dma_ops</c>: the device's legacy ops, or null.</summary>
    public DmaOps? Ops;

    /// <summary>The dma-iommu cookie of the device's DMA domain, or null without one.</summary>
    public IommuDmaCookie? Cookie;

    /// <summary><c>dev->dma_io_tlb_mem</c>.</summary>
    public IoTlbMem? IoTlbMem;
}

internal sealed partial class DmaApi
{
    private readonly DeviceDma[] _devState;

    /// <summary>The device's DMA state (its slot in the per-device array, by <see cref="Device.Index"/>).</summary>
    internal DeviceDma State(Device dev) => _devState[dev.Index];

    private static DeviceDma[] NewDeviceStates(Machine m)
    {
        var states = new DeviceDma[m.Devices.Count];
        for (var i = 0; i < states.Length; i++)
        {
            states[i] = new DeviceDma();
        }
        return states;
    }
}
