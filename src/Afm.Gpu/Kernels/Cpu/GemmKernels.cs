// Micro-kernels of Gemm<TOps, TV>, one per block shape (rows x vectors of B), written out so that every
// accumulator is a local the JIT keeps in a register; the row offsets of A are hoisted out of the depth
// loop and A and B advance by pointer, so the loop body is the loads, the broadcasts and the FMAs.
using System.Runtime.CompilerServices;

namespace Afm.Gpu.Kernels.Cpu;

internal static unsafe partial class Gemm<TOps, TV>
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block6x4(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
        if (accumulate)
        {
            c00 = TOps.Load(c); c01 = TOps.Load(c + 1 * w); c02 = TOps.Load(c + 2 * w); c03 = TOps.Load(c + 3 * w);
            c10 = TOps.Load(c + 1 * ldc); c11 = TOps.Load(c + 1 * ldc + 1 * w); c12 = TOps.Load(c + 1 * ldc + 2 * w); c13 = TOps.Load(c + 1 * ldc + 3 * w);
            c20 = TOps.Load(c + 2 * ldc); c21 = TOps.Load(c + 2 * ldc + 1 * w); c22 = TOps.Load(c + 2 * ldc + 2 * w); c23 = TOps.Load(c + 2 * ldc + 3 * w);
            c30 = TOps.Load(c + 3 * ldc); c31 = TOps.Load(c + 3 * ldc + 1 * w); c32 = TOps.Load(c + 3 * ldc + 2 * w); c33 = TOps.Load(c + 3 * ldc + 3 * w);
            c40 = TOps.Load(c + 4 * ldc); c41 = TOps.Load(c + 4 * ldc + 1 * w); c42 = TOps.Load(c + 4 * ldc + 2 * w); c43 = TOps.Load(c + 4 * ldc + 3 * w);
            c50 = TOps.Load(c + 5 * ldc); c51 = TOps.Load(c + 5 * ldc + 1 * w); c52 = TOps.Load(c + 5 * ldc + 2 * w); c53 = TOps.Load(c + 5 * ldc + 3 * w);
        }
        else c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = TOps.Zero;
        nint r1 = (nint)ars, r2 = 2 * (nint)ars, r3 = 3 * (nint)ars, r4 = 4 * (nint)ars, r5 = 5 * (nint)ars;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk); var b1 = TOps.Load(bk + 1 * w); var b2 = TOps.Load(bk + 2 * w); var b3 = TOps.Load(bk + 3 * w);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00); c01 = TOps.Fma(a0, b1, c01); c02 = TOps.Fma(a0, b2, c02); c03 = TOps.Fma(a0, b3, c03);
            var a1 = TOps.Splat(ak[r1]);
            c10 = TOps.Fma(a1, b0, c10); c11 = TOps.Fma(a1, b1, c11); c12 = TOps.Fma(a1, b2, c12); c13 = TOps.Fma(a1, b3, c13);
            var a2 = TOps.Splat(ak[r2]);
            c20 = TOps.Fma(a2, b0, c20); c21 = TOps.Fma(a2, b1, c21); c22 = TOps.Fma(a2, b2, c22); c23 = TOps.Fma(a2, b3, c23);
            var a3 = TOps.Splat(ak[r3]);
            c30 = TOps.Fma(a3, b0, c30); c31 = TOps.Fma(a3, b1, c31); c32 = TOps.Fma(a3, b2, c32); c33 = TOps.Fma(a3, b3, c33);
            var a4 = TOps.Splat(ak[r4]);
            c40 = TOps.Fma(a4, b0, c40); c41 = TOps.Fma(a4, b1, c41); c42 = TOps.Fma(a4, b2, c42); c43 = TOps.Fma(a4, b3, c43);
            var a5 = TOps.Splat(ak[r5]);
            c50 = TOps.Fma(a5, b0, c50); c51 = TOps.Fma(a5, b1, c51); c52 = TOps.Fma(a5, b2, c52); c53 = TOps.Fma(a5, b3, c53);
        }
        TOps.Store(c00, c); TOps.Store(c01, c + 1 * w); TOps.Store(c02, c + 2 * w); TOps.Store(c03, c + 3 * w);
        TOps.Store(c10, c + 1 * ldc); TOps.Store(c11, c + 1 * ldc + 1 * w); TOps.Store(c12, c + 1 * ldc + 2 * w); TOps.Store(c13, c + 1 * ldc + 3 * w);
        TOps.Store(c20, c + 2 * ldc); TOps.Store(c21, c + 2 * ldc + 1 * w); TOps.Store(c22, c + 2 * ldc + 2 * w); TOps.Store(c23, c + 2 * ldc + 3 * w);
        TOps.Store(c30, c + 3 * ldc); TOps.Store(c31, c + 3 * ldc + 1 * w); TOps.Store(c32, c + 3 * ldc + 2 * w); TOps.Store(c33, c + 3 * ldc + 3 * w);
        TOps.Store(c40, c + 4 * ldc); TOps.Store(c41, c + 4 * ldc + 1 * w); TOps.Store(c42, c + 4 * ldc + 2 * w); TOps.Store(c43, c + 4 * ldc + 3 * w);
        TOps.Store(c50, c + 5 * ldc); TOps.Store(c51, c + 5 * ldc + 1 * w); TOps.Store(c52, c + 5 * ldc + 2 * w); TOps.Store(c53, c + 5 * ldc + 3 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block6x2(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (accumulate)
        {
            c00 = TOps.Load(c); c01 = TOps.Load(c + 1 * w);
            c10 = TOps.Load(c + 1 * ldc); c11 = TOps.Load(c + 1 * ldc + 1 * w);
            c20 = TOps.Load(c + 2 * ldc); c21 = TOps.Load(c + 2 * ldc + 1 * w);
            c30 = TOps.Load(c + 3 * ldc); c31 = TOps.Load(c + 3 * ldc + 1 * w);
            c40 = TOps.Load(c + 4 * ldc); c41 = TOps.Load(c + 4 * ldc + 1 * w);
            c50 = TOps.Load(c + 5 * ldc); c51 = TOps.Load(c + 5 * ldc + 1 * w);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = TOps.Zero;
        nint r1 = (nint)ars, r2 = 2 * (nint)ars, r3 = 3 * (nint)ars, r4 = 4 * (nint)ars, r5 = 5 * (nint)ars;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk); var b1 = TOps.Load(bk + 1 * w);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00); c01 = TOps.Fma(a0, b1, c01);
            var a1 = TOps.Splat(ak[r1]);
            c10 = TOps.Fma(a1, b0, c10); c11 = TOps.Fma(a1, b1, c11);
            var a2 = TOps.Splat(ak[r2]);
            c20 = TOps.Fma(a2, b0, c20); c21 = TOps.Fma(a2, b1, c21);
            var a3 = TOps.Splat(ak[r3]);
            c30 = TOps.Fma(a3, b0, c30); c31 = TOps.Fma(a3, b1, c31);
            var a4 = TOps.Splat(ak[r4]);
            c40 = TOps.Fma(a4, b0, c40); c41 = TOps.Fma(a4, b1, c41);
            var a5 = TOps.Splat(ak[r5]);
            c50 = TOps.Fma(a5, b0, c50); c51 = TOps.Fma(a5, b1, c51);
        }
        TOps.Store(c00, c); TOps.Store(c01, c + 1 * w);
        TOps.Store(c10, c + 1 * ldc); TOps.Store(c11, c + 1 * ldc + 1 * w);
        TOps.Store(c20, c + 2 * ldc); TOps.Store(c21, c + 2 * ldc + 1 * w);
        TOps.Store(c30, c + 3 * ldc); TOps.Store(c31, c + 3 * ldc + 1 * w);
        TOps.Store(c40, c + 4 * ldc); TOps.Store(c41, c + 4 * ldc + 1 * w);
        TOps.Store(c50, c + 5 * ldc); TOps.Store(c51, c + 5 * ldc + 1 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block6x1(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c10, c20, c30, c40, c50;
        if (accumulate)
        {
            c00 = TOps.Load(c);
            c10 = TOps.Load(c + 1 * ldc);
            c20 = TOps.Load(c + 2 * ldc);
            c30 = TOps.Load(c + 3 * ldc);
            c40 = TOps.Load(c + 4 * ldc);
            c50 = TOps.Load(c + 5 * ldc);
        }
        else c00 = c10 = c20 = c30 = c40 = c50 = TOps.Zero;
        nint r1 = (nint)ars, r2 = 2 * (nint)ars, r3 = 3 * (nint)ars, r4 = 4 * (nint)ars, r5 = 5 * (nint)ars;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00);
            var a1 = TOps.Splat(ak[r1]);
            c10 = TOps.Fma(a1, b0, c10);
            var a2 = TOps.Splat(ak[r2]);
            c20 = TOps.Fma(a2, b0, c20);
            var a3 = TOps.Splat(ak[r3]);
            c30 = TOps.Fma(a3, b0, c30);
            var a4 = TOps.Splat(ak[r4]);
            c40 = TOps.Fma(a4, b0, c40);
            var a5 = TOps.Splat(ak[r5]);
            c50 = TOps.Fma(a5, b0, c50);
        }
        TOps.Store(c00, c);
        TOps.Store(c10, c + 1 * ldc);
        TOps.Store(c20, c + 2 * ldc);
        TOps.Store(c30, c + 3 * ldc);
        TOps.Store(c40, c + 4 * ldc);
        TOps.Store(c50, c + 5 * ldc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block4x4(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;
        if (accumulate)
        {
            c00 = TOps.Load(c); c01 = TOps.Load(c + 1 * w); c02 = TOps.Load(c + 2 * w); c03 = TOps.Load(c + 3 * w);
            c10 = TOps.Load(c + 1 * ldc); c11 = TOps.Load(c + 1 * ldc + 1 * w); c12 = TOps.Load(c + 1 * ldc + 2 * w); c13 = TOps.Load(c + 1 * ldc + 3 * w);
            c20 = TOps.Load(c + 2 * ldc); c21 = TOps.Load(c + 2 * ldc + 1 * w); c22 = TOps.Load(c + 2 * ldc + 2 * w); c23 = TOps.Load(c + 2 * ldc + 3 * w);
            c30 = TOps.Load(c + 3 * ldc); c31 = TOps.Load(c + 3 * ldc + 1 * w); c32 = TOps.Load(c + 3 * ldc + 2 * w); c33 = TOps.Load(c + 3 * ldc + 3 * w);
        }
        else c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = TOps.Zero;
        nint r1 = (nint)ars, r2 = 2 * (nint)ars, r3 = 3 * (nint)ars;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk); var b1 = TOps.Load(bk + 1 * w); var b2 = TOps.Load(bk + 2 * w); var b3 = TOps.Load(bk + 3 * w);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00); c01 = TOps.Fma(a0, b1, c01); c02 = TOps.Fma(a0, b2, c02); c03 = TOps.Fma(a0, b3, c03);
            var a1 = TOps.Splat(ak[r1]);
            c10 = TOps.Fma(a1, b0, c10); c11 = TOps.Fma(a1, b1, c11); c12 = TOps.Fma(a1, b2, c12); c13 = TOps.Fma(a1, b3, c13);
            var a2 = TOps.Splat(ak[r2]);
            c20 = TOps.Fma(a2, b0, c20); c21 = TOps.Fma(a2, b1, c21); c22 = TOps.Fma(a2, b2, c22); c23 = TOps.Fma(a2, b3, c23);
            var a3 = TOps.Splat(ak[r3]);
            c30 = TOps.Fma(a3, b0, c30); c31 = TOps.Fma(a3, b1, c31); c32 = TOps.Fma(a3, b2, c32); c33 = TOps.Fma(a3, b3, c33);
        }
        TOps.Store(c00, c); TOps.Store(c01, c + 1 * w); TOps.Store(c02, c + 2 * w); TOps.Store(c03, c + 3 * w);
        TOps.Store(c10, c + 1 * ldc); TOps.Store(c11, c + 1 * ldc + 1 * w); TOps.Store(c12, c + 1 * ldc + 2 * w); TOps.Store(c13, c + 1 * ldc + 3 * w);
        TOps.Store(c20, c + 2 * ldc); TOps.Store(c21, c + 2 * ldc + 1 * w); TOps.Store(c22, c + 2 * ldc + 2 * w); TOps.Store(c23, c + 2 * ldc + 3 * w);
        TOps.Store(c30, c + 3 * ldc); TOps.Store(c31, c + 3 * ldc + 1 * w); TOps.Store(c32, c + 3 * ldc + 2 * w); TOps.Store(c33, c + 3 * ldc + 3 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block4x2(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c01, c10, c11, c20, c21, c30, c31;
        if (accumulate)
        {
            c00 = TOps.Load(c); c01 = TOps.Load(c + 1 * w);
            c10 = TOps.Load(c + 1 * ldc); c11 = TOps.Load(c + 1 * ldc + 1 * w);
            c20 = TOps.Load(c + 2 * ldc); c21 = TOps.Load(c + 2 * ldc + 1 * w);
            c30 = TOps.Load(c + 3 * ldc); c31 = TOps.Load(c + 3 * ldc + 1 * w);
        }
        else c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = TOps.Zero;
        nint r1 = (nint)ars, r2 = 2 * (nint)ars, r3 = 3 * (nint)ars;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk); var b1 = TOps.Load(bk + 1 * w);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00); c01 = TOps.Fma(a0, b1, c01);
            var a1 = TOps.Splat(ak[r1]);
            c10 = TOps.Fma(a1, b0, c10); c11 = TOps.Fma(a1, b1, c11);
            var a2 = TOps.Splat(ak[r2]);
            c20 = TOps.Fma(a2, b0, c20); c21 = TOps.Fma(a2, b1, c21);
            var a3 = TOps.Splat(ak[r3]);
            c30 = TOps.Fma(a3, b0, c30); c31 = TOps.Fma(a3, b1, c31);
        }
        TOps.Store(c00, c); TOps.Store(c01, c + 1 * w);
        TOps.Store(c10, c + 1 * ldc); TOps.Store(c11, c + 1 * ldc + 1 * w);
        TOps.Store(c20, c + 2 * ldc); TOps.Store(c21, c + 2 * ldc + 1 * w);
        TOps.Store(c30, c + 3 * ldc); TOps.Store(c31, c + 3 * ldc + 1 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block4x1(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c10, c20, c30;
        if (accumulate)
        {
            c00 = TOps.Load(c);
            c10 = TOps.Load(c + 1 * ldc);
            c20 = TOps.Load(c + 2 * ldc);
            c30 = TOps.Load(c + 3 * ldc);
        }
        else c00 = c10 = c20 = c30 = TOps.Zero;
        nint r1 = (nint)ars, r2 = 2 * (nint)ars, r3 = 3 * (nint)ars;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00);
            var a1 = TOps.Splat(ak[r1]);
            c10 = TOps.Fma(a1, b0, c10);
            var a2 = TOps.Splat(ak[r2]);
            c20 = TOps.Fma(a2, b0, c20);
            var a3 = TOps.Splat(ak[r3]);
            c30 = TOps.Fma(a3, b0, c30);
        }
        TOps.Store(c00, c);
        TOps.Store(c10, c + 1 * ldc);
        TOps.Store(c20, c + 2 * ldc);
        TOps.Store(c30, c + 3 * ldc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block1x4(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c01, c02, c03;
        if (accumulate)
        {
            c00 = TOps.Load(c); c01 = TOps.Load(c + 1 * w); c02 = TOps.Load(c + 2 * w); c03 = TOps.Load(c + 3 * w);
        }
        else c00 = c01 = c02 = c03 = TOps.Zero;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk); var b1 = TOps.Load(bk + 1 * w); var b2 = TOps.Load(bk + 2 * w); var b3 = TOps.Load(bk + 3 * w);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00); c01 = TOps.Fma(a0, b1, c01); c02 = TOps.Fma(a0, b2, c02); c03 = TOps.Fma(a0, b3, c03);
        }
        TOps.Store(c00, c); TOps.Store(c01, c + 1 * w); TOps.Store(c02, c + 2 * w); TOps.Store(c03, c + 3 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block1x2(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00, c01;
        if (accumulate)
        {
            c00 = TOps.Load(c); c01 = TOps.Load(c + 1 * w);
        }
        else c00 = c01 = TOps.Zero;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk); var b1 = TOps.Load(bk + 1 * w);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00); c01 = TOps.Fma(a0, b1, c01);
        }
        TOps.Store(c00, c); TOps.Store(c01, c + 1 * w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block1x1(float* a, int ars, int acs, float* b, int ldb, float* c, int ldc, int depth, bool accumulate)
    {
        int w = TOps.Count;
        TV c00;
        if (accumulate)
        {
            c00 = TOps.Load(c);
        }
        else c00 = TOps.Zero;
        float* ak = a, bk = b;
        nint sa = acs, sb = ldb;
        for (int kk = 0; kk < depth; kk++, ak += sa, bk += sb)
        {
            var b0 = TOps.Load(bk);
            var a0 = TOps.Splat(ak[0]);
            c00 = TOps.Fma(a0, b0, c00);
        }
        TOps.Store(c00, c);
    }
}
