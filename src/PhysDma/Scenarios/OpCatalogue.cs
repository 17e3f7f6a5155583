namespace PhysDma.Scenarios;

/// <summary>An op of the scenario format: the fields a step of it takes, and the record its result is.</summary>
internal sealed record OpSpec(string Name, IReadOnlyList<string> Inputs, Type Result, Func<StepResult> NewResult);

/// <summary>
/// Every op of the scenario format, in the order the docs list them. The parser takes an op's input fields from
/// here, and its result fields (what <c>expect:</c> may name) from the result record named here; the runner
/// starts every step from the record made here.
/// </summary>
internal static class OpCatalogue
{
    /// <summary>Fields every step takes besides its op's own.</summary>
    public static readonly IReadOnlyList<string> CommonInputs = ["op", "id", "cpu", "expect", "expect_on"];

    public static readonly IReadOnlyDictionary<string, OpSpec> All = new[]
    {
        Op<AllocResult>("alloc", "name", "size", "kind", "align", "zone", "from", "bar", "offset", "phys"),
        Op<FreeResult>("free", "name"),
        Op<CpuWriteResult>("cpu_write", "buf", "offset", "data", "len"),
        Op<CpuReadResult>("cpu_read", "buf", "offset", "len"),
        Op<MapResult>("map", "dev", "buf", "offset", "size", "dir", "attrs", "api", "as", "kmap"),
        Op<UnmapResult>("unmap", "handle", "size", "dir", "attrs", "api"),
        Op<MappingErrorResult>("mapping_error", "handle"),
        Op<SyncResult>("sync", "handle", "for", "offset", "size", "dir"),
        Op<DevReadResult>("dev_read", "dev", "handle", "addr", "offset", "len"),
        Op<DevWriteResult>("dev_write", "dev", "handle", "addr", "offset", "data", "len"),
        Op<TickResult>("tick", "ms"),
        Op<IommuFlushResult>("iommu_flush"),
        Op<AllocCoherentResult>("alloc_coherent", "dev", "size", "attrs", "as"),
        Op<FreeCoherentResult>("free_coherent", "handle", "cpu_offset"),
        Op<IovaAllocResult>("iova_alloc", "dev", "size", "phys_of", "offset", "as", "fallback"),
        Op<IovaLinkResult>("iova_link", "state", "buf", "offset", "size", "at", "dir", "attrs"),
        Op<IovaSyncResult>("iova_sync", "state", "at", "size"),
        Op<IovaUnlinkResult>("iova_unlink", "state", "at", "size", "dir", "attrs"),
        Op<IovaFreeResult>("iova_free", "state"),
        Op<IovaDestroyResult>("iova_destroy", "state", "mapped_len", "dir", "attrs"),
        Op<RemoveDeviceResult>("remove_device", "dev"),
        Op<MapSgResult>("map_sg", "dev", "segments", "dir", "attrs", "as"),
        Op<UnmapSgResult>("unmap_sg", "handle", "dir", "attrs", "nents"),
        Op<SyncSgResult>("sync_sg", "handle", "for", "dir", "nents"),
        Op<MapResult>("p2p_map", "dev", "buf", "offset", "size", "dir", "attrs", "as"),
    }.ToDictionary(o => o.Name, StringComparer.Ordinal);

    private static OpSpec Op<TResult>(string name, params string[] inputs)
        where TResult : StepResult, new() => new(name, inputs, typeof(TResult), () => new TResult());
}
