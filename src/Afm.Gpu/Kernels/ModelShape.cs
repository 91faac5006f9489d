using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels;

/// <summary>
/// The sizes every kernel is specialised for. Batches are padded to <see cref="MaxNnz"/> slots per
/// row; pairs are numbered column-major over the upper triangle, pair (i, j) with i &lt; j having index
/// <c>j (j - 1) / 2 + i</c>, so a row with n non-zeros owns exactly the first n (n - 1) / 2 pairs and
/// padding never enters the softmax.
/// </summary>
/// <param name="Kind">AFM or FM.</param>
/// <param name="FeatureCount">Number of features n.</param>
/// <param name="K">Embedding size.</param>
/// <param name="T">Attention factor (0 for FM).</param>
/// <param name="MaxNnz">Slots per row (the largest non-zero count a batch may hold).</param>
/// <param name="BatchCapacity">Most rows in one batch.</param>
public sealed record ModelShape(ModelKind Kind, int FeatureCount, int K, int T, int MaxNnz, int BatchCapacity)
{
    /// <summary>Pair slots per row: M (M - 1) / 2.</summary>
    public int Pairs => MaxNnz * (MaxNnz - 1) / 2;

    /// <summary>
    /// Length of the packed dense parameter vector: [W (t x k) | b (t) | h (t) | p (k) | w0 (1)].
    /// Gradients and optimizer state of the dense parameters use the same packing.
    /// </summary>
    public int DenseSize => T * K + 2 * T + K + 1;

    /// <summary>Offset of b in the dense vector.</summary>
    public int OffsetB => T * K;
    /// <summary>Offset of h in the dense vector.</summary>
    public int OffsetH => T * K + T;
    /// <summary>Offset of p in the dense vector.</summary>
    public int OffsetP => T * K + 2 * T;
    /// <summary>Offset of w0 in the dense vector.</summary>
    public int OffsetW0 => T * K + 2 * T + K;

    /// <summary>Pair index of (i, j), i &lt; j.</summary>
    public static int PairIndex(int i, int j) => j * (j - 1) / 2 + i;

    /// <summary>Number of real pairs of a row with <paramref name="n"/> non-zeros.</summary>
    public static int PairCount(int n) => n * (n - 1) / 2;

    /// <summary>The shape of a model, for batches of at most <paramref name="batchCapacity"/> rows of at most <paramref name="maxNnz"/> non-zeros.</summary>
    public static ModelShape Of(AfmModel model, int maxNnz, int batchCapacity) =>
        new(model.Kind, model.FeatureCount, model.K, model.T, Math.Max(maxNnz, 1), Math.Max(batchCapacity, 1));
}
