using PhysDma.Dma;
using PhysDma.Hosts;
using PhysDma.Platform;
using PhysDma.Scenarios;
using PhysDma.Tests.Scenarios;

namespace PhysDma.Tests.Hosts;

/// <summary>Imports the fixture hosts and loads what the import wrote the way <c>run --machine</c> does.</summary>
internal static class HostKit
{
    public static string HostDir(string prefix) =>
        Directory.GetDirectories(Path.Combine(ScenarioTestKit.RepoRoot, "tests", "PhysDma.Tests", "TestData", "hosts"), prefix + "*").Single();

    public static string[] Files(string prefix) =>
        [.. Directory.GetFiles(HostDir(prefix), "*.txt").Order(StringComparer.Ordinal)];

    public static (ImportedMachine Imported, MachineConfig Config) Import(string prefix)
    {
        var m = HostImport.FromText(Files(prefix), "test");
        return (m, Load(m.Yaml));
    }

    public static string TempDir()
    {
        var d = Path.Combine(Path.GetTempPath(), "physdma-hosts", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>Writes the machine file and loads it with the machine-file parser.</summary>
    public static MachineConfig Load(string yaml)
    {
        var file = Path.Combine(TempDir(), "host.yaml");
        File.WriteAllText(file, yaml);
        return MachineParser.LoadFile(file);
    }

    public static string Write(string yaml)
    {
        var file = Path.Combine(TempDir(), "host.yaml");
        File.WriteAllText(file, yaml);
        return file;
    }

    public static DeviceConfig Dev(MachineConfig c, string bdf) => c.Devices.Single(d => d.Bdf == bdf);

    public static PciNodeConfig Node(MachineConfig c, string bdf) => c.Pci.Single(p => p.Bdf == bdf);

    /// <summary>The machine as the model builds it (PCI topology, IOMMU, swiotlb): throws if the file is not runnable.</summary>
    public static DmaApi Build(MachineConfig c) => new(new Machine(c));
}
