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
