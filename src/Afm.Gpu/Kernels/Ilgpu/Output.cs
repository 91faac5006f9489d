using ILGPU;

namespace Afm.Gpu.Kernels.Ilgpu;

internal static partial class GpuKernels
{
    /// <summary>ŷ = w0 + linear + p · u (u already dropped out); every work-item gets it.</summary>
    private static float Output<TS>(ArrayView<float> dense, ArrayView<float> sU, ArrayView<float> red, float linear)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, group = default(TS).Group, offP = t * k + 2 * t;
        float part = 0f;
        for (int d = ILGPU.Group.IdxX; d < k; d += group) part += dense[offP + d] * sU[d];
        return dense[offP + k] + linear + GroupSum(part, red, group);
    }
}
