using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Reflection;
using Afm.Gpu;
using Afm.Gpu.Accelerators;
using Afm.Gpu.IO;
using Afm.Gpu.Data;
using Afm.Gpu.Explain;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Synthetic;
using Afm.Gpu.Training;
using CommandLine;
using CommandLine.Text;

namespace Afm.Cli;

/// <summary>The afm-gpu command. <see cref="Run"/> never throws for a user's mistake: it prints one line and returns non-zero.</summary>
public static class Cli
{
    /// <summary>Exit code of a user error (bad input, bad option, missing device).</summary>
    public const int UserError = 1;
    /// <summary>Exit code of a command-line syntax error.</summary>
    public const int UsageError = 2;

    /// <summary>Runs the command line and returns the exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        using var parser = new Parser(s =>
        {
            s.HelpWriter = null;
            s.CaseInsensitiveEnumValues = true;
            s.AutoVersion = false;
        });
        Type[] verbs = Verbs;
        if (args is ["--version"] || (args is [_, "--version"] && verbs.Any(v => VerbOf(v) == args[0])))
        {
            stdout.WriteLine(Version);
            return 0;
        }
        if (TrailingOptionWithoutValue(args, verbs) is { } missing) return SyntaxError(missing, args[0], stderr);
        var parsed = parser.ParseArguments(args, verbs);
        try
        {
            // Only training runs data-parallel; N copies of another command would print and write N times.
            if (Afm.Gpu.Distributed.MpiCluster.IsLaunched && parsed.Value is not (null or TrainOptions)
                && Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") != "1")
                throw new ArgumentException($"'{args[0]}' does not run under mpirun (only train is data-parallel); run it as one process");
            return parsed.MapResult(
                (TrainOptions o) => new TrainCommand(o, stdout, stderr).Run(),
                (EvaluateOptions o) => Evaluate(o, stdout, stderr),
                (PredictOptions o) => Predict(o, stdout, stderr),
                (ExplainOptions o) => ExplainCommand.Run(o, stdout, stderr),
                (ExportOptions o) => ExplainCommand.Export(o, stderr),
                (SelfTestOptions o) => SelfTestCommand(o, stdout, stderr),
                (DevicesOptions _) => Devices(stdout),
                (DemoDataOptions o) => DemoDataCommand.Run(o, stdout),
                (CacheOptions o) => CacheCommand(o, stdout),
                errs => Syntax(parsed, errs.ToList(), args, stdout, stderr));
        }
        catch (Exception e)
        {
            stderr.WriteLine($"afm-gpu: error: {Printable.Escape(Describe(e))}");
            return UserError;
        }
    }

    /// <summary>Help when asked for; otherwise one line naming the first syntax error and where to find help.</summary>
    private static int Syntax(ParserResult<object> parsed, List<Error> errs, string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (errs.All(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.HelpVerbRequestedError or ErrorType.VersionRequestedError))
        {
            // Help without a command lists the commands; help of a command, its options.
            bool commands = parsed.TypeInfo.Current == typeof(NullInstance);
            stdout.WriteLine(HelpText.AutoBuild(parsed, h => h, e => e, verbsIndex: commands));
            return 0;
        }
        var error = errs.FirstOrDefault(e => e.Tag is not (ErrorType.HelpRequestedError or ErrorType.HelpVerbRequestedError or ErrorType.VersionRequestedError)) ?? errs[0];
        string what = error switch
        {
            BadVerbSelectedError b => $"unknown command '{b.Token}' ({Commands})",
            NoVerbSelectedError => $"no command given ({Commands})",
            UnknownOptionError u => $"unknown option '{u.Token}'",
            BadFormatConversionError b => $"{Flags(b.NameInfo)}: invalid value{ValueOf(b.NameInfo, args)}",
            MissingValueOptionError m => $"{Flags(m.NameInfo)} needs a value",
            MissingRequiredOptionError m => $"{Flags(m.NameInfo)} is required",
            RepeatedOptionError r => $"{Flags(r.NameInfo)} is given more than once",
            _ => SentenceBuilder.Create().FormatError(error).TrimEnd('.'),
        };
        return SyntaxError(what, VerbOf(parsed.TypeInfo.Current), stderr);
    }

    private static readonly Type[] Verbs = [typeof(TrainOptions), typeof(EvaluateOptions), typeof(PredictOptions), typeof(ExplainOptions), typeof(ExportOptions), typeof(SelfTestOptions), typeof(DevicesOptions), typeof(DemoDataOptions), typeof(CacheOptions)];

    private static readonly string Commands = "commands: " + string.Join(", ", Verbs.Select(VerbOf));

    /// <summary>The program's name and version (with the commit it was built from), as <c>--version</c> prints it.</summary>
    internal static string Version =>
        "afm-gpu " + (typeof(Cli).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                      ?? typeof(Cli).Assembly.GetName().Version?.ToString() ?? "unknown");

    private static int SyntaxError(string what, string? verb, TextWriter stderr)
    {
        stderr.WriteLine($"afm-gpu: error: {Printable.Escape(what)}");
        stderr.WriteLine(verb is null ? "Try 'afm-gpu --help'." : $"Try 'afm-gpu {verb} --help'.");
        return UsageError;
    }

    private static string? VerbOf(Type type) => type.GetCustomAttributes(typeof(VerbAttribute), true).OfType<VerbAttribute>().FirstOrDefault()?.Name;

    private static string Flags(NameInfo name) => Flags(name.ShortName, name.LongName);

    private static string Flags(string shortName, string longName) =>
        shortName.Length > 0 && longName.Length > 0 ? $"-{shortName}/--{longName}"
        : longName.Length > 0 ? $"--{longName}" : $"-{shortName}";

    private static string ValueOf(NameInfo name, string[] args)
    {
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (name.LongName.Length > 0 && a.StartsWith($"--{name.LongName}=", StringComparison.Ordinal)) return $" '{a[(name.LongName.Length + 3)..]}'";
            if ((a == $"-{name.ShortName}" && name.ShortName.Length > 0) || a == $"--{name.LongName}")
                return i + 1 < args.Length ? $" '{args[i + 1]}'" : "";
        }
        return "";
    }

    /// <summary>
    /// The parser takes an option that needs a value as the last argument without one (and runs with the
    /// default); that is a syntax error.
    /// </summary>
    [UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "The option classes are this assembly's, which a trimmed publish keeps whole (scripts/publish-trim.targets).")]
    private static string? TrailingOptionWithoutValue(string[] args, Type[] verbs)
    {
        if (args.Length < 2) return null;
        var type = verbs.FirstOrDefault(t => VerbOf(t) == args[0]);
        if (type is null) return null;
        string last = args[^1];
        foreach (var p in type.GetProperties())
        {
            if (p.PropertyType == typeof(bool) || p.GetCustomAttribute<OptionAttribute>() is not { } opt) continue;
            if ((opt.ShortName.Length > 0 && last == "-" + opt.ShortName) || last == "--" + opt.LongName)
                return Flags(opt.ShortName, opt.LongName) + " needs a value";
        }
        return null;
    }

    /// <summary>The one-line message for an exception: the user's mistake as the library words it.</summary>
    internal static string Describe(Exception e) => string.Join("; ", Message(e).Split(["\r\n", "\n", "\r"], StringSplitOptions.RemoveEmptyEntries));

    private static string Message(Exception e)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerExceptions[0];
        while (e is TargetInvocationException { InnerException: { } inner }) e = inner;
        return e switch
        {
            FileNotFoundException f when f.FileName is not null => $"{f.FileName}: file not found",
            DirectoryNotFoundException d when MissingPath(d) is { } path => $"{path}: file not found (directory {Path.GetDirectoryName(path)} does not exist)",
            ArgumentException a when a.ParamName is not null => a.Message.Replace($" (Parameter '{a.ParamName}')", "", StringComparison.Ordinal),
            OutOfMemoryException => "out of memory: the data, the model (-k/--dim, -t/--attention-factor, feature ids) or the batch (--batch) is too large for this machine",
            ILGPU.Runtime.AcceleratorException or ILGPU.CapabilityNotSupportedException => $"device error: {e.Message}",
            DataFormatException { File: DataFiles.StandardInput } d => d.Line > 0 ? $"standard input:{d.Line}: {d.Problem}" : $"standard input: {d.Problem}",
            _ when IsUserError(e) => e.Message,
            _ => $"internal error: {e.GetType().Name}: {e.Message}",
        };
    }

    /// <summary>The path of the runtime's "Could not find a part of the path '...'", which names no file otherwise.</summary>
    private static string? MissingPath(DirectoryNotFoundException d)
    {
        const string Prefix = "Could not find a part of the path '";
        return d.Message.StartsWith(Prefix, StringComparison.Ordinal) && d.Message.EndsWith("'.", StringComparison.Ordinal)
            ? d.Message[Prefix.Length..^2] : null;
    }

    private static bool IsUserError(Exception e) => e is DataFormatException or ModelFormatException or AcceleratorUnavailableException
        or ArgumentException or IOException or UnauthorizedAccessException or OperationCanceledException
        or TrainingDivergedException or LimitExceededException or NotSupportedException;

    /// <summary>The most --threads accepts: 4 workers per core.</summary>
    internal static int MaxThreads => 4 * Environment.ProcessorCount;

    internal static Accelerator OpenAccelerator(IAcceleratorOptions o, TextWriter stderr, string? selector = null)
    {
        if (o.Threads < 0 || o.Threads > MaxThreads)
            throw new ArgumentException($"--threads {o.Threads}: must be in 0..{MaxThreads} (0 = all cores; at most 4 per core, this machine has {Environment.ProcessorCount})");
        var acc = AcceleratorRegistry.Create(selector ?? o.Accelerator, out string note, o.Threads);
        stderr.WriteLine(Printable.Escape(note));
        return acc;
    }

    /// <summary>
    /// Refuses an output that is one of the inputs (it would be replaced), then checks that it can be written,
    /// before any work is done.
    /// </summary>
    internal static void CheckOutput(string option, string output, params string?[] inputs)
    {
        foreach (string? input in inputs)
            if (input is not null && SamePath(input, output))
                throw new ArgumentException($"{option} {output}: is also an input of this command ({input}); writing it would replace that file");
        try
        {
            AtomicFile.EnsureWritable(output);
        }
        catch (IOException e)
        {
            string prefix = $"cannot write '{output}': ";
            throw new IOException($"{option} {output}: {(e.Message.StartsWith(prefix, StringComparison.Ordinal) ? e.Message[prefix.Length..] : e.Message)}", e);
        }
    }

    internal static bool SamePath(string a, string b) => FilePaths.Same(a, b);

    /// <summary>Whether <paramref name="path"/> is this process's standard output (<c>/dev/stdout</c>, or the file
    /// or pipe it is sent to), other than <c>/dev/null</c>.</summary>
    internal static bool IsStandardOutput(string path) =>
        !OperatingSystem.IsWindows() && File.Exists("/dev/stdout") && SamePath(path, "/dev/stdout") && !SamePath(path, "/dev/null");

    private static int Evaluate(EvaluateOptions o, TextWriter stdout, TextWriter stderr)
    {
        var model = Afm.Gpu.AfmEngine.LoadModel(o.Model);
        using var files = new DataFiles(o, stdout);
        var data = files.Open(o.Data, ReadOptionsFor(model, labelsMatter: true));
        using var acc = OpenAccelerator(o, stderr);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        var m = DataFiles.Score(predictor, data, checkFinite: true, files.Known);
        files.ReportUnknown(stderr, o.Data);
        stdout.WriteLine($"{o.Data}: {m.Rows} rows  {m.Format(model.Loss)}");
        return 0;
    }

    private static int Predict(PredictOptions o, TextWriter stdout, TextWriter stderr)
    {
        if (o.TopPairs < 0) throw new ArgumentException("--top-pairs must not be negative");
        if (o.Output is not null) CheckOutput("-o/--output", o.Output, o.Model, o.Data, o.FeatureMap);
        var model = Afm.Gpu.AfmEngine.LoadModel(o.Model);
        var map = o.FeatureMap is null ? null : FeatureMap.Load(o.FeatureMap);
        using var files = new DataFiles(o, stderr); // stdout carries the predictions: messages about the data go to stderr
        RowSource data;
        if (o.TopPairs > 0 && DataFiles.NamesFromText(o.Data, model, map))
        {
            (var named, map) = files.ReadAllNamed(o.Data, model, map);
            data = RowSource.Of(named);
        }
        else data = files.Open(o.Data, ReadOptionsFor(model, labelsMatter: false));
        using var acc = OpenAccelerator(o, stderr);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        long written = 0;
        // Block by block (a dataset in memory is one block), so that a cache of any size is predicted in bounded memory.
        IEnumerable<string> Lines()
        {
            foreach (var raw in data.Blocks())
            {
                var block = files.Known(raw);
                var pred = predictor.Predict(block);
                Predictor.CheckFinite(pred, data.Name, written);
                var explained = o.TopPairs > 0 ? new Explainer(predictor).Explain(block) : null;
                for (int r = 0; r < pred.Length; r++)
                {
                    string line = pred[r].ToString("R", CultureInfo.InvariantCulture);
                    if (explained is not null)
                        line += "\t" + string.Join(' ', explained[r].Pairs.Take(o.TopPairs).Select(p =>
                            $"{Name(map, p.FeatureI)}*{Name(map, p.FeatureJ)}={p.Attention.ToString("G4", CultureInfo.InvariantCulture)}:{p.Contribution.ToString("G4", CultureInfo.InvariantCulture)}"));
                    yield return line;
                }
                written += pred.Length;
            }
        }
        if (o.Output is null)
        {
            foreach (string line in Lines()) stdout.WriteLine(line);
            files.ReportUnknown(stderr, o.Data);
            return 0;
        }
        AtomicFile.WriteLines(o.Output, Lines());
        files.ReportUnknown(stderr, o.Data);
        stderr.WriteLine($"wrote {written} predictions to {o.Output}");
        return 0;
    }

    private static int CacheCommand(CacheOptions o, TextWriter stdout)
    {
        if (o.ChunkRows <= 0) throw new ArgumentException($"--chunk-rows {o.ChunkRows}: must be at least 1");
        CheckOutput("-o/--output", o.Output, o.Input);
        string input = DataFiles.StandardInputAs(o.Input);
        if (CacheFile.IsCache(input)) throw new ArgumentException($"{o.Input}: is already an afm-gpu data cache");
        // Asked before the rows are read: a pipe cannot be looked at twice, and its length is not known.
        bool seekable = Afm.Gpu.Data.DataCache.IsSeekable(input);
        string of = seekable && LibFmReader.IsGzip(input) ? "gzip" : "text";
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var encoding = TrainCommand.EncodingOf(o.Format, o.HashBits, o.LabelColumn, o.IgnoreColumns, o.NumericColumns, o.BucketColumns, stdout);
        var h = CacheFile.Write(input, o.Output, LibFmReadOptions.Reading(encoding), o.ChunkRows);
        double seconds = sw.Elapsed.TotalSeconds;
        stdout.WriteLine($"cached {o.Input}: {h.Rows} rows, {h.NonZeros} non-zeros, {h.FeatureCount} features, up to {h.MaxNnz} per row, " +
            $"{h.ChunkCount} chunks of {h.ChunkRows} rows; {seconds:F1} s" + (seekable ? $", {h.SourceLength / 1e6 / Math.Max(seconds, 1e-9):F0} MB/s of {of}" : "") + $"; written to {o.Output}");
        return 0;
    }

    /// <summary>Reads data for <paramref name="model"/> in its format and hashing, checking what it needs as it is read so that a problem names its line.</summary>
    internal static LibFmReadOptions ReadOptionsFor(AfmModel model, bool labelsMatter) => LibFmReadOptions.For(model, labelsMatter);

    private static string Name(FeatureMap? map, int id) => map?.NameOf(id) ?? $"f{id}";

    private static int SelfTestCommand(SelfTestOptions o, TextWriter stdout, TextWriter stderr)
    {
        using var candidate = OpenAccelerator(o, stderr);
        using var reference = new Afm.Gpu.Accelerators.Cpu.CpuAccelerator(o.Threads);
        stdout.WriteLine($"selftest: {candidate.Descriptor.Selector} ({candidate.Descriptor.Name}) against the CPU accelerator, seed {o.Seed}");
        var rows = Afm.Gpu.Diagnostics.SelfTest.Run(candidate, reference, o.Seed);
        stdout.Write(Afm.Gpu.Diagnostics.SelfTest.Format(rows));
        int failed = rows.Count(r => !r.Pass);
        stdout.WriteLine(failed == 0 ? $"all {rows.Count} checks passed" : $"{failed} of {rows.Count} checks FAILED");
        return failed == 0 ? 0 : 3;
    }

    private static int Devices(TextWriter stdout)
    {
        var notes = new List<string>();
        var devices = AcceleratorRegistry.Enumerate(notes);
        stdout.WriteLine($"{"selector",-14} {"kind",-6} {"memory",10} {"units",6}  name / details");
        foreach (var d in devices)
        {
            stdout.WriteLine($"{d.Selector,-14} {(d.IsGpu ? "gpu" : "cpu"),-6} {d.MemoryBytes / (1024.0 * 1024 * 1024),7:F1} GiB {d.ComputeUnits,6}  {d.Name}");
            stdout.WriteLine($"{"",-40}{d.Details}");
        }
        foreach (var n in notes) stdout.WriteLine($"(none) {n}");
        return 0;
    }
}
