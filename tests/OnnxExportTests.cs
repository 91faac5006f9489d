using System.Diagnostics;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Model.Onnx;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>
/// The ONNX export run by ONNX Runtime against the native CPU predictor, element-wise. Predictions: 1e-5 relative,
/// |onnx − native| ≤ 1e-5 · max(|native|, |onnx|), on every row (both engines sum the score's terms in double and
/// round once, so a prediction near 0 keeps its relative precision). Raw scores and attention weights: 1e-5 relative
/// with the scale floored at 1, |onnx − native| ≤ 1e-5 · max(|native|, |onnx|, 1): a logistic model's score or an
/// attention weight near 0 comes out of float sums (the attention network's) whose rounding follows the size of the
/// terms, not of the result. The printed figures give the largest plain relative and absolute differences.
/// </summary>
public sealed class OnnxExportTests(ITestOutputHelper output) : IDisposable
{
    private const double Rtol = 1e-5;
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-onnx-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The ONNX Runtime outputs for <paramref name="data"/>, its rows padded to <paramref name="width"/> slots.</summary>
    internal static (float[] Score, float[] Prediction, float[][]? Attention) RunOnnx(string path, SparseDataset data, int width)
    {
        using var session = new InferenceSession(path);
        var ids = new DenseTensor<long>([data.Rows, width]);
        var values = new DenseTensor<float>([data.Rows, width]);
        for (int r = 0; r < data.Rows; r++)
        {
            var rowIds = data.RowIds(r);
            var rowValues = data.RowValues(r);
            for (int s = 0; s < rowIds.Length; s++)
            {
                ids[r, s] = rowIds[s];
                values[r, s] = rowValues[s];
            }
        }
        var inputs = new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor("ids", ids), NamedOnnxValue.CreateFromTensor("values", values) };
        using var results = session.Run(inputs);
        float[] score = results.First(x => x.Name == "score").AsEnumerable<float>().ToArray();
        float[] prediction = results.First(x => x.Name == "prediction").AsEnumerable<float>().ToArray();
        float[][]? attention = null;
        if (results.FirstOrDefault(x => x.Name == "attention") is { } a)
        {
            var t = a.AsTensor<float>();
            Assert.Equal([data.Rows, ModelShape.PairCount(width)], t.Dimensions.ToArray());
            int pairs = ModelShape.PairCount(width);
            var flat = t.ToArray();
            attention = Enumerable.Range(0, data.Rows).Select(r => flat.AsSpan(r * pairs, pairs).ToArray()).ToArray();
        }
        return (score, prediction, attention);
    }

    /// <summary>Rows with the given non-zero counts: distinct ids, values non-zero (a 0 value is padding to the graph).</summary>
    internal static SparseDataset Rows(int features, int[] lengths, int seed)
    {
        var rng = new Random(seed);
        var builder = new SparseDatasetBuilder();
        foreach (int n in lengths)
        {
            var ids = Enumerable.Range(0, features).OrderBy(_ => rng.Next()).Take(n).ToArray();
            var vals = ids.Select(_ => rng.Next(3) == 0 ? 1f : (float)(rng.NextDouble() * 1.8 + 0.1) * (rng.Next(2) == 0 ? -1 : 1)).ToArray();
            builder.Add(ids, vals, rng.Next(2));
        }
        return builder.Build(features);
    }

    private sealed class Worst(string what, bool relativeOnly = false)
    {
        public double Rel, Abs;
        public int Count;

        public void Check(float actual, float expected, string where)
        {
            Assert.True(float.IsFinite(actual), $"{what} {where}: ONNX gives {actual}");
            double d = Math.Abs((double)actual - expected), scale = Math.Max(Math.Abs(expected), Math.Abs(actual));
            Abs = Math.Max(Abs, d);
            if (scale > 0) Rel = Math.Max(Rel, d / scale);
            Count++;
            Assert.True(d <= Rtol * (relativeOnly ? scale : Math.Max(scale, 1)), $"{what} {where}: ONNX {actual:R}, native {expected:R}, |diff| {d:G3}");
        }

        public override string ToString() => $"{what}: {Count} values, largest relative difference {Rel:G3}, absolute {Abs:G3}";
    }

    /// <summary>Exports, runs ONNX Runtime at <paramref name="width"/> slots a row, compares with the native predictor; prints the figures.</summary>
    private void Compare(AfmModel model, SparseDataset data, int width, string label)
    {
        string path = Path.Combine(_dir, "m.onnx");
        OnnxExport.Export(model, path);
        var (score, prediction, attention) = RunOnnx(path, data, width);

        using var acc = new CpuAccelerator(1);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        float[] rawNative = predictor.PredictRaw(data);
        float[] predNative = predictor.Predict(data, out var attNative);

        var s = new Worst("score");
        var p = new Worst("prediction", relativeOnly: true);
        var a = new Worst("attention");
        Assert.Equal(data.Rows, score.Length);
        Assert.Equal(data.Rows, prediction.Length);
        Assert.NotNull(attention);
        for (int r = 0; r < data.Rows; r++)
        {
            s.Check(score[r], rawNative[r], $"row {r}");
            p.Check(prediction[r], predNative[r], $"row {r}");
            int np = ModelShape.PairCount(data.RowLength(r));
            Assert.Equal(np, attNative[r].Length);
            for (int q = 0; q < attention![r].Length; q++)
                a.Check(attention[r][q], q < np ? attNative[r][q] : 0f, $"row {r} pair {q}");
        }
        output.WriteLine($"{label}: {data.Rows} rows padded to {width} slots");
        output.WriteLine($"  {s}");
        output.WriteLine($"  {p}");
        output.WriteLine($"  {a}");
    }

    private static AfmModel Model(ModelKind kind, LossKind loss, int features, int seed)
    {
        var m = Fixtures.RandomModel(kind, features, 8, 6, loss, seed);
        if (loss == LossKind.Squared)
        {
            // A narrow label range, so that some predictions are clipped at each end.
            m.LabelMin = -0.3f;
            m.LabelMax = 0.6f;
        }
        return m;
    }

    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Squared)]
    [InlineData(ModelKind.Afm, LossKind.Logistic)]
    [InlineData(ModelKind.Fm, LossKind.Squared)]
    [InlineData(ModelKind.Fm, LossKind.Logistic)]
    public void RaggedRowsMatchTheNativePredictor(ModelKind kind, LossKind loss)
    {
        var model = Model(kind, loss, 50, seed: 3);
        int[] lengths = [0, 1, 2, 3, 5, 8, 13, 1, 0, 20, 4, 7, 2, 11, 6, 9, 1, 3];
        var data = Rows(50, [.. Enumerable.Range(0, 6).SelectMany(_ => lengths)], seed: 4);
        Compare(model, data, data.MaxNnz, $"{kind}/{loss}");
        // Extra padding slots change nothing.
        Compare(model, data, data.MaxNnz + 5, $"{kind}/{loss}, 5 more padding slots");
        if (loss == LossKind.Squared)
        {
            var native = new Predictor(new CpuAccelerator(1), model, ownsAccelerator: true);
            using (native)
            {
                var pred = native.Predict(data);
                Assert.Contains(pred, x => x == model.LabelMin);
                Assert.Contains(pred, x => x == model.LabelMax);
            }
        }
    }

    [Theory]
    [InlineData(ModelKind.Afm, 1)]
    [InlineData(ModelKind.Afm, 2)]
    [InlineData(ModelKind.Afm, 3)]
    [InlineData(ModelKind.Fm, 1)]
    [InlineData(ModelKind.Fm, 2)]
    public void RowsWithoutPairsGiveZeroAttentionAndTheLinearScore(ModelKind kind, int width)
    {
        var model = Model(kind, LossKind.Logistic, 20, seed: 5);
        var data = Rows(20, [0, 1, 1, 0, 1], seed: 6);
        Compare(model, data, width, $"{kind}, rows of 0 and 1 non-zeros in {width} slots");
    }

    [Theory]
    [InlineData(ModelKind.Afm)]
    [InlineData(ModelKind.Fm)]
    public void EmptyRowsWithoutSlotsGiveTheBias(ModelKind kind)
    {
        var model = Model(kind, LossKind.Squared, 20, seed: 14);
        Compare(model, Rows(20, [0, 0, 0], seed: 15), 0, $"{kind}, empty rows in 0 slots");
    }

    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Squared)]
    [InlineData(ModelKind.Fm, LossKind.Squared)]
    [InlineData(ModelKind.Afm, LossKind.Logistic)]
    public void MovieLensRowsMatchTheNativePredictor(ModelKind kind, LossKind loss)
    {
        string? path = MovieLensFile("test.libfm");
        if (path is null)
        {
            output.WriteLine("skipped: shared/data/ml-100k-libfm/test.libfm not found above " + AppContext.BaseDirectory);
            return;
        }
        var data = LibFmReader.Read(path);
        var model = Fixtures.RandomModel(kind, data.FeatureCount, 16, 8, loss, seed: 7, vStd: 0.3f);
        if (loss == LossKind.Squared) { model.LabelMin = 1; model.LabelMax = 5; model.W0[0] = 3.5f; }
        Compare(model, data, data.MaxNnz, $"ml-100k test.libfm, {kind}/{loss}");
    }

    internal static string? MovieLensFile(string name)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "data", "ml-100k-libfm", name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    [Fact]
    public void WithoutAttentionTheGraphHasTwoOutputs()
    {
        var model = Model(ModelKind.Afm, LossKind.Squared, 10, seed: 8);
        string path = Path.Combine(_dir, "no-att.onnx");
        OnnxExport.Export(model, path, options: new OnnxExportOptions { IncludeAttention = false });
        using var session = new InferenceSession(path);
        Assert.Equal(["score", "prediction"], session.OutputMetadata.Keys.ToArray());
        Assert.Equal(["ids", "values"], session.InputMetadata.Keys.ToArray());
        Assert.Equal("afm", session.ModelMetadata.CustomMetadataMap["kind"]);
    }

    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Squared)]
    [InlineData(ModelKind.Afm, LossKind.Logistic)]
    [InlineData(ModelKind.Fm, LossKind.Squared)]
    public void TheOnnxCheckerAcceptsTheFile(ModelKind kind, LossKind loss)
    {
        string? py = PythonProcess.WithModule("onnx");
        if (py is null)
        {
            Assert.True(Environment.GetEnvironmentVariable("AFM_REQUIRE_ONNX_CHECKER") != "1",
                "AFM_REQUIRE_ONNX_CHECKER=1 but no python3 imports onnx (apt-get install python3-onnx)");
            output.WriteLine("skipped: no python3 that imports onnx (apt-get install python3-onnx)");
            return;
        }
        var model = Model(kind, loss, 30, seed: 9);
        string path = Path.Combine(_dir, "checked.onnx");
        OnnxExport.Export(model, path);
        string script = "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); "
            + "print('onnx', onnx.__version__, 'ir', m.ir_version, 'opset', [o.version for o in m.opset_import])";
        var (rc, text) = PythonProcess.Run(py, $"-c \"{script}\" \"{path}\"");
        output.WriteLine(text.Trim());
        Assert.True(rc == 0, text);
        Assert.Contains($"ir {OnnxExport.IrVersion} opset [{OnnxExport.Opset}]", text);
    }

    [Fact]
    public void LargeModelExportFigures()
    {
        // 1M features, k = 64: the export's time and the file's size against the weights' (printed; the size is asserted).
        var model = new AfmModel(ModelKind.Afm, 1_000_000, 64, 16, LossKind.Logistic);
        var rng = new Random(1);
        for (int i = 0; i < model.V.Length; i += 97) model.V[i] = (float)rng.NextDouble();
        string path = Path.Combine(_dir, "large.onnx");
        var sw = Stopwatch.StartNew();
        OnnxExport.Export(model, path);
        sw.Stop();
        long weights = model.Tensors().Sum(x => (long)x.Data.Length * sizeof(float));
        long file = new FileInfo(path).Length;
        double ratio = (double)file / weights;
        output.WriteLine($"1M x 64 AFM model: export {sw.Elapsed.TotalSeconds:F2} s, file {file} bytes, weights {weights} bytes, ratio {ratio:F6}");
        Assert.True(ratio <= 1.1, $"file/weights {ratio}");
    }

    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Squared)]
    [InlineData(ModelKind.Fm, LossKind.Logistic)]
    public void TrainedModelPredictAndExplainAgreeWithTheExport(ModelKind kind, LossKind loss)
    {
        var model = Model(kind, loss, 60, seed: 16);
        string afm = Path.Combine(_dir, "t.afm"), onnx = Path.Combine(_dir, "t.onnx");
        ModelFile.Save(model, afm);
        using var trained = TrainedModel.Load(afm, "cpu");
        trained.ExportOnnx(onnx);
        var data = Rows(60, [0, 1, 2, 4, 7, 12, 3, 9], seed: 17);
        var (score, prediction, attention) = RunOnnx(onnx, data, data.MaxNnz + 2);
        var s = new Worst("score");
        var p = new Worst("prediction", relativeOnly: true);
        var a = new Worst("attention");
        for (int r = 0; r < data.Rows; r++)
        {
            var ids = data.RowIds(r);
            var why = trained.Explain(ids, data.RowValues(r));
            p.Check(prediction[r], trained.Predict(ids, data.RowValues(r)), $"row {r}");
            p.Check(prediction[r], why.Output, $"row {r} (explain)");
            s.Check(score[r], why.Prediction, $"row {r} (explain)");
            Assert.Equal(ModelShape.PairCount(ids.Length), why.Pairs.Count);
            foreach (var pair in why.Pairs)
            {
                int si = ids.IndexOf(pair.FeatureI), sj = ids.IndexOf(pair.FeatureJ);
                a.Check(attention![r][ModelShape.PairIndex(Math.Min(si, sj), Math.Max(si, sj))], pair.Attention, $"row {r} pair {pair.FeatureI}*{pair.FeatureJ}");
            }
        }
        output.WriteLine($"{kind}/{loss} against TrainedModel.Predict and Explain: {s}; {p}; {a}");
    }

    private (int Code, string Err) Cli(params string[] args)
    {
        var e = new StringWriter();
        int code = Afm.Cli.Cli.Run(args, TextWriter.Null, e);
        return (code, e.ToString());
    }

    [Fact]
    public void TheExportCommandWritesOnnxAndRefusesMistakesInOneLine()
    {
        var model = Model(ModelKind.Fm, LossKind.Logistic, 40, seed: 12);
        string afm = Path.Combine(_dir, "m.afm"), onnx = Path.Combine(_dir, "m.onnx");
        ModelFile.Save(model, afm);
        var (code, err) = Cli("export", "-m", afm, "--format", "onnx", "-o", onnx);
        Assert.True(code == 0, err);
        var data = Rows(40, [0, 1, 2, 6, 9, 3], seed: 13);
        var (_, prediction, attention) = RunOnnx(onnx, data, data.MaxNnz);
        using (var predictor = new Predictor(new CpuAccelerator(1), model, ownsAccelerator: true))
        {
            float[] native = predictor.Predict(data);
            for (int r = 0; r < data.Rows; r++)
                Assert.True(Math.Abs(prediction[r] - native[r]) <= Rtol * Math.Max(Math.Abs(native[r]), 1), $"row {r}");
        }
        Assert.NotNull(attention);

        Assert.True(Cli("export", "-m", afm, "--format", "onnx", "--no-attention", "-o", onnx).Code == 0);
        using (var session = new InferenceSession(onnx)) Assert.DoesNotContain("attention", session.OutputMetadata.Keys);

        // Without --format the output's name chooses: .onnx writes ONNX (with the attention output, as --format onnx
        // does), any other name safetensors.
        string named = Path.Combine(_dir, "named.onnx"), other = Path.Combine(_dir, "weights.bin");
        Assert.True(Cli("export", "-m", afm, "-o", named).Code == 0);
        using (var session = new InferenceSession(named)) Assert.Contains("attention", session.OutputMetadata.Keys);
        Assert.True(Cli("export", "-m", afm, "-o", other).Code == 0);
        Assert.True(Safetensors.Import(other).V.AsSpan().SequenceEqual(model.V));

        foreach (var (args, message) in new (string[], string)[]
        {
            (["export", "-m", afm, "--format", "tflite", "-o", onnx], "--format tflite: must be safetensors or onnx"),
            (["export", "--import", "-m", afm, "--format", "onnx", "-o", onnx], "--import reads safetensors; --format onnx cannot be imported"),
            (["export", "-m", afm, "--no-attention", "-o", Path.Combine(_dir, "m.safetensors")], "--no-attention applies to --format onnx only"),
            (["export", "-m", afm, "--format", "safetensors", "-o", onnx], $"-o/--output {onnx}: the name says ONNX, but --format safetensors writes safetensors; name it .safetensors or give --format onnx"),
            (["export", "-m", afm, "--format", "onnx", "-o", Path.Combine(_dir, "m.safetensors")], $"-o/--output {Path.Combine(_dir, "m.safetensors")}: the name says safetensors, but --format onnx writes ONNX; name it .onnx or give --format safetensors"),
            (["export", "-m", afm, "-o", Path.Combine(_dir, "copy.afm")], $"-o/--output {Path.Combine(_dir, "copy.afm")}: the name says a native .afm model, but export writes safetensors; a native model is written by train, or by export --import from safetensors"),
            (["export", "--import", "-m", afm, "-o", Path.Combine(_dir, "back.safetensors")], $"-o/--output {Path.Combine(_dir, "back.safetensors")}: --import writes the native .afm format, but the name says safetensors; name it .afm"),
            (["export", "-m", afm, "--format", "onnx", "-o", afm], $"-o/--output {afm}: is also an input of this command ({afm}); writing it would replace that file"),
            (["export", "-m", onnx, "--format", "onnx", "-o", Path.Combine(_dir, "x.onnx")], $"{onnx}: "),
        })
        {
            var (c, e) = Cli(args);
            Assert.Equal(1, c);
            string[] lines = e.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            Assert.StartsWith("afm-gpu: error: " + message, lines[0]);
        }
        Assert.True(ModelFile.Load(afm).V.AsSpan().SequenceEqual(model.V), "the input is unchanged");
    }
}
