using ILGPU;
using ILGPU.Algorithms;

namespace Afm.Gpu.Kernels.Ilgpu;

/// <summary>The dense reduction and the optimizer updates: one work-item per element, no atomics.</summary>
internal static partial class GpuKernels
{
    /// <summary>Dense gradient = Σ over groups of the partials, in group order; the loss sum gains Σ of the groups' losses.</summary>
    public static void ReduceDense(Index1D e, ArrayView<float> partials, int groups, int dense, ArrayView<float> denseGrad, ArrayView<float> lossSum)
    {
        if (e > dense) return;
        float s = 0f;
        for (int c = 0; c < groups; c++) s += partials[(long)c * (dense + 1) + e];
        if (e < dense) denseGrad[e] = s;
        else lossSum[0] += s;
    }

    /// <summary>One optimizer step of element i (as the CPU's optimizer).</summary>
    private static float Step(in OptimizerArgs o, float w, float g, ArrayView<float> s1, ArrayView<float> s2, long i)
    {
        if (o.Kind == (int)OptimizerKind.Sgd) return w - o.LearningRate * g;
        if (o.Kind == (int)OptimizerKind.Adagrad)
        {
            float a = s1[i] + g * g;
            s1[i] = a;
            return w - o.LearningRate * g / (XMath.Sqrt(a) + o.Epsilon);
        }
        float m = o.Beta1 * s1[i] + (1f - o.Beta1) * g;
        float v = o.Beta2 * s2[i] + (1f - o.Beta2) * g * g;
        s1[i] = m;
        s2[i] = v;
        return w - o.C1 * m / (XMath.Sqrt(v) * o.C2 + o.Epsilon);
    }

    /// <summary>
    /// One work-item per (distinct id, dimension): dV = Σ de x over the id's slots (and for d = 0, dw = Σ g x), then
    /// the optimizer on that element. Ids are distinct, so no two work-items share an output.
    /// </summary>
    public static void UpdateSparse(Index1D it, SparseViews s, OptimizerArgs o)
    {
        int k = s.K;
        if (it >= s.Unique * k) return;
        int u = it / k, d = it - u * k, id = s.UniqueIds[u];
        ApplyEmbedding(s, o, id, d, GatherEmbedding(s, u, d));
        if (d == 0) ApplyLinear(s, o, id, GatherLinear(s, u));
    }

    /// <summary>
    /// The gather half of <see cref="UpdateSparse"/>, one work-item per (distinct id u, d ≤ K): writes dV_d (d &lt; K)
    /// or dw (d = K) at Grads[u (K + 1) + d].
    /// </summary>
    public static void GatherSparse(Index1D it, SparseViews s)
    {
        int k = s.K;
        if (it >= s.Unique * (k + 1)) return;
        int u = it / (k + 1), d = it - u * (k + 1);
        s.Grads[it] = d < k ? GatherEmbedding(s, u, d) : GatherLinear(s, u);
    }

    /// <summary>
    /// The apply half of <see cref="UpdateSparse"/>, one work-item per (u, d ≤ K) of a list of Unique distinct ids
    /// (UniqueIds) and their gradients laid out as <see cref="GatherSparse"/> writes them.
    /// </summary>
    public static void ApplySparse(Index1D it, SparseViews s, OptimizerArgs o)
    {
        int k = s.K;
        if (it >= s.Unique * (k + 1)) return;
        int u = it / (k + 1), d = it - u * (k + 1), id = s.UniqueIds[u];
        if (d < k) ApplyEmbedding(s, o, id, d, s.Grads[it]);
        else ApplyLinear(s, o, id, s.Grads[it]);
    }

    /// <summary>dV_d = Σ x de_d over distinct id u's slots, in slot order.</summary>
    private static float GatherEmbedding(SparseViews s, int u, int d)
    {
        float dv = 0f;
        for (int q = s.UniqueOffsets[u], end = s.UniqueOffsets[u + 1]; q < end; q++)
        {
            int slot = s.Occurrences[q];
            dv += s.Values[slot] * s.EmbeddingGrad[(long)slot * s.K + d];
        }
        return dv;
    }

    /// <summary>dw = Σ g x over distinct id u's slots, in slot order.</summary>
    private static float GatherLinear(SparseViews s, int u)
    {
        float dw = 0f;
        for (int q = s.UniqueOffsets[u], end = s.UniqueOffsets[u + 1]; q < end; q++)
        {
            int slot = s.Occurrences[q];
            dw += s.Gradient[slot / s.M] * s.Values[slot];
        }
        return dw;
    }

    /// <summary>The optimizer on V[id, d] with gradient g, which gains 2 λ_V v (lazy L2).</summary>
    private static void ApplyEmbedding(SparseViews s, in OptimizerArgs o, int id, int d, float g)
    {
        long vi = (long)id * s.K + d;
        float v = s.V[vi];
        s.V[vi] = Step(o, v, g + 2f * o.L2Embedding * v, s.VState1, s.VState2, vi);
    }

    /// <summary>The optimizer on w[id] with gradient g, which gains 2 λ_w w (lazy L2).</summary>
    private static void ApplyLinear(SparseViews s, in OptimizerArgs o, int id, float g)
    {
        float w = s.Linear[id];
        s.Linear[id] = Step(o, w, g + 2f * o.L2Linear * w, s.LinearState1, s.LinearState2, id);
    }

    /// <summary>Element-wise over the dense vector; W's gradient gains 2 λ W; FM keeps p fixed.</summary>
    public static void UpdateDense(Index1D e, DenseViews v, OptimizerArgs o)
    {
        if (e >= v.Size || (e >= v.FixedFrom && e < v.FixedTo)) return;
        float g = v.Gradient[e];
        if (e < v.OffsetB) g += 2f * o.Lambda * v.Dense[e];
        float x = Step(o, v.Dense[e], g, v.State1, v.State2, e);
        // An attention weight that λ has shrunk to nothing becomes 0, as on the CPU (see TinyWeights).
        v.Dense[e] = e < v.OffsetB && x < TinyWeights.Threshold && x > -TinyWeights.Threshold ? 0f : x;
    }
}
