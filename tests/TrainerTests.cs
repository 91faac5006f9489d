using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;

namespace Afm.Gpu.Tests;

public class TrainerTests
{
    [Fact]
    public void ASeedStandsForIndependentStreamsPerPurposeAndModelKind()
    {
        // The initial draws, the row order and dropout of an FM and of an AFM with the same seed are six different
        // streams, for every seed; none is the seed itself (a plain new Random(seed) would replay another's numbers).
        var seen = new HashSet<int>();
        for (int seed = -50; seed <= 1000; seed++)
            foreach (var kind in new[] { ModelKind.Fm, ModelKind.Afm })
                foreach (uint stream in new[] { RandomStreams.Initialisation, RandomStreams.Order, RandomStreams.Dropout })
                {
                    int s = RandomStreams.Seed(seed, kind, stream);
                    Assert.True(s >= 0);
                    Assert.True(seen.Add(s), $"seed {seed} {kind} stream {stream} repeats another's {s}");
                    Assert.Equal(s, RandomStreams.Seed(seed, kind, stream));
                }
    }

    /// <summary>Squared-loss training and validation rows of 2 to 8 features over 60 ids.</summary>
    private static (Data.SparseDataset Train, Data.SparseDataset Valid) RaggedRows(int trainRows, int validRows) =>
        (Fixtures.RaggedData(60, Enumerable.Range(0, trainRows).Select(i => 2 + i % 7).ToArray(), LossKind.Squared, seed: 3),
         Fixtures.RaggedData(60, Enumerable.Range(0, validRows).Select(i => 2 + i % 7).ToArray(), LossKind.Squared, seed: 4));

    private static int[] Bits(float[] a) => Array.ConvertAll(a, BitConverter.SingleToInt32Bits);

    [Fact]
    public void ValidationWithinEpochsKeepsThatStepsModelAndARunToItsFractionEndsThere()
    {
        var (train, valid) = RaggedRows(1000, 300);
        var o = new TrainerOptions { K = 6, T = 4, Epochs = 6, BatchSize = 50, Keep1 = 0.8f, Patience = 0, EvaluationsPerEpoch = 4, LearningRate = 0.1f };
        using var acc = new CpuAccelerator(2);
        var r = new Trainer(acc, o).Train(train, valid);
        // 20 batches an epoch: validated after 5, 10, 15 and 20 of them
        Assert.Equal(24, r.History.Count);
        Assert.Equal(Enumerable.Range(1, 24).Select(i => i / 4.0), r.History.Select(h => h.Epochs));
        Assert.All(r.History, h => Assert.NotNull(h.Validation));
        var best = r.History.Where(h => h.IsBest).Last();
        Assert.Equal(r.BestEpochs, best.Epochs);
        Assert.Equal(r.BestScore, best.Validation!.Rmse);
        Assert.Equal((int)Math.Ceiling(r.BestEpochs), r.BestEpoch);

        // With EvaluationsPerEpoch 1 the same steps are scored at epoch ends only: the epoch-end reports agree.
        var whole = new Trainer(acc, With(o, 1, o.Epochs, 1)).Train(train, valid);
        Assert.Equal(r.History.Where(h => h.Fraction == 1).Select(h => h.Validation!.Rmse), whole.History.Select(h => h.Validation!.Rmse));
        Assert.Equal(r.History.Where(h => h.Fraction == 1).Select(h => h.Epoch), whole.History.Select(h => h.Epoch));

        // Every reported model, not only epoch ends, is reached again by a run told to stop there (as a refit is):
        // the same steps give the same weights, bit for bit.
        foreach (var target in new[] { best, r.History[5], r.History[10] })
        {
            var (epochs, fraction) = Recipe.RefitEpochs(new TrainResult(r.Model, target.Epoch, [target with { IsBest = true }]));
            Assert.Equal(target.Epoch, epochs);
            Assert.Equal(target.Fraction, fraction, 1e-12);
            var stopped = new Trainer(acc, With(o, 1, epochs, fraction)).Train(train, valid);
            Assert.Equal(target.Epochs, stopped.History[^1].Epochs, 1e-12);
            Assert.Equal(target.Validation!.Rmse, stopped.History[^1].Validation!.Rmse);
            if (target == best) Assert.Equal(Bits(r.Model.V), Bits(stopped.Model.V));
        }
        // a fraction of 1 is a whole epoch; none is none
        Assert.Equal((3, 1.0), Recipe.RefitEpochs(new TrainResult(r.Model, 3, [r.History[11] with { IsBest = true }])));
        Assert.Equal((0, 1.0), Recipe.RefitEpochs(new TrainResult(r.Model, 0, r.History)));
    }

    [Fact]
    public void ARunEndingWithinAnEpochValidatesTheModelAloneAndAlike()
    {
        // Where a run ends within an epoch, the batch feed is still filling the next batch into the host buffer that
        // validation then uses; the validation must wait for it. A race shows as scores that differ between repeats.
        var (train, valid) = RaggedRows(1000, 3000);
        var o = new TrainerOptions { K = 6, T = 4, Epochs = 2, BatchSize = 50, Keep1 = 0.8f, Patience = 0, LearningRate = 0.1f, LastEpochFraction = 0.25 };
        using var acc = new CpuAccelerator(2);
        var first = new Trainer(acc, o).Train(train, valid);
        Assert.Equal(1.25, first.History[^1].Epochs, 1e-12);
        for (int i = 0; i < 30; i++)
        {
            var again = new Trainer(acc, o).Train(train, valid);
            Assert.Equal(Bits(first.Model.V), Bits(again.Model.V));
            Assert.Equal(first.History.Select(h => h.Validation!.Rmse), again.History.Select(h => h.Validation!.Rmse));
        }
    }

    private static TrainerOptions With(TrainerOptions o, int evaluations, int epochs, double lastFraction)
    {
        var c = o.Clone();
        (c.EvaluationsPerEpoch, c.Epochs, c.LastEpochFraction) = (evaluations, epochs, lastFraction);
        return c;
    }

    [Theory]
    [InlineData(OptimizerKind.Adagrad)]
    [InlineData(OptimizerKind.Adam)]
    [InlineData(OptimizerKind.Sgd)]
    public void TrainingIsDeterministicAcrossRunsAndThreadCounts(OptimizerKind opt)
    {
        var data = Fixtures.RaggedData(60, Enumerable.Range(0, 700).Select(i => 2 + i % 9).ToArray(), LossKind.Squared, seed: 5);
        var o = new TrainerOptions { K = 8, T = 5, Epochs = 3, BatchSize = 100, Optimizer = opt, Keep0 = 0.8f, Keep1 = 0.7f, Lambda = 0.01f, Seed = 9 };
        AfmModel Run(int threads)
        {
            using var acc = new CpuAccelerator(threads);
            return new Trainer(acc, o).Train(data).Model;
        }
        var a = Run(2);
        var b = Run(2);
        var c = Run(1);
        foreach (var ((name, x, _), (_, y, _), (_, z, _)) in a.Tensors().Zip(b.Tensors(), c.Tensors()))
        {
            Assert.True(Bits(x).SequenceEqual(Bits(y)), $"{name} differs between two identical runs");
            Assert.True(Bits(x).SequenceEqual(Bits(z)), $"{name} differs between 1 and 2 threads");
        }
    }

    [Fact]
    public void EarlyStoppingKeepsTheBestEpoch()
    {
        var data = Fixtures.RaggedData(40, Enumerable.Range(0, 400).Select(i => 2 + i % 5).ToArray(), LossKind.Squared, seed: 6);
        var (train, valid) = Trainer.Split(data, 0.25f, 1);
        using var acc = new CpuAccelerator();
        // A large learning rate overfits this small random set quickly, so validation turns up.
        var o = new TrainerOptions { K = 16, T = 8, Epochs = 40, BatchSize = 32, LearningRate = 0.3f, Patience = 3 };
        var result = new Trainer(acc, o).Train(train, valid);
        var best = result.History.Where(h => h.IsBest).Last();
        Assert.Equal(best.Epoch, result.BestEpoch);
        Assert.True(result.History.Count < 40, "early stopping never triggered");
        Assert.Equal(result.BestEpoch + 3, result.History.Count);
        using var p = new Predictor(acc, result.Model, valid.MaxNnz);
        var m = Metrics.Compute(p.Predict(valid), valid.Labels, LossKind.Squared);
        Assert.Equal(best.Validation!.Rmse, m.Rmse, 6);
        Assert.All(result.History, h => Assert.True(h.Validation!.Rmse >= best.Validation.Rmse - 1e-12));
    }

    [Fact]
    public void MetricsMatchBruteForce()
    {
        var rng = new Random(3);
        var scores = Enumerable.Range(0, 300).Select(_ => (float)Math.Round(rng.NextDouble(), 2)).ToArray();
        var labels = scores.Select(s => rng.NextDouble() < s ? 1f : 0f).ToArray();
        double wins = 0, total = 0;
        for (int i = 0; i < scores.Length; i++)
            for (int j = 0; j < scores.Length; j++)
                if (labels[i] > 0 && labels[j] <= 0)
                {
                    total++;
                    wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0;
                }
        var m = Metrics.Compute(scores, labels, LossKind.Logistic);
        Assert.Equal(wins / total, m.Auc, 12);
        double ll = -scores.Zip(labels).Average(p => p.Second > 0 ? Math.Log(Math.Clamp(p.First, 1e-7, 1 - 1e-7)) : Math.Log(1 - Math.Clamp(p.First, 1e-7, 1 - 1e-7)));
        Assert.Equal(ll, m.LogLoss, 9);
        var r = Metrics.Compute([1f, 2f, 4f], [1f, 3f, 2f], LossKind.Squared);
        Assert.Equal(Math.Sqrt(5.0 / 3), r.Rmse, 12);
        Assert.Equal(1.0, r.Mae, 12);
    }

    [Fact]
    public void L2OnTheEmbeddingsAndLinearWeightsShrinksThem()
    {
        // 60 features, 700 rows: an FM overfits it; λ_V and λ_w pull the trained rows towards 0, and λ = 0 is the plain run bit for bit.
        var data = Fixtures.RaggedData(60, Enumerable.Range(0, 700).Select(i => 2 + i % 9).ToArray(), LossKind.Squared, seed: 6);
        AfmModel Run(float l2v, float l2w)
        {
            using var acc = new CpuAccelerator(1);
            var o = new TrainerOptions { Model = ModelKind.Fm, K = 8, Epochs = 5, BatchSize = 50, InitStd = 0.3f, L2Embedding = l2v, L2Linear = l2w, ValidationFraction = 0 };
            return new Trainer(acc, o).Train(data).Model;
        }
        static double Norm(float[] x) => Math.Sqrt(x.Sum(v => (double)v * v));
        var plain = Run(0, 0);
        var shrunk = Run(0.3f, 0.3f);
        Assert.True(Norm(shrunk.V) < 0.8 * Norm(plain.V), $"|V| {Norm(shrunk.V):F3} with L2, {Norm(plain.V):F3} without");
        Assert.True(Norm(shrunk.Linear) < 0.9 * Norm(plain.Linear), $"|w| {Norm(shrunk.Linear):F3} with L2, {Norm(plain.Linear):F3} without");
        var linearOnly = Run(0, 0.3f);
        Assert.True(Norm(linearOnly.Linear) < 0.9 * Norm(plain.Linear));
        Assert.True(Bits(Run(0, 0).V).SequenceEqual(Bits(plain.V)));
        var e = Assert.Throws<InvalidOptionException>(() => new TrainerOptions { L2Embedding = -1 }.Validate());
        Assert.Equal("option L2Embedding = -1: must be >= 0", e.Message);
        Assert.Throws<InvalidOptionException>(() => new TrainerOptions { L2Linear = float.NaN }.Validate());
    }

    [Fact]
    public void OptionsAreValidatedByName()
    {
        var e = Assert.Throws<InvalidOptionException>(() => new TrainerOptions { Keep1 = 1.5f }.Validate());
        Assert.Equal("Keep1", e.ParamName);
        Assert.Equal("Keep1", e.Option);
        Assert.Equal("1.5", e.Value);
        Assert.Equal("option Keep1 = 1.5: must be in (0, 1]", e.Message);
        e = Assert.Throws<InvalidOptionException>(() => new TrainerOptions { BatchSize = 0 }.Validate());
        Assert.Equal("BatchSize", e.ParamName);
        Assert.Equal("must be in 1..1048576", e.Rule);
    }
}
