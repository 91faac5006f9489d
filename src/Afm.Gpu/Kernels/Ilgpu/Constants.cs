using System.Diagnostics.CodeAnalysis;

namespace Afm.Gpu.Kernels.Ilgpu;

/// <summary>
/// An integer known when a kernel is compiled: the GPU kernels are generic over structs implementing it, so that
/// ILGPU sees k, t, the slots per row, the tile and the work-group size as constants (constant loop bounds and
/// shared-memory offsets, folded branches) in every backend, including the PTX compiled offline for the checks.
/// </summary>
public interface IConstant
{
    /// <summary>The value.</summary>
    int Value { get; }
}

#pragma warning disable CS1591 // the sixteen hexadecimal digits
public readonly struct H0 : IConstant { public int Value => 0; }
public readonly struct H1 : IConstant { public int Value => 1; }
public readonly struct H2 : IConstant { public int Value => 2; }
public readonly struct H3 : IConstant { public int Value => 3; }
public readonly struct H4 : IConstant { public int Value => 4; }
public readonly struct H5 : IConstant { public int Value => 5; }
public readonly struct H6 : IConstant { public int Value => 6; }
public readonly struct H7 : IConstant { public int Value => 7; }
public readonly struct H8 : IConstant { public int Value => 8; }
public readonly struct H9 : IConstant { public int Value => 9; }
public readonly struct HA : IConstant { public int Value => 10; }
public readonly struct HB : IConstant { public int Value => 11; }
public readonly struct HC : IConstant { public int Value => 12; }
public readonly struct HD : IConstant { public int Value => 13; }
public readonly struct HE : IConstant { public int Value => 14; }
public readonly struct HF : IConstant { public int Value => 15; }
#pragma warning restore CS1591

/// <summary>A constant of four hexadecimal digits, 0 to 65535.</summary>
public readonly struct Hex<T3, T2, T1, T0> : IConstant
    where T3 : struct, IConstant where T2 : struct, IConstant where T1 : struct, IConstant where T0 : struct, IConstant
{
    /// <inheritdoc />
    public int Value => ((default(T3).Value * 16 + default(T2).Value) * 16 + default(T1).Value) * 16 + default(T0).Value;
}

/// <summary>
/// What a kernel is specialised for: every size the kernels' loops and shared-memory layout depend on.
/// </summary>
public interface IKernelShape
{
    /// <summary>Embedding size k.</summary>
    int K { get; }
    /// <summary>Attention factor t (0 for FM).</summary>
    int T { get; }
    /// <summary>Slots per row.</summary>
    int M { get; }
    /// <summary>Pairs per backward tile.</summary>
    int Tile { get; }
    /// <summary>Work-items per group.</summary>
    int Group { get; }
    /// <summary>1 when the dense-gradient accumulator lives in global memory, else 0.</summary>
    int GlobalAccumulator { get; }
}

/// <summary>A kernel shape made of six constants.</summary>
public readonly struct KernelShape<TK, TT, TM, TTile, TGroup, TGlobal> : IKernelShape
    where TK : struct, IConstant where TT : struct, IConstant where TM : struct, IConstant
    where TTile : struct, IConstant where TGroup : struct, IConstant where TGlobal : struct, IConstant
{
    /// <inheritdoc />
    public int K => default(TK).Value;
    /// <inheritdoc />
    public int T => default(TT).Value;
    /// <inheritdoc />
    public int M => default(TM).Value;
    /// <inheritdoc />
    public int Tile => default(TTile).Value;
    /// <inheritdoc />
    public int Group => default(TGroup).Value;
    /// <inheritdoc />
    public int GlobalAccumulator => default(TGlobal).Value;
}

/// <summary>Builds the constant types at run time.</summary>
internal static class Constants
{
    private static readonly Type[] Digits =
    [
        typeof(H0), typeof(H1), typeof(H2), typeof(H3), typeof(H4), typeof(H5), typeof(H6), typeof(H7),
        typeof(H8), typeof(H9), typeof(HA), typeof(HB), typeof(HC), typeof(HD), typeof(HE), typeof(HF),
    ];

    /// <summary>The largest value a constant type can carry.</summary>
    public const int MaxValue = 0xFFFF;

    /// <summary>The type whose <see cref="IConstant.Value"/> is <paramref name="value"/>.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2055", Justification = "Hex<,,,> and the digit structs are referenced statically and kept.")]
    [UnconditionalSuppressMessage("AOT", "IL3050", Justification = "ILGPU needs Reflection.Emit: no native AOT.")]
    public static Type Of(int value)
    {
        if (value < 0 || value > MaxValue)
            throw new NotSupportedException($"the GPU kernels are specialised for sizes up to {MaxValue}; {value} is out of range");
        return typeof(Hex<,,,>).MakeGenericType(Digits[(value >> 12) & 15], Digits[(value >> 8) & 15], Digits[(value >> 4) & 15], Digits[value & 15]);
    }

    /// <summary>The <see cref="KernelShape{TK, TT, TM, TTile, TGroup, TGlobal}"/> type of these sizes.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2055", Justification = "KernelShape<...> is referenced statically and kept.")]
    [UnconditionalSuppressMessage("Trimming", "IL2076", Justification = "The digit structs have no members beyond Value and are kept.")]
    [UnconditionalSuppressMessage("AOT", "IL3050", Justification = "ILGPU needs Reflection.Emit: no native AOT.")]
    public static Type Shape(int k, int t, int m, int tile, int group, bool globalAccumulator) =>
        typeof(KernelShape<,,,,,>).MakeGenericType(Of(k), Of(t), Of(m), Of(tile), Of(group), Of(globalAccumulator ? 1 : 0));
}
