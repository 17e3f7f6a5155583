using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using PhysDma.Replay;
using PhysDma.Scenarios;

namespace PhysDma.Benchmarks;

/// <summary>
/// <c>physdma replay</c> of a generated driver trace on the default machine (IOMMU, lazy): sixteen RX buffers,
/// each mapped, synced for the CPU, synced back for the device and unmapped, round and round. The trace is
/// made on the fly by <see cref="GeneratedTrace"/> (it never exists whole, on disk or in memory), so the
/// figure is the reader's and the model's. The Events/s column is the event count over the mean time;
/// the memory diagnoser shows what a whole replay allocates (flat: it does not grow with the trace).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(EventsPerSecondConfig))]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 5)]
public class ReplayBenchmarks
{
    private TraceReplay _replay = null!;
    private TimeSpan _cpuAtStart;
    private TimeSpan _cpu;
    private int _iterations;

    [Params(10_000_000)]
    public int Events { get; set; }

    [Params(false, true)]
    public bool Debug { get; set; }

    [IterationSetup]
    public void Setup()
    {
        Profiles.TryGet("default", out var cfg);
        _replay = new TraceReplay(cfg with { Debug = Debug });
        _cpuAtStart = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
    }

    /// <summary>
    /// CPU time of the replay as well as wall time: on a shared machine the wall clock counts the time other
    /// processes had the CPU, the process's CPU time does not (the replay is single-threaded).
    /// </summary>
    [IterationCleanup]
    public void Cleanup()
    {
        _cpu += System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime - _cpuAtStart;
        _iterations++;
    }

    [GlobalCleanup]
    public void Report()
    {
        if (_iterations > 0)
        {
            var perSecond = (double)Events * _iterations / _cpu.TotalSeconds;
            Console.WriteLine($"// ReplayBenchmarks Debug={Debug}: {perSecond.ToString("N0", CultureInfo.InvariantCulture)} events per CPU-second " +
                              $"over {_iterations} iterations (peak working set {System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / (1024 * 1024)} MiB)");
        }
    }

    [Benchmark]
    public long Replay()
    {
        var report = _replay.Run(new GeneratedTrace(Events), "generated");
        if (report.Replayed != Events || report.DebugReports.Count != 0 || report.Failures.Count != 0)
        {
            throw new InvalidOperationException($"replayed {report.Replayed} of {Events}, {report.DebugReports.Count} debug reports, {report.Failures.Count} failures");
        }
        return report.Replayed;
    }
}

/// <summary>
/// A tracefs trace of <c>count</c> dma events produced as it is read: map, sync for CPU, sync for device,
/// unmap of one of sixteen 2 KiB RX buffers on the NIC, with timestamps a microsecond apart.
/// </summary>
public sealed class GeneratedTrace(long count) : Stream
{
    private const int Slots = 16;
    private const int TimeDigits = 12;
    private const string Prefix = "     irq/45-eth0-812     [001] d..1. ";
    private static readonly byte[][] Templates = BuildTemplates();
    private long _event;
    private byte[] _line = [];
    private int _lineAt;

    private static byte[][] BuildTemplates()
    {
        var t = new byte[Slots * 4][];
        for (var s = 0; s < Slots; s++)
        {
            var dma = (0xffff0000UL + ((ulong)s * 0x1000) + 0x800).ToString("x", CultureInfo.InvariantCulture);
            var phys = (0x10000000UL + ((ulong)s * 0x1000) + 0x800).ToString("x", CultureInfo.InvariantCulture);
            string[] payloads =
            [
                $"dma_map_phys: 0000:02:00.0 dir=FROM_DEVICE dma_addr={dma} size=2048 phys_addr={phys} attrs=",
                $"dma_sync_single_for_cpu: 0000:02:00.0 dir=FROM_DEVICE dma_addr={dma} size=2048",
                $"dma_sync_single_for_device: 0000:02:00.0 dir=FROM_DEVICE dma_addr={dma} size=2048",
                $"dma_unmap_phys: 0000:02:00.0 dir=FROM_DEVICE dma_addr={dma} size=2048 attrs=",
            ];
            for (var k = 0; k < 4; k++)
            {
                // The timestamp field is TimeDigits wide ("SSSSS.UUUUUU"), patched per line.
                t[(s * 4) + k] = Encoding.ASCII.GetBytes($"{Prefix}00000.000000: {payloads[k]}\n");
            }
        }
        return t;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> dest)
    {
        var n = 0;
        while (n < dest.Length)
        {
            if (_lineAt == _line.Length)
            {
                if (_event == count)
                {
                    break;
                }
                NextLine();
            }
            var take = Math.Min(dest.Length - n, _line.Length - _lineAt);
            _line.AsSpan(_lineAt, take).CopyTo(dest[n..]);
            n += take;
            _lineAt += take;
        }
        return n;
    }

    private void NextLine()
    {
        var slot = (int)(_event / 4 % Slots);
        var kind = (int)(_event % 4);
        _line = Templates[(slot * 4) + kind];
        var at = Prefix.Length;
        var us = (ulong)_event;
        var secs = us / 1_000_000;
        var frac = us % 1_000_000;
        for (var i = 0; i < 6; i++)
        {
            _line[at + TimeDigits - 1 - i] = (byte)('0' + (frac % 10));
            frac /= 10;
        }
        for (var i = 0; i < 5; i++)
        {
            _line[at + 4 - i] = (byte)('0' + (secs % 10));
            secs /= 10;
        }
        _lineAt = 0;
        _event++;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>Events per second of a benchmark with an <c>Events</c> parameter.</summary>
public sealed class EventsPerSecondColumn : IColumn
{
    public string Id => nameof(EventsPerSecondColumn);
    public string ColumnName => "Events/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Events replayed per second (Events over the mean time)";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var mean = summary[benchmarkCase]?.ResultStatistics?.Mean;
        var events = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Events")?.Value;
        if (mean is not { } ns || ns <= 0 || events is null)
        {
            return "-";
        }
        return (Convert.ToDouble(events, CultureInfo.InvariantCulture) / (ns / 1e9)).ToString("N0", CultureInfo.InvariantCulture);
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
}

public sealed class EventsPerSecondConfig : ManualConfig
{
    public EventsPerSecondConfig() => AddColumn(new EventsPerSecondColumn());
}
