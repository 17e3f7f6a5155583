using System.Collections.Concurrent;
using PhysDma.Core;
using PhysDma.Dma;
using PhysDma.Platform;
using PhysDma.Scenarios;

namespace PhysDma.Tests.Stress;

/// <summary>
/// Eight modelled CPUs on eight threads map, let the device read or write, sync and unmap their own
/// buffers at once, on every built-in machine, with dma-debug on: no device address (IOVA or swiotlb slot)
/// is live for two mappings at once, none is lost afterwards, every byte a device read is what the CPU
/// wrote (and the reverse), and dma-debug reports nothing. A fixed amount of work; nothing is timed.
/// </summary>
public class MultiCpuStressTests
{
    private const int Cpus = 8;
    private const int OpsPerCpu = 400;
    private const int SlotsPerCpu = 4;
    private const ulong SlotBytes = 16 * 1024;

    public static TheoryData<string> Machines => [.. Profiles.Names];

    [Theory]
    [MemberData(nameof(Machines))]
    public void Eight_cpus_map_sync_and_unmap_with_no_address_live_twice_or_lost(string machine)
    {
        Assert.True(Profiles.TryGet(machine, out var profile));
        var m = new Machine(profile with { Cpus = Cpus });
        var api = new DmaApi(m);
        var devices = new[] { "nic0", "legacy32" }.Where(d => m.Devices.Any(x => x.Name == d)).Select(m.Device).ToArray();
        var live = new ConcurrentDictionary<(string Dev, ulong Chunk), int>();
        var errors = new ConcurrentQueue<string>();
        var cpuVa = new KernelVirt[Cpus, SlotsPerCpu];
        var phys = new PhysAddr[Cpus, SlotsPerCpu];
        for (var c = 0; c < Cpus; c++)
        {
            for (var s = 0; s < SlotsPerCpu; s++)
            {
                phys[c, s] = m.Allocator.Alloc(SlotBytes, 4096, 0, 4UL << 30) ?? throw new InvalidOperationException("no RAM");
                cpuVa[c, s] = m.Kmap.PhysToVirt(phys[c, s]);
            }
        }

        void Claim(Device dev, DmaAddr a, ulong size, int cpu)
        {
            for (var chunk = a.Value >> 11; chunk <= (a.Value + size - 1) >> 11; chunk++)
            {
                if (!live.TryAdd((dev.Name, chunk), cpu))
                {
                    errors.Enqueue($"{dev.Name}: device address {chunk << 11:x} handed to cpu {cpu} while cpu {live[(dev.Name, chunk)]} holds it");
                }
            }
        }

        void Release(Device dev, DmaAddr a, ulong size)
        {
            for (var chunk = a.Value >> 11; chunk <= (a.Value + size - 1) >> 11; chunk++)
            {
                live.TryRemove((dev.Name, chunk), out _);
            }
        }

        void Worker(int cpu)
        {
            using var bound = m.OnCpu(cpu);
            var rng = new Random(7919 * (cpu + 1));
            for (var i = 0; i < OpsPerCpu; i++)
            {
                var dev = devices[rng.Next(devices.Length)];
                var slot = rng.Next(SlotsPerCpu);
                var offset = (ulong)rng.Next(0, 64) * 8;
                var size = (ulong)rng.Next(1, (int)(SlotBytes - offset));
                var tag = (byte)((cpu * 31) + i);
                var toDevice = rng.Next(2) == 0;
                var pattern = new byte[size];
                for (var k = 0; k < pattern.Length; k++)
                {
                    pattern[k] = (byte)(tag + k);
                }
                var p = phys[cpu, slot] + offset;
                if (toDevice)
                {
                    m.Cpu.Write(cpuVa[cpu, slot] + offset, pattern);
                }
                var dir = toDevice ? DmaDirection.ToDevice : DmaDirection.FromDevice;
                var a = api.MapPhys(dev, p, size, dir, DmaAttrs.None);
                if (api.MappingError(dev, a) != Errno.None)
                {
                    errors.Enqueue($"cpu {cpu}: {dev.Name} map of {size} bytes failed");
                    continue;
                }
                Claim(dev, a, size, cpu);
                var seen = new byte[size];
                if (toDevice)
                {
                    if (m.DeviceRead(dev, a, seen) is { } f)
                    {
                        errors.Enqueue($"cpu {cpu}: {dev.Name} read faulted: {f.Reason}");
                    }
                    else if (!seen.AsSpan().SequenceEqual(pattern))
                    {
                        errors.Enqueue($"cpu {cpu}: {dev.Name} read bytes the CPU did not write ({size} bytes at {a})");
                    }
                }
                else
                {
                    if (m.DeviceWrite(dev, a, pattern) is { } f)
                    {
                        errors.Enqueue($"cpu {cpu}: {dev.Name} write faulted: {f.Reason}");
                    }
                    api.SyncSingleForCpu(dev, a, size, dir);
                }
                Release(dev, a, size);
                api.UnmapPhys(dev, a, size, dir, DmaAttrs.None);
                if (!toDevice)
                {
                    m.Cpu.Read(cpuVa[cpu, slot] + offset, seen);
                    if (!seen.AsSpan().SequenceEqual(pattern))
                    {
                        errors.Enqueue($"cpu {cpu}: CPU read bytes {dev.Name} did not write ({size} bytes at {p})");
                    }
                }
            }
        }

        var threads = Enumerable.Range(0, Cpus).Select(c => new Thread(() => Worker(c))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Empty(errors);
        api.Iommu?.FlushAll();
        Assert.Equal(0L, api.Swiotlb.SlotsUsed);
        Assert.Equal(0UL, api.Iommu?.IovaPagesInUse ?? 0UL);
        Assert.Empty(api.Debug!.ReportsSince(0).Select(r => r.Message));
        Assert.Equal(0, devices.Sum(d => api.Debug.Entries(d).Count));
    }
}
