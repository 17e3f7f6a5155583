namespace PhysDma.Scenarios;

/// <summary>Devices and time: <c>dev_read</c>, <c>dev_write</c>, <c>iommu_flush</c>, <c>remove_device</c>, <c>tick</c>.</summary>
internal sealed class DeviceOps(RunState s)
{
    public void Register(OpTable t)
    {
        t.On<DevReadStep, DevReadResult>(DevRead);
        t.On<DevWriteStep, DevWriteResult>(DevWrite);
        t.On<IommuFlushStep, IommuFlushResult>(IommuFlush);
        t.On<RemoveDeviceStep, RemoveDeviceResult>(RemoveDevice);
        t.On<TickStep, TickResult>(Tick);
    }

    private void DevRead(DevReadStep step, DevReadResult r)
    {
        var dev = s.M.Device(step.Dev);
        s.CheckReadLength(step, step.Len);
        var a = s.Target(step.Handle, step.Addr, step.Offset);
        var data = new byte[step.Len];
        var fault = s.M.DeviceRead(dev, a, data);
        r.Dev = dev.Name;
        r.DmaAddr = new HexAddr(a.Value);
        r.Len = step.Len;
        // A read that reached a removed BAR still completes (all-ones, Unsupported Request): its data is shown.
        r.Data = fault is null || fault.Reason == Platform.FaultReason.BarRemoved ? ByteDump.Of(data) : null;
        r.Error = fault is null ? null : "fault";
    }

    private void DevWrite(DevWriteStep step, DevWriteResult r)
    {
        var dev = s.M.Device(step.Dev);
        var a = s.Target(step.Handle, step.Addr, step.Offset);
        var len = step.Len ?? (ulong?)step.Data.NaturalLength ?? (s.HandleSize(step.Handle!) - Math.Min(step.Offset, s.HandleSize(step.Handle!)));
        s.CheckMemory(step, "len", step.Data.IsUniform ? 0 : len);
        Platform.DmaFault? fault = null;
        step.Data.Stream(len, (at, piece) =>
        {
            fault = s.M.DeviceWrite(dev, a + at, piece);
            return fault is null;
        });
        r.Dev = dev.Name;
        r.DmaAddr = new HexAddr(a.Value);
        r.Len = len;
        r.Error = fault is null ? null : "fault";
    }

    private void IommuFlush(IommuFlushStep step, IommuFlushResult r)
    {
        s.Api.Iommu?.FlushAll();
        r.IotlbEntries = s.Api.Iommu is { } iommu ? iommu.IotlbEntries : null;
    }

    private void RemoveDevice(RemoveDeviceStep step, RemoveDeviceResult r)
    {
        var dev = s.M.Device(step.Dev);
        r.Dev = step.Dev;
        var live = s.Api.Debug?.Entries(dev).Count;
        s.Api.Debug?.RemoveDevice(dev);
        r.Leaked = live;
    }

    private void Tick(TickStep step, TickResult r)
    {
        s.M.Clock.Advance(step.Ms * 1_000_000);
        r.Ms = step.Ms;
        r.NowMs = s.M.Clock.NowMs;
    }
}
