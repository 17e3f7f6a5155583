using System.Globalization;
using System.Text;
using CsCheck;
using PhysDma.Scenarios;

namespace PhysDma.Fuzz;

/// <summary>
/// Generators of scenario text: structure-aware (ops and their fields from <see cref="OpCatalogue"/>, values
/// from pools of valid, boundary and malformed ones) and byte-level mutation of a seed corpus.
/// </summary>
public static class ScenarioGen
{
    private static readonly string[] Names = ["b0", "b1", "h0", "h1", "c0", "s0", "v", "x"];
    private static readonly string[] Devices = ["nic0", "gpu0", "nvme0", "legacy32", "tbt0", "sw0", "nope"];

    private static readonly string[] Numbers =
    [
        "0", "1", "8", "63", "64", "65", "512", "4095", "4096", "4097", "8192", "65536", "4KiB", "2MiB", "1GiB", "3GiB", "16TiB",
        "0x1000", "0xfff", "0x100000", "0xc0000000", "0xfedfffff", "0x100000000", "0x3800000000", "0x7fffffffffffffff",
        "0x8000000000000000", "0xffffffffffffffff", "0xfffffffffffff000", "18446744073709551615", "2147483647", "4294967296",
        "4294967300", "-1", "010", "1.5", "abc", "", "null", "0x", "99999999999999999999",
    ];

    private static readonly string[] Data = ["\"de ad be ef\"", "\"00\"", "{ fill: 0xAA }", "{ seq: 7 }", "{ fill: 300 }", "{ seq: 1, fill: 2 }", "\"x\"", "[1, 2]"];
    private static readonly string[] Attrs = ["[]", "[mmio]", "[skip_cpu_sync]", "[no_warn]", "[weak_ordering, mmio]", "[bogus]", "mmio"];

    public static Gen<string> Value(string field) => field switch
    {
        "name" or "as" or "buf" or "handle" or "state" or "phys_of" => Gen.OneOf(Names),
        "dev" or "from" => Gen.OneOf(Devices),
        "kind" => Gen.OneOf("ram", "kmalloc", "stack", "vmalloc", "p2pmem", "bar", "resource", "kernel_text", "coherent", "heap"),
        "dir" => Gen.OneOf("to_device", "from_device", "bidirectional", "none", "sideways"),
        "for" => Gen.OneOf("cpu", "device", "both"),
        "api" => Gen.OneOf("phys", "page", "single", "resource", "sg"),
        "zone" => Gen.OneOf("dma", "dma32", "normal", "highmem", "movable"),
        "attrs" => Gen.OneOf(Attrs),
        "data" => Gen.OneOf(Data),
        "kmap" => Gen.OneOf("true", "false", "maybe"),
        "bar" or "cpu" or "nents" or "ms" => Gen.OneOf("0", "1", "2", "5", "7", "-1", "100000", "010"),
        "segments" => Gen.Select(Gen.OneOf(Names), Gen.OneOf(Numbers), Gen.OneOf(Numbers))
            .Array[0, 4].Select(a => "[" + string.Join(", ", a.Select(s => $"{{ buf: {s.Item1}, size: {s.Item2}, offset: {s.Item3} }}")) + "]"),
        "expect" => Gen.OneOf("{ ok: true }", "{ error: null }", "{ data: \"00\" }", "{ path: iommu }", "{ nope: 1 }"),
        "id" => Gen.Int[0, 9].Select(i => "s-" + i.ToString(CultureInfo.InvariantCulture)),
        _ => Gen.OneOf(Gen.OneOf(Numbers), Gen.ULong.Select(u => "0x" + u.ToString("x", CultureInfo.InvariantCulture))),
    };

    private static Gen<string> Step(string op)
    {
        var spec = OpCatalogue.All[op];
        var fields = spec.Inputs.Concat(["cpu", "expect", "id"]).ToArray();
        return Gen.Bool.Array[fields.Length].SelectMany(pick =>
        {
            // The op's first fields are usually required: keep them most of the time, the rest at random.
            var chosen = fields.Where((_, i) => pick[i] || i < Math.Min(2, spec.Inputs.Count)).ToArray();
            var acc = Gen.Const($"  - {{ op: {op}");
            foreach (var f in chosen)
            {
                acc = acc.SelectMany(a => Value(f).Select(v => $"{a}, {f}: {v}"));
            }
            return acc.Select(a => a + " }");
        });
    }

    public static readonly Gen<string> Machine = Gen.OneOf(
        Gen.OneOf(Profiles.Names.ToArray()),
        Gen.Select(Gen.OneOf(Profiles.Names.ToArray()),
            Gen.OneOf("page_size: 64KiB", "page_size: 16KiB", "cache_line: 128", "highmem_above: 0x40000000", "dma_minalign: 8",
                "bounce_unaligned_kmalloc: true", "swiotlb: { size: 1MiB }", "iommu: off", "debug: off", "cpus: 8", "ram: [{ base: 0x0, size: 1GiB }]"))
            .Select((b, o) => $"{{ base: {b}, {o} }}"));

    private static readonly string[] CallNumbers = ["1", "2", "3", "[1, 2]", "[2, 5]", "0", "-1", "1000001", "x", "[]"];

    /// <summary>
    /// One entry of a <c>faults:</c> section: a failing call, a pool limit, or a P2P provider removed after a
    /// step (device, BAR and step valid, at a boundary, or malformed; one removal or a list).
    /// </summary>
    public static readonly Gen<string> FaultEntry = Gen.OneOf(
        Gen.Select(Gen.OneOf(FaultSpec.Points.Select(p => p.Name).ToArray()), Gen.OneOf(CallNumbers)).Select((k, v) => $"{k}: {v}"),
        Gen.OneOf("1", "4", "128", "0", "-3", "1048577").Select(v => $"swiotlb_slots: {v}"),
        Gen.OneOf("0", "1", "2", "-1").Select(v => $"dma_debug_entries: {v}"),
        Gen.Select(Gen.OneOf(Devices), Gen.OneOf("0", "1", "2", "5", "6", "-1", "x"), Gen.OneOf("0", "1", "2", "3", "5", "7", "100", "-1"))
            .Select((d, b, a) => $"{{ dev: {d}, bar: {b}, after: {a} }}")
            .Array[1, 3]
            .Select(rs => FaultSpec.RemoveP2PProvider + ": " + (rs.Length == 1 ? rs[0] : "[" + string.Join(", ", rs) + "]")),
        Gen.OneOf("remove_p2p_provider: 1", "remove_p2p_provider: [3]", "remove_p2p_provider: { dev: gpu0, bar: 1 }", "remove_p2p_provider: { dev: gpu0, bar: 1, after: 0, when: now }"));

    /// <summary>No <c>faults:</c> section most of the time; otherwise one to three entries.</summary>
    public static readonly Gen<string> Faults = Gen.Frequency(
        (2, Gen.Const("")),
        (1, FaultEntry.Array[1, 3].Select(e => "faults: { " + string.Join(", ", e) + " }\n")));

    /// <summary>A scenario built from ops and fields the format knows, with values valid, at a boundary, or malformed.</summary>
    public static readonly Gen<string> Structured =
        Gen.Select(Machine, Faults, Gen.OneOf(OpCatalogue.All.Keys.ToArray()).SelectMany(Step).Array[1, 8])
            .Select((m, f, steps) => $"machine: {m}\n{f}steps:\n" + string.Join("\n", steps) + "\n");

    /// <summary>Every seed file: examples (with examples/faults and examples/phys-api), the misuse catalogue, the fuzz findings (text, path).</summary>
    public static IReadOnlyList<(string Text, string File)> LoadCorpus(string repoRoot)
    {
        var dirs = new[]
        {
            Path.Combine(repoRoot, "examples"),
            Path.Combine(repoRoot, "tests", "PhysDma.Tests", "Misuse"),
            Path.Combine(repoRoot, "tests", "PhysDma.Tests", "Fuzz", "Findings"),
        };
        return [.. dirs.Where(Directory.Exists)
            .SelectMany(d => Directory.GetFiles(d, "*.yaml", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            .Where(f => new FileInfo(f).Length < 64 * 1024)
            .Select(f => (File.ReadAllText(f), f))];
    }

    /// <summary>Every built-in machine as a machine file (<c>physdma machines show NAME</c>): the seeds of machine-file fuzzing.</summary>
    public static IReadOnlyList<(string Text, string File)> MachineCorpus(string repoRoot) =>
        [.. Profiles.Names.Select(n => (Profiles.YamlOf(n)!, Path.Combine(repoRoot, "fuzz", n + ".yaml")))];

    private static readonly string[] Tokens = ["\n", " ", ":", "{", "}", "[", "]", ",", "-", "\"", "'", "0x", "&a", "*a", "!!int ", "? ", "|", "#", "\t", "\u00e9"];

    /// <summary>A seed file with a few byte-level mutations: flips, inserted tokens and numbers, deleted and repeated runs.</summary>
    public static Gen<(string Text, string File)> Mutated(IReadOnlyList<(string Text, string File)> corpus) =>
        Gen.Select(Gen.Int[0, corpus.Count - 1], Gen.Select(Gen.Int[0, 4], Gen.Int[0, int.MaxValue], Gen.Int[0, 255]).Array[1, 6])
            .Select((i, edits) => (Mutate(corpus[i].Text, edits), corpus[i].File));

    public static string Mutate(string text, (int Kind, int Pos, int Val)[] edits)
    {
        var sb = new StringBuilder(text);
        foreach (var (kind, pos0, val) in edits)
        {
            var pos = sb.Length == 0 ? 0 : pos0 % sb.Length;
            switch (kind)
            {
                case 0:
                    if (sb.Length > 0)
                    {
                        sb[pos] = (char)(sb[pos] ^ (1 << (val % 7)));
                    }
                    break;
                case 1:
                    sb.Insert(pos, Tokens[val % Tokens.Length]);
                    break;
                case 2:
                    sb.Remove(pos, Math.Min(val % 16, sb.Length - pos));
                    break;
                case 3:
                    sb.Insert(pos, sb.ToString(pos, Math.Min(val % 32, sb.Length - pos)));
                    break;
                default:
                    sb.Insert(pos, Numbers[val % Numbers.Length]);
                    break;
            }
        }
        return sb.ToString();
    }
}
