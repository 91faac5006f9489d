using Afm.Gpu.Model;

namespace Afm.Gpu.Data;

/// <summary>One mini-batch: rows <see cref="Rows"/> of <see cref="Data"/>, in that order.</summary>
/// <param name="Data">The dataset holding the rows.</param>
/// <param name="Rows">Row indices into <paramref name="Data"/>.</param>
public readonly record struct RowBatch(SparseDataset Data, ArraySegment<int> Rows);

/// <summary>
/// The order in which one training run visits a source's rows: <see cref="Shuffle"/> draws the next epoch's order,
/// <see cref="Batches"/> gives that epoch's mini-batches, every row once.
/// </summary>
public abstract class RowOrder
{
    /// <summary>Draws the next epoch's order from <paramref name="rng"/> (once per epoch, replayable from the seed).</summary>
    public abstract void Shuffle(Random rng);

    /// <summary>The current epoch's mini-batches of <paramref name="batchSize"/> rows (the last may be shorter), every row once.</summary>
    public abstract IEnumerable<RowBatch> Batches(int batchSize);
}

/// <summary>
/// Where training and evaluation take rows from: a dataset in memory (<see cref="DatasetRows"/>) or a binary cache
/// read chunk by chunk (<see cref="CacheRows"/>). A source gives its statistics (label range, baseline loss, ...),
/// the epochs' orders of a training run (<see cref="CreateOrder"/>), and its rows in file order in blocks for
/// evaluation.
/// </summary>
public abstract class RowSource
{
    /// <summary>Where the rows come from, for messages.</summary>
    public abstract string Name { get; }

    /// <summary>Number of rows.</summary>
    public abstract long Rows { get; }

    /// <summary>Number of features: every id is below it.</summary>
    public abstract int FeatureCount { get; }

    /// <summary>Largest number of non-zeros in one row.</summary>
    public abstract int MaxNnz { get; }

    /// <summary>The dataset when all rows are in memory, else null.</summary>
    public virtual SparseDataset? InMemory => null;

    /// <summary>The smallest and largest label.</summary>
    public abstract (float Min, float Max) LabelRange();

    /// <summary>The largest magnitude of a feature value and of a label.</summary>
    public abstract (float Values, float Labels) Magnitudes();

    /// <summary>The first row (0-based) whose label is not 0, 1 or -1, with that label; null when all are.</summary>
    public abstract (long Row, float Label)? FirstNonBinaryLabel();

    /// <summary>
    /// The loss of predicting the mean label on every row, floored so that labels that are all equal still have a scale
    /// (see <see cref="RowStatistics"/>); the divergence check compares the training loss with it.
    /// </summary>
    public abstract double BaselineLoss(LossKind loss);

    /// <summary>Mean number of feature pairs per row.</summary>
    public abstract double MeanPairCount();

    /// <summary>A new order of the rows for one training run, starting from the rows' own order.</summary>
    public abstract RowOrder CreateOrder();

    /// <summary>The rows in file order, in blocks, for evaluation and prediction.</summary>
    public abstract IEnumerable<SparseDataset> Blocks();

    /// <summary>The first <paramref name="rows"/> rows (fewer if there are fewer) as a dataset in memory.</summary>
    public abstract SparseDataset Head(int rows);

    /// <summary>Holds out a seeded fraction of the rows for validation.</summary>
    /// <exception cref="ArgumentException">The fraction holds out no row, or every row.</exception>
    public abstract (RowSource Train, RowSource Validation) Split(float fraction, int seed);

    /// <summary>This source with <see cref="FeatureCount"/> raised to at least <paramref name="featureCount"/>.</summary>
    public abstract RowSource WithFeatureCount(int featureCount);

    /// <summary>Appends what identifies these rows to a CRC-32 (for checkpoints).</summary>
    public abstract uint AppendFingerprint(uint crc);

    /// <summary>The rows of <paramref name="data"/>.</summary>
    public static RowSource Of(SparseDataset data) => new DatasetRows(data);
}

/// <summary>
/// The rows of a <see cref="SparseDataset"/> in memory. A run's order is one permutation of all rows, shuffled in
/// place each epoch (Fisher-Yates with the trainer's random generator) from the rows' own order.
/// </summary>
public sealed class DatasetRows : RowSource
{
    private readonly SparseDataset _data;

    /// <summary>Wraps <paramref name="data"/>.</summary>
    public DatasetRows(SparseDataset data) => _data = data ?? throw new ArgumentNullException(nameof(data));

    /// <inheritdoc/>
    public override string Name => _data.Name;
    /// <inheritdoc/>
    public override long Rows => _data.Rows;
    /// <inheritdoc/>
    public override int FeatureCount => _data.FeatureCount;
    /// <inheritdoc/>
    public override int MaxNnz => _data.MaxNnz;
    /// <inheritdoc/>
    public override SparseDataset InMemory => _data;

    /// <inheritdoc/>
    public override (float Min, float Max) LabelRange()
    {
        float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
        foreach (float y in _data.Labels) { lo = MathF.Min(lo, y); hi = MathF.Max(hi, y); }
        return (lo, hi);
    }

    /// <inheritdoc/>
    public override (float Values, float Labels) Magnitudes()
    {
        return (Kernels.Cpu.Simd.MaxMagnitude(_data.Values), Kernels.Cpu.Simd.MaxMagnitude(_data.Labels));
    }

    /// <inheritdoc/>
    public override (long Row, float Label)? FirstNonBinaryLabel()
    {
        int r = Array.FindIndex(_data.Labels, y => y is not (0f or 1f or -1f));
        return r < 0 ? null : (r, _data.Labels[r]);
    }

    /// <inheritdoc/>
    public override double BaselineLoss(LossKind loss)
    {
        double mean = 0;
        foreach (float y in _data.Labels) mean += loss == LossKind.Logistic ? (y > 0 ? 1 : 0) : y;
        mean /= Math.Max(1, _data.Rows);
        if (loss == LossKind.Logistic) return RowStatistics.LogisticBaseline(mean);
        double v = 0;
        foreach (float y in _data.Labels) v += (y - mean) * (y - mean);
        return RowStatistics.SquaredBaseline(mean, v / Math.Max(1, _data.Rows));
    }

    /// <inheritdoc/>
    public override double MeanPairCount()
    {
        double pairs = 0;
        for (int r = 0; r < _data.Rows; r++) pairs += Kernels.ModelShape.PairCount(_data.RowLength(r));
        return pairs / Math.Max(1, _data.Rows);
    }

    /// <inheritdoc/>
    public override RowOrder CreateOrder() => new Permutation(_data);

    private sealed class Permutation(SparseDataset data) : RowOrder
    {
        private readonly int[] _order = Enumerable.Range(0, data.Rows).ToArray();

        public override void Shuffle(Random rng) => rng.Shuffle(_order);

        public override IEnumerable<RowBatch> Batches(int batchSize)
        {
            for (int start = 0; start < _order.Length; start += batchSize)
                yield return new RowBatch(data, new ArraySegment<int>(_order, start, Math.Min(batchSize, _order.Length - start)));
        }
    }

    /// <inheritdoc/>
    public override IEnumerable<SparseDataset> Blocks() => [_data];

    /// <inheritdoc/>
    public override SparseDataset Head(int rows) => _data.Subset(Enumerable.Range(0, Math.Min(_data.Rows, rows)).ToArray());

    /// <inheritdoc/>
    public override (RowSource Train, RowSource Validation) Split(float fraction, int seed)
    {
        var (train, validation) = Training.Trainer.Split(_data, fraction, seed);
        return (new DatasetRows(train), new DatasetRows(validation));
    }

    /// <inheritdoc/>
    public override RowSource WithFeatureCount(int featureCount) =>
        featureCount <= FeatureCount ? this : new DatasetRows(_data.WithFeatureCount(featureCount));

    /// <inheritdoc/>
    public override uint AppendFingerprint(uint crc)
    {
        var d = _data;
        crc = Crc32.Append(crc, System.Runtime.InteropServices.MemoryMarshal.AsBytes(d.Offsets.AsSpan()));
        crc = Crc32.Append(crc, System.Runtime.InteropServices.MemoryMarshal.AsBytes(d.FeatureIds.AsSpan()));
        crc = Crc32.Append(crc, System.Runtime.InteropServices.MemoryMarshal.AsBytes(d.Values.AsSpan()));
        crc = Crc32.Append(crc, System.Runtime.InteropServices.MemoryMarshal.AsBytes(d.Labels.AsSpan()));
        return Crc32.Append(crc, BitConverter.GetBytes(d.FeatureCount));
    }
}

/// <summary>Statistics shared by the row sources.</summary>
internal static class RowStatistics
{
    /// <summary>The smallest baseline loss (so that a ratio to it stays finite).</summary>
    public const double MinBaseline = 1e-6;

    /// <summary>
    /// The entropy of a positive rate <paramref name="mean"/> (the log loss of predicting it), at least 0.01, so that
    /// labels of one class still give the divergence check a scale.
    /// </summary>
    public static double LogisticBaseline(double mean)
    {
        double p = Math.Clamp(mean, 1e-6, 1 - 1e-6);
        return Math.Max(-(p * Math.Log(p) + (1 - p) * Math.Log(1 - p)), 0.01);
    }

    /// <summary>
    /// The labels' variance (the squared error of predicting their mean), at least 1% of their mean square (and
    /// <see cref="MinBaseline"/>), so that labels that are all equal still give the divergence check a scale.
    /// </summary>
    public static double SquaredBaseline(double mean, double variance) =>
        Math.Max(Math.Max(variance, 0.01 * (variance + mean * mean)), MinBaseline);
}
