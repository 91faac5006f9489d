using Afm.Gpu.Kernels;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>Where an AFM starts when nothing is handed to it (<see cref="TrainerOptions.Pretrain"/>).</summary>
public enum PretrainKind
{
    /// <summary>Pre-train an FM of the same k on the same rows first and start the AFM from it, as in the paper (default).</summary>
    Fm,
    /// <summary>Start the AFM from a fresh random initialisation.</summary>
    None,
}

/// <summary>How an AFM's attention and projection start when it is initialised from a pre-trained FM.</summary>
public enum FmHandOff
{
    /// <summary>As in the paper's code: p = 1, h ~ N(0, 1), W and b ~ N(0, sqrt(2/(t+k))) (default).</summary>
    Paper,
    /// <summary>
    /// p at the mean pair count of the training rows and h = 0 (uniform attention): the FM's pair sum
    /// on rows of average length. Kept for comparison; it trains worse (docs/defaults.md).
    /// </summary>
    FmScale,
}

/// <summary>Everything a training run can be told. <see cref="Validate"/> names the first bad option.</summary>
public sealed class TrainerOptions
{
    /// <summary>AFM (default) or FM.</summary>
    public ModelKind Model { get; set; } = ModelKind.Afm;
    /// <summary>Embedding size k (default 16).</summary>
    public int K { get; set; } = 16;
    /// <summary>Attention factor t, the attention MLP's hidden size (default 16; ignored for FM).</summary>
    public int T { get; set; } = 16;
    /// <summary>Passes over the training data (default 20).</summary>
    public int Epochs { get; set; } = 20;
    /// <summary>Rows per mini-batch (default 4096).</summary>
    public int BatchSize { get; set; } = 4096;
    /// <summary>Learning rate (default 0.05).</summary>
    public float LearningRate { get; set; } = 0.05f;
    /// <summary>Optimizer (default Adagrad).</summary>
    public OptimizerKind Optimizer { get; set; } = OptimizerKind.Adagrad;
    /// <summary>L2 penalty λ on the attention weights W: the loss gains λ ‖W‖² (default 0).</summary>
    public float Lambda { get; set; }
    /// <summary>
    /// L2 penalty λ_V on the embeddings (default 0): each step, every embedding row its batch uses gains 2 λ_V v in
    /// its gradient, as if the batch's mean loss had λ_V ‖v‖² added per distinct feature (lazy L2, as sparse CTR
    /// trainers apply it: a row no batch uses is not shrunk).
    /// </summary>
    public float L2Embedding { get; set; }
    /// <summary>L2 penalty λ_w on the linear weights, applied as <see cref="L2Embedding"/> (default 0).</summary>
    public float L2Linear { get; set; }
    /// <summary>Keep probability of dropout on the attention weights (default 1: off).</summary>
    public float Keep0 { get; set; } = 1f;
    /// <summary>Keep probability of dropout on the pooled vector (default 1: off).</summary>
    public float Keep1 { get; set; } = 1f;
    /// <summary>
    /// For an FM (<see cref="Model"/> = <see cref="ModelKind.Fm"/>) with a validation set: train one FM per keep
    /// probability in this list (the pooled vector's dropout) and keep the one with the better validation score, so that
    /// an FM is not held back by a dropout its data does not want. Null or empty (default): one run, with
    /// <see cref="Keep1"/>. An AFM's own dropouts are <see cref="AfmKeep1Candidates"/>; its FM pre-training's are
    /// <see cref="PretrainKeep1Candidates"/>. Applied by <see cref="Recipe"/>; the command line's default is 0.8 and 1
    /// (no dropout), unless <c>--keep1</c> names one.
    /// </summary>
    public float[]? Keep1Candidates { get; set; }
    /// <summary>
    /// For an AFM with a validation set: once λ and the FM pre-training are chosen (with <see cref="Keep1"/>), train the
    /// AFM again with each other keep probability in this list (the pooled vector's dropout), from the same start and
    /// with the same λ, and keep the run with the best validation score. Null or empty (default): the AFM trains with
    /// <see cref="Keep1"/> only. Applied by <see cref="Recipe"/>; the command line's default is 0.8 and 0.5
    /// (<see cref="RecommendedAfmKeep1Candidates"/>), unless <c>--keep1</c> names one.
    /// </summary>
    public float[]? AfmKeep1Candidates { get; set; }
    /// <summary>Loss: squared (regression, default) or logistic (binary labels).</summary>
    public LossKind Loss { get; set; } = LossKind.Squared;
    /// <summary>Seed of initialisation, shuffling, the validation split and dropout (default 1).</summary>
    public int Seed { get; set; } = 1;
    /// <summary>Fraction of the training rows held out for validation when no validation set is given (default 0.1; 0 = none).</summary>
    public float ValidationFraction { get; set; } = 0.1f;
    /// <summary>Stop after this many epochs without a better validation score, keeping the best epoch's model (default 5; 0 = never stop early).
    /// With <see cref="EvaluationsPerEpoch"/> above 1 it counts validations, not epochs.</summary>
    public int Patience { get; set; } = 5;
    /// <summary>
    /// Validations per epoch (default 1: after each epoch). With N above 1 the model is validated after each N-th of an
    /// epoch's rows, so that early stopping can keep a model from within an epoch (large data that overfits within one
    /// or two epochs, such as click logs); <see cref="Patience"/> then counts validations. Each validation scores every
    /// validation row. Ignored without validation rows.
    /// </summary>
    public int EvaluationsPerEpoch { get; set; } = 1;
    /// <summary>The most <see cref="EvaluationsPerEpoch"/> allows.</summary>
    public const int MaxEvaluationsPerEpoch = 1000;
    /// <summary>
    /// The share of its rows that the last epoch trains (default 1: all), so that a run can end within an epoch: a
    /// refit for <see cref="TrainResult.BestEpochs"/> = 2.25 trains 3 epochs, the third for 0.25 of its rows.
    /// </summary>
    public double LastEpochFraction { get; set; } = 1;
    /// <summary>Standard deviation of the embedding initialisation (default 0.01, as the paper's code).</summary>
    public float InitStd { get; set; } = 0.01f;

    /// <summary>
    /// For an AFM with no starting model: pre-train an FM first (default) or start from scratch.
    /// Applied by <see cref="Recipe"/> (and so by <c>AfmEngine.Train</c> and the command line);
    /// <see cref="Trainer.Train(Data.RowSource, Data.RowSource?, AfmModel?, CancellationToken)"/> trains the one model it is given.
    /// </summary>
    public PretrainKind Pretrain { get; set; } = PretrainKind.Fm;
    /// <summary>Maximum epochs of the FM pre-training (default 0: the same as <see cref="Epochs"/>); it stops early with <see cref="Patience"/> too.</summary>
    public int PretrainEpochs { get; set; }
    /// <summary>
    /// Keep probability of the FM pre-training's pooled-vector dropout (default null: <see cref="Keep1"/>). 1 trains
    /// the FM the AFM starts from without dropout: a better start on click logs that overfit in an epoch, a worse one on
    /// ml-100k (docs/defaults.md).
    /// </summary>
    public float? PretrainKeep1 { get; set; }
    /// <summary>
    /// For an AFM pre-trained here with a validation set: pre-train one FM per keep probability in this list (the FM
    /// pre-training's dropout), train the AFM from each and keep the one whose AFM has the better validation score. λ
    /// is chosen (from <see cref="LambdaCandidates"/>) from the first; the others train with that λ. Null or empty
    /// (default): one pre-training, with <see cref="PretrainKeep1"/>. Applied by <see cref="Recipe"/>; the command
    /// line's default is <see cref="Keep1"/> and 1 (no dropout), unless <c>--pretrain-keep1</c> names one.
    /// </summary>
    public float[]? PretrainKeep1Candidates { get; set; }
    /// <summary>How the AFM's attention and projection start from a pre-trained FM (default: as in the paper).</summary>
    public FmHandOff HandOff { get; set; } = FmHandOff.Paper;
    /// <summary>
    /// After a run with a validation set, train again on all rows (training plus validation) for the
    /// best epoch count (and the FM pre-training for its own), and return that model (default off).
    /// Applied by <see cref="Recipe"/>.
    /// </summary>
    public bool Refit { get; set; }

    /// <summary>
    /// When a run diverges (<see cref="TrainingDivergedException"/>: a non-finite loss or weight, or a first epoch that
    /// ends far above where it started), start the whole recipe again with <see cref="LearningRate"/> divided by
    /// <see cref="LearningRateBackoffFactor"/>, at most this many times (default 0: the divergence is thrown). Applied by
    /// <see cref="Recipe"/>, which reports the rate it trained with (<see cref="RecipeResult.LearningRate"/>); the
    /// command line's default is <see cref="RecommendedLearningRateBackoffs"/>, unless <c>--lr</c> names a rate.
    /// </summary>
    public int LearningRateBackoffs { get; set; }

    /// <summary>What each of <see cref="LearningRateBackoffs"/> divides the learning rate by.</summary>
    public const float LearningRateBackoffFactor = 5;

    /// <summary>The <see cref="LearningRateBackoffs"/> of <see cref="Recommended"/>: 0.05, then 0.01, 0.002 and 0.0004.</summary>
    public const int RecommendedLearningRateBackoffs = 3;

    /// <summary>
    /// For an AFM with a validation set: train once per λ in this list (after one FM pre-training)
    /// and keep the run with the best validation score; <see cref="Lambda"/> is then ignored.
    /// Null or empty (default): train once with <see cref="Lambda"/>. Applied by <see cref="Recipe"/>;
    /// the command line's default is <see cref="DefaultLambdaCandidates"/>.
    /// </summary>
    public float[]? LambdaCandidates { get; set; }

    /// <summary>
    /// How the training data was read: its format and feature hashing (<see cref="Data.LibFmReadOptions.Encoding"/>).
    /// The trained model records it (<see cref="AfmModel.Input"/>), so that data for the model is read the same way.
    /// Default: libFM text with ids as written.
    /// </summary>
    public Data.InputEncoding Input { get; set; } = Data.InputEncoding.Default;

    /// <summary>The λ values the command line tries by default: none, moderate, strong (docs/defaults.md).</summary>
    public static IReadOnlyList<float> DefaultLambdaCandidates { get; } = [0f, 0.3f, 3f];

    /// <summary>
    /// The command line's recipe for a data file (<c>afm-gpu train --train F</c> with no other option), which the README's
    /// quality figures measure: at most 100 epochs with early stopping, batch 512, Adagrad at 0.05, dropout keep1 0.8;
    /// λ chosen from <see cref="DefaultLambdaCandidates"/>; the FM pre-training's dropout chosen from keep1 0.8 and 1
    /// (<see cref="PretrainKeep1Candidates"/>), an FM's own likewise (<see cref="Keep1Candidates"/>), an AFM's own from 0.8
    /// and 0.5 (<see cref="AfmKeep1Candidates"/>); a
    /// <see cref="Refit"/> on all rows for the best epoch counts; and, should a run diverge, the recipe again at a fifth of
    /// the learning rate (<see cref="LearningRateBackoffs"/>). The plain constructor's defaults choose nothing: an
    /// AFM's FM pre-training, then one run (20 epochs, batch 4096, no dropout, λ = 0), no refit. Set <see cref="Model"/>, <see cref="K"/>, <see cref="T"/>
    /// and <see cref="Loss"/> on the result as needed; after changing <see cref="Keep1"/>, set the candidate lists too (or
    /// null to train once). With a validation set of your own, set <see cref="Refit"/> to false to keep its rows out
    /// of training, as the command line does.
    /// </summary>
    public static TrainerOptions Recommended() => new()
    {
        Epochs = 100,
        BatchSize = 512,
        LearningRate = 0.05f,
        Keep1 = RecommendedKeep1,
        Keep1Candidates = [RecommendedKeep1, 1f],
        AfmKeep1Candidates = [.. RecommendedAfmKeep1Candidates],
        PretrainKeep1Candidates = [RecommendedKeep1, 1f],
        LambdaCandidates = [.. DefaultLambdaCandidates],
        Refit = true,
        LearningRateBackoffs = RecommendedLearningRateBackoffs,
    };

    /// <summary>The dropout keep probability on the pooled vector that <see cref="Recommended"/> tries first.</summary>
    public const float RecommendedKeep1 = 0.8f;

    /// <summary>The AFM's own dropouts that <see cref="Recommended"/> tries (<see cref="AfmKeep1Candidates"/>): 0.8, then 0.5.</summary>
    public static IReadOnlyList<float> RecommendedAfmKeep1Candidates { get; } = [RecommendedKeep1, 0.5f];

    /// <summary>A copy of every option.</summary>
    public TrainerOptions Clone()
    {
        var c = (TrainerOptions)MemberwiseClone();
        c.LambdaCandidates = LambdaCandidates?.ToArray();
        c.PretrainKeep1Candidates = PretrainKeep1Candidates?.ToArray();
        c.Keep1Candidates = Keep1Candidates?.ToArray();
        c.AfmKeep1Candidates = AfmKeep1Candidates?.ToArray();
        return c;
    }

    /// <summary>Throws <see cref="InvalidOptionException"/> (an <see cref="ArgumentException"/>) naming the first option out of range.</summary>
    public void Validate()
    {
        static void Check(bool ok, string name, object value, string rule)
        {
            if (!ok) throw new InvalidOptionException(name, Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "", rule);
        }
        Check(K is > 0 and <= 4096, nameof(K), K, "must be in 1..4096");
        Check(Model == ModelKind.Fm || T is > 0 and <= 4096, nameof(T), T, "must be in 1..4096");
        Check(Epochs >= 0, nameof(Epochs), Epochs, "must not be negative");
        Check(BatchSize is > 0 and <= 1 << 20, nameof(BatchSize), BatchSize, "must be in 1..1048576");
        Check(float.IsFinite(LearningRate) && LearningRate > 0, nameof(LearningRate), LearningRate, "must be a positive number");
        Check(float.IsFinite(Lambda) && Lambda >= 0, nameof(Lambda), Lambda, "must be >= 0");
        Check(float.IsFinite(L2Embedding) && L2Embedding >= 0, nameof(L2Embedding), L2Embedding, "must be >= 0");
        Check(float.IsFinite(L2Linear) && L2Linear >= 0, nameof(L2Linear), L2Linear, "must be >= 0");
        Check(Keep0 is > 0 and <= 1, nameof(Keep0), Keep0, "must be in (0, 1]");
        Check(Keep1 is > 0 and <= 1, nameof(Keep1), Keep1, "must be in (0, 1]");
        Check(Keep1Candidates is null || Keep1Candidates.All(k => k is > 0 and <= 1), nameof(Keep1Candidates),
            Keep1Candidates is null ? "" : string.Join(",", Keep1Candidates), "every keep probability must be in (0, 1]");
        Check(AfmKeep1Candidates is null || AfmKeep1Candidates.All(k => k is > 0 and <= 1), nameof(AfmKeep1Candidates),
            AfmKeep1Candidates is null ? "" : string.Join(",", AfmKeep1Candidates), "every keep probability must be in (0, 1]");
        Check(ValidationFraction is >= 0 and < 1, nameof(ValidationFraction), ValidationFraction, "must be in [0, 1)");
        Check(Patience >= 0, nameof(Patience), Patience, "must not be negative");
        Check(EvaluationsPerEpoch is >= 1 and <= MaxEvaluationsPerEpoch, nameof(EvaluationsPerEpoch), EvaluationsPerEpoch, $"must be in 1..{MaxEvaluationsPerEpoch}");
        Check(double.IsFinite(LastEpochFraction) && LastEpochFraction is > 0 and <= 1, nameof(LastEpochFraction), LastEpochFraction, "must be in (0, 1]");
        Check(LambdaCandidates is null || LambdaCandidates.All(l => float.IsFinite(l) && l >= 0), nameof(LambdaCandidates),
            LambdaCandidates is null ? "" : string.Join(",", LambdaCandidates), "every λ must be >= 0");
        Check(PretrainEpochs >= 0, nameof(PretrainEpochs), PretrainEpochs, "must not be negative");
        Check(PretrainKeep1 is null or (> 0 and <= 1), nameof(PretrainKeep1), PretrainKeep1 ?? 0, "must be in (0, 1]");
        Check(PretrainKeep1Candidates is null || PretrainKeep1Candidates.All(k => k is > 0 and <= 1), nameof(PretrainKeep1Candidates),
            PretrainKeep1Candidates is null ? "" : string.Join(",", PretrainKeep1Candidates), "every keep probability must be in (0, 1]");
        Check(LearningRateBackoffs is >= 0 and <= 10, nameof(LearningRateBackoffs), LearningRateBackoffs, "must be in 0..10");
        Check(float.IsFinite(InitStd) && InitStd > 0, nameof(InitStd), InitStd, "must be a positive number");
    }
}
