using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>Evaluation metrics of predictions against labels.</summary>
/// <param name="Rmse">Root mean squared error (regression).</param>
/// <param name="Mae">Mean absolute error (regression).</param>
/// <param name="LogLoss">Mean logistic loss (binary; NaN for regression).</param>
/// <param name="Auc">Area under the ROC curve (binary; NaN for regression or a single class).</param>
/// <param name="Rows">Rows evaluated.</param>
public sealed record Metrics(double Rmse, double Mae, double LogLoss, double Auc, int Rows)
{
    /// <summary>The score early stopping minimises: RMSE for squared loss, log loss for logistic.</summary>
    public double Objective(LossKind loss) => loss == LossKind.Squared ? Rmse : LogLoss;

    /// <summary>A short text such as <c>rmse 0.9412 mae 0.7401</c>.</summary>
    public string Format(LossKind loss) => loss == LossKind.Squared
        ? $"rmse {Rmse:F4} mae {Mae:F4}"
        : $"logloss {LogLoss:F4} auc {Auc:F4}";

    /// <summary>
    /// Computes metrics of final predictions (after the link: clipped values for regression,
    /// probabilities for logistic) against labels.
    /// </summary>
    public static Metrics Compute(ReadOnlySpan<float> predictions, ReadOnlySpan<float> labels, LossKind loss)
    {
        if (predictions.Length != labels.Length) throw new ArgumentException("predictions and labels differ in length");
        int n = labels.Length;
        if (n == 0) return new Metrics(double.NaN, double.NaN, double.NaN, double.NaN, 0);
        double se = 0, ae = 0, ll = 0;
        AddErrors(predictions, labels, loss, ref se, ref ae, ref ll);
        double auc = loss == LossKind.Logistic ? RocAuc(predictions, labels) : double.NaN;
        return new Metrics(Math.Sqrt(se / n), ae / n, loss == LossKind.Logistic ? ll / n : double.NaN, auc, n);
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

    /// <summary>ROC AUC with ties counted half (rank-sum form); NaN when one class is missing.</summary>
    public static double RocAuc(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels)
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
                if (labels[order[q]] > 0) { pos++; rankSum += avgRank; }
            i = j + 1;
        }
        double neg = n - pos;
        if (pos == 0 || neg == 0) return double.NaN;
        return (rankSum - pos * (pos + 1) / 2) / (pos * neg);
    }
}

/// <summary>
/// Metrics over predictions given block by block, in bounded memory: RMSE, MAE and log loss are summed exactly as
/// <see cref="Metrics.Compute"/> sums them; the AUC comes from a histogram of the probabilities in
/// <see cref="AucBins"/> equal bins, a pair of rows in one bin counting half.
/// </summary>
public sealed class MetricsAccumulator(LossKind loss)
{
    /// <summary>Bins of the AUC histogram.</summary>
    public const int AucBins = 1 << 16;

    private readonly long[]? _positives = loss == LossKind.Logistic ? new long[AucBins] : null;
    private readonly long[]? _negatives = loss == LossKind.Logistic ? new long[AucBins] : null;
    private double _se, _ae, _ll;
    private long _rows;

    /// <summary>Rows added.</summary>
    public long Rows => _rows;

    /// <summary>Adds final predictions (after the link) of rows with <paramref name="labels"/>.</summary>
    public void Add(ReadOnlySpan<float> predictions, ReadOnlySpan<float> labels)
    {
        if (predictions.Length != labels.Length) throw new ArgumentException("predictions and labels differ in length");
        Metrics.AddErrors(predictions, labels, loss, ref _se, ref _ae, ref _ll);
        if (loss == LossKind.Logistic)
            for (int i = 0; i < labels.Length; i++)
            {
                int bin = (int)Math.Clamp(predictions[i] * (double)AucBins, 0, AucBins - 1);
                if (labels[i] > 0) _positives![bin]++;
                else _negatives![bin]++;
            }
        _rows += labels.Length;
    }

    /// <summary>The metrics of the rows added (NaN everywhere when none were).</summary>
    public Metrics Result()
    {
        long n = _rows;
        if (n == 0) return new Metrics(double.NaN, double.NaN, double.NaN, double.NaN, 0);
        return new Metrics(Math.Sqrt(_se / n), _ae / n, loss == LossKind.Logistic ? _ll / n : double.NaN,
            loss == LossKind.Logistic ? BinnedAuc() : double.NaN, (int)Math.Min(n, int.MaxValue));
    }

    private double BinnedAuc()
    {
        double below = 0, wins = 0, pos = 0, neg = 0;
        for (int b = 0; b < AucBins; b++)
        {
            long p = _positives![b], q = _negatives![b];
            wins += p * (below + 0.5 * q);
            below += q;
            pos += p;
            neg += q;
        }
        return pos == 0 || neg == 0 ? double.NaN : wins / (pos * neg);
    }
}
