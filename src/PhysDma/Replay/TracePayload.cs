using PhysDma.Core;

namespace PhysDma.Replay;

/// <summary>The events replay understands, by their tracefs names.</summary>
internal enum TraceEventKind
{
    Other,
    MapPhys,
    UnmapPhys,
    MapSg,
    MapSgErr,
    UnmapSg,
    SyncSingleForCpu,
    SyncSingleForDevice,
    SyncSgForCpu,
    SyncSgForDevice,
    Alloc,
    Free,
    AllocPages,
    FreePages,
    AllocSgt,
    AllocSgtErr,
    FreeSgt,

    /// <summary>Events that follow from the calls (swiotlb:swiotlb_bounced, iommu:map/unmap/io_page_fault): the model makes its own.</summary>
    Derived,
}

/// <summary>A payload field that is missing or does not parse.</summary>
internal sealed class PayloadException(string field, string message) : Exception(message)
{
    public string Field { get; } = field;
}

/// <summary>Parsing of the <c>dma:*</c> payloads: fields are found by name and read in place, without copying.</summary>
internal static class TracePayload
{
    public static TraceEventKind KindOf(ReadOnlySpan<char> name) => name switch
    {
        "dma_map_phys" => TraceEventKind.MapPhys,
        "dma_unmap_phys" => TraceEventKind.UnmapPhys,
        "dma_map_sg" => TraceEventKind.MapSg,
        "dma_map_sg_err" => TraceEventKind.MapSgErr,
        "dma_unmap_sg" => TraceEventKind.UnmapSg,
        "dma_sync_single_for_cpu" => TraceEventKind.SyncSingleForCpu,
        "dma_sync_single_for_device" => TraceEventKind.SyncSingleForDevice,
        "dma_sync_sg_for_cpu" => TraceEventKind.SyncSgForCpu,
        "dma_sync_sg_for_device" => TraceEventKind.SyncSgForDevice,
        "dma_alloc" => TraceEventKind.Alloc,
        "dma_free" => TraceEventKind.Free,
        "dma_alloc_pages" => TraceEventKind.AllocPages,
        "dma_free_pages" => TraceEventKind.FreePages,
        "dma_alloc_sgt" => TraceEventKind.AllocSgt,
        "dma_alloc_sgt_err" => TraceEventKind.AllocSgtErr,
        "dma_free_sgt" => TraceEventKind.FreeSgt,
        "swiotlb_bounced" or "map" or "unmap" or "io_page_fault" => TraceEventKind.Derived,
        _ => TraceEventKind.Other,
    };

    /// <summary>The tracefs name of a kind.</summary>
    public static string Name(TraceEventKind k) => k switch
    {
        TraceEventKind.MapPhys => "dma_map_phys",
        TraceEventKind.UnmapPhys => "dma_unmap_phys",
        TraceEventKind.MapSg => "dma_map_sg",
        TraceEventKind.MapSgErr => "dma_map_sg_err",
        TraceEventKind.UnmapSg => "dma_unmap_sg",
        TraceEventKind.SyncSingleForCpu => "dma_sync_single_for_cpu",
        TraceEventKind.SyncSingleForDevice => "dma_sync_single_for_device",
        TraceEventKind.SyncSgForCpu => "dma_sync_sg_for_cpu",
        TraceEventKind.SyncSgForDevice => "dma_sync_sg_for_device",
        TraceEventKind.Alloc => "dma_alloc",
        TraceEventKind.Free => "dma_free",
        TraceEventKind.AllocPages => "dma_alloc_pages",
        TraceEventKind.FreePages => "dma_free_pages",
        TraceEventKind.AllocSgt => "dma_alloc_sgt",
        TraceEventKind.AllocSgtErr => "dma_alloc_sgt_err",
        TraceEventKind.FreeSgt => "dma_free_sgt",
        TraceEventKind.Derived => "derived",
        _ => "other",
    };

    /// <summary>The first word of a <c>dma:*</c> payload: <c>dev_name</c>.</summary>
    public static ReadOnlySpan<char> Device(ReadOnlySpan<char> payload)
    {
        var sp = payload.IndexOf(' ');
        var dev = sp < 0 ? payload : payload[..sp];
        if (dev.IsEmpty || dev.Contains('='))
        {
            throw new PayloadException("device", "missing device name");
        }
        return dev;
    }

    /// <summary>The value of <c>key=</c> (up to the next space); <paramref name="key"/> includes the <c>=</c>.</summary>
    public static ReadOnlySpan<char> Field(ReadOnlySpan<char> payload, string key)
    {
        var at = 0;
        while (true)
        {
            var i = payload[at..].IndexOf(key);
            if (i < 0)
            {
                throw new PayloadException(key[..^1], $"missing field {key[..^1]}");
            }
            i += at;
            if (i > 0 && payload[i - 1] == ' ')
            {
                var v = payload[(i + key.Length)..];
                var sp = v.IndexOf(' ');
                return sp < 0 ? v : v[..sp];
            }
            at = i + key.Length;
        }
    }

    /// <summary><c>%llx</c> (a <c>0x</c> prefix is accepted too).</summary>
    public static ulong Hex(ReadOnlySpan<char> v, string field)
    {
        if (v.StartsWith("0x"))
        {
            v = v[2..];
        }
        if (v.IsEmpty || v.Length > 16)
        {
            throw new PayloadException(field, $"{field}: '{v}' is not a hex number");
        }
        ulong r = 0;
        foreach (var c in v)
        {
            var d = c switch
            {
                >= '0' and <= '9' => c - '0',
                >= 'a' and <= 'f' => c - 'a' + 10,
                >= 'A' and <= 'F' => c - 'A' + 10,
                _ => -1,
            };
            if (d < 0)
            {
                throw new PayloadException(field, $"{field}: '{v}' is not a hex number");
            }
            r = (r << 4) | (uint)d;
        }
        return r;
    }

    /// <summary><c>%zu</c> / <c>%d</c>.</summary>
    public static long Dec(ReadOnlySpan<char> v, string field)
    {
        var neg = v.StartsWith("-");
        if (neg)
        {
            v = v[1..];
        }
        if (v.IsEmpty || v.Length > 19)
        {
            throw new PayloadException(field, $"{field}: '{v}' is not a decimal number");
        }
        long r = 0;
        foreach (var c in v)
        {
            if (c is < '0' or > '9')
            {
                throw new PayloadException(field, $"{field}: '{v}' is not a decimal number");
            }
            r = (r * 10) + (c - '0');
        }
        return neg ? -r : r;
    }

    public static DmaDirection Dir(ReadOnlySpan<char> v) => v switch
    {
        "BIDIRECTIONAL" => DmaDirection.Bidirectional,
        "TO_DEVICE" => DmaDirection.ToDevice,
        "FROM_DEVICE" => DmaDirection.FromDevice,
        "NONE" => DmaDirection.None,
        _ when v.StartsWith("0x") => (DmaDirection)Hex(v, "dir"),
        _ => throw new PayloadException("dir", $"dir: unknown direction '{v}'"),
    };

    /// <summary><c>attrs=</c>: names joined by <c>|</c>, unknown bits as hex, empty for none.</summary>
    public static DmaAttrs Attrs(ReadOnlySpan<char> v)
    {
        var attrs = DmaAttrs.None;
        while (!v.IsEmpty)
        {
            var bar = v.IndexOf('|');
            var name = bar < 0 ? v : v[..bar];
            v = bar < 0 ? [] : v[(bar + 1)..];
            attrs |= AttrOf(name);
        }
        return attrs;
    }

    private static DmaAttrs AttrOf(ReadOnlySpan<char> name)
    {
        foreach (var (flag, _, kernel) in DmaNames.AttrTable)
        {
            if (name.SequenceEqual(kernel))
            {
                return flag;
            }
        }
        if (name.SequenceEqual("CACHE_CLEAN"))
        {
            return (DmaAttrs)(1UL << 11);
        }
        if (name.StartsWith("0x"))
        {
            return (DmaAttrs)Hex(name, "attrs");
        }
        throw new PayloadException("attrs", $"attrs: unknown attribute '{name}'");
    }

    /// <summary><c>{0x1,0x2000}</c> into <paramref name="into"/> (cleared first).</summary>
    public static void Array(ReadOnlySpan<char> v, string field, List<ulong> into)
    {
        into.Clear();
        if (v.Length < 2 || v[0] != '{' || v[^1] != '}')
        {
            throw new PayloadException(field, $"{field}: '{v}' is not an array {{0x..,0x..}}");
        }
        v = v[1..^1];
        while (!v.IsEmpty)
        {
            var comma = v.IndexOf(',');
            var item = comma < 0 ? v : v[..comma];
            v = comma < 0 ? [] : v[(comma + 1)..];
            into.Add(Hex(item, field));
        }
    }

    /// <summary><c>nents=%d/%d</c>: the full count (after the slash).</summary>
    public static int FullCount(ReadOnlySpan<char> v, string field)
    {
        var slash = v.IndexOf('/');
        if (slash < 0)
        {
            throw new PayloadException(field, $"{field}: '{v}' is not shown/full");
        }
        return (int)Dec(v[(slash + 1)..], field);
    }
}
