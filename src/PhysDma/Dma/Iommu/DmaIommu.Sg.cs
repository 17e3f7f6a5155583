using PhysDma.Core;
using PhysDma.Iommu;
using PhysDma.Pci;
using PhysDma.Platform;

namespace PhysDma.Dma;

// Scatter-gather for dma-iommu (iommu_dma_map_sg, iommu_dma_unmap_sg, __finalise_sg, __invalidate_sg): the whole list in one IOVA
// allocation, entries padded to granules and to the segment boundary, merged into DMA segments on the way
// out, P2P bus addresses passed through in their own output slots.
internal sealed partial class DmaIommu : IDmaBackend
{
    /// <summary><c>dev_use_sg_swiotlb</c>: untrusted, or some entry a kmalloc bounce would be needed for.</summary>
    private bool DevUseSgSwiotlb(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir)
    {
        if (dev.Untrusted)
        {
            return true;
        }
        for (var i = 0; i < nents; i++)
        {
            if (_api.Direct.KmallocNeedsBounce(dev, sgl[i].Length, dir))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary><c>iommu_dma_map_sg_swiotlb</c>: entry by entry through <see cref="MapPhys"/>; any failure is -EIO.</summary>
    private int MapSgSwiotlb(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        sgl[0].UsedSwiotlb = true;
        return ((IDmaBackend)this).MapSgEntryByEntry(dev, sgl, nents, dir, attrs);
    }

    /// <summary><c>iommu_dma_map_sg</c>: the number of DMA segments, or -EREMOTEIO, -ENOMEM or -EINVAL.</summary>
    int IDmaBackend.MapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        if (nents == 0)
        {
            return 0;
        }
        if (DevUseSgSwiotlb(dev, sgl, nents, dir))
        {
            return MapSgSwiotlb(dev, sgl, nents, dir, attrs);
        }
        var cookie = Cookie(dev);
        var iovad = cookie.Iovad;
        var mask = dev.SegBoundaryMask;
        var coherent = dev.Coherent;
        var prot = InfoToProt(dir, coherent, attrs);
        var hostBridgeProt = Quirk(KernelQuirk.IommuSgHostBridgeCache) ? prot : InfoToProt(dir, coherent, attrs | DmaAttrs.Mmio);
        if ((attrs & DmaAttrs.SkipCpuSync) == 0)
        {
            ((IDmaBackend)this).SyncSg(dev, sgl, nents, dir, forCpu: false);
        }

        var p2p = default(P2PMapState);
        ScatterEntry? prev = null;
        var iovaLen = 0UL;
        var hostBridge = 0UL; // bit i: entry i goes through the host bridge (first 64 entries; later ones use the list below)
        List<int>? hostBridgeMore = null;
        for (var i = 0; i < nents; i++)
        {
            var s = sgl[i];
            var off = iovad.IovaOffset(s.Phys.Value);
            var len = (ulong)s.Length;
            var padLen = (mask - iovaLen + 1) & mask;
            var page = _m.MemMap.Read(_m.MemMap.PhysToPage(s.Phys));
            switch (p2p.State(_api.P2P, dev, page))
            {
                case P2PMapType.None:
                    break;
                case P2PMapType.ThruHostBridge:
                    if (i < 64)
                    {
                        hostBridge |= 1UL << i;
                    }
                    else
                    {
                        (hostBridgeMore ??= []).Add(i);
                    }
                    break;
                case P2PMapType.BusAddr:
                    // Skipped by the IOMMU; finalise copies it to its own output segment.
                    s.DmaAddress = P2PDma.BusAddrMap(p2p.Provider!, s.Phys);
                    s.DmaLength = Quirk(KernelQuirk.IommuSgBusAddrHeadLen) ? sgl[0].Length : s.Length;
                    s.IsBusAddress = true;
                    continue;
                default:
                    InvalidateSg(sgl, nents);
                    return -(int)Errno.EREMOTEIO;
            }
            // Stash the in-granule offset and the real length in the DMA fields; widen the entry to granules.
            s.DmaAddress = new DmaAddr(off);
            s.DmaLength = s.Length;
            s.Phys -= off;
            len = iovad.IovaAlign(len + off);
            s.Length = (uint)len;
            // One size-aligned IOVA: if the mask is smaller than the whole, the range starts on a boundary,
            // so padding the previous entry keeps each entry from crossing one.
            if (padLen != 0 && padLen < len - 1)
            {
                prev!.Length += (uint)padLen;
                iovaLen += padLen;
            }
            iovaLen += len;
            prev = s;
        }

        if (iovaLen == 0)
        {
            return FinaliseSg(dev, sgl, nents, 0);
        }
        var iova = AllocIova(dev, cookie, iovaLen, dev.DmaMask != 0 ? dev.DmaMask : Sizes.DmaBitMask(32));
        if (iova == 0)
        {
            InvalidateSg(sgl, nents);
            return -(int)Errno.ENOMEM;
        }
        var mapped = MapSgPtes(cookie.Domain, iova, sgl, nents, prot, hostBridgeProt, hostBridge, hostBridgeMore);
        if (mapped < iovaLen)
        {
            FreeIova(cookie, iova, iovaLen, queued: false);
            InvalidateSg(sgl, nents);
            return -(int)Errno.EINVAL;
        }
        if (_api.Recorder is { } rec)
        {
            rec.Path = DmaPath.Iommu;
            rec.IommuProt = prot;
        }
        return FinaliseSg(dev, sgl, nents, iova);
    }

    private static bool IsHostBridge(int i, ulong bits, List<int>? more) =>
        i < 64 ? (bits & (1UL << i)) != 0 : more is not null && more.Contains(i);

    /// <summary>
    /// <c>iommu_map_sg</c>: physically contiguous runs mapped together (a run also ends where the prot changes),
    /// bus-address entries skipped, one <c>iotlb_sync_map</c> at the end. Returns the bytes mapped, 0 after
    /// undoing a failed map.
    /// </summary>
    private ulong MapSgPtes(IommuDomain domain, ulong iova, IReadOnlyList<ScatterEntry> sgl, int nents,
        int prot, int hostBridgeProt, ulong hostBridge, List<int>? hostBridgeMore)
    {
        var mapped = 0UL;
        var start = 0UL;
        var len = 0UL;
        var runProt = prot;
        for (var i = 0; i <= nents; i++)
        {
            var s = i < nents ? sgl[i] : null;
            var sProt = s is not null && IsHostBridge(i, hostBridge, hostBridgeMore) ? hostBridgeProt : prot;
            if (len != 0 && (s is null || s.Phys.Value != start + len || sProt != runProt))
            {
                if (IommuMap(domain, iova + mapped, new PhysAddr(start), len, runProt) != Errno.None)
                {
                    if (mapped != 0)
                    {
                        domain.Unmap(iova, mapped);
                    }
                    return 0;
                }
                mapped += len;
                len = 0;
            }
            if (s is null || s.IsBusAddress)
            {
                continue;
            }
            if (len != 0)
            {
                len += s.Length;
            }
            else
            {
                len = s.Length;
                start = s.Phys.Value;
                runProt = sProt;
            }
        }
        domain.SyncMap(iova, mapped);
        return mapped;
    }

    /// <summary>
    /// <c>__finalise_sg</c>: restore each entry and write the DMA segments: an entry joins the current segment
    /// when it starts on a granule, the running address is not on a segment boundary and the segment stays
    /// within max_seg_size; bus-address entries take an output slot of their own.
    /// </summary>
    private static int FinaliseSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, ulong dmaAddr)
    {
        var segMask = dev.SegBoundaryMask;
        var maxLen = dev.MaxSegSize;
        var cur = 0;
        var curLen = 0UL;
        var count = 0;
        for (var i = 0; i < nents; i++)
        {
            var s = sgl[i];
            var sDmaAddr = s.DmaAddress;
            var sIovaOff = s.DmaAddress.Value;
            var sLength = (ulong)s.DmaLength;
            var sIovaLen = (ulong)s.Length;
            s.DmaAddress = DmaAddr.MappingError;
            s.DmaLength = 0;

            if (s.IsBusAddress)
            {
                if (i > 0)
                {
                    cur++;
                }
                s.IsBusAddress = false;
                sgl[cur].DmaAddress = sDmaAddr;
                sgl[cur].DmaLength = (uint)sLength;
                sgl[cur].IsBusAddress = true;
                count++;
                curLen = 0;
                continue;
            }

            s.Phys += sIovaOff;
            s.Length = (uint)sLength;
            if (curLen != 0 && sIovaOff == 0 && (dmaAddr & segMask) != 0 && maxLen - curLen >= sLength)
            {
                curLen += sLength;
            }
            else
            {
                if (i > 0)
                {
                    cur++;
                }
                curLen = sLength;
                count++;
                sgl[cur].DmaAddress = new DmaAddr(dmaAddr + sIovaOff);
            }
            sgl[cur].DmaLength = (uint)curLen;
            dmaAddr += sIovaLen;
            if (sLength + sIovaOff < sIovaLen)
            {
                curLen = 0;
            }
        }
        return count;
    }

    /// <summary><c>__invalidate_sg</c>: undo the in-place changes after a failure.</summary>
    private static void InvalidateSg(IReadOnlyList<ScatterEntry> sgl, int nents)
    {
        for (var i = 0; i < nents; i++)
        {
            var s = sgl[i];
            if (s.IsBusAddress)
            {
                s.IsBusAddress = false;
            }
            else
            {
                if (!s.DmaAddress.IsError)
                {
                    s.Phys += s.DmaAddress.Value;
                }
                if (s.DmaLength != 0)
                {
                    s.Length = s.DmaLength;
                }
            }
            s.DmaAddress = DmaAddr.MappingError;
            s.DmaLength = 0;
        }
    }

    /// <summary><c>iommu_dma_unmap_sg</c>: one IOVA range from the first to the last IOVA segment.</summary>
    void IDmaBackend.UnmapSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, DmaAttrs attrs)
    {
        if (nents > 0 && sgl[0].UsedSwiotlb)
        {
            for (var i = 0; i < nents; i++)
            {
                UnmapPhys(dev, sgl[i].DmaAddress, sgl[i].DmaLength, dir, attrs);
            }
            sgl[0].UsedSwiotlb = false;
            return;
        }
        if ((attrs & DmaAttrs.SkipCpuSync) == 0)
        {
            ((IDmaBackend)this).SyncSg(dev, sgl, nents, dir, forCpu: true);
        }
        var start = 0UL;
        var end = 0UL;
        var first = nents;
        for (var i = 0; i < nents; i++)
        {
            var s = sgl[i];
            if (s.IsBusAddress)
            {
                s.IsBusAddress = false;
                continue;
            }
            if (s.DmaLength != 0)
            {
                start = s.DmaAddress.Value;
            }
            first = i;
            break;
        }
        for (var i = first; i < nents; i++)
        {
            var s = sgl[i];
            if (s.IsBusAddress)
            {
                s.IsBusAddress = false;
                continue;
            }
            if (s.DmaLength == 0)
            {
                break;
            }
            end = s.DmaAddress.Value + s.DmaLength;
        }
        if (end != 0)
        {
            UnmapIova(dev, Cookie(dev), new DmaAddr(start), end - start);
        }
    }

    /// <summary>
    /// <c>iommu_dma_sync_sg_for_{cpu,device}</c>: a bounced list syncs entry by entry (bounce and cache);
    /// otherwise only a non-coherent device needs cache maintenance of every entry's CPU range.
    /// </summary>
    void IDmaBackend.SyncSg(Device dev, IReadOnlyList<ScatterEntry> sgl, int nents, DmaDirection dir, bool forCpu)
    {
        var bounced = nents > 0 && sgl[0].UsedSwiotlb;
        if (!bounced && dev.Coherent)
        {
            return;
        }
        for (var i = 0; i < nents; i++)
        {
            if (bounced)
            {
                ((IDmaBackend)this).SyncSingle(dev, sgl[i].DmaAddress, sgl[i].Length, dir, forCpu);
            }
            else if (forCpu)
            {
                _m.ArchCache.SyncForCpu(sgl[i].Phys, sgl[i].Length, dir);
            }
            else
            {
                _m.ArchCache.SyncForDevice(sgl[i].Phys, sgl[i].Length, dir);
            }
        }
    }
}
