using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Afm.Gpu.Kernels.Cpu;

/// <summary>
/// A register-blocked single-precision matrix product for the small per-sample products of the
/// attention MLP: C[i, n] (+)= Σ_kk A(i, kk) B[kk, n], with A addressed through a row and a column
/// stride (so Aᵀ costs nothing) and N a multiple of 16 (callers pad to <see cref="Lanes"/>).
/// The 4 x 64 block keeps 16 accumulators in registers: per step 4 loads of B and 4 broadcasts of A
/// feed 16 fused multiply-adds.
/// </summary>
internal static unsafe class Gemm
{
    /// <summary>Floats per vector; every N and padded dimension is a multiple of this.</summary>
    public const int Lanes = 16;

    public static void Run(float* a, int aRowStride, int aColStride, float* b, int ldb, float* c, int ldc,
        int rows, int depth, int n, bool accumulate)
    {
        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            int j = 0;
            for (; j + 64 <= n; j += 64) Block4x4(a + i * aRowStride, aRowStride, aColStride, b + j, ldb, c + i * ldc + j, ldc, depth, accumulate);
            for (; j < n; j += 16) Block4x1(a + i * aRowStride, aRowStride, aColStride, b + j, ldb, c + i * ldc + j, ldc, depth, accumulate);
        }
        for (; i < rows; i++)
        {
            for (int j = 0; j < n; j += 16)
            {
                float* ai = a + i * aRowStride;
                float* cij = c + i * ldc + j;
                var acc = accumulate ? Vector512.Load(cij) : Vector512<float>.Zero;
                for (int kk = 0; kk < depth; kk++)
                    acc = Vector512.FusedMultiplyAdd(Vector512.Create(ai[kk * aColStride]), Vector512.Load(b + kk * ldb + j), acc);
                acc.Store(cij);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block4x4(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        Vector512<float> c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;
        if (accumulate)
        {
            c00 = Vector512.Load(c); c01 = Vector512.Load(c + 16); c02 = Vector512.Load(c + 32); c03 = Vector512.Load(c + 48);
            c10 = Vector512.Load(c + ldc); c11 = Vector512.Load(c + ldc + 16); c12 = Vector512.Load(c + ldc + 32); c13 = Vector512.Load(c + ldc + 48);
            c20 = Vector512.Load(c + 2 * ldc); c21 = Vector512.Load(c + 2 * ldc + 16); c22 = Vector512.Load(c + 2 * ldc + 32); c23 = Vector512.Load(c + 2 * ldc + 48);
            c30 = Vector512.Load(c + 3 * ldc); c31 = Vector512.Load(c + 3 * ldc + 16); c32 = Vector512.Load(c + 3 * ldc + 32); c33 = Vector512.Load(c + 3 * ldc + 48);
        }
        else
        {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = Vector512<float>.Zero;
        }
        for (int kk = 0; kk < depth; kk++)
        {
            float* bk = b + kk * ldb;
            var b0 = Vector512.Load(bk); var b1 = Vector512.Load(bk + 16); var b2 = Vector512.Load(bk + 32); var b3 = Vector512.Load(bk + 48);
            float* ak = a + kk * acs;
            var a0 = Vector512.Create(ak[0]);
            c00 = Vector512.FusedMultiplyAdd(a0, b0, c00); c01 = Vector512.FusedMultiplyAdd(a0, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(a0, b2, c02); c03 = Vector512.FusedMultiplyAdd(a0, b3, c03);
            var a1 = Vector512.Create(ak[ars]);
            c10 = Vector512.FusedMultiplyAdd(a1, b0, c10); c11 = Vector512.FusedMultiplyAdd(a1, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(a1, b2, c12); c13 = Vector512.FusedMultiplyAdd(a1, b3, c13);
            var a2 = Vector512.Create(ak[2 * ars]);
            c20 = Vector512.FusedMultiplyAdd(a2, b0, c20); c21 = Vector512.FusedMultiplyAdd(a2, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(a2, b2, c22); c23 = Vector512.FusedMultiplyAdd(a2, b3, c23);
            var a3 = Vector512.Create(ak[3 * ars]);
            c30 = Vector512.FusedMultiplyAdd(a3, b0, c30); c31 = Vector512.FusedMultiplyAdd(a3, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(a3, b2, c32); c33 = Vector512.FusedMultiplyAdd(a3, b3, c33);
        }
        c00.Store(c); c01.Store(c + 16); c02.Store(c + 32); c03.Store(c + 48);
        c10.Store(c + ldc); c11.Store(c + ldc + 16); c12.Store(c + ldc + 32); c13.Store(c + ldc + 48);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 16); c22.Store(c + 2 * ldc + 32); c23.Store(c + 2 * ldc + 48);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 16); c32.Store(c + 3 * ldc + 32); c33.Store(c + 3 * ldc + 48);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block4x1(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        Vector512<float> c0, c1, c2, c3;
        if (accumulate)
        {
            c0 = Vector512.Load(c); c1 = Vector512.Load(c + ldc); c2 = Vector512.Load(c + 2 * ldc); c3 = Vector512.Load(c + 3 * ldc);
        }
        else c0 = c1 = c2 = c3 = Vector512<float>.Zero;
        for (int kk = 0; kk < depth; kk++)
        {
            var bk = Vector512.Load(b + kk * ldb);
            float* ak = a + kk * acs;
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(ak[0]), bk, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(ak[ars]), bk, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(ak[2 * ars]), bk, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(ak[3 * ars]), bk, c3);
        }
        c0.Store(c); c1.Store(c + ldc); c2.Store(c + 2 * ldc); c3.Store(c + 3 * ldc);
    }

    /// <summary>Rounds up to a multiple of <see cref="Lanes"/>.</summary>
    public static int Pad(int n) => (n + Lanes - 1) / Lanes * Lanes;
}
