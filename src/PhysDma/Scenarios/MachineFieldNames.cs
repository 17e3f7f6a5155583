using System.Text;
using System.Text.RegularExpressions;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// Maps the config property a lower layer names in a <see cref="MachineConfigException"/> back to the
/// machine-file field it was read from: <c>Devices[2].P2PMem.Bar</c> is <c>devices[2].p2pmem.bar</c>.
/// Property names are the field names in PascalCase, except the few listed here.
/// </summary>
internal static partial class MachineFieldNames
{
    private static readonly Dictionary<string, string> Irregular = new(StringComparer.Ordinal)
    {
        [nameof(DeviceConfig.P2PMem)] = "p2pmem",
        [nameof(DeviceConfig.DmaMaskBits)] = "dma_mask",
        [nameof(DeviceConfig.CoherentDmaMaskBits)] = "coherent_dma_mask",
        [nameof(MachineConfig.DmaMinAlign)] = "dma_minalign",
        [nameof(IommuConfig.ForceDac)] = "forcedac",
    };

    /// <summary>The machine-file field path of <paramref name="property"/>.</summary>
    public static string FieldOf(ConfigProperty property)
    {
        var sb = new StringBuilder();
        foreach (var segment in property.Path.Split('.'))
        {
            var m = SegmentRegex().Match(segment);
            if (sb.Length > 0)
            {
                sb.Append('.');
            }
            var name = m.Groups["name"].Value;
            sb.Append(Irregular.TryGetValue(name, out var f) ? f : SnakeCase(name)).Append(m.Groups["index"].Value);
        }
        return sb.ToString();
    }

    private static string SnakeCase(string name) => UpperRegex().Replace(name, m => (m.Index == 0 ? "" : "_") + m.Value.ToLowerInvariant());

    /// <summary>The file error for a machine that cannot be built: <c>machine.FIELD: message</c>.</summary>
    public static ScenarioError ToScenarioError(this MachineConfigException e, string file, int line = 1) =>
        new(file, line, "machine." + FieldOf(e.Property), e.Message);

    extension(MachineConfigException e)
    {
        /// <summary>The machine-file field (relative to <c>machine:</c>) the exception's config property was read from.</summary>
        public string Field => FieldOf(e.Property);
    }

    [GeneratedRegex(@"^(?<name>[A-Za-z0-9]+)(?<index>(\[\d+\])?)$")]
    private static partial Regex SegmentRegex();

    [GeneratedRegex("[A-Z]")]
    private static partial Regex UpperRegex();
}
