using ILGPU;

namespace Afm.Gpu.Kernels.Ilgpu;

internal static partial class GpuKernels
{
    /// <summary>FM pooling (forward): u = ((Σ e)² - Σ e²) / 2 into sU, Σ e into sESum. Ends with a barrier.</summary>
    private static void FmPool<TS>(int n, ArrayView<float> sE, ArrayView<float> sESum, ArrayView<float> sU)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, group = default(TS).Group, es = SharedLayout.EStride(k, default(TS).T);
        for (int d = ILGPU.Group.IdxX; d < k; d += group)
        {
            float sum = 0f, sq = 0f;
            for (int s = 0; s < n; s++)
            {
                float e = sE[s * es + d];
                sum += e;
                sq += e * e;
            }
            sESum[d] = sum;
            sU[d] = 0.5f * (sum * sum - sq);
        }
        ILGPU.Group.Barrier();
    }

    /// <summary>FM pooling (backward): de_s = du ⊙ (Σ e - e_s) for the row's slots, 0 in its padding.</summary>
    private static void FmPoolBackward<TS>(int r, int n, ArrayView<float> sE, ArrayView<float> sESum, ArrayView<float> sDU, ArrayView<float> de)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, m = default(TS).M, group = default(TS).Group, es = SharedLayout.EStride(k, default(TS).T);
        for (int it = ILGPU.Group.IdxX; it < m * k; it += group)
        {
            int s = it / k, d = it - s * k;
            de[(long)r * m * k + it] = s < n ? sDU[d] * (sESum[d] - sE[s * es + d]) : 0f;
        }
    }
}
