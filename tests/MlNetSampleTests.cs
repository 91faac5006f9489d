using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Model;
using Afm.Gpu.Model.Onnx;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>docs/mlnet-onnx.md's sample, compiled and run here: ML.NET scores an exported model through ApplyOnnxModel.</summary>
public sealed class MlNetSampleTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-mlnet-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MlNetSample()
    {
        var model = Fixtures.RandomModel(ModelKind.Afm, 120, 8, 4, LossKind.Squared, seed: 11);
        model.W0[0] = 3f;
        model.LabelMin = 1;
        model.LabelMax = 5;
        string onnxPath = Path.Combine(_dir, "model.onnx");
        OnnxExport.Export(model, onnxPath);
        var console = new StringWriter();
        var saved = Console.Out;
        Console.SetOut(console);
        float[] predictions;
        try
        {
            // sample begin
            var mlContext = new MLContext();

            // Rows padded to Slots non-zeros: a value of 0 marks a padding slot (its id must still be a valid one, e.g. 0).
            var rows = new[]
            {
                AfmRow.Of([7, 61, 100], [1f, 1f, 1f]),
                AfmRow.Of([3, 50, 90, 112], [1f, 1f, 0.5f, 2f]),
                AfmRow.Of([42], [1f]),
            };
            IDataView data = mlContext.Data.LoadFromEnumerable(rows);

            // The graph's inputs are [batch, nnz]; ML.NET feeds one row at a time, so fix them at [1, Slots].
            var shapes = new Dictionary<string, int[]> { ["ids"] = [1, AfmRow.Slots], ["values"] = [1, AfmRow.Slots] };
            var pipeline = mlContext.Transforms.ApplyOnnxModel(
                outputColumnNames: ["prediction", "score"], inputColumnNames: ["ids", "values"],
                modelFile: onnxPath, shapeDictionary: shapes, gpuDeviceId: null, fallbackToCpu: false);
            var scored = pipeline.Fit(data).Transform(data);

            predictions = [.. mlContext.Data.CreateEnumerable<AfmScore>(scored, reuseRowObject: false).Select(s => s.Prediction[0])];
            foreach (float p in predictions) Console.WriteLine($"predicted rating {p:F3}");
            // sample end
        }
        finally
        {
            Console.SetOut(saved);
        }
        output.WriteLine(console.ToString());

        // The same rows through the native predictor.
        var builder = new SparseDatasetBuilder();
        builder.Add([7, 61, 100], [1f, 1f, 1f], 0).Add([3, 50, 90, 112], [1f, 1f, 0.5f, 2f], 0).Add([42], [1f], 0);
        using var acc = new CpuAccelerator(1);
        using var predictor = new Predictor(acc, model);
        float[] native = predictor.Predict(builder.Build(model.FeatureCount));
        Assert.Equal(native.Length, predictions.Length);
        for (int i = 0; i < native.Length; i++)
            Assert.True(Math.Abs(native[i] - predictions[i]) <= 1e-5 * Math.Max(Math.Abs(native[i]), 1), $"row {i}: ML.NET {predictions[i]}, native {native[i]}");
        Assert.Equal(3, console.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    // types begin
    public sealed class AfmRow
    {
        public const int Slots = 8;

        [ColumnName("ids"), VectorType(Slots)]
        public long[] Ids { get; set; } = new long[Slots];

        [ColumnName("values"), VectorType(Slots)]
        public float[] Values { get; set; } = new float[Slots];

        public static AfmRow Of(int[] ids, float[] values)
        {
            var row = new AfmRow();
            for (int i = 0; i < ids.Length; i++) (row.Ids[i], row.Values[i]) = (ids[i], values[i]);
            return row;
        }
    }

    public sealed class AfmScore
    {
        [ColumnName("prediction")]
        public float[] Prediction { get; set; } = [];

        [ColumnName("score")]
        public float[] Score { get; set; } = [];
    }
    // types end

    [Fact]
    public void DocsHoldTheSample()
    {
        string root = SafetensorsTests.RepoRoot();
        string source = File.ReadAllText(Path.Combine(root, "tests", "MlNetSampleTests.cs"));
        string page = File.ReadAllText(Path.Combine(root, "docs", "mlnet-onnx.md"));
        Assert.Contains("```csharp\n" + Prelude + Between(source, "            // sample begin\n", "            // sample end", 12) + "\n\n"
            + Between(source, "    // types begin\n", "    // types end", 4) + "\n```", page);
    }

    internal const string Prelude = "using Microsoft.ML;\nusing Microsoft.ML.Data;\n\nstring onnxPath = \"model.onnx\"; // afm-gpu export -m model.afm --format onnx -o model.onnx\nfloat[] predictions;\n";

    private static string Between(string source, string begin, string end, int indent)
    {
        int b = source.IndexOf(begin, StringComparison.Ordinal) + begin.Length;
        int e = source.IndexOf(end, b, StringComparison.Ordinal);
        return string.Join('\n', source[b..e].Split('\n').Select(l => l.Length >= indent ? l[indent..] : l.TrimStart())).TrimEnd();
    }
}
