using PhysDma.Core;
using PhysDma.Platform;
using static PhysDma.Core.Sizes;
using static PhysDma.Tests.TestMachines;

namespace PhysDma.Tests.Platform;

/// <summary>Machine.DeviceRead/DeviceWrite: the device's DMA engine through its bus translation.</summary>
public sealed class DeviceAccessTests
{
    [Fact]
    public void Address_in_a_hole_faults_out_of_range_at_the_first_bad_byte()
    {
        var m = new Machine(X86Config());
        var dev = m.Device(Nic);
        var buf = new byte[0x2000];
        var f = m.DeviceRead(dev, new DmaAddr(0xbfff_f000), buf);
        Assert.Equal(new DmaFault(Nic, new DmaAddr(0xc000_0000), DmaAccess.Read, FaultReason.OutOfRange), f);
        Assert.Equal([f!], m.Faults);

        var w = m.DeviceWrite(dev, new DmaAddr(0x4_4000_0000), [1]);
        Assert.Equal(new DmaFault(Nic, new DmaAddr(0x4_4000_0000), DmaAccess.Write, FaultReason.OutOfRange), w);
        Assert.Equal(2, m.FaultCount);
    }

    [Fact]
    public void Dma_ranges_translate_bus_to_cpu_outside_every_range_only_device_memory_is_reached()
    {
        var m = new Machine(X86Config(Nic64 with { DmaRanges = [new DmaRangeConfig(0, 0x8000_0000, 2 * GiB)] }, Gpu(X86Bar)));
        var dev = m.Device(Nic);
        m.Memory.Write(new PhysAddr(0x1000), [1, 2, 3, 4]);
        var buf = new byte[4];
        Assert.Null(m.DeviceRead(dev, new DmaAddr(0x8000_1000), buf));
        Assert.Equal([1, 2, 3, 4], buf);

        // Bus 0x1000 is outside the range and not device memory: out of range.
        Assert.Equal(FaultReason.OutOfRange, m.DeviceRead(dev, new DmaAddr(0x1000), buf)?.Reason);
        // The high BAR is outside the range and is device memory: reached at its physical address.
        m.Memory.Write(HighBar, [9, 8, 7, 6]);
        Assert.Null(m.DeviceRead(dev, new DmaAddr(HighBar.Value), buf));
        Assert.Equal([9, 8, 7, 6], buf);
    }

    [Fact]
    public void Mem_encrypt_bit_is_stripped_by_the_bus()
    {
        var m = new Machine(X86Config() with { MemEncryptBit = 1UL << 47 });
        m.Memory.Write(new PhysAddr(0x2000), [5]);
        var buf = new byte[1];
        Assert.Null(m.DeviceRead(m.Device(Nic), new DmaAddr((1UL << 47) | 0x2000), buf));
        Assert.Equal([5], buf);
    }

    [Fact]
    public void Coherent_device_snoops_non_coherent_device_bypasses()
    {
        var m = new Machine(Arm64Config(Nic64 with { Coherent = false }, Nic64 with { Name = "nic1", Coherent = true }));
        var p = new PhysAddr(0x9000_0000);
        m.Cpu.Write(m.Kmap.PhysToVirt(p), [0x55, 0x66]);
        var buf = new byte[2];
        Assert.Null(m.DeviceRead(m.Device(Nic), new DmaAddr(p.Value), buf));
        Assert.Equal(new byte[2], buf);
        Assert.Null(m.DeviceRead(m.Device("nic1"), new DmaAddr(p.Value), buf));
        Assert.Equal([0x55, 0x66], buf);

        // A coherent device's write is seen by the CPU at once; a non-coherent one's is hidden by the cached line.
        Assert.Null(m.DeviceWrite(m.Device(Nic), new DmaAddr(p.Value), [1, 1]));
        m.Cpu.Read(m.Kmap.PhysToVirt(p), buf);
        Assert.Equal([0x55, 0x66], buf);
        Assert.Null(m.DeviceWrite(m.Device("nic1"), new DmaAddr(p.Value), [2, 2]));
        m.Cpu.Read(m.Kmap.PhysToVirt(p), buf);
        Assert.Equal([2, 2], buf);
    }

    [Fact]
    public void On_cpu_binds_and_restores()
    {
        var m = new Machine(X86Config());
        Assert.Equal(0, Machine.CurrentCpu);
        using (m.OnCpu(1))
        {
            Assert.Equal(1, Machine.CurrentCpu);
        }
        Assert.Equal(0, Machine.CurrentCpu);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.OnCpu(2));
    }
}
