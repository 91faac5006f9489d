using System.Diagnostics;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>
/// One finished epoch, or with <see cref="TrainerOptions.EvaluationsPerEpoch"/> above 1 one part of an epoch, after
/// which the model was validated.
/// </summary>
/// <param name="Epoch">1-based epoch number.</param>
/// <param name="TrainLoss">Mean training loss of the epoch, or of the rows of this part (with dropout, without the λ term).</param>
/// <param name="Validation">Validation metrics after the epoch (or part), or null without a validation set.</param>
/// <param name="Seconds">Wall time of the epoch's (or part's) training steps.</param>
/// <param name="SamplesPerSecond">Training rows per second in this epoch (or part).</param>
/// <param name="IsBest">Whether this model is the best so far (kept as the result).</param>
/// <param name="Fraction">The share of the epoch's rows trained when this report was made: 1 at the epoch's end.</param>
public sealed record EpochReport(int Epoch, double TrainLoss, Metrics? Validation, double Seconds, double SamplesPerSecond, bool IsBest, double Fraction = 1)
{
    /// <summary>Epochs trained when this report was made, counting parts of an epoch (1.25: a quarter into the second).</summary>
    public double Epochs => Epoch - 1 + Fraction;

    /// <summary>Epochs as messages give them: <c>5</c>, or <c>2.25</c> with validations within epochs.</summary>
    public static string EpochsText(double epochs) => epochs.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>Progress inside an epoch.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="RowsDone">Rows trained so far in this epoch.</param>
/// <param name="RowsTotal">Rows in an epoch.</param>
public readonly record struct TrainProgress(int Epoch, long RowsDone, long RowsTotal);

/// <summary>The outcome of a training run.</summary>
/// <param name="Model">The best epoch's model (the last one without validation).</param>
/// <param name="BestEpoch">The epoch it comes from (0: the initial model was never beaten); with evaluations within
/// epochs, the epoch it was validated in (see <see cref="BestEpochs"/>).</param>
/// <param name="History">Every epoch (and part of an epoch that was validated).</param>
/// <param name="BestScore">The validation objective of <paramref name="Model"/> (of the initial model when
/// <paramref name="BestEpoch"/> is 0); null without validation rows.</param>
public sealed record TrainResult(AfmModel Model, int BestEpoch, IReadOnlyList<EpochReport> History, double? BestScore = null)
{
    /// <summary>
    /// Epochs trained to <see cref="Model"/>, parts of an epoch counted (<see cref="EpochReport.Epochs"/>): what a refit
    /// trains for. Equal to <see cref="BestEpoch"/> when every evaluation ends an epoch.
    /// </summary>
    public double BestEpochs => BestEpoch == 0 ? 0 : History.LastOrDefault(r => r.IsBest)?.Epochs ?? BestEpoch;
}

/// <summary>
/// Mini-batch training on an accelerator: shuffling, dropout, Adagrad/Adam/SGD, validation after
/// each epoch and early stopping that keeps the best epoch. The model lives on the device during
/// training; it is copied back only when an epoch improves on the best.
/// </summary>
public sealed partial class Trainer
{
    private readonly Accelerator _accelerator;
    private readonly TrainerOptions _options;

    /// <summary>What training data without a single feature is told: a model needs at least one feature id.</summary>
    public const string NoFeatures = "no features: every row is a label alone, so there is nothing to train";

    /// <summary>Creates a trainer; the options are validated here.</summary>
    public Trainer(Accelerator accelerator, TrainerOptions options)
    {
        _accelerator = accelerator ?? throw new ArgumentNullException(nameof(accelerator));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        options.Validate();
    }

    /// <summary>Called after every epoch.</summary>
    public event Action<EpochReport>? EpochCompleted;

    /// <summary>Called now and then during an epoch.</summary>
    public event Action<TrainProgress>? Progress;

    /// <summary>Keep a checkpoint at each epoch end, and resume from it (see <see cref="CheckpointOptions"/>); null: none.</summary>
    public CheckpointOptions? Checkpoint { get; init; }

    /// <summary>A freshly initialised model as in the paper's code: V ~ N(0, std), w = w0 = 0, W and b ~ N(0, sqrt(2/(t+k))), h ~ N(0, 1), p = 1.</summary>
    public static AfmModel Initialize(TrainerOptions o, int featureCount)
    {
        var model = new AfmModel(o.Model, featureCount, o.K, o.T, o.Loss) { Input = o.Input };
        var rng = new Random(RandomStreams.Seed(o.Seed, o.Model, RandomStreams.Initialisation));
        Fill(model.V, o.InitStd, rng);
        if (o.Model == ModelKind.Afm)
        {
            float glorot = MathF.Sqrt(2f / (o.T + o.K));
            Fill(model.AttnW, glorot, rng);
            Fill(model.AttnB, glorot, rng);
            Fill(model.AttnH, 1f, rng);
            Array.Fill(model.Proj, 1f);
        }
        return model;
    }

    /// <summary>
    /// An AFM initialised from a trained FM, as in the paper: embeddings, linear terms and bias are
    /// copied; the attention network and p start as <see cref="TrainerOptions.HandOff"/> says (by
    /// default as in the paper's code, p = 1 and h ~ N(0, 1), see <see cref="Initialize"/>).
    /// </summary>
    public static AfmModel InitializeFromFm(TrainerOptions o, AfmModel fm, SparseDataset train) => InitializeFromFm(o, fm, RowSource.Of(train));

    /// <inheritdoc cref="InitializeFromFm(TrainerOptions, AfmModel, SparseDataset)"/>
    public static AfmModel InitializeFromFm(TrainerOptions o, AfmModel fm, RowSource train)
    {
        if (fm.Kind != ModelKind.Fm) throw new ArgumentException("the pre-trained model must be an FM", nameof(fm));
        if (fm.K != o.K) throw new ArgumentException($"the FM has k = {fm.K} but the AFM asks for k = {o.K}; they must match", nameof(fm));
        var model = Initialize(o, fm.FeatureCount);
        fm.V.CopyTo(model.V, 0);
        fm.Linear.CopyTo(model.Linear, 0);
        model.W0[0] = fm.W0[0];
        if (o.HandOff == FmHandOff.FmScale)
        {
            Array.Fill(model.Proj, (float)Math.Max(1, train.MeanPairCount()));
            Array.Clear(model.AttnH);
        }
        return model;
    }

    private static void Fill(float[] a, float std, Random rng)
    {
        for (int i = 0; i < a.Length; i++)
        {
            // Box-Muller
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            a[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    }

    /// <summary>Splits off a seeded random fraction of the rows as a validation set.</summary>
    /// <exception cref="ArgumentException">The fraction holds out no row, or every row.</exception>
    public static (SparseDataset Train, SparseDataset Validation) Split(SparseDataset data, float fraction, int seed)
    {
        var idx = Enumerable.Range(0, data.Rows).ToArray();
        new Random(seed ^ 0x5EED).Shuffle(idx);
        int nValid = (int)Math.Round(data.Rows * (double)fraction);
        if (nValid == 0)
            throw new ArgumentException($"{data.Name}: a validation fraction of {fraction} of {data.Rows} rows holds out no row; raise it (to at least {0.5 / data.Rows:G3}) or set it to 0 for no validation");
        if (nValid >= data.Rows)
            throw new ArgumentException($"{data.Name}: a validation fraction of {fraction} of {data.Rows} rows leaves no training row; lower it");
        return (data.Subset(idx.AsSpan(nValid), data.Name), data.Subset(idx.AsSpan(0, nValid), data.Name + " (held out)"));
    }

    /// <summary>
    /// Trains on <paramref name="train"/>. Without <paramref name="validation"/>, holds out
    /// <see cref="TrainerOptions.ValidationFraction"/> of the training rows. Starts from
    /// <paramref name="initial"/> when given (e.g. <see cref="InitializeFromFm(TrainerOptions, AfmModel, SparseDataset)"/>).
    /// </summary>
    public TrainResult Train(SparseDataset train, SparseDataset? validation = null, AfmModel? initial = null, CancellationToken cancel = default) =>
        Train(RowSource.Of(train), validation is null ? null : RowSource.Of(validation), initial, cancel);

    /// <summary>
    /// Trains on the rows of <paramref name="train"/> (in memory or a cache read chunk by chunk), validating on
    /// <paramref name="validation"/>; otherwise as <see cref="Train(SparseDataset, SparseDataset?, AfmModel?, CancellationToken)"/>.
    /// </summary>
    public TrainResult Train(RowSource train, RowSource? validation, AfmModel? initial = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(train);
        var o = _options;
        if (train.Rows == 0) throw new ArgumentException($"{train.Name}: no training rows", nameof(train));
        if (validation is null && o.ValidationFraction > 0 && train.Rows >= 10)
            (train, validation) = train.Split(o.ValidationFraction, o.Seed);
        int featureCount = Math.Max(train.FeatureCount, validation?.FeatureCount ?? 0);
        if (featureCount == 0 && initial is null) throw new ArgumentException($"{train.Name}: {NoFeatures}", nameof(train));
        if (initial is not null && initial.FeatureCount < featureCount)
            throw new ArgumentException($"the initial model has {initial.FeatureCount} features but the data uses ids up to {featureCount - 1}");
        if (validation is not null && validation.Rows == 0) throw new ArgumentException($"{validation.Name}: no validation rows", nameof(validation));
        int maxNnz = Math.Max(2, Math.Max(train.MaxNnz, validation?.MaxNnz ?? 0));
        int batchSize = (int)Math.Min(o.BatchSize, train.Rows);
        int evalBatch = (int)Math.Max(batchSize, Math.Min(o.BatchSize, validation?.Rows ?? 0));
        Limits.CheckTraining(train.Name, o.Model, Math.Max(featureCount, initial?.FeatureCount ?? 0), o.K, o.T, maxNnz,
            evalBatch, o.Optimizer, _accelerator.Descriptor);
        if (o.Loss == LossKind.Logistic)
        {
            CheckBinaryLabels(train);
            if (validation is not null) CheckBinaryLabels(validation);
        }
        var model = initial?.Clone() ?? Initialize(o, featureCount);
        if (!o.Input.IsDefault) model.Input = o.Input;
        if (model.Kind != o.Model || model.K != o.K || (o.Model == ModelKind.Afm && model.T != o.T))
            throw new ArgumentException("the initial model's kind or shape differs from the options");
        if (o.Loss == LossKind.Squared)
            (model.LabelMin, model.LabelMax) = train.LabelRange();

        var shape = ModelShape.Of(model, maxNnz, evalBatch);
        using var kernels = _accelerator.CreateKernels(shape);
        using var device = kernels.CreateModel(o.Optimizer);
        using var batch = kernels.CreateBatch();
        using var work = kernels.CreateWorkspace();
        using var exchange = CreateExchange(kernels);
        device.Upload(model);
        var host = new HostBatch(shape.BatchCapacity, maxNnz, model.FeatureCount);

        var history = new List<EpochReport>();
        var best = model.Clone();
        int bestEpoch = 0;
        double bestScore = validation is null ? double.PositiveInfinity : EvaluateOnRoot(kernels, device, batch, host, work, validation, model).Metrics.Objective(o.Loss);
        if (double.IsNaN(bestScore)) throw Diverged(0, 0, $"the initial model's validation score on {validation!.Name} is NaN", train);
        // Without validation, the predictions of a few training rows show whether a model is usable before it is kept.
        var probe = validation ?? RowSource.Of(train.Head(shape.BatchCapacity));
        var rng = new Random(RandomStreams.Seed(o.Seed, o.Model, RandomStreams.Order));
        uint dropoutSeed = (uint)RandomStreams.Seed(o.Seed, o.Model, RandomStreams.Dropout);
        var order = train.CreateOrder();
        var eps = o.Optimizer == OptimizerKind.Adam ? 1e-8f : 1e-10f;
        long step = 0;
        var lossSum = new float[1];
        // The starting model's mean loss on the first batch (its forward pass precedes the first update), against
        // which a fresh run's first epoch is judged; NaN until read, and in a resumed run.
        double initialLoss = double.NaN;
        double baselineLoss = train.BaselineLoss(o.Loss);
        int sinceBest = 0;
        int firstEpoch = 1;
        ulong fingerprint = Checkpoint is null ? 0 : CheckpointFile.Fingerprint(o, train, validation);
        if (Checkpoint is { Resume: true } && CheckpointFile.Load(Checkpoint, fingerprint, best, device) is { } saved)
        {
            (firstEpoch, step, bestEpoch, bestScore, sinceBest) = (saved.Epoch + 1, saved.Step, saved.BestEpoch, saved.BestScore, saved.SinceBest);
            history.AddRange(saved.History);
            for (int e = 1; e < firstEpoch; e++) order.Shuffle(rng); // the shuffles of the epochs done
            if (o.Patience > 0 && sinceBest >= o.Patience) firstEpoch = int.MaxValue; // it had stopped early
        }
        CheckSameStart(firstEpoch, step);
        // Validation within an epoch: after each of `parts` equal shares of its rows (the last at the epoch's end).
        int parts = validation is null ? 1 : o.EvaluationsPerEpoch;
        // Within an epoch the feed fills the next training batch into `host` while the model is validated, so a
        // validation there fills batches of its own.
        var evalHost = parts > 1 ? new HostBatch(shape.BatchCapacity, maxNnz, model.FeatureCount) : host;
        bool stopped = false;
        var sw = new Stopwatch();
        long partStart = 0; // rows of the epoch before the part being trained
        double lossBefore = 0; // their summed loss
        for (int epoch = firstEpoch; epoch <= o.Epochs && !stopped; epoch++)
        {
            order.Shuffle(rng);
            work.LossSum.Clear();
            sw.Restart();
            // The last epoch of a run told to train a fraction of it (a refit to a best model within an epoch) ends early.
            long epochRows = epoch == o.Epochs && o.LastEpochFraction < 1 ? Math.Max(1, (long)Math.Round(o.LastEpochFraction * train.Rows)) : train.Rows;
            int part = 1;
            (partStart, lossBefore) = (0, 0);
            // The next batch is assembled on the host while the accelerator runs the current step.
            // Under MPI each rank fills its shard of every global batch (MpiCluster.ShardOf).
            using var feed = new BatchFeed(host, order.Batches(batchSize), Cluster is null ? null : Cluster.ShardOf, cancel);
            for (long start = 0; ; start += feed.Count)
            {
                cancel.ThrowIfCancellationRequested();
                // At a fraction's end the feed is still filling the next batch into `host`, which the validation below
                // may use: wait for that fill, and train no more of the epoch.
                int count = feed.Wait();
                if (start >= epochRows) count = 0;
                if (count == 0)
                {
                    // the epoch's end (or the fraction asked for)
                    if (start > partStart || part == parts) Report(epoch, start, epochEnd: true);
                    break;
                }
                batch.Upload(host);
                feed.FillNext();
                step++;
                var sp = new StepParams(o.Loss, o.Keep0, o.Keep1, DropoutRng.StepSeed(dropoutSeed, step), 1f / count, feed.Offset);
                var op = new OptimizerParams(o.Optimizer, o.LearningRate, o.Lambda, (int)Math.Min(step, int.MaxValue), Epsilon: eps,
                    L2Embedding: o.L2Embedding, L2Linear: o.L2Linear);
                kernels.ForwardBackward(device, batch, work, sp);
                if (exchange is null)
                {
                    kernels.ReduceDense(work);
                    kernels.UpdateSparse(device, batch, work, op);
                    kernels.UpdateDense(device, work, op);
                }
                else exchange.Step(device, batch, work, op);
                // Reading the loss waits for the device, so it is read every few steps only: on a GPU the host then
                // queues the next steps while the device runs. A sum that is no longer finite stays so until the epoch's end.
                if (step == 1 && history.Count == 0)
                {
                    work.LossSum.CopyTo(lossSum);
                    initialLoss = lossSum[0] / count;
                }
                if (step % LossCheckSteps == 0)
                {
                    work.LossSum.CopyTo(lossSum);
                    if (!float.IsFinite(lossSum[0])) throw Diverged(epoch, step, $"the loss is {lossSum[0]}", train);
                }
                Progress?.Invoke(new TrainProgress(epoch, start + count, train.Rows));
                long done = start + count;
                if (part < parts && done < epochRows && done >= (long)Math.Ceiling((double)part * train.Rows / parts))
                {
                    Report(epoch, done, epochEnd: false);
                    if (stopped) break;
                    part++;
                    sw.Restart();
                }
            }
        }

        // Validates the model after `done` rows of `epoch`, keeps it when it is the best so far, reports, and at the
        // epoch's end (or where a run told to end within it ends) keeps a checkpoint; sets `stopped` when the patience
        // has run out.
        void Report(int epoch, long done, bool epochEnd)
        {
            double fraction = Math.Min(1, (double)done / train.Rows);
            _accelerator.Synchronize();
            double seconds = sw.Elapsed.TotalSeconds;
            double lossTotal = work.LossSum.ToArray()[0];
            long rows = done - partStart;
            double trainLoss = (lossTotal - lossBefore) / Math.Max(1, rows);
            (partStart, lossBefore) = (done, lossTotal);
            if (!double.IsFinite(trainLoss)) throw Diverged(epoch, step, $"the mean loss is {trainLoss}", train);
            if (trainLoss > DivergenceFactor * baselineLoss)
                throw Diverged(epoch, step, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"the mean training loss {trainLoss:G3} is over {DivergenceFactor:G0} times that of predicting the mean label ({baselineLoss:G3}, at least 1% of the labels' scale)"), train);
            // a run's first report (a resumed run has its history from the checkpoint)
            if (history.Count == 0 && !double.IsNaN(initialLoss) && trainLoss > FirstEpochFactor * Math.Max(baselineLoss, initialLoss))
                throw Diverged(epoch, step, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"the mean training loss of the first {(parts > 1 ? "validation interval" : "epoch")}, {trainLoss:G3}, is over {FirstEpochFactor:G0} times that of the starting model ({initialLoss:G3}) and of predicting the mean label ({baselineLoss:G3}): the steps overshoot"), train);
            var (metrics, badRow, badValue) = EvaluateOnRoot(kernels, device, batch, evalHost, work, probe, model);
            if (badRow >= 0) throw Diverged(epoch, step, $"the prediction for row {badRow + 1} of {probe.Name} is {badValue}", train);
            if (validation is null) metrics = null;
            else if (!double.IsFinite(metrics.Objective(o.Loss)))
                throw Diverged(epoch, step, $"the validation score on {validation.Name} is {metrics.Objective(o.Loss)}", train);
            bool isBest = metrics is null || metrics.Objective(o.Loss) < bestScore;
            if (isBest)
            {
                bestScore = metrics?.Objective(o.Loss) ?? bestScore;
                bestEpoch = epoch;
                device.Download(best);
                if (NonFinite(best) is { } bad) throw Diverged(epoch, step, $"weight {bad} is not finite", train);
                sinceBest = 0;
            }
            else sinceBest++;
            var report = new EpochReport(epoch, trainLoss, metrics, seconds, rows / Math.Max(seconds, 1e-9), isBest, fraction);
            history.Add(report);
            if (epochEnd && Checkpoint is not null && IsRoot)
                CheckpointFile.Save(Checkpoint, fingerprint, new CheckpointState(epoch, step, bestEpoch, bestScore, sinceBest, history), best, device);
            EpochCompleted?.Invoke(report);
            if (o.Patience > 0 && sinceBest >= o.Patience) stopped = true;
        }
        CheckReplicas(best, device);
        return new TrainResult(best, bestEpoch, history, validation is null ? null : bestScore);
    }

    /// <summary>
    /// Metrics of the device model on <paramref name="data"/>, and the first row whose raw score is not finite
    /// (-1: none) with that score. Rows in memory are scored at once; other sources block by block in bounded memory
    /// (<see cref="MetricsAccumulator"/>).
    /// </summary>
    private static (Metrics Metrics, long BadRow, float BadValue) Evaluate(AfmKernels kernels, DeviceModel device, DeviceBatch batch, HostBatch host, TrainWorkspace work,
        RowSource data, AfmModel model)
    {
        if (data.InMemory is { } rows) return Evaluate(kernels, device, batch, host, work, rows, model);
        var sum = new MetricsAccumulator(model);
        long seen = 0, badRow = -1;
        float badValue = 0;
        foreach (var block in data.Blocks())
        {
            var (metrics, bad, value) = Evaluate(kernels, device, batch, host, work, block, model, sum);
            if (badRow < 0 && bad >= 0) (badRow, badValue) = (seen + bad, value);
            seen += metrics.Rows;
        }
        return (sum.Result(), badRow, badValue);
    }

    /// <summary>Metrics of the device model on <paramref name="data"/>, and the first row whose raw score is not finite (-1: none) with that score; the predictions are also added to <paramref name="sum"/> when given.</summary>
    private static (Metrics Metrics, int BadRow, float BadValue) Evaluate(AfmKernels kernels, DeviceModel device, DeviceBatch batch, HostBatch host, TrainWorkspace work,
        SparseDataset data, AfmModel model, MetricsAccumulator? sum = null)
    {
        int cap = kernels.Shape.BatchCapacity;
        var pred = new float[data.Rows];
        var rows = new int[cap];
        for (int start = 0; start < data.Rows; start += cap)
        {
            int count = Math.Min(cap, data.Rows - start);
            for (int i = 0; i < count; i++) rows[i] = start + i;
            host.Fill(data, rows.AsSpan(0, count), forTraining: false);
            batch.Upload(host);
            kernels.Forward(device, batch, work.Yhat, null);
            work.Yhat.CopyTo(pred.AsSpan(start, count));
        }
        int bad = Array.FindIndex(pred, x => !float.IsFinite(x));
        float badValue = bad >= 0 ? pred[bad] : 0;
        var scores = model.Loss == LossKind.Squared ? (float[])pred.Clone() : null; // rank for the AUC unclipped
        for (int i = 0; i < pred.Length; i++) pred[i] = Predictor.Link(model, pred[i]);
        if (sum is not null)
        {
            sum.Add(pred, data.Labels, scores);
            return (new Metrics(double.NaN, double.NaN, double.NaN, double.NaN, data.Rows), bad, badValue);
        }
        return (Metrics.Compute(pred, data.Labels, model.Loss, scores), bad, badValue);
    }
}
