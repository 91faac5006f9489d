using ILGPU;

namespace Afm.Gpu.Kernels.Ilgpu;

internal static partial class GpuKernels
{
    /// <summary>
    /// Gather (forward): the row's ids and values into shared memory, e_s = v[id_s] x_s (slot stride <see cref="SharedLayout.EStride"/>), and
    /// Σ w_id x into sc[0] (summed in slot order, as the CPU). Ends with a barrier. Its backward is the sparse
    /// update (<see cref="UpdateSparse"/>), which gathers dL/de per distinct id.
    /// </summary>
    private static void Gather<TS>(int r, int n, ModelViews model, BatchViews batch,
        ArrayView<int> sId, ArrayView<float> sX, ArrayView<float> sE, ArrayView<float> sc)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, m = default(TS).M, group = default(TS).Group, es = SharedLayout.EStride(k, default(TS).T);
        int tid = ILGPU.Group.IdxX;
        for (int s = tid; s < n; s += group)
        {
            sId[s] = batch.Ids[r * m + s];
            sX[s] = batch.Values[r * m + s];
        }
        ILGPU.Group.Barrier();
        for (int it = tid; it < n * k; it += group)
        {
            int s = it / k, d = it - s * k;
            sE[s * es + d] = model.V[(long)sId[s] * k + d] * sX[s];
        }
        if (tid == 0)
        {
            float linear = 0f;
            for (int s = 0; s < n; s++) linear += model.Linear[sId[s]] * sX[s];
            sc[0] = linear;
        }
        ILGPU.Group.Barrier();
    }
}
