using PhysDma.Cli;

return PhysDmaCli.Invoke(args, Console.Out, Console.Error);
