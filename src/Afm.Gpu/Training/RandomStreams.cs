using Afm.Gpu.Kernels;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>
/// The independent random streams a run's one seed (<see cref="TrainerOptions.Seed"/>) stands for: initialisation,
/// the epochs' row order and dropout, each of its own per model kind. Drawn from the seed itself, an FM's initial
/// embeddings and its row order would come from one sequence of numbers, and an AFM trained from that FM with the same
/// seed would visit the rows in the very order the FM last did: on click logs that overfit in an epoch, that start cost
/// the AFM 3% of test log loss against the same FM with another AFM seed (docs/defaults.md). The
/// validation split is not among them: every stage of a recipe holds out the same rows.
/// </summary>
public static class RandomStreams
{
    /// <summary>The parameters' initial draws.</summary>
    public const uint Initialisation = 1;
    /// <summary>The shuffles of the rows, one per epoch.</summary>
    public const uint Order = 2;
    /// <summary>The dropout masks (<see cref="DropoutRng.StepSeed"/>).</summary>
    public const uint Dropout = 3;

    /// <summary>The seed of <paramref name="stream"/> for a <paramref name="model"/> run seeded with <paramref name="seed"/> (non-negative).</summary>
    public static int Seed(int seed, ModelKind model, uint stream) =>
        (int)(DropoutRng.Mix(DropoutRng.Mix((uint)seed * 0x9E3779B9U + 0x7F4A7C15U) ^ (stream * 2U + (uint)model) * 0x85EBCA6BU) & 0x7FFFFFFF);
}
