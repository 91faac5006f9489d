using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Explain;
using Afm.Gpu.Model;
using Afm.Gpu.Synthetic;
using Afm.Gpu.Training;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>The planted-interaction data: AFM must find the planted pairs and beat FM.</summary>
public class PlantedDataTests(ITestOutputHelper output)
{
    [Fact]
    public void AfmRanksPlantedPairsFirstAndBeatsFm()
    {
        var data = PlantedData.Generate();
        using var acc = new CpuAccelerator();
        double Rmse(AfmModel m, out IReadOnlyList<FieldPairStat> ranking)
        {
            using var p = new Predictor(acc, m, data.Test.MaxNnz);
            ranking = new Explainer(p).Summarize(data.Test, FeatureMap.FromFields(data.FieldOf)).Pairs;
            return Metrics.Compute(p.Predict(data.Test), data.Test.Labels, LossKind.Squared).Rmse;
        }
        TrainerOptions Options(ModelKind kind) => new() { Model = kind, K = 16, T = 16, Epochs = 30, BatchSize = 512, LearningRate = 0.1f, Seed = 3 };
        var fm = new Trainer(acc, Options(ModelKind.Fm)).Train(data.Train).Model;
        var afm = new Trainer(acc, Options(ModelKind.Afm)).Train(data.Train).Model;
        double fmRmse = Rmse(fm, out _), afmRmse = Rmse(afm, out var ranking);
        output.WriteLine($"test RMSE: FM {fmRmse:F4}, AFM {afmRmse:F4}");
        foreach (var s in ranking.Take(6)) output.WriteLine($"({s.FieldA},{s.FieldB}) {s.MeanAttention:F4}");

        var top = ranking.Take(data.PlantedPairs.Count).Select(s => (s.FieldA, s.FieldB)).ToHashSet();
        Assert.True(top.SetEquals(data.PlantedPairs), $"top pairs {string.Join(" ", top)} are not the planted {string.Join(" ", data.PlantedPairs)}");
        // Every planted pair gets clearly more than a uniform share (1/28) of the attention.
        Assert.All(ranking.Take(data.PlantedPairs.Count), s => Assert.True(s.MeanAttention > 2.0 / 28, $"({s.FieldA},{s.FieldB}) {s.MeanAttention}"));
        Assert.True(afmRmse < 0.9 * fmRmse, $"AFM test RMSE {afmRmse:F4} does not beat FM's {fmRmse:F4} by 10%");
    }
}
