using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>Evaluation metrics of predictions against labels.</summary>
/// <param name="Rmse">Root mean squared error (regression).</param>
/// <param name="Mae">Mean absolute error (regression).</param>
/// <param name="LogLoss">Mean logistic loss (binary; NaN for regression).</param>
/// <param name="Auc">Area under the ROC curve: for logistic loss, and for squared loss on labels of exactly two values
/// (such as -1/1, the larger one positive, ranked by the raw scores); NaN otherwise or for a single class.</param>
/// <param name="Rows">Rows evaluated.</param>
public sealed record Metrics(double Rmse, double Mae, double LogLoss, double Auc, int Rows)
{
    /// <summary>The score early stopping minimises: RMSE for squared loss, log loss for logistic.</summary>
    public double Objective(LossKind loss) => loss == LossKind.Squared ? Rmse : LogLoss;

    /// <summary>
    /// A short text such as <c>rmse 0.9412 mae 0.7401</c>; for squared loss on two-valued labels
    /// <c>rmse 0.4501 mae 0.3012 auc 0.9512</c>; for logistic loss <c>logloss 0.2401 auc 0.9604</c>.
    /// </summary>
    public string Format(LossKind loss) => loss == LossKind.Squared
        ? $"rmse {Rmse:F4} mae {Mae:F4}" + (double.IsNaN(Auc) ? "" : $" auc {Auc:F4}")
        : $"logloss {LogLoss:F4} auc {Auc:F4}";

    /// <summary>
    /// Computes metrics of final predictions (after the link: clipped values for regression,
    /// probabilities for logistic) against labels.
    /// </summary>
    /// <param name="predictions">The final predictions.</param>
    /// <param name="labels">The labels.</param>
    /// <param name="loss">The model's loss.</param>
    /// <param name="scores">For squared loss, the raw scores before clipping, which rank the rows for the AUC of
    /// two-valued labels (clipping would tie every score beyond the labels' range); empty: the predictions.</param>
    public static Metrics Compute(ReadOnlySpan<float> predictions, ReadOnlySpan<float> labels, LossKind loss, ReadOnlySpan<float> scores = default)
    {
        if (predictions.Length != labels.Length) throw new ArgumentException("predictions and labels differ in length");
        if (!scores.IsEmpty && scores.Length != labels.Length) throw new ArgumentException("scores and labels differ in length");
        int n = labels.Length;
        if (n == 0) return new Metrics(double.NaN, double.NaN, double.NaN, double.NaN, 0);
        double se = 0, ae = 0, ll = 0;
        AddErrors(predictions, labels, loss, ref se, ref ae, ref ll);
        double auc = loss == LossKind.Logistic ? RocAuc(predictions, labels)
            : TwoValues(labels) is (float low, _) ? RocAuc(scores.IsEmpty ? predictions : scores, labels, low)
            : double.NaN;
        return new Metrics(Math.Sqrt(se / n), ae / n, loss == LossKind.Logistic ? ll / n : double.NaN, auc, n);
    }

    /// <summary>The two values that the labels take, the smaller first; null when they take one or more than two.</summary>
    internal static (float Low, float High)? TwoValues(ReadOnlySpan<float> labels)
    {
        float a = labels.IsEmpty ? float.NaN : labels[0], b = float.NaN;
        foreach (float y in labels)
        {
            if (y == a || y == b) continue;
            if (!float.IsNaN(b)) return null;
            b = y;
        }
        return float.IsNaN(b) ? null : (MathF.Min(a, b), MathF.Max(a, b));
    }

    /// <summary>
    /// Adds the rows' squared and absolute errors and (for logistic loss) log losses to the sums; a logistic label is
    /// 1 when positive, else 0, and a probability is clamped to [1e-7, 1 − 1e-7] for the log.
    /// </summary>
    internal static void AddErrors(ReadOnlySpan<float> predictions, ReadOnlySpan<float> labels, LossKind loss, ref double se, ref double ae, ref double ll)
    {
        for (int i = 0; i < labels.Length; i++)
        {
            double y = loss == LossKind.Logistic ? (labels[i] > 0 ? 1 : 0) : labels[i];
            double d = predictions[i] - y;
            se += d * d;
            ae += Math.Abs(d);
            if (loss == LossKind.Logistic)
            {
                double p = Math.Clamp(predictions[i], 1e-7, 1 - 1e-7);
                ll -= y * Math.Log(p) + (1 - y) * Math.Log(1 - p);
            }
        }
    }

    /// <summary>ROC AUC with ties counted half (rank-sum form), a label above 0 positive; NaN when one class is missing.</summary>
    public static double RocAuc(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels) => RocAuc(scores, labels, 0);

    /// <summary>ROC AUC with ties counted half, a label above <paramref name="negative"/> positive.</summary>
    private static double RocAuc(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels, float negative)
    {
        int n = scores.Length;
        var order = new int[n];
        var keys = scores.ToArray();
        for (int i = 0; i < n; i++) order[i] = i;
        Array.Sort(keys, order);
        double pos = 0, rankSum = 0;
        for (int i = 0; i < n;)
        {
            int j = i;
            while (j + 1 < n && keys[j + 1] == keys[i]) j++;
            double avgRank = (i + j) / 2.0 + 1;
            for (int q = i; q <= j; q++)
                if (labels[order[q]] > negative) { pos++; rankSum += avgRank; }
            i = j + 1;
        }
        double neg = n - pos;
        if (pos == 0 || neg == 0) return double.NaN;
        return (rankSum - pos * (pos + 1) / 2) / (pos * neg);
    }
}

/// <summary>
/// Metrics over predictions given block by block, in bounded memory: RMSE, MAE and log loss are summed exactly as
/// <see cref="Metrics.Compute"/> sums them; the AUC comes from a histogram in <see cref="AucBins"/> equal bins, a pair
/// of rows in one bin counting half: of the probabilities for logistic loss, and for squared loss on two-valued labels
/// of the raw scores squashed into (0, 1) around the labels' range.
/// </summary>
public sealed class MetricsAccumulator
{
    /// <summary>Bins of the AUC histogram.</summary>
    public const int AucBins = 1 << 16;

    private readonly LossKind _loss;
    private readonly float _mid, _scale;
    private readonly long[] _first = new long[AucBins], _second = new long[AucBins];
    private float _firstLabel = float.NaN, _secondLabel = float.NaN;
    private bool _manyLabels;
    private double _se, _ae, _ll;
    private long _rows;

    /// <summary>Metrics of a model with <paramref name="loss"/>; a squared-loss model's raw scores are binned around
    /// [-1, 1].</summary>
    public MetricsAccumulator(LossKind loss) : this(loss, -1, 1) { }

    /// <summary>Metrics of <paramref name="model"/>'s predictions; its raw scores are binned around its labels' range.</summary>
    public MetricsAccumulator(AfmModel model)
        : this(model.Loss, model.LabelMin, model.LabelMax) { }

    private MetricsAccumulator(LossKind loss, float low, float high)
    {
        _loss = loss;
        bool range = float.IsFinite(low) && float.IsFinite(high) && high > low;
        _mid = range ? (low + high) / 2 : 0;
        _scale = range ? 8 / (high - low) : 4; // the labels' range spans (0.018, 0.982) of the bins
    }

    /// <summary>Rows added.</summary>
    public long Rows => _rows;

    /// <summary>Adds final predictions (after the link) of rows with <paramref name="labels"/>.</summary>
    /// <param name="predictions">The final predictions.</param>
    /// <param name="labels">The labels.</param>
    /// <param name="scores">For squared loss, the raw scores before clipping, which rank the rows for the AUC (as in
    /// <see cref="Metrics.Compute"/>); empty: the predictions.</param>
    public void Add(ReadOnlySpan<float> predictions, ReadOnlySpan<float> labels, ReadOnlySpan<float> scores = default)
    {
        if (predictions.Length != labels.Length) throw new ArgumentException("predictions and labels differ in length");
        if (!scores.IsEmpty && scores.Length != labels.Length) throw new ArgumentException("scores and labels differ in length");
        Metrics.AddErrors(predictions, labels, _loss, ref _se, ref _ae, ref _ll);
        if (_loss == LossKind.Logistic)
            for (int i = 0; i < labels.Length; i++)
            {
                int bin = (int)Math.Clamp(predictions[i] * (double)AucBins, 0, AucBins - 1);
                if (labels[i] > 0) _first[bin]++;
                else _second[bin]++;
            }
        else if (!_manyLabels)
        {
            var s = scores.IsEmpty ? predictions : scores;
            for (int i = 0; i < labels.Length; i++)
            {
                float y = labels[i];
                if (float.IsNaN(_firstLabel)) _firstLabel = y;
                else if (y != _firstLabel && float.IsNaN(_secondLabel)) _secondLabel = y;
                else if (y != _firstLabel && y != _secondLabel) { _manyLabels = true; break; }
                double squashed = 1 / (1 + Math.Exp(-_scale * (s[i] - _mid)));
                int bin = (int)Math.Clamp(squashed * AucBins, 0, AucBins - 1);
                (y == _firstLabel ? _first : _second)[bin]++;
            }
        }
        _rows += labels.Length;
    }

    /// <summary>The metrics of the rows added (NaN everywhere when none were).</summary>
    public Metrics Result()
    {
        long n = _rows;
        if (n == 0) return new Metrics(double.NaN, double.NaN, double.NaN, double.NaN, 0);
        double auc = _loss == LossKind.Logistic ? BinnedAuc(_first, _second)
            : _manyLabels || float.IsNaN(_secondLabel) ? double.NaN
            : _firstLabel > _secondLabel ? BinnedAuc(_first, _second) : BinnedAuc(_second, _first);
        return new Metrics(Math.Sqrt(_se / n), _ae / n, _loss == LossKind.Logistic ? _ll / n : double.NaN, auc,
            (int)Math.Min(n, int.MaxValue));
    }

    private static double BinnedAuc(long[] positives, long[] negatives)
    {
        double below = 0, wins = 0, pos = 0, neg = 0;
        for (int b = 0; b < AucBins; b++)
        {
            long p = positives[b], q = negatives[b];
            wins += p * (below + 0.5 * q);
            below += q;
            pos += p;
            neg += q;
        }
        return pos == 0 || neg == 0 ? double.NaN : wins / (pos * neg);
    }
}
