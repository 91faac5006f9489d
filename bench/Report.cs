using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Afm.Bench;

/// <summary>Our figures next to PyTorch's for one shape and accelerator; ratios are ours / torch.</summary>
internal sealed record TorchComparison(
    string Shape, string Accelerator, string TorchDevice,
    double OursTrain, double OursKernelOnly, double OursInfer, double TorchTrain, double TorchInfer, string? Error)
{
    public double TrainRatio => OursTrain / TorchTrain;
    public double KernelOnlyRatio => OursKernelOnly / TorchTrain;
    public double InferRatio => OursInfer / TorchInfer;
}

/// <summary>The settings of a run, as the JSON document records them.</summary>
internal sealed record BenchSettings(
    int Warmup, int MinSteps, double MinSeconds, bool Quick, int CpuThreads, IReadOnlyList<string> Accelerators, IReadOnlyList<string> Shapes);

/// <summary>The JSON document of a run.</summary>
internal sealed record BenchReport(
    DateTimeOffset Timestamp, string Cpu, string Os, string Runtime, bool ReleaseBuild, int LogicalCores,
    CpuPeak CpuPeak, string FlopFormula, BenchSettings Settings,
    List<Measurement> Results, List<TorchComparison> Torch, List<string> Notes);

/// <summary>Serialization code generated at compile time, so that the trimmed publish keeps what it needs.</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(BenchReport))]
internal sealed partial class BenchJson : JsonSerializerContext;

/// <summary>Text tables and the JSON file.</summary>
internal static class Report
{
    private static readonly BenchJson Json = new(new JsonSerializerOptions(BenchJson.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // a file, not HTML: keep '+' readable
    });

    public static void PrintResults(TextWriter w, IReadOnlyList<Measurement> results)
    {
        string[] header = ["shape", "accelerator", "train/s", "kernel-only/s", "infer/s", "GFLOP/s", "% peak", "step % peak", "products % peak", "device MiB", "host alloc/step"];
        var rows = results.Select(m => new[]
        {
            m.Shape, m.Accelerator, Rate(m.Train.SamplesPerSecond), Rate(m.KernelOnly.SamplesPerSecond), Rate(m.Infer.SamplesPerSecond),
            m.KernelGflops.ToString("F1", CultureInfo.InvariantCulture),
            m.PercentOfPeak is double p ? p.ToString("F1", CultureInfo.InvariantCulture) : "-",
            m.StepPercentOfPeak is double sp ? sp.ToString("F1", CultureInfo.InvariantCulture) : "-",
            m.ProductPercentOfPeak is double pp ? pp.ToString("F1", CultureInfo.InvariantCulture) : "-",
            (m.DeviceBytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture), Bytes(m.Train.AllocBytesPerStep),
        });
        Print(w, header, rows, leftColumns: 2);
    }

    public static void PrintTorch(TextWriter w, IReadOnlyList<TorchComparison> comparisons)
    {
        string[] header = ["shape", "accelerator", "torch", "train/s", "torch train/s", "train ratio", "kernel-only ratio", "infer/s", "torch infer/s", "infer ratio"];
        var rows = comparisons.Select(c => c.Error is not null
            ? [c.Shape, c.Accelerator, c.TorchDevice, Rate(c.OursTrain), "failed", "-", "-", Rate(c.OursInfer), "-", "-"]
            : new[]
            {
                c.Shape, c.Accelerator, c.TorchDevice, Rate(c.OursTrain), Rate(c.TorchTrain), Ratio(c.TrainRatio), Ratio(c.KernelOnlyRatio),
                Rate(c.OursInfer), Rate(c.TorchInfer), Ratio(c.InferRatio),
            });
        Print(w, header, rows, leftColumns: 3);
        foreach (var c in comparisons.Where(c => c.Error is not null))
            w.WriteLine($"  torch failed on {c.Shape} ({c.TorchDevice}): {c.Error}");
    }

    public static void WriteJson(string path, BenchReport report)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, JsonSerializer.Serialize(report, Json.BenchReport) + "\n");
    }

    public static string Rate(double perSecond) => perSecond.ToString("N0", CultureInfo.InvariantCulture);

    private static string Ratio(double r) => double.IsFinite(r) ? r.ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";

    public static string Bytes(double b) => b switch
    {
        < 1024 => $"{b:F0} B",
        < 1048576 => $"{b / 1024:F1} KiB",
        _ => $"{b / 1048576:F1} MiB",
    };

    /// <summary>Prints a table: the first <paramref name="leftColumns"/> columns left-aligned, the rest right-aligned.</summary>
    private static void Print(TextWriter w, string[] header, IEnumerable<string[]> rows, int leftColumns)
    {
        var all = new List<string[]> { header };
        all.AddRange(rows);
        var width = Enumerable.Range(0, header.Length).Select(c => all.Max(r => r[c].Length)).ToArray();
        string Line(string[] r) => string.Join("  ", r.Select((s, c) => c < leftColumns ? s.PadRight(width[c]) : s.PadLeft(width[c]))).TrimEnd();
        w.WriteLine(Line(header));
        w.WriteLine(new string('-', width.Sum() + 2 * (width.Length - 1)));
        foreach (var r in all.Skip(1)) w.WriteLine(Line(r));
    }
}
