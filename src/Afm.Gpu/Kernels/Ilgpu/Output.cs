using ILGPU;
using ILGPU.Algorithms;

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

    /// <summary>The loss of one row and its derivative dL/dŷ (as the CPU kernels).</summary>
    private static float Loss(int kind, float y, float label, out float gradient)
    {
        if (kind == (int)Model.LossKind.Squared)
        {
            float res = y - label;
            gradient = 2f * res;
            return res * res;
        }
        float target = label > 0f ? 1f : 0f;
        float sig = y >= 0f ? 1f / (1f + XMath.Exp(-y)) : XMath.Exp(y) / (1f + XMath.Exp(y));
        gradient = sig - target;
        return (y > 0f ? y : 0f) - y * target + XMath.Log(1f + XMath.Exp(-XMath.Abs(y)));
    }
}
