using PhysDma.Core;
using PhysDma.Platform;

namespace PhysDma.Scenarios;

/// <summary>
/// Reads a scenario file (YAML, or JSON, which YAML includes) and checks everything that can be checked
/// before running: field names and types, and that every device, buffer and handle a step names exists.
/// </summary>
internal static class ScenarioParser
{
    public static Scenario ParseFile(string path, string? machineOverride = null, IReadOnlyList<(string Name, string Target)>? devices = null)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ScenarioError(path, 0, "", $"cannot read scenario: {e.Message}");
        }
        return Parse(text, path, machineOverride, devices);
    }

    public static Scenario Parse(string text, string file, string? machineOverride = null, IReadOnlyList<(string Name, string Target)>? devices = null)
    {
        var root = YNode.Load(text, file);
        var f = root.Fields([.. StepCatalogue.ScenarioFields]);
        var baseDir = Path.GetDirectoryName(Path.GetFullPath(file)) ?? ".";
        MachineConfig machine;
        if (machineOverride is not null)
        {
            machine = MachineParser.Resolve(new YNode(new YamlDotNet.RepresentationModel.YamlScalarNode(machineOverride), "--machine", ""), Directory.GetCurrentDirectory());
        }
        else
        {
            machine = MachineParser.Resolve(f.Required("machine"), baseDir);
        }
        machine = DeviceAliases.Apply(machine, devices ?? []);
        var faults = f.Get("faults") is { } fn ? FaultSpec.Parse(fn) : null;
        if (faults is not null)
        {
            machine = faults.Apply(machine);
        }
        var name = f.Get("name")?.AsString() ?? Path.GetFileNameWithoutExtension(file);
        var stepsNode = f.Required("steps");
        var ctx = new ParseContext(machine);
        var steps = new List<Step>();
        foreach (var s in stepsNode.Items())
        {
            steps.Add(ParseStep(s, steps.Count, ctx));
        }
        faults?.Check(machine, steps.Count);
        var final = new List<Expectation>();
        if (f.Get("expect") is { } fe)
        {
            foreach (var (k, v) in fe.Fields([.. ResultCatalogue.Final.Select(x => x.Name)]).All)
            {
                final.Add(new Expectation(k, v));
            }
        }
        return new Scenario(name, file, machine, steps, final) { Faults = faults };
    }

    private static Step ParseStep(YNode node, int index, ParseContext ctx)
    {
        if (!node.IsMapping)
        {
            throw node.Error("a step is a mapping with 'op:' and that op's fields");
        }
        var opNode = node.Fields().Get("op") ?? throw node.Error("step has no 'op' field");
        var op = opNode.Scalar;
        if (!OpCatalogue.All.TryGetValue(op, out var spec))
        {
            throw opNode.Error($"unknown op '{op}' (ops: {string.Join(", ", OpCatalogue.All.Keys)})");
        }
        var f = node.Fields([.. OpCatalogue.CommonInputs, .. spec.Inputs]);
        var id = f.Get("id")?.AsName();
        var cpu = f.Get("cpu")?.AsInt(0, ctx.Machine.Cpus - 1) ?? 0;
        var expect = new List<Expectation>();
        if (f.Get("expect") is { } e)
        {
            foreach (var (k, v) in e.Fields([.. ResultCatalogue.StepFields(op).Select(x => x.Name)]).All)
            {
                expect.Add(new Expectation(k, v));
            }
        }
        ExpectOn.Merge(f.Get("expect_on"), ctx.Machine.Name, [.. ResultCatalogue.StepFields(op).Select(x => x.Name)], expect);
        Step step = op switch
        {
            "alloc" => Alloc(f, ctx),
            "free" => new FreeStep(ctx.Buffer(f.Required("name"))) { Index = 0, Op = op, Line = 0 },
            "cpu_write" => new CpuWriteStep(ctx.Buffer(f.Required("buf")), f.Get("offset")?.AsSize() ?? 0, DataSpec.Parse(f.Required("data")), f.Get("len")?.AsSize())
            { Index = 0, Op = op, Line = 0 },
            "cpu_read" => new CpuReadStep(ctx.Buffer(f.Required("buf")), f.Get("offset")?.AsSize() ?? 0, f.Required("len").AsSize()) { Index = 0, Op = op, Line = 0 },
            "map" => Map(f, ctx),
            "unmap" => new UnmapStep(ctx.Handle(f.Required("handle")), f.Get("size")?.AsSize(), f.Get("dir") is { } d ? Dir(d) : null,
                f.Get("attrs") is { } a ? Attrs(a) : null, f.Get("api") is { } api ? Api(api) : null)
            { Index = 0, Op = op, Line = 0 },
            "mapping_error" => new MappingErrorStep(ctx.Handle(f.Required("handle"))) { Index = 0, Op = op, Line = 0 },
            "sync" => new SyncStep(ctx.Handle(f.Required("handle")), f.Required("for").AsEnum(("cpu", true), ("device", false)),
                f.Get("offset")?.AsSize() ?? 0, f.Get("size")?.AsSize(), f.Get("dir") is { } sd ? Dir(sd) : null)
            { Index = 0, Op = op, Line = 0 },
            "dev_read" => DevRead(f, ctx),
            "p2p_map" => P2PMap(f, ctx),
            "map_sg" => MapSg(f, ctx),
            "unmap_sg" => new UnmapSgStep(ctx.SgHandle(f.Required("handle")), f.Get("dir") is { } ud ? Dir(ud) : null,
                f.Get("attrs") is { } ua ? Attrs(ua) : null, f.Get("nents")?.AsInt(0, 1 << 20))
            { Index = 0, Op = op, Line = 0 },
            "sync_sg" => new SyncSgStep(ctx.SgHandle(f.Required("handle")), f.Required("for").AsEnum(("cpu", true), ("device", false)),
                f.Get("dir") is { } sd2 ? Dir(sd2) : null, f.Get("nents")?.AsInt(0, 1 << 20))
            { Index = 0, Op = op, Line = 0 },
            "dev_write" => DevWrite(f, ctx),
            "iommu_flush" => new IommuFlushStep() { Index = 0, Op = op, Line = 0 },
            "alloc_coherent" => AllocCoherent(f, ctx),
            "free_coherent" => new FreeCoherentStep(ctx.CoherentHandle(f.Required("handle")), f.Get("cpu_offset")?.AsSize() ?? 0) { Index = 0, Op = op, Line = 0 },
            "iova_alloc" => IovaAlloc(f, ctx),
            "iova_link" => new IovaLinkStep(ctx.IovaState(f.Required("state")), ctx.Buffer(f.Required("buf")), f.Get("offset")?.AsSize() ?? 0,
                NonZero(f.Required("size")), f.Required("at").AsSize(), Dir(f.Required("dir")), f.Get("attrs") is { } la ? Attrs(la) : DmaAttrs.None)
            { Index = 0, Op = op, Line = 0 },
            "iova_sync" => new IovaSyncStep(ctx.IovaState(f.Required("state")), f.Required("at").AsSize(), f.Required("size").AsSize()) { Index = 0, Op = op, Line = 0 },
            "iova_unlink" => new IovaUnlinkStep(ctx.IovaState(f.Required("state")), f.Required("at").AsSize(), NonZero(f.Required("size")),
                Dir(f.Required("dir")), f.Get("attrs") is { } ula ? Attrs(ula) : DmaAttrs.None)
            { Index = 0, Op = op, Line = 0 },
            "iova_free" => new IovaFreeStep(ctx.IovaState(f.Required("state"))) { Index = 0, Op = op, Line = 0 },
            "iova_destroy" => new IovaDestroyStep(ctx.IovaState(f.Required("state")), f.Required("mapped_len").AsSize(),
                Dir(f.Required("dir")), f.Get("attrs") is { } da ? Attrs(da) : DmaAttrs.None)
            { Index = 0, Op = op, Line = 0 },
            "remove_device" => new RemoveDeviceStep(ctx.Device(f.Required("dev"))) { Index = 0, Op = op, Line = 0 },
            "tick" => new TickStep((ulong)f.Required("ms").AsInt(0, int.MaxValue)) { Index = 0, Op = op, Line = 0 },
            _ => throw opNode.Error($"unknown op '{op}'"),
        };
        return step with { Index = index, Op = op, Id = id, Cpu = cpu, Line = node.Line, Expect = expect };
    }

    private static AllocStep Alloc(Fields f, ParseContext ctx)
    {
        var nameNode = f.Required("name");
        var name = nameNode.AsName();
        if (!ctx.Buffers.Add(name))
        {
            throw nameNode.Error($"buffer '{name}' is already allocated by an earlier step");
        }
        var kind = f.Required("kind").AsEnum(("ram", BufferKind.Ram), ("kmalloc", BufferKind.Kmalloc), ("stack", BufferKind.Stack),
            ("vmalloc", BufferKind.Vmalloc), ("p2pmem", BufferKind.P2PMem), ("bar", BufferKind.Bar), ("resource", BufferKind.Resource),
            ("kernel_text", BufferKind.KernelText));
        var sizeNode = f.Required("size");
        var size = sizeNode.AsSize();
        if (size == 0)
        {
            throw sizeNode.Error("size must not be 0");
        }
        var align = f.Get("align")?.AsSize();
        if (align is { } al && !Sizes.IsPowerOfTwo(al))
        {
            throw f.Required("align").Error($"align {al} is not a power of two");
        }
        Zone? zone = f.Get("zone")?.AsEnum(("dma", Zone.Dma), ("dma32", Zone.Dma32), ("normal", Zone.Normal), ("high", Zone.HighMem));
        string? from = null;
        if (f.Get("from") is { } fromNode)
        {
            from = ctx.Device(fromNode);
        }
        if (kind is BufferKind.P2PMem or BufferKind.Bar && from is null)
        {
            throw f.Owner.Error($"kind {f.Required("kind").Scalar} needs 'from:' (the device that owns the memory)");
        }
        if (kind == BufferKind.Resource && !f.Has("phys") && !(from is not null && f.Has("bar")))
        {
            throw f.Owner.Error("kind resource needs 'phys:' (the MMIO address), or 'from:' and 'bar:' (a register in a device's BAR)");
        }
        if (kind == BufferKind.Bar && !f.Has("bar"))
        {
            throw f.Owner.Error("kind bar needs 'bar:' (which BAR of the 'from' device)");
        }
        return new AllocStep(name, size, kind, align, zone, from, f.Get("bar")?.AsInt(0, 5), f.Get("offset")?.AsSize() ?? 0, f.Get("phys")?.AsAddress())
        { Index = 0, Op = "alloc", Line = 0 };
    }

    private static MapStep Map(Fields f, ParseContext ctx)
    {
        var dev = ctx.Device(f.Required("dev"));
        var buf = ctx.Buffer(f.Required("buf"));
        var asNode = f.Required("as");
        var handle = asNode.AsName();
        if (ctx.Handles.ContainsKey(handle))
        {
            throw asNode.Error($"handle '{handle}' is already used by an earlier map step");
        }
        ctx.Handles[handle] = dev;
        var mapApi = f.Get("api") is { } api ? Api(api) : MapApi.Phys;
        var kmap = f.Get("kmap")?.AsBool() ?? false;
        if (kmap && mapApi != MapApi.Single)
        {
            throw f.Required("kmap").Error("kmap: true only makes sense with api: single (it picks the CPU pointer dma_map_single gets)");
        }
        return new MapStep(dev, buf, f.Get("offset")?.AsSize() ?? 0, f.Get("size")?.AsSize(), Dir(f.Required("dir")),
            f.Get("attrs") is { } a ? Attrs(a) : DmaAttrs.None, mapApi, handle)
        { Index = 0, Op = "map", Line = 0, Kmap = kmap };
    }

    private static ulong NonZero(YNode n)
    {
        var size = n.AsSize();
        if (size == 0)
        {
            throw n.Error("size must not be 0");
        }
        return size;
    }

    private static AllocCoherentStep AllocCoherent(Fields f, ParseContext ctx)
    {
        var dev = ctx.Device(f.Required("dev"));
        var size = NonZero(f.Required("size"));
        var asNode = f.Required("as");
        var handle = ctx.NewHandle(asNode, dev);
        // The CPU side of the allocation is a buffer of the same name (cpu_read / cpu_write use it).
        if (!ctx.Buffers.Add(handle))
        {
            throw asNode.Error($"'{handle}' is already the name of a buffer");
        }
        ctx.CoherentHandles.Add(handle);
        return new AllocCoherentStep(dev, size, f.Get("attrs") is { } a ? Attrs(a) : DmaAttrs.None, handle) { Index = 0, Op = "alloc_coherent", Line = 0 };
    }

    private static IovaAllocStep IovaAlloc(Fields f, ParseContext ctx)
    {
        var dev = ctx.Device(f.Required("dev"));
        var size = NonZero(f.Required("size"));
        var physOf = f.Get("phys_of") is { } po ? ctx.Buffer(po) : null;
        var handle = ctx.NewHandle(f.Required("as"), dev);
        ctx.IovaStates.Add(handle);
        return new IovaAllocStep(dev, size, physOf, f.Get("offset")?.AsSize() ?? 0, handle)
        {
            Index = 0,
            Op = "iova_alloc",
            Line = 0,
            FallbackMapPhys = f.Get("fallback") is { } fb && fb.AsEnum(("map_phys", true), ("none", false)),
        };
    }

    private static MapSgStep MapSg(Fields f, ParseContext ctx)
    {
        var dev = ctx.Device(f.Required("dev"));
        var segs = new List<SgSegmentSpec>();
        foreach (var seg in f.Required("segments").Items())
        {
            var sf = seg.Fields(FieldDoc.Names(StepCatalogue.Segment));
            var size = sf.Required("size").AsSize();
            if (size == 0 || size > uint.MaxValue)
            {
                throw sf.Required("size").Error("a segment's size must be between 1 byte and 4 GiB - 1 (sg->length is 32 bits)");
            }
            segs.Add(new SgSegmentSpec(ctx.Buffer(sf.Required("buf")), sf.Get("offset")?.AsSize() ?? 0, size));
        }
        if (segs.Count == 0)
        {
            throw f.Required("segments").Error("a scatter-gather list needs at least one segment");
        }
        var asNode = f.Required("as");
        var handle = asNode.AsName();
        if (ctx.Handles.ContainsKey(handle))
        {
            throw asNode.Error($"handle '{handle}' is already used by an earlier map step");
        }
        ctx.Handles[handle] = dev;
        ctx.SgHandles.Add(handle);
        return new MapSgStep(dev, segs, Dir(f.Required("dir")), f.Get("attrs") is { } a ? Attrs(a) : DmaAttrs.None, handle)
        { Index = 0, Op = "map_sg", Line = 0 };
    }

    private static P2PMapStep P2PMap(Fields f, ParseContext ctx)
    {
        var m = Map(f, ctx);
        return new P2PMapStep(m.Dev, m.Buf, m.Offset, m.Size, m.Dir, m.Attrs, m.As) { Index = 0, Op = "p2p_map", Line = 0 };
    }

    private static (string Dev, string? Handle, ulong? Addr) Target(Fields f, ParseContext ctx)
    {
        string? handle = f.Get("handle") is { } h ? ctx.AnyHandle(h) : null;
        ulong? addr = f.Get("addr")?.AsAddress();
        if (handle is null == addr is null)
        {
            throw f.Owner.Error("give exactly one of 'handle' or 'addr'");
        }
        var dev = f.Get("dev") is { } d ? ctx.Device(d) : handle is not null ? ctx.Handles[handle] : throw f.Owner.Error("missing field 'dev'");
        return (dev, handle, addr);
    }

    private static DevReadStep DevRead(Fields f, ParseContext ctx)
    {
        var (dev, handle, addr) = Target(f, ctx);
        return new DevReadStep(dev, handle, addr, f.Get("offset")?.AsSize() ?? 0, f.Required("len").AsSize()) { Index = 0, Op = "dev_read", Line = 0 };
    }

    private static DevWriteStep DevWrite(Fields f, ParseContext ctx)
    {
        var (dev, handle, addr) = Target(f, ctx);
        var data = DataSpec.Parse(f.Required("data"));
        var len = f.Get("len")?.AsSize();
        if (handle is null && len is null && data.NaturalLength is null)
        {
            throw f.Owner.Error("writing a fill or seq pattern to a raw 'addr' needs 'len'");
        }
        return new DevWriteStep(dev, handle, addr, f.Get("offset")?.AsSize() ?? 0, data, len) { Index = 0, Op = "dev_write", Line = 0 };
    }

    public static DmaDirection Dir(YNode n) => n.AsEnum(
        ("bidirectional", DmaDirection.Bidirectional), ("to_device", DmaDirection.ToDevice),
        ("from_device", DmaDirection.FromDevice), ("none", DmaDirection.None));

    public static MapApi Api(YNode n) => n.AsEnum(("phys", MapApi.Phys), ("page", MapApi.Page), ("single", MapApi.Single), ("resource", MapApi.Resource));

    public static DmaAttrs Attrs(YNode n)
    {
        var attrs = DmaAttrs.None;
        foreach (var item in n.Items())
        {
            var name = item.Scalar;
            var match = DmaNames.AttrTable.FirstOrDefault(a => a.Scenario == name);
            if (match.Scenario is null)
            {
                throw item.Error($"unknown attr '{name}' (attrs: {string.Join(", ", DmaNames.AttrTable.Select(a => a.Scenario))})");
            }
            attrs |= match.Flag;
        }
        return attrs;
    }
}
