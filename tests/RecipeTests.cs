using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Explain;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Synthetic;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>The training recipe: FM pre-training and hand-off, the validation split, λ selection, refit.</summary>
public class RecipeTests(ITestOutputHelper output)
{
    private static int[] Bits(float[] a) => Array.ConvertAll(a, BitConverter.SingleToInt32Bits);

    private static void AssertSameModel(AfmModel a, AfmModel b)
    {
        foreach (var ((name, x, _), (_, y, _)) in a.Tensors().Zip(b.Tensors()))
            Assert.True(Bits(x).SequenceEqual(Bits(y)), $"{name} differs");
    }

    private static SparseDataset Data(int rows = 600) =>
        Fixtures.RaggedData(50, Enumerable.Range(0, rows).Select(i => 2 + i % 7).ToArray(), LossKind.Squared, seed: 4);

    /// <summary>The validation RMSE of a recipe's run at its best epoch.</summary>
    private static double Score(RecipeResult r) => r.Training.History[r.Training.BestEpoch - 1].Validation!.Rmse;

    private static TrainerOptions Small() => new() { K = 8, T = 6, Epochs = 3, BatchSize = 64, Seed = 2, Patience = 0 };

    [Fact]
    public void ADivergedRecipeStartsAgainAtAFifthOfTheLearningRate()
    {
        // Rows of 60 non-zeros: the FM pre-training at 0.05 overshoots in its first epoch (ReliabilityTests).
        var data = Fixtures.ManyNonZeros(2000, 400, 60, seed: 1);
        var o = new TrainerOptions { K = 8, T = 4, Epochs = 2, BatchSize = 256, Patience = 0, LearningRateBackoffs = 3 };
        Assert.Equal(TrainerOptions.RecommendedLearningRateBackoffs, TrainerOptions.Recommended().LearningRateBackoffs);
        using var acc = new CpuAccelerator(1);
        var lines = new List<string>();
        var recipe = new Recipe(acc, o);
        recipe.Message += lines.Add;
        var r = recipe.Run(data);
        output.WriteLine(string.Join("\n", lines));
        Assert.Equal(0.01f, r.LearningRate);
        var said = Assert.Single(lines, l => l.Contains(" diverged with learning rate "));
        Assert.StartsWith("the FM pre-training diverged with learning rate 0.05, in epoch 1: the mean training loss of the first epoch, ", said);
        Assert.EndsWith("; the recipe starts again with learning rate 0.01", said);
        Assert.Equal(2, lines.Count(l => l.StartsWith("validation: ", StringComparison.Ordinal)));

        // the same model, bit for bit, as a recipe told that rate
        var told = o.Clone();
        told.LearningRate = 0.01f;
        told.LearningRateBackoffs = 0;
        var direct = new Recipe(acc, told).Run(data);
        Assert.Equal(0.01f, direct.LearningRate);
        AssertSameModel(direct.Model, r.Model);

        // without a back-off the divergence is the caller's
        var none = o.Clone();
        none.LearningRateBackoffs = 0;
        var e = Assert.Throws<TrainingDivergedException>(() => new Recipe(acc, none).Run(data));
        Assert.EndsWith("lower the learning rate (now 0.05)", e.Message);
    }

    [Fact]
    public void HandOffCopiesTheFmAndStartsAttentionAsThePapersCode()
    {
        var data = Data();
        var fm = Fixtures.RandomModel(ModelKind.Fm, 50, 8, 0, LossKind.Squared, seed: 3);
        var o = Small();
        var afm = Trainer.InitializeFromFm(o, fm, data);
        var fresh = Trainer.Initialize(o, 50);
        Assert.True(Bits(fm.V).SequenceEqual(Bits(afm.V)));
        Assert.True(Bits(fm.Linear).SequenceEqual(Bits(afm.Linear)));
        Assert.Equal(fm.W0[0], afm.W0[0]);
        Assert.All(afm.Proj, p => Assert.Equal(1f, p));
        // h, W and b as a fresh AFM of the same seed: h ~ N(0, 1), not 0
        Assert.True(Bits(fresh.AttnH).SequenceEqual(Bits(afm.AttnH)));
        Assert.True(Bits(fresh.AttnW).SequenceEqual(Bits(afm.AttnW)));
        Assert.Contains(afm.AttnH, h => MathF.Abs(h) > 0.1f);

        o.HandOff = FmHandOff.FmScale;
        var scaled = Trainer.InitializeFromFm(o, fm, data);
        double meanPairs = Enumerable.Range(0, data.Rows).Average(r => ModelShape.PairCount(data.RowLength(r)));
        Assert.All(scaled.Proj, p => Assert.Equal((float)meanPairs, p));
        Assert.All(scaled.AttnH, h => Assert.Equal(0f, h));
    }

    [Fact]
    public void AnAfmPretrainsAnFmOnTheSameRowsAndSaysHowManyAreHeldOut()
    {
        var data = Data();
        var o = Small();
        using var acc = new CpuAccelerator();
        var recipe = new Recipe(acc, o);
        var lines = new List<string>();
        var stages = new List<(TrainStage Stage, long Rows)>();
        recipe.Message += lines.Add;
        recipe.Progress += (s, p) => { if (p.RowsDone == p.RowsTotal) stages.Add((s, p.RowsTotal)); };
        var result = recipe.Run(data);
        foreach (var l in lines) output.WriteLine(l);

        int held = (int)Math.Round(data.Rows * 0.1);
        Assert.Equal(held, result.HeldOut);
        Assert.Contains(lines, l => l.Contains($"{held} of {data.Rows} training rows held out"));
        Assert.Contains(lines, l => l.StartsWith("pre-training an FM (k = 8)"));
        Assert.NotNull(result.Pretraining);
        Assert.Equal(3, result.Pretraining!.History.Count);
        Assert.Equal([TrainStage.Pretraining, TrainStage.Pretraining, TrainStage.Pretraining, TrainStage.Training, TrainStage.Training, TrainStage.Training],
            stages.Select(s => s.Stage));
        Assert.All(stages, s => Assert.Equal(data.Rows - held, s.Rows));
        Assert.False(result.Refitted);
        // The AFM's best validation score next to the FM's it started from.
        double fmScore = result.Pretraining.History[result.Pretraining.BestEpoch - 1].Validation!.Rmse;
        double afmScore = result.Training.History[result.Training.BestEpoch - 1].Validation!.Rmse;
        string compared = Assert.Single(lines, l => l.StartsWith("AFM against the FM it started from, on the validation rows: ", StringComparison.Ordinal));
        Assert.Contains(FormattableString.Invariant($"{afmScore:F4} against {fmScore:F4}"), compared);
        Assert.Equal(afmScore < fmScore, !compared.Contains("the AFM is no better here", StringComparison.Ordinal));

        // The same as the steps by hand: the FM of Trainer, the hand-off, the AFM of Trainer.
        var (train, valid) = Trainer.Split(data, o.ValidationFraction, o.Seed);
        var fmOptions = o.Clone();
        fmOptions.Model = ModelKind.Fm;
        var fm = new Trainer(acc, fmOptions).Train(train, valid).Model;
        AssertSameModel(fm, result.Pretraining.Model);
        var afm = new Trainer(acc, o).Train(train, valid, Trainer.InitializeFromFm(o, fm, train)).Model;
        AssertSameModel(afm, result.Model);
    }

    [Fact]
    public void NoPretrainStartsFromScratchAndAGivenFmIsUsedAsIs()
    {
        var data = Data();
        var o = Small();
        o.Pretrain = PretrainKind.None;
        o.ValidationFraction = 0;
        using var acc = new CpuAccelerator();
        var lines = new List<string>();
        var recipe = new Recipe(acc, o);
        recipe.Message += lines.Add;
        var scratch = recipe.Run(data);
        Assert.Null(scratch.Pretraining);
        Assert.DoesNotContain(lines, l => l.Contains("pre-training"));
        AssertSameModel(new Trainer(acc, o).Train(data).Model, scratch.Model);

        var fm = Fixtures.RandomModel(ModelKind.Fm, 50, 8, 0, LossKind.Squared, seed: 8);
        o.Pretrain = PretrainKind.Fm;
        var given = new Recipe(acc, o).Run(data, pretrainedFm: fm);
        Assert.Null(given.Pretraining);
        AssertSameModel(new Trainer(acc, o).Train(data, null, Trainer.InitializeFromFm(o, fm, data)).Model, given.Model);
        Assert.Throws<ArgumentException>(() => new Recipe(acc, new TrainerOptions { Model = ModelKind.Fm }).Run(data, pretrainedFm: fm));
    }

    [Fact]
    public void LambdaCandidatesKeepTheRunWithTheBestValidationScore()
    {
        var data = Data();
        var o = Small();
        o.Epochs = 4;
        o.LearningRate = 0.2f;
        using var acc = new CpuAccelerator();
        var fm = Fixtures.RandomModel(ModelKind.Fm, 50, 8, 0, LossKind.Squared, seed: 8, vStd: 0.3f);
        var single = new Dictionary<float, RecipeResult>();
        foreach (float l in new[] { 0f, 5f })
        {
            var lo = o.Clone();
            lo.Lambda = l;
            single[l] = new Recipe(acc, lo).Run(data, pretrainedFm: fm);
        }
        double Score(RecipeResult r) => r.Training.History[r.Training.BestEpoch - 1].Validation!.Rmse;
        output.WriteLine($"validation RMSE: λ = 0 {Score(single[0]):F5}, λ = 5 {Score(single[5]):F5}");
        Assert.NotEqual(Score(single[0]), Score(single[5]));
        float expected = Score(single[0]) <= Score(single[5]) ? 0f : 5f;

        o.LambdaCandidates = [0f, 5f];
        var chosen = new Recipe(acc, o).Run(data, pretrainedFm: fm);
        Assert.Equal(expected, chosen.Lambda);
        AssertSameModel(single[expected].Model, chosen.Model);
    }

    [Fact]
    public void RefitTrainsOnAllRowsForTheBestEpochCounts()
    {
        var data = Data();
        var o = Small();
        o.Refit = true;
        o.Epochs = 4;
        using var acc = new CpuAccelerator();
        var recipe = new Recipe(acc, o);
        var epochs = new List<(TrainStage Stage, long Rows)>();
        recipe.Progress += (s, p) => { if (p.RowsDone == p.RowsTotal) epochs.Add((s, p.RowsTotal)); };
        var lines = new List<string>();
        recipe.Message += lines.Add;
        var result = recipe.Run(data);
        foreach (var l in lines) output.WriteLine(l);
        Assert.True(result.Refitted);
        Assert.True(result.Training.BestEpoch > 0);
        Assert.Equal(result.Pretraining!.BestEpoch, epochs.Count(e => e.Stage == TrainStage.RefitPretraining));
        Assert.Equal(result.Training.BestEpoch, epochs.Count(e => e.Stage == TrainStage.Refit));
        Assert.All(epochs.Where(e => e.Stage is TrainStage.Refit or TrainStage.RefitPretraining), e => Assert.Equal(data.Rows, e.Rows));

        // The refit is the recipe without validation, on every row, with the best epoch counts.
        var fo = Recipe.PretrainOptions(o);
        fo.Epochs = result.Pretraining.BestEpoch;
        fo.ValidationFraction = 0;
        var fm = new Trainer(acc, fo).Train(data).Model;
        var ro = o.Clone();
        ro.Epochs = result.Training.BestEpoch;
        ro.ValidationFraction = 0;
        AssertSameModel(new Trainer(acc, ro).Train(data, null, Trainer.InitializeFromFm(ro, fm, data)).Model, result.Model);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WithSeveralPretrainingDropoutsTheRecipeKeepsTheOneWhoseAfmValidatesBest(bool refit)
    {
        var data = Data();
        using var acc = new CpuAccelerator();
        TrainerOptions Options(float? keep, float[]? keeps)
        {
            var o = Small();
            o.Keep1 = 0.8f;
            o.Lambda = 0.3f;
            o.ValidationFraction = 0.2f;
            o.Refit = refit;
            o.PretrainKeep1 = keep;
            o.PretrainKeep1Candidates = keeps;
            return o;
        }
        var said = new List<string>();
        var recipe = new Recipe(acc, Options(null, [0.8f, 1f, 0.8f]));
        recipe.Message += said.Add;
        var both = recipe.Run(data);
        var withDropout = new Recipe(acc, Options(0.8f, null)).Run(data);
        var without = new Recipe(acc, Options(1f, null)).Run(data);
        var expected = Score(without) < Score(withDropout) ? without : withDropout;

        Assert.Equal(expected == without ? 1f : 0.8f, both.PretrainKeep1);
        Assert.Equal(0.8f, withDropout.PretrainKeep1);
        Assert.Equal(Score(expected), Score(both));
        Assert.Equal(expected.Pretraining!.BestEpoch, both.Pretraining!.BestEpoch);
        AssertSameModel(expected.Model, both.Model); // the refit, when on, pre-trains with the dropout kept
        // two pre-trainings (the repeated 0.8 is tried once), each said with its dropout, and the choice with both scores
        Assert.Equal(2, said.Count(l => l.StartsWith("pre-training an FM", StringComparison.Ordinal)));
        Assert.Contains(said, l => l.StartsWith("pre-training an FM (k = 8, dropout keep1 0.8) on the same rows", StringComparison.Ordinal));
        Assert.Contains(said, l => l.StartsWith("pre-training an FM (k = 8, no dropout) on the same rows", StringComparison.Ordinal));
        Assert.Contains(said, l => l.StartsWith($"pre-training kept: keep1 {both.PretrainKeep1}, ", StringComparison.Ordinal)
            && l.Contains($"keep1 0.8: {Score(withDropout):F4}, keep1 1: {Score(without):F4}", StringComparison.Ordinal));

        // Without validation rows there is nothing to choose on: one pre-training, with the AFM's dropout.
        var none = Options(null, [0.8f, 1f]);
        none.ValidationFraction = 0;
        var plain = Options(null, null);
        plain.ValidationFraction = 0;
        var one = new Recipe(acc, none).Run(data);
        Assert.Equal(0.8f, one.PretrainKeep1);
        AssertSameModel(new Recipe(acc, plain).Run(data).Model, one.Model);
        Assert.Throws<InvalidOptionException>(() => new TrainerOptions { PretrainKeep1Candidates = [0.8f, 0f] }.Validate());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnFmKeepsTheDropoutThatValidatesBetter(bool refit)
    {
        var data = Data();
        using var acc = new CpuAccelerator();
        TrainerOptions Options(float keep, float[]? keeps)
        {
            var o = Small();
            o.Model = ModelKind.Fm;
            o.Keep1 = keep;
            o.Keep1Candidates = keeps;
            o.ValidationFraction = 0.2f;
            o.Refit = refit;
            return o;
        }
        var said = new List<string>();
        var recipe = new Recipe(acc, Options(0.8f, [0.8f, 1f, 0.8f]));
        recipe.Message += said.Add;
        var culture = System.Globalization.CultureInfo.CurrentCulture;
        RecipeResult both;
        try
        {
            // the messages write numbers the same way in a culture with decimal commas
            System.Globalization.CultureInfo.CurrentCulture = new System.Globalization.CultureInfo("de-DE");
            both = recipe.Run(data);
        }
        finally
        {
            System.Globalization.CultureInfo.CurrentCulture = culture;
        }
        var withDropout = new Recipe(acc, Options(0.8f, null)).Run(data);
        var without = new Recipe(acc, Options(1f, null)).Run(data);
        Assert.NotEqual(Score(withDropout), Score(without)); // the two runs differ, so the choice is a real one
        var expected = Score(without) < Score(withDropout) ? without : withDropout;

        Assert.Equal(expected == without ? 1f : 0.8f, both.Keep1);
        Assert.Null(withDropout.Keep1);
        Assert.Null(both.Pretraining);
        Assert.Equal(Score(expected), Score(both));
        Assert.Equal(expected.Training.BestEpoch, both.Training.BestEpoch);
        Assert.Equal(refit, both.Refitted);
        AssertSameModel(expected.Model, both.Model); // the refit, when on, trains with the dropout kept
        // two runs (the repeated 0.8 is tried once), each said with its dropout, and the choice with both scores
        Assert.Equal(["FM with dropout keep1 0.8 (of keep1 0.8, 1 the best validation score is kept)", "FM with no dropout (of keep1 0.8, 1 the best validation score is kept)"],
            said.Where(l => l.StartsWith("FM with ", StringComparison.Ordinal)));
        Assert.Contains($"FM dropout kept: keep1 {both.Keep1}, best epoch {both.Training.BestEpoch} (validation scores: keep1 0.8: {Score(withDropout):F4}, keep1 1: {Score(without):F4})", said);

        // With checkpoints each dropout's run keeps its own stage folder (the first the single run's), and a second run
        // of the recipe with Resume (its stages finished) ends with the same model.
        string dir = Path.Combine(Path.GetTempPath(), "afm-recipe-" + Guid.NewGuid().ToString("N"));
        try
        {
            RecipeResult Checkpointed() =>
                new Recipe(acc, Options(0.8f, [0.8f, 1f])) { Checkpoint = new CheckpointOptions { Directory = dir, Resume = true } }.Run(data);
            var first = Checkpointed();
            AssertSameModel(both.Model, first.Model);
            Assert.True(Directory.Exists(Path.Combine(dir, "fm")) && Directory.Exists(Path.Combine(dir, "fm-keep1-1")));
            AssertSameModel(first.Model, Checkpointed().Model);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        // Without validation rows there is nothing to choose on: one run, with Keep1.
        var none = Options(0.8f, [0.8f, 1f]);
        none.ValidationFraction = 0;
        var plain = Options(0.8f, null);
        plain.ValidationFraction = 0;
        var one = new Recipe(acc, none).Run(data);
        Assert.Null(one.Keep1);
        AssertSameModel(new Recipe(acc, plain).Run(data).Model, one.Model);
        Assert.Throws<InvalidOptionException>(() => new TrainerOptions { Keep1Candidates = [0.8f, 1.5f] }.Validate());
        // An AFM's own dropout is not chosen: the list is the FM's.
        var afm = Options(0.8f, [0.8f, 1f]);
        afm.Model = ModelKind.Afm;
        afm.Pretrain = PretrainKind.None;
        Assert.Null(new Recipe(acc, afm).Run(data).Keep1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnAfmKeepsItsOwnDropoutThatValidatesBetterFromTheKeptStart(bool refit)
    {
        var data = Data();
        using var acc = new CpuAccelerator();
        TrainerOptions Options(float keep, float[]? keeps, float? pretrainKeep, float[]? pretrainKeeps)
        {
            var o = Small();
            o.Keep1 = keep;
            o.AfmKeep1Candidates = keeps;
            o.PretrainKeep1 = pretrainKeep;
            o.PretrainKeep1Candidates = pretrainKeeps;
            o.Lambda = 0.3f;
            o.ValidationFraction = 0.2f;
            o.Refit = refit;
            return o;
        }
        // Keep1 first (λ and the pre-training are chosen with it), then the others without repeats.
        Assert.Equal([0.8f, 0.5f], Recipe.AfmKeeps(Options(0.8f, [0.5f, 0.8f, 0.5f], null, null)));
        Assert.Equal([0.8f], Recipe.AfmKeeps(Options(0.8f, null, null, null)));

        var said = new List<string>();
        var recipe = new Recipe(acc, Options(0.8f, [0.8f, 0.5f], null, [0.8f, 1f]));
        recipe.Message += said.Add;
        var chosen = recipe.Run(data);
        // each dropout's AFM is the one the recipe trains with that dropout alone, from the pre-training it kept
        var withDefault = new Recipe(acc, Options(0.8f, null, chosen.PretrainKeep1, null)).Run(data);
        var withHalf = new Recipe(acc, Options(0.5f, null, chosen.PretrainKeep1, null)).Run(data);
        Assert.NotEqual(Score(withDefault), Score(withHalf)); // the two runs differ, so the choice is a real one
        var expected = Score(withHalf) < Score(withDefault) ? withHalf : withDefault;

        Assert.Equal(expected == withHalf ? 0.5f : 0.8f, chosen.Keep1);
        Assert.Null(withDefault.Keep1);
        Assert.Equal(Score(expected), Score(chosen));
        Assert.Equal(expected.Training.BestEpoch, chosen.Training.BestEpoch);
        Assert.Equal(refit, chosen.Refitted);
        AssertSameModel(expected.Model, chosen.Model); // the refit, when on, trains with the dropout kept
        Assert.Single(said, l => l.StartsWith("AFM with dropout keep1 0.5, λ = 0.3, from the FM pre-trained with keep1 ", StringComparison.Ordinal)
            && l.EndsWith(" (of keep1 0.8, 0.5 the best validation score is kept)", StringComparison.Ordinal));
        Assert.Contains($"AFM dropout kept: keep1 {chosen.Keep1}, best epoch {chosen.Training.BestEpoch} (validation scores: keep1 0.8: {Score(withDefault):F4}, keep1 0.5: {Score(withHalf):F4})", said);

        // With checkpoints the second dropout's run keeps its own stage folder, and a second run of the recipe with
        // Resume (its stages finished) ends with the same model.
        string dir = Path.Combine(Path.GetTempPath(), "afm-recipe-" + Guid.NewGuid().ToString("N"));
        try
        {
            RecipeResult Checkpointed() =>
                new Recipe(acc, Options(0.8f, [0.8f, 0.5f], 1f, null)) { Checkpoint = new CheckpointOptions { Directory = dir, Resume = true } }.Run(data);
            var first = Checkpointed();
            Assert.True(Directory.Exists(Path.Combine(dir, "afm")) && Directory.Exists(Path.Combine(dir, "afm-keep1-0.5")));
            AssertSameModel(first.Model, Checkpointed().Model);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }

        // Without validation rows there is nothing to choose on: one run, with Keep1; an FM ignores the AFM's list.
        var none = Options(0.8f, [0.8f, 0.5f], 1f, null);
        none.ValidationFraction = 0;
        var plain = Options(0.8f, null, 1f, null);
        plain.ValidationFraction = 0;
        var one = new Recipe(acc, none).Run(data);
        Assert.Null(one.Keep1);
        AssertSameModel(new Recipe(acc, plain).Run(data).Model, one.Model);
        var fm = Options(0.8f, [0.8f, 0.5f], null, null);
        fm.Model = ModelKind.Fm;
        Assert.Null(new Recipe(acc, fm).Run(data).Keep1);
        Assert.Throws<InvalidOptionException>(() => new TrainerOptions { AfmKeep1Candidates = [0.8f, 0f] }.Validate());
    }

    [Fact]
    public void ThePretrainingTakesItsOwnDropoutWhenGivenOne()
    {
        var o = Small();
        o.Keep1 = 0.8f;
        Assert.Equal(0.8f, Recipe.PretrainOptions(o).Keep1);
        o.PretrainKeep1 = 1f;
        var f = Recipe.PretrainOptions(o);
        Assert.Equal(1f, f.Keep1);
        Assert.Equal(ModelKind.Fm, f.Model);
        Assert.Equal(0.8f, o.Keep1); // the AFM keeps its own

        // The recipe's FM is an FM trained with that dropout.
        var data = Data();
        o.ValidationFraction = 0;
        using var acc = new CpuAccelerator();
        var result = new Recipe(acc, o).Run(data);
        var expected = new Trainer(acc, Recipe.PretrainOptions(o)).Train(data).Model;
        var handed = Trainer.InitializeFromFm(o, expected, data);
        AssertSameModel(new Trainer(acc, o).Train(data, null, handed).Model, result.Model);
        Assert.Throws<InvalidOptionException>(() => new TrainerOptions { PretrainKeep1 = 0 }.Validate());
    }

    [Fact]
    public void ConcatKeepsEveryRowInOrder()
    {
        var a = Data(30);
        var b = Fixtures.RaggedData(60, [3, 1, 4], LossKind.Squared, seed: 9);
        var c = Recipe.Concat(a, b);
        Assert.Equal(a.Rows + b.Rows, c.Rows);
        Assert.Equal(60, c.FeatureCount);
        for (int r = 0; r < c.Rows; r++)
        {
            var (src, row) = r < a.Rows ? (a, r) : (b, r - a.Rows);
            Assert.True(src.RowIds(row).SequenceEqual(c.RowIds(r)));
            Assert.True(src.RowValues(row).SequenceEqual(c.RowValues(r)));
            Assert.Equal(src.Labels[row], c.Labels[r]);
        }
    }

    [Fact]
    public void RelativeAttentionIsOneForAnFmAndSumsToThePairCountForAnAfm()
    {
        var data = Data(200);
        var map = FeatureMap.FromFields(Enumerable.Range(0, 50).Select(i => i % 4).ToArray());
        using var acc = new CpuAccelerator();
        var afm = Fixtures.RandomModel(ModelKind.Afm, 50, 8, 6, LossKind.Squared, seed: 5);
        using (var p = new Predictor(acc, afm, data.MaxNnz))
        {
            var s = new Explainer(p).Summarize(data, map);
            // Σ over a row's pairs of a_ij x P is P (the weights sum to 1), so the count-weighted sum of the means is Σ_rows P.
            double total = s.Pairs.Sum(x => x.MeanRelativeAttention * x.Count);
            double pairs = Enumerable.Range(0, data.Rows).Sum(r => (double)ModelShape.PairCount(data.RowLength(r)));
            Assert.Equal(pairs, total, pairs * 1e-5);
            Assert.Contains(s.Pairs, x => Math.Abs(x.MeanRelativeAttention - 1) > 0.05);
            Assert.Contains("a x P", s.ToTable());
            Assert.EndsWith(",mean_attention_x_pairs", s.ToCsv().Split('\n')[0]);
        }
        var fm = Fixtures.RandomModel(ModelKind.Fm, 50, 8, 0, LossKind.Squared, seed: 5);
        using (var p = new Predictor(acc, fm, data.MaxNnz))
        {
            var s = new Explainer(p).Summarize(data, map);
            Assert.All(s.Pairs, x => Assert.Equal(1.0, x.MeanRelativeAttention, 12));
            // uniform attention: every occurring cell of the heat map is white
            var svg = System.Xml.Linq.XDocument.Parse(s.ToSvg(HeatMapValue.MeanAttention));
            System.Xml.Linq.XNamespace ns = "http://www.w3.org/2000/svg";
            var cells = svg.Descendants(ns + "rect").Where(r => r.Element(ns + "title") is not null).ToList();
            Assert.NotEmpty(cells);
            Assert.All(cells, r => Assert.Equal("#ffffff", (string?)r.Attribute("fill")));
        }
    }

    [Fact]
    public void PlantedDataWithTheRecipeRanksThePlantedPairsFirstAndBeatsTheFm()
    {
        var data = PlantedData.Generate(trainRows: 20_000, testRows: 4_000, seed: 11);
        using var acc = new CpuAccelerator();
        var o = new TrainerOptions { K = 16, T = 16, Epochs = 15, BatchSize = 512, LearningRate = 0.1f, Keep1 = 0.8f, Seed = 3 };
        var fmOptions = o.Clone();
        fmOptions.Model = ModelKind.Fm;
        var fm = new Recipe(acc, fmOptions).Run(data.Train).Model;
        var afm = new Recipe(acc, o).Run(data.Train).Model;
        double Rmse(AfmModel m)
        {
            using var p = new Predictor(acc, m, data.Test.MaxNnz);
            return Metrics.Compute(p.Predict(data.Test), data.Test.Labels, LossKind.Squared).Rmse;
        }
        using var pa = new Predictor(acc, afm, data.Test.MaxNnz);
        var ranking = new Explainer(pa).Summarize(data.Test, FeatureMap.FromFields(data.FieldOf)).Pairs;
        double fmRmse = Rmse(fm), afmRmse = Rmse(afm);
        output.WriteLine($"test RMSE: FM {fmRmse:F4}, AFM (pre-trained) {afmRmse:F4}");
        foreach (var s in ranking.Take(6)) output.WriteLine($"({s.FieldA},{s.FieldB}) {s.MeanAttention:F4} x pairs {s.MeanRelativeAttention:F2}");
        var top = ranking.Take(data.PlantedPairs.Count).Select(s => (s.FieldA, s.FieldB)).ToHashSet();
        Assert.True(top.SetEquals(data.PlantedPairs), $"top pairs {string.Join(" ", top)} are not the planted {string.Join(" ", data.PlantedPairs)}");
        Assert.All(ranking.Take(data.PlantedPairs.Count), s => Assert.True(s.MeanRelativeAttention > 2, $"({s.FieldA},{s.FieldB}) {s.MeanRelativeAttention}"));
        Assert.True(afmRmse < 0.9 * fmRmse, $"AFM test RMSE {afmRmse:F4} does not beat FM's {fmRmse:F4} by 10%");
    }
}
