using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Dma;

// Hooks for the two-step IOVA API. The 6.18 kernel keeps no dma-debug entries for dma_iova_link (links are
// not "mappings" it tracks), so these carry only PhysDma's own check.
internal sealed partial class DmaDebug
{
    /// <summary>
    /// After every <c>dma_iova_link</c>: <c>mmio_without_attr</c> / <c>ram_with_mmio_attr</c> as for
    /// <c>dma_map_phys</c>; then, when the link succeeded (<paramref name="linked"/>), remembers whether the
    /// state now holds MMIO, RAM or both, and reports <c>iova_mixed_mmio_ram</c> the first time it gets both.
    /// </summary>
    public void IovaLink(Device dev, DmaIovaState state, PhysAddr phys, ulong offset, ulong size, DmaAttrs attrs, bool linked)
    {
        if (!_globalDisable)
        {
            CheckMmioAttr(dev, phys, size, attrs);
        }
        if (!linked)
        {
            return;
        }
        var mmio = (attrs & DmaAttrs.Mmio) != 0;
        var mixedBefore = state.LinkedMmio && state.LinkedRam;
        if (mmio)
        {
            state.LinkedMmio = true;
        }
        else
        {
            state.LinkedRam = true;
        }
        if (!mixedBefore && state.LinkedMmio && state.LinkedRam && !_globalDisable)
        {
            ReportIovaMixed(dev, state.Addr + offset, phys, size, mmio);
        }
    }

    /// <summary>Before a <c>dma_iova_unlink</c> or <c>dma_iova_destroy</c>: nothing is tracked per link, so nothing to check.</summary>
    public void IovaUnlink(Device dev, DmaIovaState state, ulong offset, ulong size, DmaAttrs attrs)
    {
    }
}
