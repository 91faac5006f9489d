using ILGPU;

namespace Afm.Gpu.Kernels.Ilgpu;

/// <summary>Work-group reductions: fixed binary trees over shared memory, so results do not depend on timing.</summary>
internal static partial class GpuKernels
{
    /// <summary>Σ v over the group; every work-item gets it. <paramref name="group"/> is a power of two.</summary>
    private static float GroupSum(float v, ArrayView<float> red, int group)
    {
        int tid = ILGPU.Group.IdxX;
        red[tid] = v;
        ILGPU.Group.Barrier();
        for (int s = group / 2; s > 0; s >>= 1)
        {
            if (tid < s) red[tid] += red[tid + s];
            ILGPU.Group.Barrier();
        }
        float r = red[0];
        ILGPU.Group.Barrier();
        return r;
    }

    /// <summary>max v over the group; every work-item gets it.</summary>
    private static float GroupMax(float v, ArrayView<float> red, int group)
    {
        int tid = ILGPU.Group.IdxX;
        red[tid] = v;
        ILGPU.Group.Barrier();
        for (int s = group / 2; s > 0; s >>= 1)
        {
            if (tid < s)
            {
                float a = red[tid], b = red[tid + s];
                red[tid] = b > a ? b : a;
            }
            ILGPU.Group.Barrier();
        }
        float r = red[0];
        ILGPU.Group.Barrier();
        return r;
    }
}
