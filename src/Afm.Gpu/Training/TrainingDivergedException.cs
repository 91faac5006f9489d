namespace Afm.Gpu.Training;

/// <summary>
/// Thrown when training produces a non-finite loss, weight or validation score. Training stops there and
/// no model is returned; the message names the epoch and step and what to change.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>Creates the exception for <paramref name="epoch"/> and <paramref name="step"/>.</summary>
    /// <param name="epoch">1-based epoch in which it was found.</param>
    /// <param name="step">1-based mini-batch step (counted over the whole run) at which it was found.</param>
    /// <param name="message">The full message.</param>
    public TrainingDivergedException(int epoch, long step, string message) : this(epoch, step, message, message)
    {
    }

    /// <summary>Creates the exception for <paramref name="epoch"/> and <paramref name="step"/>, with what was found apart.</summary>
    /// <param name="epoch">1-based epoch in which it was found.</param>
    /// <param name="step">1-based mini-batch step (counted over the whole run) at which it was found.</param>
    /// <param name="message">The full message.</param>
    /// <param name="reason">What was found, without the advice: "the loss is NaN".</param>
    public TrainingDivergedException(int epoch, long step, string message, string reason) : base(message)
    {
        Epoch = epoch;
        Step = step;
        Reason = reason;
    }

    /// <summary>The epoch in which training diverged.</summary>
    public int Epoch { get; }

    /// <summary>The step (counted over the whole run) at which the divergence was found.</summary>
    public long Step { get; }

    /// <summary>What was found, without the advice of <see cref="Exception.Message"/>.</summary>
    public string Reason { get; }
}
