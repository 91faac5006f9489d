using Afm.Gpu.Data;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

// The trainer's checks of its inputs and of the model it produces.
public sealed partial class Trainer
{
    private TrainingDivergedException Diverged(int epoch, long step, string what, SparseDataset train)
    {
        float values = 0, labels = 0;
        foreach (float x in train.Values) values = MathF.Max(values, MathF.Abs(x));
        foreach (float y in train.Labels) labels = MathF.Max(labels, MathF.Abs(y));
        string advice = Math.Max(values, labels) >= HugeInput
            ? $"the input {train.Name} has {(values >= labels ? "feature values" : "labels")} as large as {Math.Max(values, labels):G3} in magnitude: scale the features and labels to a moderate range (or lower the learning rate, now {_options.LearningRate:G})"
            : $"lower the learning rate (now {_options.LearningRate:G})";
        return new TrainingDivergedException(epoch, step, epoch == 0
            ? $"training cannot start: {what}; {advice}"
            : $"training diverged in epoch {epoch} at step {step}: {what}; {advice}");
    }

    /// <summary>
    /// A mean training loss this many times that of the best constant prediction is a divergence, even while it is
    /// finite (clipped predictions can keep the validation score finite while the weights run away): training that
    /// works stays within a few times that loss from its first step.
    /// </summary>
    internal const double DivergenceFactor = 1e4;

    /// <summary>The loss of predicting the mean label on every row (the labels' variance; for logistic loss the entropy of their mean), at least 1e-6.</summary>
    internal static double BaselineLoss(SparseDataset train, LossKind loss)
    {
        double mean = 0;
        foreach (float y in train.Labels) mean += loss == LossKind.Logistic ? (y > 0 ? 1 : 0) : y;
        mean /= Math.Max(1, train.Rows);
        double value;
        if (loss == LossKind.Logistic)
        {
            double p = Math.Clamp(mean, 1e-6, 1 - 1e-6);
            value = -(p * Math.Log(p) + (1 - p) * Math.Log(1 - p));
        }
        else
        {
            double v = 0;
            foreach (float y in train.Labels) v += (y - mean) * (y - mean);
            value = v / Math.Max(1, train.Rows);
        }
        return Math.Max(value, 1e-6);
    }

    /// <summary>Inputs at least this large in magnitude, not the learning rate, are named as the likely cause of a divergence.</summary>
    private const float HugeInput = 1e4f;

    /// <summary>The first non-finite parameter, as "name[index] = value", or null.</summary>
    internal static string? NonFinite(AfmModel model)
    {
        foreach (var (name, data, _) in model.Tensors())
        {
            int i = Array.FindIndex(data, x => !float.IsFinite(x));
            if (i >= 0) return $"{name}[{i}] = {data[i]}";
        }
        return null;
    }

    private static void CheckBinaryLabels(SparseDataset data)
    {
        int r = Array.FindIndex(data.Labels, y => y is not (0f or 1f or -1f));
        if (r >= 0)
            throw new ArgumentException($"{data.Name}: row {r + 1} has label {data.Labels[r]}; logistic loss takes labels 0/1 or -1/1");
    }
}
