using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;

namespace Afm.Gpu.Tests;

public sealed class ApiSampleTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-api-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ReadmeSample()
    {
        string path = Path.Combine(_dir, "ratings.afm");
        // sample begin
        // Rows in memory: feature ids with values, and a label. Ids 0-49 are users,
        // 50-89 items, 90-113 hours; users like items of their own genre (id % 3).
        var rng = new Random(1);
        var rows = new SparseDatasetBuilder();
        for (int i = 0; i < 10000; i++)
        {
            int user = rng.Next(50), item = 50 + rng.Next(40), hour = 90 + rng.Next(24);
            rows.Add([user, item, hour], [1f, 1f, 1f], user % 3 == item % 3 ? 5f : 2f);
        }

        var options = new TrainerOptions { K = 8, T = 8, Epochs = 10, BatchSize = 256, LearningRate = 0.1f };
        using (var trained = AfmEngine.Train(rows.Build(), options))
            trained.Save(path);

        using var model = TrainedModel.Load(path);
        float rating = model.Predict([7, 61, 100], [1f, 1f, 1f]);
        Console.WriteLine($"predicted rating {rating:F2}");
        Console.WriteLine(model.Explain([7, 61, 100], [1f, 1f, 1f]).ToTable());
        // sample end

        Assert.InRange(rating, 4.5f, 5f); // user 7 and item 61 share genre 1
        var why = model.Explain([7, 61, 100], [1f, 1f, 1f]);
        Assert.Equal((7, 61), (why.Pairs[0].FeatureI, why.Pairs[0].FeatureJ));
        // well above the uniform 1/3 of its three pairs (how far above varies with the seed: 0.52 to 0.94 over seeds 1 to 8)
        Assert.True(why.Pairs[0].Attention > 0.4f, $"attention {why.Pairs[0].Attention}");
        Assert.Equal(why.Prediction, why.Bias + why.LinearSum + why.InteractionSum, 4);
        Assert.Equal(rating, why.Output);
    }

    [Fact]
    public void DocsHoldTheSample()
    {
        string root = SafetensorsTests.RepoRoot();
        string source = File.ReadAllText(Path.Combine(root, "tests", "ApiSampleTests.cs"));
        int begin = source.IndexOf("// sample begin\n", StringComparison.Ordinal) + "// sample begin\n".Length;
        int end = source.IndexOf("        // sample end", begin, StringComparison.Ordinal);
        string sample = string.Join('\n', source[begin..end].Split('\n').Select(l => l.Length >= 8 ? l[8..] : l.TrimStart())).TrimEnd();
        const string Prelude = "using Afm.Gpu;\nusing Afm.Gpu.Training;\n\nstring path = \"ratings.afm\";\n";
        foreach (string page in new[] { Path.Combine("docs", "api-sample.md"), "README.md" })
            Assert.Contains("```csharp\n" + Prelude + sample + "\n```", File.ReadAllText(Path.Combine(root, page)));
    }

    private static SparseDataset RandomRows(int features, int rows, int seed)
    {
        var rng = new Random(seed);
        var builder = new SparseDatasetBuilder();
        for (int r = 0; r < rows; r++)
        {
            int n = rng.Next(0, 9);
            var ids = Enumerable.Range(0, n).Select(_ => rng.Next(features)).ToArray();
            var vals = ids.Select(_ => (float)rng.NextDouble() * 2).ToArray();
            builder.Add(ids, vals, rng.Next(2));
        }
        return builder.Build(features);
    }

    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Logistic)]
    [InlineData(ModelKind.Fm, LossKind.Squared)]
    public void ConcurrentPredictionsMatchSequentialBitForBit(ModelKind kind, LossKind loss)
    {
        string path = Path.Combine(_dir, "m.afm");
        ModelFile.Save(Fixtures.RandomModel(kind, 64, 8, 4, loss, seed: 21), path);
        using var model = TrainedModel.Load(path, "cpu");
        var data = RandomRows(64, 400, seed: 22);
        float[] sequential = [.. Enumerable.Range(0, data.Rows).Select(r => model.Predict(data.RowIds(r), data.RowValues(r)))];
        Assert.Equal(sequential, model.Predict(data));

        var concurrent = new float[8][];
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            var mine = new float[data.Rows];
            for (int i = 0; i < data.Rows; i++)
            {
                int r = (i + t * 50) % data.Rows; // threads visit the rows in different orders
                mine[r] = t % 3 == 0 ? model.Predict(data.Subset([r]))[0] : model.Predict(data.RowIds(r), data.RowValues(r));
            }
            concurrent[t] = mine;
        });
        foreach (var result in concurrent)
            Assert.Equal(sequential.Select(BitConverter.SingleToInt32Bits), result.Select(BitConverter.SingleToInt32Bits));
    }

    [Fact]
    public void LoadsSafetensorsExports()
    {
        var original = Fixtures.RandomModel(ModelKind.Afm, 30, 4, 3, LossKind.Squared, seed: 23);
        string native = Path.Combine(_dir, "m.afm"), exported = Path.Combine(_dir, "m.safetensors");
        ModelFile.Save(original, native);
        using var a = TrainedModel.Load(native, "cpu");
        a.ExportSafetensors(exported);
        using var b = TrainedModel.Load(exported, "cpu");
        Assert.Null(b.Training);
        Assert.Contains("CPU", b.AcceleratorNote);
        var data = RandomRows(30, 50, seed: 24);
        Assert.Equal(a.Predict(data), b.Predict(data));
        File.WriteAllText(Path.Combine(_dir, "junk"), "not a model");
        Assert.Throws<ModelFormatException>(() => TrainedModel.Load(Path.Combine(_dir, "junk"), "cpu"));
    }

    [Fact]
    public void TrainReportsHistoryAndRejectsBadInput()
    {
        var data = RandomRows(20, 300, seed: 25);
        using var model = AfmEngine.Train(data, new TrainerOptions { K = 4, T = 4, Epochs = 2, BatchSize = 64, Loss = LossKind.Logistic }, accelerator: "cpu");
        Assert.Equal(2, model.Training!.History.Count);
        Assert.InRange(model.Predict([1, 2], [1f, 1f]), 0f, 1f);
        Assert.Throws<ArgumentException>(() => model.Predict([1, 20], [1f, 1f]));
        Assert.Throws<ArgumentException>(() => model.Predict([1], [1f, 1f]));
        Assert.Throws<Accelerators.AcceleratorUnavailableException>(() => AfmEngine.Train(data, new TrainerOptions(), accelerator: "tpu"));
    }

    [Fact]
    public void BuilderValidatesRows()
    {
        var builder = new SparseDatasetBuilder();
        builder.Add([3, 1], [1f, 2f], 5f).Add([], [], 1f);
        Assert.Throws<ArgumentException>(() => builder.Add([1], [1f, 2f], 0f));
        Assert.Throws<ArgumentException>(() => builder.Add([-1], [1f], 0f));
        Assert.Throws<ArgumentException>(() => builder.Add([1], [float.NaN], 0f));
        Assert.Throws<ArgumentException>(() => builder.Add([1], [1f], float.PositiveInfinity));
        var data = builder.Build();
        Assert.Equal(2, builder.Rows);
        Assert.Equal(2, data.Rows);
        Assert.Equal(4, data.FeatureCount);
        Assert.Equal([3, 1], data.RowIds(0).ToArray());
        Assert.Equal(0, data.RowLength(1));
        Assert.Equal(10, builder.Build(10).FeatureCount);
    }
}
