using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace PhysDma.Benchmarks;

/// <summary>
/// Bytes per second of any benchmark with an integer parameter named <c>Size</c>: that many bytes over
/// the mean time of one operation. Lets a model path and a plain copy of the same size be read side by side.
/// </summary>
public sealed class ThroughputColumn : IColumn
{
    public string Id => nameof(ThroughputColumn);
    public string ColumnName => "Throughput";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Size bytes per mean operation time, in MiB/s";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
        GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var mean = summary[benchmarkCase]?.ResultStatistics?.Mean;
        var size = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Size")?.Value;
        if (mean is not { } ns || ns <= 0 || size is null)
        {
            return "-";
        }
        var bytes = Convert.ToDouble(size, CultureInfo.InvariantCulture);
        return (bytes / (ns / 1e9) / (1024 * 1024)).ToString("N1", CultureInfo.InvariantCulture) + " MiB/s";
    }

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
}

/// <summary>Attach with <c>[Config(typeof(ThroughputConfig))]</c>.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig() => AddColumn(new ThroughputColumn());
}
