using PhysDma.Hosts;
using static PhysDma.Tests.Hosts.HostKit;

namespace PhysDma.Tests.Hosts;

/// <summary>
/// Partial dumps (a post cut short, one file of several, lines damaged in transit) import with their
/// assumptions listed, or are refused as bad input naming file and line; the written machine always builds.
/// </summary>
public class PartialDumpTests
{
    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        foreach (var prefix in new[] { "01", "02", "03", "04", "05", "06", "07", "08" })
        {
            foreach (var f in HostKit.Files(prefix))
            {
                data.Add(Path.GetRelativePath(Path.Combine(Scenarios.ScenarioTestKit.RepoRoot, "tests", "PhysDma.Tests", "TestData", "hosts"), f));
            }
        }
        return data;
    }

    private static string Full(string rel) => Path.Combine(Scenarios.ScenarioTestKit.RepoRoot, "tests", "PhysDma.Tests", "TestData", "hosts", rel);

    [Theory]
    [MemberData(nameof(Files))]
    public void Every_cut_of_a_dump_imports_and_builds(string file)
    {
        var lines = File.ReadAllLines(Full(file));
        var step = Math.Max(1, lines.Length / 12);
        for (var n = 1; n <= lines.Length; n += step)
        {
            var cut = Path.Combine(TempDir(), Path.GetFileName(file));
            File.WriteAllLines(cut, lines[..n]);
            var m = HostImport.FromText([cut], "cut");
            Assert.Contains("# Assumed", m.Yaml, StringComparison.Ordinal);
            Build(Load(m.Yaml));
        }
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void Damaged_lines_are_bad_input_or_skipped_never_a_crash(string file)
    {
        var lines = File.ReadAllLines(Full(file));
        var rnd = new Random(file.Length);
        for (var round = 0; round < 12; round++)
        {
            var damaged = lines.ToArray();
            var at = rnd.Next(damaged.Length);
            var l = damaged[at];
            damaged[at] = l.Length < 4 ? "%%" : (round % 3) switch
            {
                0 => l[..(l.Length / 2)],
                1 => l.Replace('0', 'z'),
                _ => l + " ]]-[ 0x",
            };
            var path = Path.Combine(TempDir(), Path.GetFileName(file));
            File.WriteAllLines(path, damaged);
            try
            {
                var m = HostImport.FromText([path], "damaged");
                Build(Load(m.Yaml));
            }
            catch (HostImportError e)
            {
                Assert.StartsWith(path + ":", e.Formatted, StringComparison.Ordinal);
            }
        }
    }
}
