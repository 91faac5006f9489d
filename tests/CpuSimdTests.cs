using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Cpu;
using Afm.Gpu.Model;

namespace Afm.Gpu.Tests;

/// <summary>
/// The shared kernel suite on the 256-bit kernels (AVX2 + FMA), whatever the widest path of this
/// machine is (without AVX2 the runtime runs the same kernels on software vectors).
/// </summary>
public class CpuKernelTestsAvx2 : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason)
    {
        skipReason = null;
        return new CpuAccelerator(0, CpuKernelVariant.Fast, CpuSimdPath.Avx2);
    }
}

/// <summary>The shared kernel suite on the 128-bit kernels (NEON and SSE share them).</summary>
public class CpuKernelTests128 : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason)
    {
        skipReason = null;
        return new CpuAccelerator(0, CpuKernelVariant.Fast, CpuSimdPath.Sse);
    }
}

/// <summary>
/// The vector path the process chose, the register blocking derived from it, and the matrix-product
/// micro-kernels of every width against a scalar double-precision product.
/// </summary>
public unsafe class CpuSimdTests
{
    /// <summary>
    /// With AFM_EXPECT_CPU_SIMD set (CI sets it next to the runtime's DOTNET_EnableAVX512=0,
    /// DOTNET_EnableAVX2=0 or DOTNET_EnableAVX=0), the process must run that path, and so must the
    /// kernels the CPU accelerator creates: a switch that silently left a wider or narrower path would fail here.
    /// </summary>
    [Fact]
    public void ProcessRunsTheExpectedPath()
    {
        string? expected = Environment.GetEnvironmentVariable("AFM_EXPECT_CPU_SIMD");
        var want = expected is { Length: > 0 } ? Enum.Parse<CpuSimdPath>(expected, ignoreCase: true)
            : Vector512.IsHardwareAccelerated ? CpuSimdPath.Avx512
            : Vector256.IsHardwareAccelerated ? CpuSimdPath.Avx2
            : System.Runtime.Intrinsics.Arm.AdvSimd.Arm64.IsSupported ? CpuSimdPath.Neon
            : Vector128.IsHardwareAccelerated ? CpuSimdPath.Sse : CpuSimdPath.Software;
        Assert.Equal(want, CpuSimd.Path);
        using var acc = new CpuAccelerator(1);
        Assert.Equal(want, acc.SimdPath);
        var shape = new ModelShape(ModelKind.Afm, 40, 8, 8, 3, 4);
        using var kernels = (CpuAfmKernels)acc.CreateKernels(shape);
        Assert.Equal(want, kernels.Path);
        Assert.Contains(CpuSimd.Name(want), kernels.LaunchPlan);
        Assert.Contains(CpuSimd.Name(want), acc.Descriptor.Details);
    }

    [Fact]
    public void BlockSizesComeFromWidthAndRegisters()
    {
        Assert.Equal(4, CpuSimd.BlockVectors(32));
        Assert.Equal(2, CpuSimd.BlockVectors(16));
        Assert.Equal(1, CpuSimd.BlockVectors(8));
        Assert.EndsWith("6 x 64 block", CpuSimd.Describe(CpuSimdPath.Avx512));
        Assert.EndsWith("6 x 16 block", CpuSimd.Describe(CpuSimdPath.Avx2));
        Assert.EndsWith("6 x 16 block", CpuSimd.Describe(CpuSimdPath.Neon));
        Assert.EndsWith("6 x 8 block", CpuSimd.Describe(CpuSimdPath.Sse));
        Assert.Equal(16, V512.Count);
        Assert.Equal(8, V256.Count);
        Assert.Equal(4, V128.Count);
    }

    public static TheoryData<int> Widths => new() { 512, 256, 128 };

    /// <summary>
    /// C (+)= A B for every row count that exercises the 6-, 4- and 1-row blocks, every column count
    /// (multiples of 16) that exercises the 4-, 2- and 1-vector blocks, A plain and transposed; each
    /// element within 1e-5 of Σ |a b| + |c| of the double-precision product (float32 rounding over at
    /// most 64 terms is below 64 x 6e-8 of that).
    /// </summary>
    [Theory]
    [MemberData(nameof(Widths))]
    public void GemmMatchesScalarProduct(int width)
    {
        var rng = new Random(width);
        int[] rowCounts = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 45];
        int[] cols = [16, 32, 48, 64, 80, 112, 256];
        int[] depths = [1, 5, 64];
        foreach (int rows in rowCounts)
            foreach (int n in cols)
                foreach (int depth in depths)
                    foreach (bool transposed in new[] { false, true })
                        foreach (bool accumulate in new[] { false, true })
                            Check(width, rng, rows, depth, n, transposed, accumulate);
    }

    private static void Check(int width, Random rng, int rows, int depth, int n, bool transposed, bool accumulate)
    {
        int ldb = n + 16, ldc = n + 32;
        float[] a = Fill(rng, rows * depth), b = Fill(rng, depth * ldb), c = Fill(rng, rows * ldc);
        var c0 = (float[])c.Clone();
        // A(i, kk) at i * rowStride + kk * colStride
        int rs = transposed ? 1 : depth, cs = transposed ? rows : 1;
        fixed (float* pa = a, pb = b, pc = c)
        {
            switch (width)
            {
                case 512: Gemm<V512, Vector512<float>>.Run(pa, rs, cs, pb, ldb, pc, ldc, rows, depth, n, accumulate); break;
                case 256: Gemm<V256, Vector256<float>>.Run(pa, rs, cs, pb, ldb, pc, ldc, rows, depth, n, accumulate); break;
                default: Gemm<V128, Vector128<float>>.Run(pa, rs, cs, pb, ldb, pc, ldc, rows, depth, n, accumulate); break;
            }
        }
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < ldc; j++)
            {
                float got = c[i * ldc + j];
                if (j >= n)
                {
                    Assert.True(got == c0[i * ldc + j], $"{width}-bit {rows}x{depth}x{n}: wrote outside C at ({i}, {j})");
                    continue;
                }
                double want = accumulate ? c0[i * ldc + j] : 0, mag = Math.Abs(want);
                for (int kk = 0; kk < depth; kk++)
                {
                    double term = (double)a[i * rs + kk * cs] * b[kk * ldb + j];
                    want += term;
                    mag += Math.Abs(term);
                }
                Assert.True(Math.Abs(got - want) <= 1e-5 * mag + 1e-30,
                    $"{width}-bit rows {rows} depth {depth} n {n} transposed {transposed} accumulate {accumulate}: C[{i},{j}] = {got:G9}, expected {want:G9}");
            }
    }

    private static float[] Fill(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}
