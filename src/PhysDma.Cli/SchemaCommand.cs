using System.CommandLine;
using PhysDma.Scenarios;

namespace PhysDma.Cli;

/// <summary><c>physdma schema scenario|machine</c>: prints the JSON Schema of scenario or machine files (docs/schema/ holds the same text).</summary>
internal static class SchemaCommand
{
    public static Command Build(TextWriter stdout)
    {
        var kind = new Argument<string>("KIND") { Description = "scenario or machine" };
        kind.AcceptOnlyFromAmong([.. SchemaGenerator.Kinds]);
        var command = new Command("schema", "print the JSON Schema of scenario or machine files (for editor completion and checking)") { kind };
        command.SetAction(p =>
        {
            stdout.Write(SchemaGenerator.Text(p.GetRequiredValue(kind)));
            return PhysDmaCli.ExitOk;
        });
        return command;
    }
}
