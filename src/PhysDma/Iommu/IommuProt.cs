namespace PhysDma.Iommu;

/// <summary>The <c>IOMMU_*</c> protection flags of include/linux/iommu.h, with the kernel's values.</summary>
internal static class IommuProt
{
    public const int Read = 1 << 0;
    public const int Write = 1 << 1;
    public const int Cache = 1 << 2;
    public const int NoExec = 1 << 3;
    public const int Mmio = 1 << 4;
    public const int Priv = 1 << 5;

    private static readonly (int Flag, string Name)[] Table =
    [
        (Read, "READ"), (Write, "WRITE"), (Cache, "CACHE"), (NoExec, "NOEXEC"), (Mmio, "MMIO"), (Priv, "PRIV"),
    ];

    /// <summary>The flag names results use (<c>["READ", "CACHE"]</c>), in bit order.</summary>
    public static List<string> Names(int prot)
    {
        var list = new List<string>();
        foreach (var (flag, name) in Table)
        {
            if ((prot & flag) != 0)
            {
                list.Add(name);
            }
        }
        return list;
    }
}
