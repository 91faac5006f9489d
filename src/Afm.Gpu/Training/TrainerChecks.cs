using Afm.Gpu.Data;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

// The trainer's checks of its inputs and of the model it produces.
public sealed partial class Trainer
{
    private TrainingDivergedException Diverged(int epoch, long step, string what, RowSource train)
    {
        var (values, labels) = train.Magnitudes();
        string advice = Math.Max(values, labels) >= HugeInput
            ? $"the input {train.Name} has {(values >= labels ? "feature values" : "labels")} as large as {Math.Max(values, labels):G3} in magnitude: scale the features and labels to a moderate range (or lower the learning rate, now {_options.LearningRate:G})"
            : $"lower the learning rate (now {_options.LearningRate:G})";
        return new TrainingDivergedException(epoch, step, epoch == 0
            ? $"training cannot start: {what}; {advice}"
            : $"training diverged in epoch {epoch} by step {step}: {what}; {advice}", what);
    }

    /// <summary>
    /// A mean training loss this many times that of the best constant prediction is a divergence, even while it is
    /// finite (clipped predictions can keep the validation score finite while the weights run away): training that
    /// works stays within a few times that loss from its first step.
    /// </summary>
    internal const double DivergenceFactor = 1e4;

    /// <summary>
    /// A first epoch (or first validation interval) whose mean training loss is this many times both the starting
    /// model's loss and that of the best constant prediction is a divergence too: training that works ends its first
    /// epoch below where it started, while steps too large for the data (rows with many non-zeros, whose FM pair sum
    /// moves with the square of their count) send it tens or hundreds of times higher, after which the run rarely beats
    /// its starting point.
    /// </summary>
    internal const double FirstEpochFactor = 10;

    /// <summary>Steps between the reads of the running loss that stop a diverging run within the epoch.</summary>
    internal const int LossCheckSteps = 16;

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

    private static void CheckBinaryLabels(RowSource data)
    {
        if (data.FirstNonBinaryLabel() is var (row, label))
            throw new ArgumentException($"{data.Name}: row {row + 1} has label {label}; logistic loss takes labels 0/1 or -1/1");
    }
}
