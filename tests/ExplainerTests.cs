using System.Diagnostics;
using System.Text.Json;
using System.Xml.Linq;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Explain;
using Afm.Gpu.Model;
using Afm.Gpu.Synthetic;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

public sealed class ExplainerTests(ITestOutputHelper output)
{
    private static void AssertAddsUp(RowExplanation x)
    {
        double sum = x.Bias + x.LinearSum + x.InteractionSum;
        double scale = 1 + Math.Abs(x.Bias) + x.Linear.Sum(t => Math.Abs(t.Contribution)) + x.Pairs.Sum(p => Math.Abs(p.Contribution));
        Assert.True(Math.Abs(sum - x.Prediction) <= 1e-5 * scale, $"bias + linear + pairs = {sum}, raw prediction {x.Prediction}");
    }

    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Squared)]
    [InlineData(ModelKind.Afm, LossKind.Logistic)]
    [InlineData(ModelKind.Fm, LossKind.Squared)]
    public void ContributionsAddUpToTheRawPrediction(ModelKind kind, LossKind loss)
    {
        var model = Fixtures.RandomModel(kind, 40, 8, 5, loss, seed: 11);
        model.LabelMin = -1;
        model.LabelMax = 1;
        var data = Fixtures.RaggedData(40, [5, 3, 2, 4, 1, 0, 7, 6], loss, seed: 12);
        using var predictor = new Predictor(new CpuAccelerator(), model, ownsAccelerator: true);
        var explanations = new Explainer(predictor).Explain(data);
        var raw = predictor.PredictRaw(data);
        var final = predictor.Predict(data);
        for (int r = 0; r < data.Rows; r++)
        {
            var x = explanations[r];
            Assert.Equal(raw[r], x.Prediction);
            Assert.Equal(final[r], x.Output);
            Assert.Equal(model.W0[0], x.Bias);
            Assert.Equal(data.RowIds(r).ToArray(), x.Linear.Select(t => t.Feature));
            Assert.Equal(data.RowLength(r) * (data.RowLength(r) - 1) / 2, x.Pairs.Count);
            AssertAddsUp(x);
            var attention = x.Pairs.Select(p => Math.Abs(p.Attention)).ToList();
            Assert.Equal(attention.OrderByDescending(a => a), attention);
            if (kind == ModelKind.Fm) Assert.All(x.Pairs, p => Assert.Equal(1f, p.Attention));
            else if (x.Pairs.Count > 0) Assert.Equal(1.0, x.Pairs.Sum(p => (double)p.Attention), 5);
        }
        // Contributions of one pair, by hand: a_ij (p · (v_i x_i ⊙ v_j x_j)).
        var row = explanations[0];
        var pair = row.Pairs[^1];
        var ids = data.RowIds(0).ToArray();
        var vals = data.RowValues(0).ToArray();
        int i = Array.IndexOf(ids, pair.FeatureI), j = Array.IndexOf(ids, pair.FeatureJ);
        double dot = 0;
        for (int f = 0; f < model.K; f++) dot += model.Proj[f] * model.V[ids[i] * model.K + f] * vals[i] * model.V[ids[j] * model.K + f] * vals[j];
        Assert.Equal(pair.Attention * dot, pair.Contribution, 5);
    }

    [Fact]
    public void SingleRowMatchesDatasetRow()
    {
        var model = Fixtures.RandomModel(ModelKind.Afm, 20, 4, 3, LossKind.Squared, seed: 13);
        using var predictor = new Predictor(new CpuAccelerator(), model, ownsAccelerator: true);
        var explainer = new Explainer(predictor);
        var x = explainer.Explain([4, 9, 2], [1f, 0.5f, 2f]);
        AssertAddsUp(x);
        Assert.Equal(3, x.Pairs.Count);
        Assert.Throws<ArgumentException>(() => explainer.Explain([4, 20], [1f, 1f]));
        Assert.Throws<ArgumentException>(() => explainer.Explain([4], [1f, 1f]));
    }

    [Fact]
    public void OutputsAreWellFormed()
    {
        var model = Fixtures.RandomModel(ModelKind.Afm, 12, 4, 3, LossKind.Squared, seed: 14);
        var data = Fixtures.RaggedData(12, [4, 3, 5, 2], LossKind.Squared, seed: 15);
        using var predictor = new Predictor(new CpuAccelerator(), model, ownsAccelerator: true);
        var explainer = new Explainer(predictor);
        var map = FeatureMap.FromRanges("user:0-3,item \"x\":4-7,genre<&>:8-10", 12);
        var x = explainer.Explain(data)[0];

        string table = x.ToTable(map);
        Assert.Contains("raw score", table);
        Assert.Contains(" x ", table);
        string[] csv = x.ToCsv(map).TrimEnd('\n').Split('\n');
        Assert.Equal("term,feature_i,name_i,feature_j,name_j,attention,contribution", csv[0]);
        Assert.Equal(1 + 1 + x.Linear.Count + x.Pairs.Count, csv.Length);
        double csvSum = csv.Skip(1).Sum(l => double.Parse(l[(l.LastIndexOf(',') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(x.Prediction, csvSum, 4);
        using (var json = JsonDocument.Parse(x.ToJson(map)))
        {
            Assert.Equal(x.Pairs.Count, json.RootElement.GetProperty("pairs").GetArrayLength());
            Assert.Equal(x.Prediction, json.RootElement.GetProperty("prediction").GetSingle());
        }

        var summary = explainer.Summarize(data, map);
        Assert.Equal(data.Rows, summary.Rows);
        Assert.Equal(data.Offsets.Skip(1).Zip(data.Offsets).Sum(o => (o.First - o.Second) * (o.First - o.Second - 1) / 2), summary.Pairs.Sum(p => p.Count));
        Assert.Contains("field pair", summary.ToTable());
        Assert.Equal(summary.Pairs.Count + 1, summary.ToCsv().TrimEnd('\n').Split('\n').Length);
        Assert.Contains("\"item \"\"x\"\"\"", summary.ToCsv());
        using (var json = JsonDocument.Parse(summary.ToJson()))
            Assert.Equal(summary.Pairs.Count, json.RootElement.GetProperty("pairs").GetArrayLength());
        foreach (var value in new[] { HeatMapValue.MeanAttention, HeatMapValue.MeanAbsContribution })
        {
            var svg = XDocument.Parse(summary.ToSvg(value));
            XNamespace ns = "http://www.w3.org/2000/svg";
            Assert.Equal(ns + "svg", svg.Root!.Name);
            var texts = svg.Descendants(ns + "text").Select(t => t.Value).ToList();
            Assert.Contains("genre<&>", texts);
            Assert.Contains("item \"x\"", texts);
            int fields = summary.Pairs.SelectMany(p => new[] { p.FieldA, p.FieldB }).Distinct().Count();
            Assert.Equal(fields * fields, svg.Descendants(ns + "rect").Count(r => r.Element(ns + "title") is not null));
        }
    }

    [Fact]
    public void PlantedPairsRankTop()
    {
        var sw = Stopwatch.StartNew();
        var planted = PlantedData.Generate(trainRows: 20_000, testRows: 2_000, seed: 7);
        var options = new TrainerOptions { K = 8, T = 8, Epochs = 6, BatchSize = 512, LearningRate = 0.1f, Patience = 0, ValidationFraction = 0 };
        using var acc = new CpuAccelerator();
        var result = new Trainer(acc, options).Train(planted.Train);
        output.WriteLine($"trained in {sw.Elapsed.TotalSeconds:F1} s; loss by epoch {string.Join(" ", result.History.Select(h => h.TrainLoss.ToString("F4")))}");

        using var predictor = new Predictor(acc, result.Model, planted.Test.MaxNnz);
        var map = FeatureMap.FromFields(planted.FieldOf);
        var summary = new Explainer(predictor).Summarize(planted.Test, map);
        output.WriteLine(summary.ToTable(10));
        output.WriteLine($"total {sw.Elapsed.TotalSeconds:F1} s");
        var top = summary.Pairs.Take(planted.PlantedPairs.Count).Select(p => (p.FieldA, p.FieldB)).ToHashSet();
        Assert.True(top.SetEquals(planted.PlantedPairs), "top field pairs: " + string.Join(", ", top));
        // The planted pairs carry the interactions, so they also contribute most.
        var byContribution = summary.Pairs.OrderByDescending(p => p.MeanAbsContribution).Take(planted.PlantedPairs.Count).Select(p => (p.FieldA, p.FieldB));
        Assert.True(byContribution.ToHashSet().SetEquals(planted.PlantedPairs));
        var x = new Explainer(predictor).Explain(planted.Test.Subset([0]))[0];
        AssertAddsUp(x);
    }
    [Fact]
    public void FieldPairsSeenInAFewRowsComeAfterTheOthersWhateverTheirAttention()
    {
        // A planted model, and a map that puts feature 0 alone in field "rare": its pairs occur only in the rows
        // that hold feature 0, and the three test rows that hold it are all the summary sees of them.
        var planted = PlantedData.Generate(trainRows: 4_000, testRows: 3_000, seed: 9);
        using var acc = new CpuAccelerator();
        var model = new Trainer(acc, new TrainerOptions { K = 4, T = 4, Epochs = 1, BatchSize = 256, ValidationFraction = 0 }).Train(planted.Train).Model;
        var keep = Enumerable.Range(0, planted.Test.Rows).Where(r => !planted.Test.RowIds(r).Contains(0)).ToList();
        keep.AddRange(Enumerable.Range(0, planted.Test.Rows).Where(r => planted.Test.RowIds(r).Contains(0)).Take(3));
        var data = planted.Test.Subset([.. keep]);
        int fields = planted.FieldOf.Max() + 1;
        var fieldOf = planted.FieldOf.ToArray();
        fieldOf[0] = fields;
        var map = FeatureMap.FromFields(fieldOf, [.. Enumerable.Range(0, fields).Select(f => $"f{f}"), "rare"]);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        var summary = new Explainer(predictor).Summarize(data, map);

        long support = FieldPairSummary.MinimumSupport(data.Rows);
        Assert.Equal(Math.Max(10, (data.Rows + 999) / 1000), support);
        var rare = summary.Pairs.Where(p => p.Count < support).ToList();
        Assert.NotEmpty(rare);
        Assert.All(rare, p => Assert.True(p.FieldA == fields || p.FieldB == fields, $"f{p.FieldA} x f{p.FieldB} is rare"));
        int firstRare = summary.Pairs.ToList().FindIndex(p => p.Count < support);
        Assert.Equal(summary.Pairs.Count - rare.Count, firstRare); // the rare ones are the tail
        foreach (var part in new[] { summary.Pairs.Take(firstRare).ToList(), rare })
            Assert.Equal(part.Select(p => p.MeanAttention).OrderByDescending(a => a), part.Select(p => p.MeanAttention));
        Assert.Contains($"({rare.Count} field pairs seen fewer than {support} times come last, whatever their attention)", summary.ToTable(5));
    }
}
