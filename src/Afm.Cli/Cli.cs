using System.Globalization;
using Afm.Gpu.Accelerators;
using Afm.Gpu.IO;
using Afm.Gpu.Data;
using Afm.Gpu.Explain;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Synthetic;
using Afm.Gpu.Training;
using CommandLine;

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
            s.HelpWriter = stderr;
            s.CaseInsensitiveEnumValues = true;
            s.AutoVersion = false;
        });
        var parsed = parser.ParseArguments<TrainOptions, EvaluateOptions, PredictOptions, ExplainOptions, ExportOptions, SelfTestOptions, DevicesOptions, DemoDataOptions>(args);
        try
        {
            return parsed.MapResult(
                (TrainOptions o) => new TrainCommand(o, stdout, stderr).Run(),
                (EvaluateOptions o) => Evaluate(o, stdout, stderr),
                (PredictOptions o) => Predict(o, stdout, stderr),
                (ExplainOptions o) => ExplainCommand.Run(o, stdout, stderr),
                (ExportOptions o) => ExplainCommand.Export(o, stderr),
                (SelfTestOptions o) => SelfTestCommand(o, stdout, stderr),
                (DevicesOptions _) => Devices(stdout),
                (DemoDataOptions o) => DemoDataCommand.Run(o, stdout),
                errs => errs.All(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.HelpVerbRequestedError or ErrorType.VersionRequestedError) ? 0 : UsageError);
        }
        catch (Exception e) when (IsUserError(e))
        {
            stderr.WriteLine($"afm-gpu: error: {e.Message}");
            return UserError;
        }
    }

    private static bool IsUserError(Exception e) => e is DataFormatException or ModelFormatException or AcceleratorUnavailableException
        or ArgumentException or IOException or UnauthorizedAccessException or OperationCanceledException;

    internal static Accelerator OpenAccelerator(IAcceleratorOptions o, TextWriter stderr)
    {
        var acc = AcceleratorRegistry.Create(o.Accelerator, out string note, o.Threads);
        stderr.WriteLine(note);
        return acc;
    }

    private static int Evaluate(EvaluateOptions o, TextWriter stdout, TextWriter stderr)
    {
        var model = Afm.Gpu.AfmEngine.LoadModel(o.Model);
        var data = LibFmReader.Read(o.Data, new LibFmReadOptions { FeatureCount = model.FeatureCount });
        using var acc = OpenAccelerator(o, stderr);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        var pred = predictor.Predict(data);
        var m = Metrics.Compute(pred, data.Labels, model.Loss);
        stdout.WriteLine($"{o.Data}: {m.Rows} rows  {m.Format(model.Loss)}");
        return 0;
    }

    private static int Predict(PredictOptions o, TextWriter stdout, TextWriter stderr)
    {
        if (o.TopPairs < 0) throw new ArgumentException("--top-pairs must not be negative");
        var model = Afm.Gpu.AfmEngine.LoadModel(o.Model);
        var data = LibFmReader.Read(o.Data, new LibFmReadOptions { FeatureCount = model.FeatureCount });
        var map = o.FeatureMap is null ? null : FeatureMap.Load(o.FeatureMap);
        using var acc = OpenAccelerator(o, stderr);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        var pred = predictor.Predict(data);
        IEnumerable<string> lines = pred.Select(p => p.ToString("R", CultureInfo.InvariantCulture));
        if (o.TopPairs > 0)
        {
            var explained = new Explainer(predictor).Explain(data);
            lines = lines.Select((line, r) => line + "\t" + string.Join(' ', explained[r].Pairs.Take(o.TopPairs).Select(p =>
                $"{Name(map, p.FeatureI)}*{Name(map, p.FeatureJ)}={p.Attention.ToString("G4", CultureInfo.InvariantCulture)}:{p.Contribution.ToString("G4", CultureInfo.InvariantCulture)}")));
        }
        if (o.Output is null)
        {
            foreach (string line in lines) stdout.WriteLine(line);
            return 0;
        }
        AtomicFile.WriteLines(o.Output, lines);
        stderr.WriteLine($"wrote {pred.Length} predictions to {o.Output}");
        return 0;
    }

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
        stdout.WriteLine($"{"selector",-10} {"kind",-6} {"memory",10} {"units",6}  name / details");
        foreach (var d in devices)
        {
            stdout.WriteLine($"{d.Selector,-10} {(d.IsGpu ? "gpu" : "cpu"),-6} {d.MemoryBytes / (1024.0 * 1024 * 1024),7:F1} GiB {d.ComputeUnits,6}  {d.Name}");
            stdout.WriteLine($"{"",-36}{d.Details}");
        }
        foreach (var n in notes) stdout.WriteLine($"(none) {n}");
        return 0;
    }
}
