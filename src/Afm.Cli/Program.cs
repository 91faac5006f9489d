using Afm.Cli;
using CommandLine;

return Cli.Run(args, Console.Out, Console.Error);
