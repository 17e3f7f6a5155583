using System.Diagnostics;
using System.Globalization;
using CsCheck;
using PhysDma.Fuzz;

// physdma-fuzz afl                      : SharpFuzz entry for AFL++ (input on stdin, see fuzz/README.md)
// physdma-fuzz run [SECONDS] [SEED]     : in-process run of the generators and the mutated corpus; prints
//                                         inputs, throughput, outcomes; exits 1 on the first finding
var mode = args.Length > 0 ? args[0] : "run";
var root = FindRoot();
if (mode == "afl")
{
    SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
    {
        using var reader = new StreamReader(stream);
        FuzzTarget.Run(reader.ReadToEnd(), Path.Combine(root, "fuzz", "input.yaml"));
    });
    return 0;
}
var seconds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 60;
var seed = args.Length > 2 ? args[2] : "physdma-fuzz";
var corpus = ScenarioGen.LoadCorpus(root);
var machines = ScenarioGen.MachineCorpus(root);
var gen = Gen.Frequency(
    (4, ScenarioGen.Structured.Select(t => (t, Path.Combine(root, "fuzz", "input.yaml"), false))),
    (4, ScenarioGen.Mutated(corpus).Select(x => (x.Text, x.File, false))),
    (1, ScenarioGen.Mutated(machines).Select(x => (x.Text, x.File, true))));
var rng = new PCG((uint)seed.GetHashCode(StringComparison.Ordinal));
var counts = new long[3];
var sw = Stopwatch.StartNew();
long n = 0;
var findings = 0;
while (sw.Elapsed.TotalSeconds < seconds)
{
    var (text, file, isMachine) = gen.Generate(rng, null, out _);
    try
    {
        counts[(int)(isMachine ? FuzzTarget.RunMachine(text, file) : FuzzTarget.Run(text, file))]++;
    }
    catch (FuzzFailure e)
    {
        findings++;
        var path = Path.Combine(root, "fuzz", "findings", $"crash-{n}.yaml");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        if (findings <= 50)
        {
            File.WriteAllText(path, text);
        }
        Console.Error.WriteLine($"finding after {n} inputs: {e.Message} (input written to {path}, based on {file})");
    }
    n++;
    if (n % 1_000_000 == 0)
    {
        Console.WriteLine($"{n} inputs, {sw.Elapsed.TotalSeconds:F0} s, findings {findings}");
    }
}
Console.WriteLine($"{n} inputs in {sw.Elapsed.TotalSeconds:F0} s ({n / sw.Elapsed.TotalSeconds:F0}/s): ok {counts[0]}, expect_failed {counts[1]}, bad_input {counts[2]}, findings {findings}");
return findings == 0 ? 0 : 1;

static string FindRoot()
{
    var dir = new DirectoryInfo(AppContext.BaseDirectory);
    while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "PhysDma.sln")))
    {
        dir = dir.Parent;
    }
    return dir?.FullName ?? Directory.GetCurrentDirectory();
}
