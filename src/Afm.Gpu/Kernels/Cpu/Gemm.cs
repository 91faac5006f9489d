using Afm.Gpu.Accelerators.Cpu;

namespace Afm.Gpu.Kernels.Cpu;

/// <summary>The padding every width shares: rows padded to 16 floats, a multiple of 4, 8 and 16 lanes.</summary>
internal static class Gemm
{
    /// <summary>Floats every N and padded dimension is a multiple of (one 512-bit vector, two 256-bit, four 128-bit).</summary>
    public const int Lanes = 16;

    /// <summary>Rounds up to a multiple of <see cref="Lanes"/>.</summary>
    public static int Pad(int n) => (n + Lanes - 1) / Lanes * Lanes;
}

/// <summary>
/// A register-blocked single-precision matrix product for the small per-sample products of the
/// attention MLP: C[i, n] (+)= Σ_kk A(i, kk) B[kk, n], with A addressed through a row and a column
/// stride (so Aᵀ costs nothing) and N a multiple of 16 floats, over the vectors of
/// <typeparamref name="TOps"/>. The main block is <see cref="CpuSimd.BlockRows"/> rows by
/// <see cref="CpuSimd.BlockVectors"/> vectors (6 x 4 on 32 registers, 6 x 2 on 16): per step of the
/// depth, that many loads of B and 6 broadcasts of A feed 24 (or 12) fused multiply-adds into
/// accumulators that stay in registers. Narrower blocks take the column and row remainders.
/// </summary>
internal static unsafe partial class Gemm<TOps, TV> where TOps : struct, IVec<TV> where TV : struct
{
    public static void Run(float* a, int aRowStride, int aColStride, float* b, int ldb, float* c, int ldc,
        int rows, int depth, int n, bool accumulate)
    {
        int w = TOps.Count, nv = CpuSimd.BlockVectors(TOps.Registers);
        int i = 0;
        for (; i + 6 <= rows; i += 6)
        {
            float* ai = a + i * aRowStride, ci = c + i * ldc;
            int j = 0;
            if (nv == 4)
                for (; j + 4 * w <= n; j += 4 * w) Block6x4(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
            for (; j + 2 * w <= n; j += 2 * w) Block6x2(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
            for (; j < n; j += w) Block6x1(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
        }
        if (i + 4 <= rows)
        {
            float* ai = a + i * aRowStride, ci = c + i * ldc;
            int j = 0;
            if (nv == 4)
                for (; j + 4 * w <= n; j += 4 * w) Block4x4(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
            for (; j + 2 * w <= n; j += 2 * w) Block4x2(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
            for (; j < n; j += w) Block4x1(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
            i += 4;
        }
        for (; i < rows; i++)
        {
            float* ai = a + i * aRowStride, ci = c + i * ldc;
            int j = 0;
            for (; j + 4 * w <= n; j += 4 * w) Block1x4(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
            for (; j + 2 * w <= n; j += 2 * w) Block1x2(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
            for (; j < n; j += w) Block1x1(ai, aRowStride, aColStride, b + j, ldb, ci + j, ldc, depth, accumulate);
        }
    }
}
