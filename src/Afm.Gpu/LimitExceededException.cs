namespace Afm.Gpu;

/// <summary>
/// Thrown before allocating when a run would need more than the engine allows or the machine has:
/// a feature table too large, a row with too many non-zeros, a batch too large. The message names the
/// input, the figure and what to do.
/// </summary>
public sealed class LimitExceededException : Exception
{
    /// <summary>Creates the exception with its full message.</summary>
    public LimitExceededException(string message) : base(message) { }
}
