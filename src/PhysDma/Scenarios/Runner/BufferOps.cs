using PhysDma.Core;

namespace PhysDma.Scenarios;

/// <summary>Buffers and the CPU's accesses to them: <c>alloc</c>, <c>free</c>, <c>cpu_write</c>, <c>cpu_read</c>.</summary>
internal sealed class BufferOps(RunState s)
{
    public void Register(OpTable t)
    {
        t.On<AllocStep, AllocResult>(Alloc);
        t.On<FreeStep, FreeResult>(Free);
        t.On<CpuWriteStep, CpuWriteResult>(CpuWrite);
        t.On<CpuReadStep, CpuReadResult>(CpuRead);
    }

    private void Alloc(AllocStep step, AllocResult r)
    {
        if (step.Kind == BufferKind.P2PMem && step.From is { } from && s.Api.P2P.HasPool(from) && !s.Api.P2P.PoolLive(from))
        {
            // pci_alloc_p2pmem returns NULL once the provider is being removed; the caller's -ENOMEM. No buffer exists.
            r.Buf = step.Name;
            r.Kind = "p2pmem";
            r.Size = step.Size;
            r.Error = "ENOMEM";
            return;
        }
        var b = s.Alloc.Allocate(step, (field, msg) => s.Error(step, field, msg));
        s.Buffers[step.Name] = b;
        r.Buf = b.Name;
        r.Kind = b.KindName;
        r.Phys = new HexAddr(b.Phys.Value);
        r.Size = b.Size;
    }

    private void Free(FreeStep step, FreeResult r)
    {
        var b = s.Buffers[step.Name];
        if (b.Freed)
        {
            throw s.Error(step, "name", $"buffer '{step.Name}' was already freed");
        }
        b.Freed = true;
        s.Alloc.Free(b);
        r.Buf = step.Name;
    }

    private void CpuWrite(CpuWriteStep step, CpuWriteResult r)
    {
        var b = s.Buffers[step.Buf];
        var len = step.Len ?? (ulong?)step.Data.NaturalLength ?? (b.Size - Math.Min(step.Offset, b.Size));
        s.CheckRange(step, b, step.Offset, len, "data");
        CheckCpuAccess(b, step.Offset, len, write: true);
        s.CheckMemory(step, "len", step.Data.IsUniform ? 0 : len);
        r.Buf = b.Name;
        r.Offset = step.Offset;
        r.Len = len;
        if (BarRemoved(b))
        {
            // A store to a BAR that no longer decodes is dropped.
            return;
        }
        step.Data.Stream(len, (at, piece) =>
        {
            s.M.Cpu.Write(b.Va + step.Offset + at, piece);
            return true;
        });
    }

    /// <summary>Device memory whose BAR stopped decoding (its P2P provider was removed).</summary>
    private bool BarRemoved(Buffer b) =>
        b.Kind is BufferKind.Bar or BufferKind.P2PMem or BufferKind.Resource
        && s.M.Map.Find(b.Phys) is { Owner: { } owner } region && s.M.IsBarDisabled(owner, region.Bar);

    private void CpuRead(CpuReadStep step, CpuReadResult r)
    {
        var b = s.Buffers[step.Buf];
        s.CheckRange(step, b, step.Offset, step.Len, "len");
        s.CheckReadLength(step, step.Len);
        var data = new byte[step.Len];
        CheckCpuAccess(b, step.Offset, step.Len, write: false);
        if (BarRemoved(b))
        {
            // The load completes with Unsupported Request: the root complex returns all-ones.
            data.AsSpan().Fill(0xff);
        }
        else
        {
            s.M.Cpu.Read(b.Va + step.Offset, data);
        }
        r.Buf = b.Name;
        r.Offset = step.Offset;
        r.Len = step.Len;
        r.Data = ByteDump.Of(data);
    }

    /// <summary>dma-debug (our own check) sees every CPU access, one physically contiguous piece at a time.</summary>
    private void CheckCpuAccess(Buffer b, ulong offset, ulong len, bool write)
    {
        if (s.Api.Debug is not { } debug || b.Kind is BufferKind.Coherent)
        {
            return;
        }
        var end = offset + len;
        while (offset < end)
        {
            var inPage = b.PageSize - ((b.FirstOffset + offset) % b.PageSize);
            var chunk = Math.Min(inPage, end - offset);
            debug.CheckCpuAccess(b.PhysAt(offset), chunk, write);
            offset += chunk;
        }
    }
}
