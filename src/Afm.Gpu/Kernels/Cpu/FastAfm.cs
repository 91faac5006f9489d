using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels.Cpu;

/// <summary>
/// The dense parameters of one step, padded to multiples of <see cref="Gemm.Lanes"/> (zeros in the
/// padding, which therefore contributes nothing): W (Tp x Kp), Wᵀ (Kp x Tp), b, h (Tp), p (Kp).
/// Built once per kernel call and shared read-only by all threads.
/// </summary>
internal sealed unsafe class PaddedParams : IDisposable
{
    public readonly int K, T, Kp, Tp;
    public readonly float* W, WT, B, H, P;
    private readonly float* _block;

    public PaddedParams(ModelShape s)
    {
        K = s.K; T = Math.Max(s.T, 1);
        Kp = Gemm.Pad(K); Tp = Gemm.Pad(T);
        nuint total = (nuint)(2 * Tp * Kp + 2 * Tp + Kp);
        _block = (float*)NativeMemory.AlignedAlloc(total * sizeof(float), 64);
        NativeMemory.Clear(_block, total * sizeof(float));
        W = _block; WT = W + Tp * Kp; B = WT + Tp * Kp; H = B + Tp; P = H + Tp;
    }

    public void Load(ModelShape s, ReadOnlySpan<float> dense)
    {
        for (int r = 0; r < s.T; r++)
            for (int d = 0; d < K; d++)
            {
                float w = dense[r * K + d];
                W[r * Kp + d] = w;
                WT[d * Tp + r] = w;
            }
        for (int r = 0; r < s.T; r++) { B[r] = dense[s.OffsetB + r]; H[r] = dense[s.OffsetH + r]; }
        for (int d = 0; d < K; d++) P[d] = dense[s.OffsetP + d];
    }

    public void Dispose() => NativeMemory.AlignedFree(_block);
}

/// <summary>Per-thread scratch of the fast path, 64-byte aligned, padded rows (Kp / Tp floats).</summary>
internal sealed unsafe class FastScratch : IDisposable
{
    public readonly int Kp, Tp;
    public readonly float* E, Q, Z, DZ, DQ, DE, Score, A, ADrop, U, UDrop, DU, Mask1, AccW, AccB, AccH, AccP;
    private readonly float* _block;
    private readonly nuint _bytes;

    public FastScratch(ModelShape s)
    {
        Kp = Gemm.Pad(s.K); Tp = Gemm.Pad(Math.Max(s.T, 1));
        int m = s.MaxNnz, p = Gemm.Pad(Math.Max(s.Pairs, 1));
        int[] sizes = [m * Kp, p * Kp, p * Tp, p * Tp, p * Kp, m * Kp, p, p, p, Kp, Kp, Kp, Kp, Tp * Kp, Tp, Tp, Kp];
        long total = sizes.Sum(x => (long)x);
        _bytes = (nuint)(total * sizeof(float));
        _block = (float*)NativeMemory.AlignedAlloc(_bytes, 64);
        NativeMemory.Clear(_block, _bytes);
        float* cur = _block;
        float* Next(int n) { float* r = cur; cur += n; return r; }
        E = Next(sizes[0]); Q = Next(sizes[1]); Z = Next(sizes[2]); DZ = Next(sizes[3]); DQ = Next(sizes[4]); DE = Next(sizes[5]);
        Score = Next(sizes[6]); A = Next(sizes[7]); ADrop = Next(sizes[8]);
        U = Next(Kp); UDrop = Next(Kp); DU = Next(Kp); Mask1 = Next(Kp);
        AccW = Next(Tp * Kp); AccB = Next(Tp); AccH = Next(Tp); AccP = Next(Kp);
    }

    public void ClearAccumulators() => NativeMemory.Clear(AccW, (nuint)((Tp * Kp + 2 * Tp + Kp) * sizeof(float)));

    public void Dispose() => NativeMemory.AlignedFree(_block);
}

/// <summary>
/// The fused AFM sample with the attention MLP as three small register-blocked matrix products
/// per sample (Z = Q Wᵀ, dW += dZᵀ Q, dQ = dZ W), everything else vectorised over the padded
/// k / t dimension. Same math as <see cref="AfmSample"/>, which stays as the readable version.
/// </summary>
internal static unsafe class FastAfm
{
    private static Vector512<float> L(float* p) => Vector512.Load(p);

    /// <summary>Gather, pairwise products, Z = Q Wᵀ + b, scores, softmax. Returns the linear part.</summary>
    private static float Attention(ModelShape sh, PaddedParams w, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        ReadOnlySpan<int> ids, ReadOnlySpan<float> vals, FastScratch sc, int pairs)
    {
        int n = ids.Length, k = sh.K, kp = sc.Kp, tp = sc.Tp;
        float linear = 0;
        for (int s = 0; s < n; s++)
        {
            int id = ids[s];
            float x = vals[s];
            linear += lin[id] * x;
            var row = v.Slice(id * k, k);
            float* es = sc.E + s * kp;
            for (int d = 0; d < k; d++) es[d] = row[d] * x;
        }
        int p = 0;
        for (int j = 1; j < n; j++)
            for (int i = 0; i < j; i++, p++)
                for (int d = 0; d < kp; d += 16)
                    (L(sc.E + i * kp + d) * L(sc.E + j * kp + d)).Store(sc.Q + p * kp + d);
        Gemm.Run(sc.Q, kp, 1, w.WT, tp, sc.Z, tp, pairs, kp, tp, accumulate: false);
        float max = float.NegativeInfinity;
        for (p = 0; p < pairs; p++)
        {
            float* z = sc.Z + p * tp;
            var acc = Vector512<float>.Zero;
            for (int r = 0; r < tp; r += 16)
            {
                var zr = L(z + r) + L(w.B + r);
                zr.Store(z + r);
                acc = Vector512.FusedMultiplyAdd(Vector512.Max(zr, Vector512<float>.Zero), L(w.H + r), acc);
            }
            float s = Vector512.Sum(acc);
            sc.Score[p] = s;
            if (s > max) max = s;
        }
        float sum = 0;
        for (p = 0; p < pairs; p++) { float e = MathF.Exp(sc.Score[p] - max); sc.A[p] = e; sum += e; }
        float inv = 1f / sum;
        for (p = 0; p < pairs; p++) sc.A[p] *= inv;
        return linear;
    }

    private static void Pool(float* a, FastScratch sc, int pairs)
    {
        int kp = sc.Kp;
        for (int d = 0; d < kp; d += 16)
        {
            // four independent accumulators hide the FMA latency
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            int p = 0;
            for (; p + 4 <= pairs; p += 4)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[p]), L(sc.Q + p * kp + d), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(a[p + 1]), L(sc.Q + (p + 1) * kp + d), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Create(a[p + 2]), L(sc.Q + (p + 2) * kp + d), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Create(a[p + 3]), L(sc.Q + (p + 3) * kp + d), a3);
            }
            for (; p < pairs; p++) a0 = Vector512.FusedMultiplyAdd(Vector512.Create(a[p]), L(sc.Q + p * kp + d), a0);
            ((a0 + a1) + (a2 + a3)).Store(sc.U + d);
        }
    }

    public static float Forward(ModelShape sh, PaddedParams w, ReadOnlySpan<float> dense, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        ReadOnlySpan<int> ids, ReadOnlySpan<float> vals, FastScratch sc, Span<float> attention)
    {
        int pairs = ModelShape.PairCount(ids.Length);
        float linear = Attention(sh, w, v, lin, ids, vals, sc, pairs);
        Pool(sc.A, sc, pairs);
        if (!attention.IsEmpty) new ReadOnlySpan<float>(sc.A, pairs).CopyTo(attention);
        var acc = Vector512<float>.Zero;
        for (int d = 0; d < sc.Kp; d += 16) acc = Vector512.FusedMultiplyAdd(L(w.P + d), L(sc.U + d), acc);
        return dense[sh.OffsetW0] + linear + Vector512.Sum(acc);
    }

    public static float ForwardBackward(ModelShape sh, PaddedParams w, ReadOnlySpan<float> dense, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        ReadOnlySpan<int> ids, ReadOnlySpan<float> vals, float label, int row, in StepParams step,
        FastScratch sc, Span<float> de, Span<float> dDense, out float g, out float loss)
    {
        int n = ids.Length, k = sh.K, kp = sc.Kp, tp = sc.Tp, pairs = ModelShape.PairCount(n);
        float linear = Attention(sh, w, v, lin, ids, vals, sc, pairs);
        float inv0 = 1f / step.Keep0, inv1 = 1f / step.Keep1;
        for (int p = 0; p < pairs; p++)
            sc.ADrop[p] = step.Keep0 >= 1f || DropoutRng.Keep(step.Seed, row, DropoutRng.AttentionStream, p, step.Keep0) ? sc.A[p] * inv0 : 0f;
        Pool(sc.ADrop, sc, pairs);
        float yhat = dense[sh.OffsetW0] + linear;
        for (int d = 0; d < k; d++)
        {
            float m1 = step.Keep1 >= 1f || DropoutRng.Keep(step.Seed, row, DropoutRng.PooledStream, d, step.Keep1) ? inv1 : 0f;
            sc.Mask1[d] = m1;
            sc.UDrop[d] = sc.U[d] * m1;
            yhat += w.P[d] * sc.UDrop[d];
        }
        loss = AfmSample.Loss(step.Loss, yhat, label, out float g0);
        g = g0 * step.Scale;
        float gg = g;
        dDense[sh.OffsetW0] += gg;
        var vg = Vector512.Create(gg);
        for (int d = 0; d < kp; d += 16)
        {
            Vector512.FusedMultiplyAdd(vg, L(sc.UDrop + d), L(sc.AccP + d)).Store(sc.AccP + d);
            (vg * L(w.P + d) * L(sc.Mask1 + d)).Store(sc.DU + d);
        }
        if (pairs == 0)
        {
            de[..(n * k)].Clear();
            return yhat;
        }

        // pool and softmax backward: da' = du · q, da = da' mask0 / keep0, ds = a (da - Σ a da)
        float dot = 0;
        float* da = sc.Score;
        for (int p = 0; p < pairs; p++)
        {
            var acc = Vector512<float>.Zero;
            for (int d = 0; d < kp; d += 16) acc = Vector512.FusedMultiplyAdd(L(sc.DU + d), L(sc.Q + p * kp + d), acc);
            float dap = sc.ADrop[p] != 0f ? Vector512.Sum(acc) * inv0 : 0f;
            da[p] = dap;
            dot += sc.A[p] * dap;
        }
        // attention MLP backward: dz = ds h ⊙ [z > 0]; dh += ds relu(z); db += dz. Pairs run in the
        // inner loop so the b and h accumulators stay in registers.
        for (int p = 0; p < pairs; p++) da[p] = sc.A[p] * (da[p] - dot); // da now holds ds
        for (int r = 0; r < tp; r += 16)
        {
            var h = L(w.H + r);
            var accB = L(sc.AccB + r);
            var accH = L(sc.AccH + r);
            for (int p = 0; p < pairs; p++)
            {
                var vds = Vector512.Create(da[p]);
                var zr = L(sc.Z + p * tp + r);
                var dzr = Vector512.ConditionalSelect(Vector512.GreaterThan(zr, Vector512<float>.Zero), vds * h, Vector512<float>.Zero);
                dzr.Store(sc.DZ + p * tp + r);
                accB += dzr;
                accH = Vector512.FusedMultiplyAdd(vds, Vector512.Max(zr, Vector512<float>.Zero), accH);
            }
            accB.Store(sc.AccB + r);
            accH.Store(sc.AccH + r);
        }
        // dW += dZᵀ Q (Tp x Kp), dQ = dZ W (pairs x Kp)
        Gemm.Run(sc.DZ, 1, tp, sc.Q, kp, sc.AccW, kp, tp, pairs, kp, accumulate: true);
        Gemm.Run(sc.DZ, tp, 1, w.W, kp, sc.DQ, kp, pairs, tp, kp, accumulate: false);
        // dq += a' du (direct path); de_i += dq ⊙ e_j, de_j += dq ⊙ e_i. For a fixed j the de_j
        // accumulator stays in a register across the column of pairs (i < j).
        new Span<float>(sc.DE, n * kp).Clear();
        for (int d = 0; d < kp; d += 16)
        {
            var du = L(sc.DU + d);
            int pi = 0;
            for (int j = 1; j < n; j++)
            {
                var ej = L(sc.E + j * kp + d);
                var accJ = L(sc.DE + j * kp + d);
                for (int i = 0; i < j; i++, pi++)
                {
                    var q = Vector512.FusedMultiplyAdd(Vector512.Create(sc.ADrop[pi]), du, L(sc.DQ + pi * kp + d));
                    float* dei = sc.DE + i * kp + d;
                    Vector512.FusedMultiplyAdd(q, ej, L(dei)).Store(dei);
                    accJ = Vector512.FusedMultiplyAdd(q, L(sc.E + i * kp + d), accJ);
                }
                accJ.Store(sc.DE + j * kp + d);
            }
        }
        for (int s = 0; s < n; s++) new ReadOnlySpan<float>(sc.DE + s * kp, k).CopyTo(de.Slice(s * k, k));
        return yhat;
    }

    /// <summary>Adds the chunk's padded accumulators (W, b, h, p) into a partial dense gradient.</summary>
    public static void FlushAccumulators(ModelShape sh, FastScratch sc, Span<float> dDense)
    {
        int k = sh.K, t = sh.T;
        for (int r = 0; r < t; r++)
            for (int d = 0; d < k; d++) dDense[r * k + d] += sc.AccW[r * sc.Kp + d];
        for (int r = 0; r < t; r++) { dDense[sh.OffsetB + r] += sc.AccB[r]; dDense[sh.OffsetH + r] += sc.AccH[r]; }
        for (int d = 0; d < k; d++) dDense[sh.OffsetP + d] += sc.AccP[d];
    }
}
