using Afm.Cli;
using Afm.Gpu.Distributed;

// mpirun gives each rank a pseudo-terminal for its output, which System.Console would set up as an
// interactive terminal, writing the terminal's keypad-mode escape codes into the job's output. With no
// terminal type it writes only the text.
if (MpiCluster.IsLaunched) Environment.SetEnvironmentVariable("TERM", null);

return Cli.Run(args, Console.Out, Console.Error);
