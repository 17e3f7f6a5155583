using System.Reflection;
using System.Reflection.Emit;
using PhysDma.Core;

namespace PhysDma.Tests.Architecture;

/// <summary>
/// The layers of the PhysDma assembly, lowest first: Core ← Platform ← Pci, Iommu ← Dma ← Scenarios (and any
/// other top-level namespace). A type may use its own layer and the layers below; Pci and Iommu do not use
/// each other. References are read from everything the compiler leaves in metadata: base types, interfaces,
/// fields, properties, events, method signatures, locals, generic arguments and constraints, attributes,
/// and every type, field and method token in the method bodies (lambdas and iterators included, since the
/// compiler nests their classes in the declaring type). A use the compiler folds away (an enum constant or
/// a <c>const</c> of a higher layer) leaves no trace in metadata and is not seen.
/// </summary>
public class LayeringTests
{
    private const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance
                                     | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// <summary>The layer of a PhysDma namespace: a sub-namespace belongs to its top-level one.</summary>
    private static int? LayerOf(Type t)
    {
        var ns = t.Namespace;
        if (ns is null || !(ns == "PhysDma" || ns.StartsWith("PhysDma.", StringComparison.Ordinal)))
        {
            return null;
        }
        var top = ns.Split('.') is { Length: > 1 } parts ? parts[1] : "";
        return top switch
        {
            "Core" => 0,
            "Platform" => 1,
            "Pci" or "Iommu" => 2,
            "Dma" => 3,
            _ => 4,
        };
    }

    private static string TopNamespace(Type t) => t.Namespace!.Split('.') is { Length: > 1 } p ? p[1] : "";

    /// <summary>Whether <paramref name="from"/> may reference <paramref name="to"/>.</summary>
    private static bool Allowed(Type from, Type to)
    {
        if (LayerOf(from) is not { } lf || LayerOf(to) is not { } lt)
        {
            return true;
        }
        if (lf == 2 && lt == 2)
        {
            return TopNamespace(from) == TopNamespace(to);
        }
        return lt <= lf;
    }

    [Fact]
    public void No_type_references_a_higher_layer()
    {
        var violations = Violations(typeof(PhysAddr).Assembly);
        Assert.True(violations.Count == 0, "layering violations:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void The_scanner_sees_references_in_method_bodies()
    {
        // A body-only reference: the method's signature is clean, its body news up a higher-layer type.
        var refs = References(typeof(BodyOnly)).Select(r => r.To).ToList();
        Assert.Contains(typeof(PhysDma.Scenarios.ScenarioError), refs);
        Assert.Contains(typeof(PhysDma.Dma.DmaRecorder), refs);
    }

    [Fact]
    public void A_dma_type_using_a_scenarios_type_is_a_violation()
    {
        Assert.False(Allowed(typeof(PhysDma.Dma.DmaApi), typeof(PhysDma.Scenarios.ScenarioError)));
        Assert.False(Allowed(typeof(PhysDma.Pci.P2PDma), typeof(PhysDma.Iommu.IommuDomain)));
        Assert.False(Allowed(typeof(PhysDma.Core.PhysAddr), typeof(PhysDma.Platform.Machine)));
        Assert.True(Allowed(typeof(PhysDma.Dma.DmaApi), typeof(PhysDma.Iommu.IommuDomain)));
    }

    private static class BodyOnly
    {
        public static object Make() => new PhysDma.Scenarios.ScenarioError("f", 1, "", "m");

        public static string Path() => new PhysDma.Dma.DmaRecorder().Path.ToString();
    }

    internal static List<string> Violations(Assembly asm)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<string>();
        foreach (var type in asm.GetTypes())
        {
            foreach (var (to, where) in References(type))
            {
                if (!Allowed(type, to))
                {
                    var line = $"{Outer(type).FullName} ({TopNamespace(type)}) references {to.FullName} ({TopNamespace(to)}) in {where}";
                    if (seen.Add(line))
                    {
                        result.Add(line);
                    }
                }
            }
        }
        return result;
    }

    private static Type Outer(Type t)
    {
        while (t.DeclaringType is { } d)
        {
            t = d;
        }
        return t;
    }

    /// <summary>Every type <paramref name="type"/> mentions, with where it was found.</summary>
    internal static IEnumerable<(Type To, string Where)> References(Type type)
    {
        var found = new List<(Type, string)>();
        void Add(Type? t, string where)
        {
            foreach (var u in Flatten(t))
            {
                found.Add((u, where));
            }
        }
        void Attrs(IEnumerable<CustomAttributeData> attrs, string where)
        {
            foreach (var a in attrs)
            {
                Add(a.AttributeType, where);
                foreach (var arg in a.ConstructorArguments.Concat(a.NamedArguments.Select(n => n.TypedValue)))
                {
                    Add(arg.ArgumentType, where);
                    if (arg.Value is Type tv)
                    {
                        Add(tv, where);
                    }
                }
            }
        }

        Add(type.BaseType, "base type");
        foreach (var i in type.GetInterfaces())
        {
            Add(i, "interface");
        }
        if (type.IsGenericTypeDefinition)
        {
            foreach (var g in type.GetGenericArguments())
            {
                foreach (var c in g.GetGenericParameterConstraints())
                {
                    Add(c, "generic constraint");
                }
            }
        }
        Attrs(type.GetCustomAttributesData(), "attribute");
        foreach (var f in type.GetFields(All))
        {
            Add(f.FieldType, $"field {f.Name}");
            Attrs(f.GetCustomAttributesData(), $"field {f.Name}");
        }
        foreach (var p in type.GetProperties(All))
        {
            Add(p.PropertyType, $"property {p.Name}");
        }
        foreach (var e in type.GetEvents(All))
        {
            Add(e.EventHandlerType, $"event {e.Name}");
        }
        foreach (var m in type.GetMethods(All).Cast<MethodBase>().Concat(type.GetConstructors(All)))
        {
            var where = $"{(m.IsConstructor ? "constructor" : "method " + m.Name)}";
            if (m is MethodInfo mi)
            {
                Add(mi.ReturnType, where);
                if (mi.IsGenericMethodDefinition)
                {
                    foreach (var g in mi.GetGenericArguments())
                    {
                        foreach (var c in g.GetGenericParameterConstraints())
                        {
                            Add(c, where);
                        }
                    }
                }
            }
            foreach (var p in m.GetParameters())
            {
                Add(p.ParameterType, where);
            }
            Attrs(m.GetCustomAttributesData(), where);
            var body = m.GetMethodBody();
            if (body is null)
            {
                continue;
            }
            foreach (var l in body.LocalVariables)
            {
                Add(l.LocalType, where + " (local)");
            }
            foreach (var t in BodyReferences(m, body))
            {
                Add(t, where + " (body)");
            }
        }
        return found;
    }

    /// <summary>A type with its generic arguments, element types and declaring types taken apart.</summary>
    private static IEnumerable<Type> Flatten(Type? t)
    {
        if (t is null || t.IsGenericParameter)
        {
            yield break;
        }
        if (t.HasElementType)
        {
            foreach (var u in Flatten(t.GetElementType()))
            {
                yield return u;
            }
            yield break;
        }
        if (t.IsGenericType)
        {
            foreach (var a in t.GetGenericArguments())
            {
                foreach (var u in Flatten(a))
                {
                    yield return u;
                }
            }
            if (!t.IsGenericTypeDefinition)
            {
                t = t.GetGenericTypeDefinition();
            }
        }
        yield return t;
    }

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    /// <summary>The types behind every type, field and method token in an IL body.</summary>
    private static IEnumerable<Type> BodyReferences(MethodBase m, MethodBody body)
    {
        var il = body.GetILAsByteArray() ?? [];
        var module = m.Module;
        var typeArgs = m.DeclaringType is { IsGenericType: true } dt ? dt.GetGenericArguments() : null;
        var methodArgs = m.IsGenericMethod ? m.GetGenericArguments() : null;
        var result = new List<Type>();
        var i = 0;
        while (i < il.Length)
        {
            short value = il[i++];
            if (value == 0xfe)
            {
                value = (short)(0xfe00 | il[i++]);
            }
            var op = OpCodesByValue[value];
            switch (op.OperandType)
            {
                case OperandType.InlineNone:
                    break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                    i += 1;
                    break;
                case OperandType.InlineVar:
                    i += 2;
                    break;
                case OperandType.InlineI8 or OperandType.InlineR:
                    i += 8;
                    break;
                case OperandType.InlineSwitch:
                    var n = BitConverter.ToInt32(il, i);
                    i += 4 + (4 * n);
                    break;
                case OperandType.InlineType or OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineTok:
                    var token = BitConverter.ToInt32(il, i);
                    i += 4;
                    var member = module.ResolveMember(token, typeArgs, methodArgs);
                    switch (member)
                    {
                        case Type t:
                            result.Add(t);
                            break;
                        case FieldInfo f:
                            result.Add(f.DeclaringType!);
                            result.Add(f.FieldType);
                            break;
                        case MethodBase mb:
                            result.Add(mb.DeclaringType!);
                            if (mb is MethodInfo mi)
                            {
                                result.Add(mi.ReturnType);
                                if (mi.IsGenericMethod)
                                {
                                    result.AddRange(mi.GetGenericArguments());
                                }
                            }
                            result.AddRange(mb.GetParameters().Select(p => p.ParameterType));
                            break;
                    }
                    break;
                default:
                    // InlineBrTarget, InlineI, InlineString, InlineSig, ShortInlineR: four bytes.
                    i += 4;
                    break;
            }
        }
        return result;
    }
}
