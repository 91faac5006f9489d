using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>Which training run of a <see cref="Recipe"/> an epoch belongs to.</summary>
public enum TrainStage
{
    /// <summary>The FM pre-training of an AFM.</summary>
    Pretraining,
    /// <summary>The model asked for (with early stopping on the validation set).</summary>
    Training,
    /// <summary>The FM pre-training again, on all rows, for its best epoch count (<see cref="TrainerOptions.Refit"/>).</summary>
    RefitPretraining,
    /// <summary>The model again, on all rows, for its best epoch count (<see cref="TrainerOptions.Refit"/>).</summary>
    Refit,
}

/// <summary>The outcome of a <see cref="Recipe"/>.</summary>
/// <param name="Model">The model to keep: the best epoch's, or the refit one.</param>
/// <param name="Training">The run of the model asked for (its best epoch and history).</param>
/// <param name="Pretraining">The FM pre-training run, or null when none ran.</param>
/// <param name="HeldOut">Training rows held out for validation (0 when a validation set was given or none was used).</param>
/// <param name="Refitted">Whether <see cref="Model"/> comes from a refit on all rows.</param>
/// <param name="Lambda">The λ of <see cref="Training"/> (chosen on the validation set when <see cref="TrainerOptions.LambdaCandidates"/> is set).</param>
/// <param name="PretrainKeep1">The dropout keep probability of the FM pre-training kept (chosen on the validation set when
/// <see cref="TrainerOptions.PretrainKeep1Candidates"/> is set); null when no FM was pre-trained.</param>
/// <param name="Keep1">The dropout keep probability of <see cref="Training"/> when it was chosen on the validation set
/// (an FM's from <see cref="TrainerOptions.Keep1Candidates"/>, an AFM's from <see cref="TrainerOptions.AfmKeep1Candidates"/>); null
/// when none was chosen (it trained with <see cref="TrainerOptions.Keep1"/>).</param>
public sealed record RecipeResult(AfmModel Model, TrainResult Training, TrainResult? Pretraining, long HeldOut, bool Refitted, float Lambda, float? PretrainKeep1 = null, float? Keep1 = null)
{
    /// <summary>
    /// The learning rate every run trained with: <see cref="TrainerOptions.LearningRate"/>, or a fifth of it per
    /// restart after a divergence (<see cref="TrainerOptions.LearningRateBackoffs"/>).
    /// </summary>
    public float LearningRate { get; init; }
}

/// <summary>
/// The whole training recipe around <see cref="Trainer"/>: hold out a validation set (saying how
/// many rows), pre-train an FM of the same k for an AFM (as in the paper; <see cref="TrainerOptions.Pretrain"/>),
/// start the AFM from it (<see cref="Trainer.InitializeFromFm(TrainerOptions, AfmModel, RowSource)"/>), train with early stopping, and
/// optionally refit on all rows for the best epoch counts (<see cref="TrainerOptions.Refit"/>).
/// </summary>
public sealed class Recipe
{
    private readonly Accelerator _accelerator;
    private readonly TrainerOptions _options;

    /// <summary>Creates a recipe; the options are validated here.</summary>
    public Recipe(Accelerator accelerator, TrainerOptions options)
    {
        _accelerator = accelerator ?? throw new ArgumentNullException(nameof(accelerator));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        options.Validate();
    }

    /// <summary>What the recipe does next (held-out rows, pre-training, refit), one line each.</summary>
    public event Action<string>? Message;

    /// <summary>
    /// Keep checkpoints and resume from them (null: none). Each stage (FM pre-training, each λ, the refit) keeps
    /// its own in a folder of <see cref="CheckpointOptions.Directory"/> named after it, so that a run stopped in any
    /// stage resumes there and a finished stage returns its model at once.
    /// </summary>
    public CheckpointOptions? Checkpoint { get; init; }

    /// <summary>The MPI job every stage trains as one rank of (see <see cref="Trainer.Cluster"/>); null: one process.</summary>
    public Distributed.MpiCluster? Cluster { get; init; }

    /// <summary>Called after every epoch of every run.</summary>
    public event Action<TrainStage, EpochReport>? EpochCompleted;

    /// <summary>Called now and then during an epoch.</summary>
    public event Action<TrainStage, TrainProgress>? Progress;

    /// <summary>
    /// The options of the FM pre-training: the same as an FM run with these options, with the pre-training's dropout
    /// (<paramref name="keep1"/>, else <see cref="TrainerOptions.PretrainKeep1"/>, else <see cref="TrainerOptions.Keep1"/>).
    /// </summary>
    public static TrainerOptions PretrainOptions(TrainerOptions o, float? keep1 = null)
    {
        var f = o.Clone();
        f.Model = ModelKind.Fm;
        f.Epochs = o.PretrainEpochs > 0 ? o.PretrainEpochs : o.Epochs;
        f.Keep1 = keep1 ?? o.PretrainKeep1 ?? o.Keep1;
        f.PretrainKeep1Candidates = null;
        f.Keep1Candidates = null;
        f.AfmKeep1Candidates = null;
        f.LambdaCandidates = null;
        return f;
    }

    /// <summary>
    /// The pre-training dropouts the recipe tries, the first being the one λ is chosen with: <see cref="TrainerOptions.PretrainKeep1Candidates"/>
    /// without repeats when there are validation rows to choose on, else the one of <see cref="PretrainOptions"/>.
    /// </summary>
    internal static float[] PretrainKeeps(TrainerOptions o, bool validation) =>
        validation && o.PretrainKeep1Candidates is { Length: > 0 } c ? [.. c.Distinct()] : [PretrainOptions(o).Keep1];

    /// <summary>
    /// The AFM dropouts the recipe tries: <see cref="TrainerOptions.Keep1"/> (the one λ and the pre-training are chosen
    /// with) and then the others of <see cref="TrainerOptions.AfmKeep1Candidates"/>, without repeats.
    /// </summary>
    internal static float[] AfmKeeps(TrainerOptions o) => o.AfmKeep1Candidates is { Length: > 0 } c ? [.. c.Prepend(o.Keep1).Distinct()] : [o.Keep1];

    private TrainResult Pretrain(TrainerOptions o, float keep1, bool sayDropout, bool first, RowSource train, RowSource? validation, CancellationToken cancel)
    {
        var fo = PretrainOptions(o, keep1);
        string dropout = !sayDropout ? "" : keep1 < 1 ? Inv($", dropout keep1 {keep1}") : ", no dropout";
        Say(Inv($"pre-training an FM (k = {o.K}{dropout}) on the same rows: up to {fo.Epochs} epochs")
            + (validation is not null && o.Patience > 0 ? Inv($", stopping after {o.Patience} without a better validation score") : ""));
        // the first keeps the stage's folder name of a single pre-training, so that its checkpoints resume either way
        var r = Run(TrainStage.Pretraining, fo, train, validation, null, cancel, first ? null : Inv($"keep1-{keep1:R}"));
        Say(Inv($"FM pre-training: best epoch {Epochs(r)}; the AFM starts from its embeddings, linear terms and bias"));
        return r;
    }

    /// <summary>
    /// Runs the recipe on <paramref name="train"/>. Without <paramref name="validation"/>,
    /// <see cref="TrainerOptions.ValidationFraction"/> of the rows are held out. An AFM starts from
    /// <paramref name="pretrainedFm"/> when given, else from an FM pre-trained here (unless
    /// <see cref="TrainerOptions.Pretrain"/> is <see cref="PretrainKind.None"/>).
    /// </summary>
    public RecipeResult Run(SparseDataset train, SparseDataset? validation = null, AfmModel? pretrainedFm = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        return Run(RowSource.Of(train), validation is null ? null : RowSource.Of(validation), pretrainedFm, cancel);
    }

    /// <summary>
    /// Runs the recipe on the rows of <paramref name="train"/> (in memory or a cache read chunk by chunk), as
    /// <see cref="Run(SparseDataset, SparseDataset?, AfmModel?, CancellationToken)"/> does.
    /// </summary>
    public RecipeResult Run(RowSource train, RowSource? validation, AfmModel? pretrainedFm = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        if (pretrainedFm is not null && _options.Model != ModelKind.Afm) throw new ArgumentException("a pre-trained FM applies to an AFM", nameof(pretrainedFm));
        var o = _options;
        for (int backoff = 0; ; backoff++)
        {
            // each rate keeps its checkpoints apart, so that a resumed run replays the same attempts
            _checkpointDirectory = Checkpoint is null ? null
                : backoff == 0 ? Checkpoint.Directory : Path.Combine(Checkpoint.Directory, Inv($"lr-{o.LearningRate:R}"));
            try
            {
                return RunOnce(o, train, validation, pretrainedFm, cancel) with { LearningRate = o.LearningRate };
            }
            catch (TrainingDivergedException e) when (backoff < _options.LearningRateBackoffs)
            {
                float lower = o.LearningRate / TrainerOptions.LearningRateBackoffFactor;
                Say(Inv($"{_running} diverged with learning rate {o.LearningRate:G}, in epoch {e.Epoch}: {e.Reason}; the recipe starts again with learning rate {lower:G}"));
                o = o.Clone();
                o.LearningRate = lower;
            }
        }
    }

    // The checkpoint folder of the learning rate being tried (see Run).
    private string? _checkpointDirectory;

    // The run in progress, as a message names it: "the FM pre-training".
    private string _running = "training";

    private RecipeResult RunOnce(TrainerOptions o, RowSource train, RowSource? validation, AfmModel? pretrainedFm, CancellationToken cancel)
    {
        var all = train;
        long heldOut = 0;
        if (validation is null && o.ValidationFraction > 0 && train.Rows >= 10)
        {
            (train, validation) = train.Split(o.ValidationFraction, o.Seed);
            heldOut = validation.Rows;
            Say(Inv($"validation: {heldOut} of {all.Rows} training rows held out ({o.ValidationFraction:P0}) for early stopping; {train.Rows} train")
                + (o.Refit ? Inv($", then the model is refit on all {all.Rows}") : ""));
        }

        TrainResult? pretraining = null;
        var fm = pretrainedFm;
        float? pretrainKeep1 = null;
        float[] keeps = PretrainKeeps(o, validation is not null);
        if (o.Model == ModelKind.Afm && fm is null && o.Pretrain == PretrainKind.Fm)
        {
            pretrainKeep1 = keeps[0];
            pretraining = Pretrain(o, keeps[0], keeps.Length > 1, first: true, train, validation, cancel);
            fm = pretraining.Model;
        }
        var initial = fm is null ? null : Trainer.InitializeFromFm(o, fm, train);
        TrainResult result;
        float lambda = o.Lambda;
        float? keep1 = null;
        if (o.Model == ModelKind.Afm && o.LambdaCandidates is { Length: > 0 } candidates && validation is not null)
        {
            (result, lambda, _) = Best(candidates, "λ", l =>
            {
                var lo = o.Clone();
                lo.Lambda = l;
                Say(Inv($"AFM with λ = {l} (L2 on the attention weights; of {List(candidates)} the best validation score is kept)"));
                return Run(TrainStage.Training, lo, train, validation, initial, cancel);
            });
            Say(Inv($"λ = {lambda} chosen: best epoch {Epochs(result)}") + (result.BestScore is { } v ? Inv($", validation {v:F4}") : ""));
        }
        else if (o.Model == ModelKind.Fm && validation is not null && o.Keep1Candidates?.Distinct().ToArray() is { Length: > 1 } fmKeeps)
        {
            (result, float kept, string scores) = Best(fmKeeps, "keep1", keep =>
            {
                var fo = o.Clone();
                fo.Keep1 = keep;
                fo.Keep1Candidates = null;
                Say(Inv($"FM with {(keep < 1 ? Inv($"dropout keep1 {keep}") : "no dropout")} (of keep1 {List(fmKeeps)} the best validation score is kept)"));
                // the first keeps the stage's folder name of a single run, so that its checkpoints resume either way
                return Run(TrainStage.Training, fo, train, validation, null, cancel, keep == fmKeeps[0] ? null : Inv($"keep1-{keep:R}"));
            });
            keep1 = kept;
            Say(Inv($"FM dropout kept: keep1 {kept}, best epoch {Epochs(result)} (validation scores: {scores})"));
        }
        else result = Run(TrainStage.Training, o, train, validation, initial, cancel);

        if (pretraining is not null && keeps.Length > 1)
        {
            // The other pre-training dropouts, each with the AFM at the λ chosen above; the better AFM is kept.
            var lo = o.Clone();
            lo.Lambda = lambda;
            lo.LambdaCandidates = null;
            var first = result;
            var pretrainings = new Dictionary<float, TrainResult> { [keeps[0]] = pretraining };
            (result, float kept, string scores) = Best(keeps, "keep1", keep =>
            {
                if (keep == keeps[0]) return first;
                var p = pretrainings[keep] = Pretrain(o, keep, true, first: false, train, validation, cancel);
                Say(Inv($"AFM with λ = {lambda} from the FM pre-trained with keep1 {keep}"));
                return Run(TrainStage.Training, lo, train, validation, Trainer.InitializeFromFm(lo, p.Model, train), cancel, Inv($"pretrain-keep1-{keep:R}"));
            });
            (pretraining, pretrainKeep1) = (pretrainings[kept], kept);
            Say(Inv($"pre-training kept: keep1 {kept}, FM best epoch {Epochs(pretraining)}, AFM best epoch {Epochs(result)} (AFM validation scores: {scores})"));
        }
        if (o.Model == ModelKind.Afm && validation is not null && AfmKeeps(o) is { Length: > 1 } afmKeeps)
        {
            // The AFM's own dropout: the others from the start and λ kept above; the better AFM is kept.
            var start = pretraining?.Model ?? fm;
            string from = pretrainKeep1 is { } pk && keeps.Length > 1 ? Inv($", from the FM pre-trained with keep1 {pk}") : "";
            var first = result;
            (result, float kept, string scores) = Best(afmKeeps, "keep1", keep =>
            {
                if (keep == afmKeeps[0]) return first;
                var ko = o.Clone();
                ko.Lambda = lambda;
                ko.LambdaCandidates = null;
                ko.Keep1 = keep;
                Say(Inv($"AFM with dropout keep1 {keep}, λ = {lambda}{from} (of keep1 {List(afmKeeps)} the best validation score is kept)"));
                string tag = (pretrainKeep1 is { } p && p != keeps[0] ? Inv($"pretrain-keep1-{p:R}-") : "") + Inv($"keep1-{keep:R}");
                return Run(TrainStage.Training, ko, train, validation, start is null ? null : Trainer.InitializeFromFm(ko, start, train), cancel, tag);
            });
            keep1 = kept;
            Say(Inv($"AFM dropout kept: keep1 {kept}, best epoch {Epochs(result)} (validation scores: {scores})"));
        }
        if (pretraining?.BestScore is { } fmScore && result.BestScore is { } afmScore)
            Say(Inv($"AFM against the FM it started from, on the validation rows: {afmScore:F4} against {fmScore:F4}")
                + (afmScore < fmScore ? Inv($" ({(afmScore / fmScore - 1) * 100:+0.00;-0.00}%)") : "; the AFM is no better here (--model fm may serve these data as well)"));
        if (!o.Refit || validation is null) return new RecipeResult(result.Model, result, pretraining, heldOut, false, lambda, pretrainKeep1, keep1);

        var full = heldOut > 0 ? all : Concat(all, validation);
        if (pretraining is not null)
        {
            var fo = PretrainOptions(o, pretrainKeep1);
            (fo.Epochs, fo.LastEpochFraction) = RefitEpochs(pretraining);
            fo.ValidationFraction = 0;
            Say(Inv($"refit: the FM on all {full.Rows} rows for {Epochs(pretraining)} epochs (its best epoch count)"));
            fm = Run(TrainStage.RefitPretraining, fo, full, null, null, cancel).Model;
        }
        var ro = o.Clone();
        ro.Lambda = lambda;
        ro.LambdaCandidates = null;
        ro.Keep1 = keep1 ?? o.Keep1;
        ro.Keep1Candidates = null;
        (ro.Epochs, ro.LastEpochFraction) = RefitEpochs(result);
        ro.ValidationFraction = 0;
        Say(Inv($"refit: the {o.Model.ToString().ToUpperInvariant()} on all {full.Rows} rows for {Epochs(result)} epochs (its best epoch count)"));
        var refit = Run(TrainStage.Refit, ro, full, null, fm is null ? null : Trainer.InitializeFromFm(ro, fm, full), cancel);
        return new RecipeResult(refit.Model, result, pretraining, heldOut, true, lambda, pretrainKeep1, keep1);
    }

    /// <summary>
    /// One run per value of <paramref name="candidates"/> (<paramref name="train"/> gives it); the run with the best
    /// validation score is kept, the first on a tie or without validation rows. Also the scores as the messages list
    /// them ("keep1 0.8: 0.9223, keep1 1: 0.9255").
    /// </summary>
    private static (TrainResult Result, float Value, string Scores) Best(float[] candidates, string name, Func<float, TrainResult> train)
    {
        TrainResult? best = null;
        float value = candidates[0];
        var scores = new List<string>();
        foreach (float c in candidates)
        {
            var r = train(c);
            scores.Add(Inv($"{name} {c}: {Score(r):F4}"));
            if (best is null || Score(r) < Score(best)) (best, value) = (r, c);
        }
        return (best!, value, string.Join(", ", scores));
    }

    /// <summary>
    /// The epochs and last epoch's share that train as far as <paramref name="r"/>'s best model: 2.25 epochs are 3, the
    /// last for a quarter of its rows.
    /// </summary>
    internal static (int Epochs, double LastEpochFraction) RefitEpochs(TrainResult r)
    {
        double e = r.BestEpochs;
        int whole = (int)Math.Ceiling(e - 1e-9);
        double last = e - (whole - 1);
        return (whole, whole == 0 || last >= 1 - 1e-9 ? 1 : last);
    }

    /// <summary>The best model's epochs as messages give them (<see cref="EpochReport.EpochsText"/>).</summary>
    private static string Epochs(TrainResult r) => EpochReport.EpochsText(r.BestEpochs);

    /// <summary>A run's validation score for choosing between runs (+∞ without validation rows).</summary>
    private static double Score(TrainResult r) => r.BestScore ?? double.PositiveInfinity;

    private TrainResult Run(TrainStage stage, TrainerOptions options, RowSource train, RowSource? validation, AfmModel? initial, CancellationToken cancel, string? tag = null)
    {
        CheckpointOptions? checkpoint = null;
        if (Checkpoint is not null)
        {
            string model = options.Model == ModelKind.Fm ? "fm" : "afm";
            string name = stage switch
            {
                TrainStage.Pretraining => "pretrain-fm",
                TrainStage.RefitPretraining => "refit-pretrain-fm",
                TrainStage.Refit => "refit-" + model,
                _ => options.LambdaCandidates is { Length: > 0 } || options.Lambda != _options.Lambda ? Inv($"{model}-lambda-{options.Lambda:R}") : model,
            };
            if (tag is not null) name += "-" + tag;
            checkpoint = new CheckpointOptions { Directory = Path.Combine(_checkpointDirectory ?? Checkpoint.Directory, name), Resume = Checkpoint.Resume };
            Directory.CreateDirectory(checkpoint.Directory);
        }
        string kind = options.Model.ToString().ToUpperInvariant();
        _running = stage switch
        {
            TrainStage.Pretraining => "the FM pre-training",
            TrainStage.RefitPretraining => "the FM pre-training's refit",
            TrainStage.Refit => $"the {kind}'s refit",
            _ => $"the {kind}",
        };
        var trainer = new Trainer(_accelerator, options) { Checkpoint = checkpoint, Cluster = Cluster };
        trainer.EpochCompleted += r => EpochCompleted?.Invoke(stage, r);
        trainer.Progress += p => Progress?.Invoke(stage, p);
        return trainer.Train(train, validation, initial, cancel);
    }

    private void Say(string line) => Message?.Invoke(line);

    /// <summary>Numbers as a message lists them, whatever the current culture: "0, 0.3, 3".</summary>
    private static string List(float[] values) => string.Join(", ", values.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    private static string Inv(FormattableString s) => s.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The rows of <paramref name="a"/> followed by those of <paramref name="b"/>.</summary>
    internal static SparseDataset Concat(SparseDataset a, SparseDataset b) => SparseDataset.Concat([a, b], a.Name + " + " + b.Name);

    /// <summary>The rows of <paramref name="a"/> followed by those of <paramref name="b"/>, both in memory.</summary>
    private static RowSource Concat(RowSource a, RowSource b) => a.InMemory is { } x && b.InMemory is { } y
        ? RowSource.Of(Concat(x, y))
        : throw new ArgumentException($"a refit on {a.Name} with the separate validation rows of {b.Name} needs both in memory; hold the validation rows out of the training data instead (a validation fraction)");
}
