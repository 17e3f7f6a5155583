using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Stress;

/// <summary>
/// cache_op_on_mmio blames a sync only for the cache operations that sync made: one CPU syncing an MMIO
/// mapping and another syncing RAM at the same time never lend each other their operations.
/// </summary>
public class CacheOpAttributionTests
{
    private const int Rounds = 20000;

    [Fact]
    public void Concurrent_ram_syncs_are_never_blamed_for_another_cpus_mmio_cache_ops()
    {
        Assert.True(Profiles.TryGet("arm64-noncoherent", out var profile));
        var m = new Machine(profile with { Cpus = 2 });
        var api = new DmaApi(m);
        var nic = m.Device("nic0");
        var fifo = new PhysAddr(0x4000_0000);
        m.Map.Add(new MemRegion(fifo, 4096, MemKind.Mmio, "fifo"));
        var ram = m.Allocator.Alloc(4096, 4096) ?? throw new InvalidOperationException("no RAM");
        // The MMIO FIFO is mapped correctly (dma_map_resource), then synced: dma-direct does cache maintenance on it.
        var mmioAddr = api.MapResource(nic, fifo, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(Errno.None, api.MappingError(nic, mmioAddr));
        var ramAddr = api.MapPhys(nic, ram, 4096, DmaDirection.FromDevice, DmaAttrs.None);
        Assert.Equal(Errno.None, api.MappingError(nic, ramAddr));

        using var start = new Barrier(2);
        var mmio = new Thread(() =>
        {
            using var cpu = m.OnCpu(0);
            start.SignalAndWait();
            for (var i = 0; i < Rounds; i++)
            {
                api.SyncSingleForCpu(nic, mmioAddr, 4096, DmaDirection.FromDevice);
            }
        });
        var ramSync = new Thread(() =>
        {
            using var cpu = m.OnCpu(1);
            start.SignalAndWait();
            for (var i = 0; i < Rounds; i++)
            {
                api.SyncSingleForCpu(nic, ramAddr, 4096, DmaDirection.FromDevice);
            }
        });
        mmio.Start();
        ramSync.Start();
        mmio.Join();
        ramSync.Join();

        var reports = api.Debug!.ReportsSince(0).Where(r => r.Check == "cache_op_on_mmio").ToList();
        Assert.Equal(Rounds, reports.Count);
        Assert.All(reports, r => Assert.Contains($"[device address={Hex.Padded16(mmioAddr.Value)}]", r.Message));
        Assert.All(reports, r => Assert.Contains("did 1 CPU cache maintenance operation(s)", r.Message));
        Assert.Equal(Rounds, m.ArchCache.OpsOnNonRam);
    }
}
