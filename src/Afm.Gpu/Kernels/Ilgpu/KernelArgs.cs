using ILGPU;

namespace Afm.Gpu.Kernels.Ilgpu;

/// <summary>A model's parameters as the kernels see them.</summary>
internal struct ModelViews
{
    /// <summary>Packed [W | b | h | p | w0].</summary>
    public ArrayView<float> Dense;
    /// <summary>Embeddings, n x k.</summary>
    public ArrayView<float> V;
    /// <summary>Linear weights.</summary>
    public ArrayView<float> Linear;
}

/// <summary>A batch: rows padded to M slots.</summary>
internal struct BatchViews
{
    public ArrayView<int> Ids;
    public ArrayView<float> Values;
    public ArrayView<int> Counts;
    public ArrayView<float> Labels;
    /// <summary>Rows in the batch.</summary>
    public int Rows;
}

/// <summary>What the fused training kernel writes.</summary>
internal struct TrainViews
{
    public ArrayView<float> Yhat;
    public ArrayView<float> Gradient;
    public ArrayView<float> Loss;
    public ArrayView<float> EmbeddingGrad;
    /// <summary>Per group: DenseSize partial gradients, then the group's loss sum.</summary>
    public ArrayView<float> Partials;
}

/// <summary>The training step's scalars.</summary>
internal struct StepArgs
{
    public int Loss;
    public float Keep0;
    public float Keep1;
    public uint Seed;
    public float Scale;
    /// <summary>Consecutive rows per group.</summary>
    public int RowsPerGroup;
    /// <summary>The batch's first row's index in the global batch, which dropout masks are drawn by (<see cref="StepParams.RowOffset"/>).</summary>
    public int RowOffset;
}

/// <summary>One optimizer step's scalars (as <see cref="OptimizerParams"/>).</summary>
internal struct OptimizerArgs
{
    public int Kind;
    public float LearningRate;
    public float Epsilon;
    public float Beta1;
    public float Beta2;
    public float C1;
    public float C2;
    public float Lambda;
    public float L2Embedding;
    public float L2Linear;

    public static OptimizerArgs From(in OptimizerParams o) => new()
    {
        Kind = (int)o.Kind, LearningRate = o.LearningRate, Epsilon = o.Epsilon, Beta1 = o.Beta1, Beta2 = o.Beta2,
        C1 = o.AdamC1, C2 = o.AdamC2, Lambda = o.Lambda, L2Embedding = o.L2Embedding, L2Linear = o.L2Linear,
    };
}

/// <summary>The sparse update's inputs and outputs.</summary>
internal struct SparseViews
{
    public ArrayView<float> V;
    public ArrayView<float> Linear;
    public ArrayView<float> VState1;
    public ArrayView<float> VState2;
    public ArrayView<float> LinearState1;
    public ArrayView<float> LinearState2;
    public ArrayView<float> EmbeddingGrad;
    public ArrayView<float> Gradient;
    public ArrayView<float> Values;
    public ArrayView<int> UniqueIds;
    public ArrayView<int> UniqueOffsets;
    public ArrayView<int> Occurrences;
    /// <summary>Per distinct id, [dV (K) | dw]: what <see cref="GpuKernels.GatherSparse"/> writes and <see cref="GpuKernels.ApplySparse"/> reads.</summary>
    public ArrayView<float> Grads;
    public int Unique;
    public int K;
    public int M;
}

/// <summary>Four floats, read and written as one 16-byte access where the address is aligned.</summary>
internal struct Float4
{
    public float X;
    public float Y;
    public float Z;
    public float W;
}

/// <summary>The dense update's inputs and outputs.</summary>
internal struct DenseViews
{
    public ArrayView<float> Dense;
    public ArrayView<float> Gradient;
    public ArrayView<float> State1;
    public ArrayView<float> State2;
    public int Size;
    /// <summary>Where b starts: W's elements (which get 2 λ W) come before.</summary>
    public int OffsetB;
    /// <summary>p's range, left fixed for FM: [FixedFrom, FixedTo).</summary>
    public int FixedFrom;
    public int FixedTo;
}

/// <summary>
/// Where each of the fused kernels' shared arrays starts in the one dynamic shared-memory block, in floats. The
/// same arithmetic sizes the block on the host (<see cref="Total"/>) and carves it in the kernel, where every
/// argument is a compile-time constant.
/// </summary>
internal readonly struct SharedLayout
{
    /// <summary>relu(z), then dz, of a tile's pairs (tile x t).</summary>
    public readonly int ZR;
    /// <summary>dq of a tile's pairs (tile x k).</summary>
    public readonly int DQ;
    /// <summary>The row's scaled embeddings e_s = v x (slot stride <see cref="EStride"/>).</summary>
    public readonly int E;
    /// <summary>dL/de per slot (m x k).</summary>
    public readonly int DE;
    /// <summary>Scores, then da, then ds, per pair.</summary>
    public readonly int S;
    /// <summary>Attention per pair.</summary>
    public readonly int A;
    /// <summary>Attention after dropout per pair.</summary>
    public readonly int AD;
    /// <summary>Pooled vector u.</summary>
    public readonly int U;
    /// <summary>Dropout mask, then du.</summary>
    public readonly int DU;
    /// <summary>FM: Σ e.</summary>
    public readonly int ESum;
    /// <summary>The group's dense-gradient accumulator (when in shared memory).</summary>
    public readonly int Acc;
    /// <summary>Values per slot.</summary>
    public readonly int X;
    /// <summary>Ids per slot (stored as ints).</summary>
    public readonly int Id;
    /// <summary>Two scalars: the linear term, then the row's dL/dŷ.</summary>
    public readonly int Sc;
    /// <summary>Reduction scratch, max(group, k) floats, last.</summary>
    public readonly int Red;
    /// <summary>Length of the reduction scratch.</summary>
    public readonly int RedLength;

    public SharedLayout(int k, int t, int m, int tile, int group, bool globalAccumulator)
    {
        bool fm = t == 0;
        int pairs = m * (m - 1) / 2, dense = t * k + 2 * t + k + 1;
        if (pairs < 1) pairs = 1;
        // every array starts at a multiple of 4 floats (16 bytes), so that any of them can be read four floats a time
        int o = 0;
        ZR = o; o = Up4(o + (fm ? 0 : tile * t));
        DQ = o; o = Up4(o + (fm ? 0 : tile * k));
        E = o; o = Up4(o + m * EStride(k, t));
        DE = o; o = Up4(o + (fm ? 0 : m * k));
        S = o; o = Up4(o + (fm ? 0 : pairs));
        A = o; o = Up4(o + (fm ? 0 : pairs));
        AD = o; o = Up4(o + (fm ? 0 : pairs));
        U = o; o = Up4(o + k);
        DU = o; o = Up4(o + k);
        ESum = o; o = Up4(o + (fm ? k : 0));
        Acc = o; o = Up4(o + (globalAccumulator ? 0 : dense));
        X = o; o = Up4(o + m);
        Id = o; o = Up4(o + m);
        Sc = o; o = Up4(o + 2);
        Red = o;
        RedLength = group > k ? group : k;
    }

    /// <summary>
    /// Whether the product loops read four floats at a time: rows of W, e and dz are then 16-byte aligned (k and t
    /// multiples of 4, and every array before them a multiple of 4 floats long).
    /// </summary>
    public static bool Vectorised(int k, int t) => k % 4 == 0 && t % 4 == 0;

    /// <summary>
    /// Row stride of e in shared memory: k + 4 where rows are read four floats at a time (work-items reading rows i
    /// at the same d then start 4 banks apart: a quarter-warp's 128-bit reads do not collide), else k | 1 (odd:
    /// scalar reads of different rows at the same d hit different banks).
    /// </summary>
    public static int EStride(int k, int t) => Vectorised(k, t) ? k + 4 : k | 1;

    /// <summary>Most floats the 16-byte alignment of the arrays adds to the block.</summary>
    public const int AlignmentPadding = 14 * 3;

    private static int Up4(int n) => (n + 3) & ~3;

    /// <summary>Floats of the whole block.</summary>
    public int Total => Red + RedLength;
}
