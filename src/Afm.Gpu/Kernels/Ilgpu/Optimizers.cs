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
        float dv = 0f, dw = 0f;
        for (int q = s.UniqueOffsets[u], end = s.UniqueOffsets[u + 1]; q < end; q++)
        {
            int slot = s.Occurrences[q];
            float x = s.Values[slot];
            dv += x * s.EmbeddingGrad[(long)slot * k + d];
            if (d == 0) dw += s.Gradient[slot / s.M] * x;
        }
        long vi = (long)id * k + d;
        s.V[vi] = Step(o, s.V[vi], dv, s.VState1, s.VState2, vi);
        if (d == 0) s.Linear[id] = Step(o, s.Linear[id], dw, s.LinearState1, s.LinearState2, id);
    }

    /// <summary>Element-wise over the dense vector; W's gradient gains 2 λ W; FM keeps p fixed.</summary>
    public static void UpdateDense(Index1D e, DenseViews v, OptimizerArgs o)
    {
        if (e >= v.Size || (e >= v.FixedFrom && e < v.FixedTo)) return;
        float g = v.Gradient[e];
        if (e < v.OffsetB) g += 2f * o.Lambda * v.Dense[e];
        v.Dense[e] = Step(o, v.Dense[e], g, v.State1, v.State2, e);
    }
}
