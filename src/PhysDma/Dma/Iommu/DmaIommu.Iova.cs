using System.Runtime.CompilerServices;
using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Platform;

namespace PhysDma.Dma;

// The two-step IOVA API (dma_iova_*, drivers/iommu/dma-iommu.c): one IOVA range reserved up
// front, buffers linked into it piece by piece without IOTLB syncs, one sync at the end.
internal sealed partial class DmaIommu
{
    private bool Quirk(string name) => _m.Config.HasQuirk(name);

    /// <summary><c>dma_iova_try_alloc</c> for a device that uses dma-iommu (the caller zeroed the state).</summary>
    internal bool IovaTryAlloc(Device dev, DmaIovaState state, PhysAddr phys, ulong size)
    {
        if (size == 0 || (size & DmaIovaState.UseSwiotlbBit) != 0)
        {
            WarnIovaSize(dev, size);
            return false;
        }
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var off = iovad.IovaOffset(phys.Value);
        var mask = dev.DmaMask != 0 ? dev.DmaMask : Sizes.DmaBitMask(32);
        var iova = AllocIova(dev, cookie, iovad.IovaAlign(size + off), mask);
        if (iova == 0)
        {
            return false;
        }
        state.Addr = new DmaAddr(iova + off);
        state.RawSize = size;
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnIovaSize(Device dev, ulong size) =>
        _api.Log.WarnOnce("dma_iova_try_alloc:size", () => $"WARNING: {dev.Name}: dma_iova_try_alloc: bad size {Hex.Format(size)}");

    /// <summary><c>dma_iova_free</c>: the whole range goes straight back to the allocator, never through the flush queue.</summary>
    internal void IovaFree(Device dev, DmaIovaState state)
    {
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var pad = iovad.IovaOffset(state.Addr.Value);
        FreeIova(cookie, state.Addr.Value - pad, iovad.IovaAlign(state.Size + pad), queued: false);
    }

    /// <summary>
    /// <c>__dma_iova_link</c>: clean the CPU cache for a non-coherent device (not for MMIO), then write the
    /// PTEs without <c>iotlb_sync_map</c>.
    /// </summary>
    private Errno LinkRange(Device dev, IommuDmaCookie cookie, ulong iova, PhysAddr phys, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var coherent = dev.Coherent;
        var prot = InfoToProt(dir, coherent, attrs);
        if (!coherent && (attrs & (DmaAttrs.SkipCpuSync | DmaAttrs.Mmio)) == 0)
        {
            _m.ArchCache.SyncForDevice(phys, size, dir);
        }
        if (_api.Recorder is { } rec)
        {
            rec.IommuProt = prot;
        }
        return cookie.Domain.MapNoSync(iova, phys, size, prot);
    }

    /// <summary>
    /// <c>iommu_dma_iova_bounce_and_link</c>: one granule's worth of an unaligned buffer goes through a
    /// swiotlb slot, and that slot's granule is linked at <paramref name="iova"/> (which carries
    /// <paramref name="pad"/>, the buffer's in-granule offset).
    /// </summary>
    private Errno BounceAndLink(Device dev, IommuDmaCookie cookie, ulong iova, PhysAddr phys, ulong bounceLen,
        DmaDirection dir, DmaAttrs attrs, ulong pad)
    {
        var iovad = cookie.Iovad;
        var tlb = MapSwiotlb(dev, iovad, phys, bounceLen, dir, attrs);
        if (tlb.IsInvalid)
        {
            return Errno.ENOMEM;
        }
        if (_api.Recorder is { } rec)
        {
            rec.Bounce ??= tlb;
        }
        var err = LinkRange(dev, cookie, iova - pad, new PhysAddr(tlb.Value - pad), iovad.IovaAlign(bounceLen), dir, attrs);
        if (err != Errno.None)
        {
            _api.Swiotlb.TblUnmapSingle(dev, tlb, bounceLen, dir, attrs);
        }
        return err;
    }

    /// <summary>
    /// <c>iommu_dma_iova_link_swiotlb</c>: the unaligned head and tail bounced a granule each, the aligned
    /// middle linked directly; on failure what was linked is unlinked again.
    /// </summary>
    private Errno LinkSwiotlb(Device dev, IommuDmaCookie cookie, DmaIovaState state, PhysAddr phys, ulong offset,
        ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var iovad = cookie.Iovad;
        var startPad = iovad.IovaOffset(phys.Value);
        var endPad = iovad.IovaOffset(phys.Value + size);
        var addr = state.Addr.Value + offset;
        var mapped = 0UL;
        if (startPad != 0)
        {
            var bounceLen = Math.Min(size, iovad.Granule - startPad);
            var err = BounceAndLink(dev, cookie, addr, phys, bounceLen, dir, attrs, startPad);
            if (err != Errno.None)
            {
                return err;
            }
            state.RawSize |= DmaIovaState.UseSwiotlbBit;
            mapped += bounceLen;
            size -= bounceLen;
            if (size == 0)
            {
                return Errno.None;
            }
        }
        size -= endPad;
        if (size != 0)
        {
            var err = LinkRange(dev, cookie, addr + mapped, phys + mapped, size, dir, attrs);
            if (err != Errno.None)
            {
                IovaUnlink(dev, state, offset, mapped, dir, attrs, freeIova: false);
                return err;
            }
            mapped += size;
        }
        if (endPad != 0)
        {
            var err = BounceAndLink(dev, cookie, addr + mapped, phys + mapped, endPad, dir, attrs, 0);
            if (err != Errno.None)
            {
                if (mapped != 0)
                {
                    IovaUnlink(dev, state, offset, mapped, dir, attrs, freeIova: false);
                }
                return err;
            }
            state.RawSize |= DmaIovaState.UseSwiotlbBit;
        }
        return Errno.None;
    }

    /// <summary><c>dma_iova_link</c>.</summary>
    internal Errno IovaLink(Device dev, DmaIovaState state, PhysAddr phys, ulong offset, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var pad = iovad.IovaOffset(phys.Value);
        if (pad != 0 && offset > 0)
        {
            WarnLinkUnaligned(dev);
            return Errno.EIO;
        }
        if (DevUseSwiotlb(dev, size, dir) && ((phys.Value | size) & (iovad.Granule - 1)) != 0)
        {
            if ((attrs & DmaAttrs.Mmio) != 0)
            {
                // Device memory cannot be bounced.
                return Errno.EPERM;
            }
            if (_api.Recorder is { } r)
            {
                r.Path = DmaPath.IommuSwiotlb;
            }
            return LinkSwiotlb(dev, cookie, state, phys, offset, size, dir, attrs);
        }
        if (_api.Recorder is { } rec)
        {
            rec.Path = DmaPath.Iommu;
        }
        return LinkRange(dev, cookie, state.Addr.Value + offset - pad, phys - pad, iovad.IovaAlign(size + pad), dir, attrs);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnLinkUnaligned(Device dev) =>
        _api.Log.WarnOnce("dma_iova_link:pad", () => $"WARNING: {dev.Name}: dma_iova_link: WARN_ON_ONCE(iova_start_pad && offset > 0)");

    /// <summary><c>dma_iova_sync</c>: one <c>iommu_sync_map</c> over the granule-aligned range.</summary>
    internal Errno IovaSync(Device dev, DmaIovaState state, ulong offset, ulong size)
    {
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var addr = state.Addr.Value + offset;
        var pad = iovad.IovaOffset(addr);
        return cookie.Domain.SyncMap(addr - pad, iovad.IovaAlign(size + pad));
    }

    /// <summary>
    /// <c>iommu_dma_iova_unlink_range_slow</c>: granule by granule, the CPU cache invalidated for a
    /// non-coherent device and bounce slots copied back and released.
    /// </summary>
    private void UnlinkRangeSlow(Device dev, IommuDmaCookie cookie, ulong addr, ulong size, DmaDirection dir, DmaAttrs attrs)
    {
        var iovad = cookie.Iovad;
        var pad = iovad.IovaOffset(addr);
        var end = addr + size;
        var cpuSync = !dev.Coherent && (attrs & DmaAttrs.SkipCpuSync) == 0
            && ((attrs & DmaAttrs.Mmio) == 0 || Quirk(KernelQuirk.IovaUnlinkIgnoresMmio));
        do
        {
            var phys = cookie.Domain.IovaToPhys(addr);
            if (phys.Value == 0)
            {
                WarnUnlinkUnmapped(dev);
                return;
            }
            var len = Math.Min(end - addr, iovad.Granule - pad);
            if (cpuSync)
            {
                _m.ArchCache.SyncForCpu(phys, len, dir);
            }
            _api.Swiotlb.TblUnmapSingle(dev, phys, len, dir, attrs);
            addr += len;
            pad = 0;
        }
        while (addr < end);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WarnUnlinkUnmapped(Device dev) =>
        _api.Log.Print(LogLevel.Warn, $"WARNING: {dev.Name}: iommu_dma_iova_unlink_range_slow: WARN_ON(!phys)");

    /// <summary>
    /// <c>__iommu_dma_iova_unlink</c>: slow path when something bounced or the CPU cache needs work; then
    /// the PTEs go. An unlink syncs the IOTLB at once and keeps the IOVA; a destroy (<paramref name="freeIova"/>)
    /// frees the IOVA too, through the flush queue when the domain has one (then without an IOTLB sync).
    /// </summary>
    internal void IovaUnlink(Device dev, DmaIovaState state, ulong offset, ulong size, DmaDirection dir, DmaAttrs attrs, bool freeIova)
    {
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var addr = state.Addr.Value + offset;
        var pad = iovad.IovaOffset(addr);
        // Upstream after 6.18 also leaves MMIO out of the CPU-sync half of this test.
        var cpuSyncAttrs = Quirk(KernelQuirk.IovaUnlinkIgnoresMmio) ? DmaAttrs.SkipCpuSync : DmaAttrs.SkipCpuSync | DmaAttrs.Mmio;
        if (state.UsesSwiotlb || (!dev.Coherent && (attrs & cpuSyncAttrs) == 0))
        {
            UnlinkRangeSlow(dev, cookie, addr, size, dir, attrs);
        }
        var gather = IotlbGather.Init();
        gather.Queued = freeIova && cookie.Fq is not null;
        var len = iovad.IovaAlign(size + pad);
        addr -= pad;
        var unmapped = cookie.Domain.UnmapFast(addr, len, ref gather);
        if (unmapped != len)
        {
            WarnShortUnmap(dev, unmapped, len);
        }
        if (!gather.Queued)
        {
            cookie.Domain.IotlbSync(ref gather);
        }
        if (freeIova)
        {
            FreeIova(cookie, addr, len, gather.Queued);
        }
    }
}
