using System.Text.Json;
using System.Text.Json.Serialization;
using PhysDma.Core;

namespace PhysDma.Scenarios;

/// <summary>
/// An address in a result (<c>phys</c>, <c>dma_addr</c>, <c>bounce</c>, <c>addr</c>): written as <c>"0x..."</c>,
/// and compared as a number by <c>expect:</c>, so <c>4096</c> and <c>"0x1000"</c> agree.
/// </summary>
[JsonConverter(typeof(HexAddrConverter))]
internal readonly record struct HexAddr(ulong Value)
{
    public override string ToString() => Hex.Format(Value);
}

/// <summary>A set of flag names (<c>attrs</c>, <c>iommu_prot</c>): written as a list, compared as a set.</summary>
[JsonConverter(typeof(FlagSetConverter))]
internal readonly record struct FlagSet(IReadOnlyList<string> Names)
{
    public static FlagSet Of(DmaAttrs attrs) => new(attrs.ScenarioNames());

    public static FlagSet Prot(int prot) => new(Iommu.IommuProt.Names(prot));
}

/// <summary>Bytes read by the CPU or a device: written as lowercase hex pairs, compared against a data pattern.</summary>
[JsonConverter(typeof(ByteDumpConverter))]
internal readonly record struct ByteDump(string Text)
{
    public static ByteDump Of(ReadOnlySpan<byte> data) => new(Values.HexBytes(data));
}

internal sealed class HexAddrConverter : JsonConverter<HexAddr>
{
    public override HexAddr Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        new(Convert.ToUInt64(reader.GetString()![2..], 16));

    public override void Write(Utf8JsonWriter writer, HexAddr value, JsonSerializerOptions options) =>
        writer.WriteStringValue(Hex.Format(value.Value));
}

internal sealed class FlagSetConverter : JsonConverter<FlagSet>
{
    public override FlagSet Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var names = new List<string>();
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            names.Add(reader.GetString()!);
        }
        return new FlagSet(names);
    }

    public override void Write(Utf8JsonWriter writer, FlagSet value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (var n in value.Names)
        {
            writer.WriteStringValue(n);
        }
        writer.WriteEndArray();
    }
}

internal sealed class ByteDumpConverter : JsonConverter<ByteDump>
{
    public override ByteDump Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => new(reader.GetString()!);

    public override void Write(Utf8JsonWriter writer, ByteDump value, JsonSerializerOptions options) => writer.WriteStringValue(value.Text);
}
