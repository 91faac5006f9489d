using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Afm.Gpu.Accelerators.Cpu;

/// <summary>The vector width (and instruction set) the CPU kernels run on.</summary>
public enum CpuSimdPath
{
    /// <summary>512-bit AVX-512F: 16 floats per vector, 32 registers.</summary>
    Avx512,
    /// <summary>256-bit AVX2 with FMA: 8 floats per vector, 16 registers.</summary>
    Avx2,
    /// <summary>128-bit ARM64 AdvSimd (NEON): 4 floats per vector, 32 registers, fused multiply-add.</summary>
    Neon,
    /// <summary>128-bit SSE (x64 without AVX2): 4 floats per vector, 16 registers.</summary>
    Sse,
    /// <summary>No hardware vectors: the same kernels over the runtime's software 128-bit vectors.</summary>
    Software,
}

/// <summary>
/// The path chosen at process start from what the runtime accelerates (so the runtime's
/// <c>DOTNET_EnableAVX512=0</c>, <c>DOTNET_EnableAVX2=0</c>, <c>DOTNET_EnableAVX=0</c> switches select a
/// narrower one), and the register blocking of the matrix-product micro-kernel derived from it.
/// </summary>
public static class CpuSimd
{
    /// <summary>Rows of the micro-kernel's block: one broadcast of A feeds a row's vectors of B.</summary>
    public const int BlockRows = 6;

    /// <summary>The path this process runs.</summary>
    public static CpuSimdPath Path { get; } = Detect();

    /// <summary>How <see cref="Path"/> is chosen.</summary>
    public static CpuSimdPath Detect() =>
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? CpuSimdPath.Avx512
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported ? CpuSimdPath.Avx2
        : AdvSimd.Arm64.IsSupported ? CpuSimdPath.Neon
        : Vector128.IsHardwareAccelerated && Sse2.IsSupported ? CpuSimdPath.Sse
        : CpuSimdPath.Software;

    /// <summary>fp32 lanes of one vector of <paramref name="path"/>.</summary>
    public static int Lanes(CpuSimdPath path) => path switch
    {
        CpuSimdPath.Avx512 => 16,
        CpuSimdPath.Avx2 => 8,
        CpuSimdPath.Software => 1,
        _ => 4,
    };

    /// <summary>Architectural vector registers of <paramref name="path"/>.</summary>
    public static int Registers(CpuSimdPath path) => path is CpuSimdPath.Avx512 or CpuSimdPath.Neon ? 32 : 16;

    /// <summary>
    /// Vectors of B per row of the micro-kernel's block: the most (of 4, 2, 1) for which the
    /// <see cref="BlockRows"/> x n accumulators, the n loaded vectors of B and one broadcast of A fit the
    /// registers: 6 x 4 + 4 + 1 = 29 of 32, 6 x 2 + 2 + 1 = 15 of 16.
    /// </summary>
    public static int BlockVectors(int registers)
    {
        foreach (int n in (ReadOnlySpan<int>)[4, 2, 1])
            if (BlockRows * n + n + 1 <= registers) return n;
        return 1;
    }

    /// <summary>A one-line description: path, lanes, registers, block (e.g. "AVX2+FMA, 8 lanes, 16 registers, 6 x 16 block").</summary>
    public static string Describe(CpuSimdPath path)
    {
        int lanes = Lanes(path) == 1 ? 4 : Lanes(path), regs = Registers(path);
        return $"{Name(path)}, {lanes} fp32 lanes, {regs} registers, {BlockRows} x {BlockVectors(regs) * lanes} block";
    }

    /// <summary>The path's name as printed and as <c>--isa</c> takes it.</summary>
    public static string Name(CpuSimdPath path) => path switch
    {
        CpuSimdPath.Avx512 => "AVX-512",
        CpuSimdPath.Avx2 => "AVX2+FMA",
        CpuSimdPath.Neon => "NEON",
        CpuSimdPath.Sse => "SSE",
        _ => "software",
    };
}

/// <summary>
/// Optional timing of the attention products of the CPU kernels (the three matrix products per group
/// of stacked pair rows), summed over the worker threads, for measuring their share of the step and
/// their FLOP rate. Off unless enabled; when off it costs one branch per product.
/// </summary>
public static class CpuProfile
{
    private static long _ticks;

    /// <summary>Whether the products are timed.</summary>
    public static bool Enabled { get; set; }

    /// <summary>Time spent in the products since the last <see cref="Reset"/>, summed over threads.</summary>
    public static TimeSpan ProductTime => TimeSpan.FromSeconds((double)Interlocked.Read(ref _ticks) / System.Diagnostics.Stopwatch.Frequency);

    /// <summary>Sets <see cref="ProductTime"/> to zero.</summary>
    public static void Reset() => Interlocked.Exchange(ref _ticks, 0);

    internal static long Start() => Enabled ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;

    internal static void Stop(long start)
    {
        if (start != 0) Interlocked.Add(ref _ticks, System.Diagnostics.Stopwatch.GetTimestamp() - start);
    }
}
