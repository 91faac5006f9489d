using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Afm.Gpu.Kernels.Cpu;

/// <summary>Small vector primitives over spans (Vector&lt;float&gt; body, scalar tail).</summary>
internal static class Simd
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        int n = x.Length, i = 0;
        float s = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var acc = Vector<float>.Zero;
            ref float rx = ref MemoryMarshal.GetReference(x);
            ref float ry = ref MemoryMarshal.GetReference(y);
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
                acc = Vector.FusedMultiplyAdd(
                    Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref rx, i))),
                    Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref ry, i))), acc);
            s = Vector.Sum(acc);
        }
        for (; i < n; i++) s += x[i] * y[i];
        return s;
    }

    /// <summary>The largest |x| of <paramref name="x"/> (0 when empty).</summary>
    public static float MaxMagnitude(ReadOnlySpan<float> x)
    {
        int i = 0;
        float m = 0;
        if (Vector.IsHardwareAccelerated && x.Length >= Vector<float>.Count)
        {
            var max = Vector<float>.Zero;
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
                max = Vector.Max(max, Vector.Abs(new Vector<float>(x.Slice(i))));
            for (int l = 0; l < Vector<float>.Count; l++) m = MathF.Max(m, max[l]);
        }
        for (; i < x.Length; i++) m = MathF.Max(m, MathF.Abs(x[i]));
        return m;
    }

    /// <summary>Sets the elements of <paramref name="x"/> smaller than <paramref name="threshold"/> in magnitude to 0.</summary>
    public static void ZeroBelow(Span<float> x, float threshold)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var min = new Vector<float>(threshold);
            for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var v = new Vector<float>(x.Slice(i));
                Vector.ConditionalSelect(Vector.LessThan(Vector.Abs(v), min), Vector<float>.Zero, v).CopyTo(x.Slice(i));
            }
        }
        for (; i < x.Length; i++)
            if (MathF.Abs(x[i]) < threshold) x[i] = 0;
    }

    /// <summary>y += a x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        int n = x.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var va = new Vector<float>(a);
            ref float rx = ref MemoryMarshal.GetReference(x);
            ref float ry = ref MemoryMarshal.GetReference(y);
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            {
                ref byte py = ref Unsafe.As<float, byte>(ref Unsafe.Add(ref ry, i));
                var vx = Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref rx, i)));
                Unsafe.WriteUnaligned(ref py, Vector.FusedMultiplyAdd(va, vx, Unsafe.ReadUnaligned<Vector<float>>(ref py)));
            }
        }
        for (; i < n; i++) y[i] += a * x[i];
    }

    /// <summary>d = x ⊙ y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Multiply(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> d)
    {
        int n = x.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            ref float rx = ref MemoryMarshal.GetReference(x);
            ref float ry = ref MemoryMarshal.GetReference(y);
            ref float rd = ref MemoryMarshal.GetReference(d);
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            {
                var vx = Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref rx, i)));
                var vy = Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref ry, i)));
                Unsafe.WriteUnaligned(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref rd, i)), vx * vy);
            }
        }
        for (; i < n; i++) d[i] = x[i] * y[i];
    }

    /// <summary>d += x ⊙ y.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> d)
    {
        int n = x.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            ref float rx = ref MemoryMarshal.GetReference(x);
            ref float ry = ref MemoryMarshal.GetReference(y);
            ref float rd = ref MemoryMarshal.GetReference(d);
            for (; i <= n - Vector<float>.Count; i += Vector<float>.Count)
            {
                ref byte pd = ref Unsafe.As<float, byte>(ref Unsafe.Add(ref rd, i));
                var vx = Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref rx, i)));
                var vy = Unsafe.ReadUnaligned<Vector<float>>(ref Unsafe.As<float, byte>(ref Unsafe.Add(ref ry, i)));
                Unsafe.WriteUnaligned(ref pd, Vector.FusedMultiplyAdd(vx, vy, Unsafe.ReadUnaligned<Vector<float>>(ref pd)));
            }
        }
        for (; i < n; i++) d[i] += x[i] * y[i];
    }
}
