using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels;

/// <summary>The optimizers the trainer offers.</summary>
public enum OptimizerKind
{
    /// <summary>Adagrad (default, as in the paper): accumulator starts at 0.</summary>
    Adagrad,
    /// <summary>Adam with bias correction; embedding rows are updated lazily (only rows a batch touches).</summary>
    Adam,
    /// <summary>Plain stochastic gradient descent.</summary>
    Sgd,
}

/// <summary>What both engines' dense update does with attention weights that λ has shrunk to nothing.</summary>
internal static class TinyWeights
{
    /// <summary>
    /// Attention weights W smaller than this in magnitude are set to 0 after each dense update. λ shrinks unused
    /// weights towards 0 geometrically; long before they could change a score in single precision, their products
    /// with the pair vectors become subnormal, and every multiply with a subnormal operand costs the CPU a microcode
    /// assist (training with λ = 3 ran 10 to 30 times slower). A weight below 1e-24 changes no score unless a pair
    /// vector's elements exceed about 1e16.
    /// </summary>
    public const float Threshold = 1e-24f;
}

/// <summary>Per-step settings of the fused forward/backward kernel.</summary>
/// <param name="Loss">Loss function.</param>
/// <param name="Keep0">Keep probability of the attention-weight dropout (1 = off).</param>
/// <param name="Keep1">Keep probability of the pooled-vector dropout (1 = off).</param>
/// <param name="Seed">Dropout seed of this step (see <see cref="DropoutRng"/>).</param>
/// <param name="Scale">Gradient scale, 1 / rows in the batch (the loss is a batch mean).</param>
/// <param name="RowOffset">
/// The batch's first row's index within the global batch, which the dropout masks are drawn by: 0 in one process;
/// in data-parallel training, where each process takes a shard of the global batch, the shard's start, so that the
/// masks do not depend on the number of processes.
/// </param>
public readonly record struct StepParams(LossKind Loss, float Keep0, float Keep1, uint Seed, float Scale, int RowOffset = 0);

/// <summary>Settings of an optimizer update.</summary>
/// <param name="Kind">Optimizer.</param>
/// <param name="LearningRate">Step size.</param>
/// <param name="Lambda">L2 penalty on the attention weights W: the gradient gains 2 λ W.</param>
/// <param name="Step">1-based update count (Adam's bias correction).</param>
/// <param name="Beta1">Adam's first-moment decay.</param>
/// <param name="Beta2">Adam's second-moment decay.</param>
/// <param name="Epsilon">Denominator guard (Adagrad and Adam).</param>
/// <param name="L2Embedding">
/// L2 penalty λ_V on the embedding rows a step updates: each row the batch uses gains 2 λ_V v in its gradient (lazy
/// L2: a row no batch uses is not shrunk).
/// </param>
/// <param name="L2Linear">L2 penalty λ_w on the linear weights a step updates, as <paramref name="L2Embedding"/>: 2 λ_w w.</param>
public readonly record struct OptimizerParams(
    OptimizerKind Kind, float LearningRate, float Lambda, int Step,
    float Beta1 = 0.9f, float Beta2 = 0.999f, float Epsilon = 1e-10f, float L2Embedding = 0f, float L2Linear = 0f)
{
    /// <summary>Adam's lr / (1 - β1^t): w -= C1 m / (sqrt(v) C2 + ε).</summary>
    public float AdamC1 => (float)(LearningRate / (1 - Math.Pow(Beta1, Math.Max(Step, 1))));

    /// <summary>Adam's 1 / sqrt(1 - β2^t).</summary>
    public float AdamC2 => (float)(1 / Math.Sqrt(1 - Math.Pow(Beta2, Math.Max(Step, 1))));
}

/// <summary>
/// The counter-based random numbers behind dropout. Identical on every accelerator (the GPU kernels
/// carry the same integer hash), so a training run gives the same masks wherever it runs.
/// </summary>
public static class DropoutRng
{
    /// <summary>Stream of the attention-weight masks (index = pair).</summary>
    public const uint AttentionStream = 0;
    /// <summary>Stream of the pooled-vector masks (index = dimension).</summary>
    public const uint PooledStream = 1;

    /// <summary>An avalanche integer hash (lowbias32).</summary>
    public static uint Mix(uint x)
    {
        x ^= x >> 16;
        x *= 0x7feb352dU;
        x ^= x >> 15;
        x *= 0x846ca68bU;
        x ^= x >> 16;
        return x;
    }

    /// <summary>The seed of training step <paramref name="step"/> of a run seeded with <paramref name="seed"/>.</summary>
    public static uint StepSeed(uint seed, long step) => Mix(seed ^ Mix((uint)step * 0x9E3779B9U + 0x632BE5ABU));

    /// <summary>Whether element (<paramref name="row"/>, <paramref name="stream"/>, <paramref name="index"/>) is kept.</summary>
    public static bool Keep(uint stepSeed, int row, uint stream, int index, float keep)
    {
        if (keep >= 1f) return true;
        uint h = Mix(stepSeed ^ Mix((uint)row * 0x85EBCA6BU ^ Mix((uint)index * 2U + stream)));
        return (h >> 8) * (1f / 16777216f) < keep;
    }
}
