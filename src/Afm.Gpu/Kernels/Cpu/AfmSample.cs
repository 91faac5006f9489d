using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels.Cpu;

/// <summary>
/// Per-thread scratch for one sample: everything here is O(M k + P (k + t)) and reused from sample
/// to sample, so no rows x pairs x (k or t) tensor exists at any time.
/// </summary>
internal sealed class SampleScratch
{
    public SampleScratch(ModelShape s)
    {
        int p = Math.Max(s.Pairs, 1), k = s.K, t = Math.Max(s.T, 1);
        E = new float[s.MaxNnz * k];
        Q = new float[p * k];
        Z = new float[p * t];
        Score = new float[p];
        A = new float[p];
        ADrop = new float[p];
        U = new float[k];
        UDrop = new float[k];
        DU = new float[k];
        DQ = new float[k];
        DZ = new float[t];
        ESum = new float[k];
    }

    public readonly float[] E, Q, Z, Score, A, ADrop, U, UDrop, DU, DQ, DZ, ESum;
}

/// <summary>
/// The AFM / FM math for one sample, stage by stage, each forward next to its backward
/// (gather, pairwise interaction, attention MLP, softmax pooling, output and loss).
/// Dense parameters are read from the packed vector [W | b | h | p | w0].
/// </summary>
internal static class AfmSample
{
    // ---- gather: e_s = v_id x_s, linear = Σ w_id x_s ----------------------------------------

    /// <summary>e_s = v_id x_s; returns Σ w_id x_s, each product rounded to float and summed in double.</summary>
    public static double GatherForward(ReadOnlySpan<float> v, ReadOnlySpan<float> lin, ReadOnlySpan<int> ids, ReadOnlySpan<float> vals, int k, Span<float> e)
    {
        double linear = 0;
        for (int s = 0; s < ids.Length; s++)
        {
            int id = ids[s];
            float x = vals[s];
            linear += lin[id] * x;
            var row = v.Slice(id * k, k);
            var es = e.Slice(s * k, k);
            for (int d = 0; d < k; d++) es[d] = row[d] * x;
        }
        return linear;
    }
    // gather backward (dv = de x, dw = g x) is the scatter in CpuAfmKernels.UpdateSparse.

    // ---- pairwise interaction: q_ij = e_i ⊙ e_j, pairs in column-major upper-triangle order ----

    public static void PairwiseForward(ReadOnlySpan<float> e, int n, int k, Span<float> q)
    {
        int p = 0;
        for (int j = 1; j < n; j++)
            for (int i = 0; i < j; i++, p++)
                Simd.Multiply(e.Slice(i * k, k), e.Slice(j * k, k), q.Slice(p * k, k));
    }

    /// <summary>de_i += dq ⊙ e_j; de_j += dq ⊙ e_i.</summary>
    public static void PairwiseBackward(ReadOnlySpan<float> dq, ReadOnlySpan<float> e, int i, int j, int k, Span<float> de)
    {
        Simd.MultiplyAdd(dq, e.Slice(j * k, k), de.Slice(i * k, k));
        Simd.MultiplyAdd(dq, e.Slice(i * k, k), de.Slice(j * k, k));
    }

    // ---- attention MLP: z = W q + b, s = h · relu(z) -----------------------------------------

    public static void AttentionForward(ReadOnlySpan<float> q, int pairs, ReadOnlySpan<float> dense, ModelShape sh, Span<float> z, Span<float> score)
    {
        int k = sh.K, t = sh.T;
        var w = dense[..(t * k)];
        var b = dense.Slice(sh.OffsetB, t);
        var h = dense.Slice(sh.OffsetH, t);
        for (int p = 0; p < pairs; p++)
        {
            var qp = q.Slice(p * k, k);
            var zp = z.Slice(p * t, t);
            float s = 0;
            for (int r = 0; r < t; r++)
            {
                float zr = Simd.Dot(w.Slice(r * k, k), qp) + b[r];
                zp[r] = zr;
                if (zr > 0) s += h[r] * zr;
            }
            score[p] = s;
        }
    }

    /// <summary>
    /// For one pair: dz = ds h ⊙ [z &gt; 0]; dh += ds relu(z); dW += dz qᵀ; db += dz; dq += Wᵀ dz.
    /// </summary>
    public static void AttentionBackward(float ds, ReadOnlySpan<float> zp, ReadOnlySpan<float> qp, ReadOnlySpan<float> dense, ModelShape sh,
        Span<float> dDense, Span<float> dz, Span<float> dq)
    {
        int k = sh.K, t = sh.T;
        var w = dense[..(t * k)];
        var h = dense.Slice(sh.OffsetH, t);
        var dW = dDense[..(t * k)];
        var db = dDense.Slice(sh.OffsetB, t);
        var dh = dDense.Slice(sh.OffsetH, t);
        for (int r = 0; r < t; r++)
        {
            float zr = zp[r];
            if (zr > 0)
            {
                dh[r] += ds * zr;
                float g = ds * h[r];
                dz[r] = g;
                db[r] += g;
                Simd.Axpy(g, qp, dW.Slice(r * k, k));
                Simd.Axpy(g, w.Slice(r * k, k), dq);
            }
            else dz[r] = 0;
        }
    }

    // ---- softmax pooling: a = softmax(s) over the real pairs, u = Σ a' q (a' = dropped-out a) --

    public static void SoftmaxForward(ReadOnlySpan<float> score, Span<float> a)
    {
        if (a.Length == 0) return;
        float max = float.NegativeInfinity;
        foreach (float s in score[..a.Length]) max = MathF.Max(max, s);
        float sum = 0;
        for (int p = 0; p < a.Length; p++) { a[p] = MathF.Exp(score[p] - max); sum += a[p]; }
        float inv = 1f / sum;
        for (int p = 0; p < a.Length; p++) a[p] *= inv;
    }

    public static void PoolForward(ReadOnlySpan<float> aDrop, ReadOnlySpan<float> q, int k, Span<float> u)
    {
        u.Clear();
        for (int p = 0; p < aDrop.Length; p++) Simd.Axpy(aDrop[p], q.Slice(p * k, k), u);
    }

    /// <summary>Softmax backward in place: da (gradient w.r.t. a) becomes ds = a (da - Σ a da).</summary>
    public static void SoftmaxBackward(ReadOnlySpan<float> a, Span<float> da)
    {
        float dot = 0;
        for (int p = 0; p < a.Length; p++) dot += a[p] * da[p];
        for (int p = 0; p < a.Length; p++) da[p] = a[p] * (da[p] - dot);
    }

    // ---- FM pooling: u = Σ_{i<j} e_i ⊙ e_j = ((Σ e)² - Σ e²) / 2 in O(n k) --------------------

    public static void FmPoolForward(ReadOnlySpan<float> e, int n, int k, Span<float> eSum, Span<float> u)
    {
        eSum.Clear();
        u.Clear();
        for (int s = 0; s < n; s++)
        {
            var es = e.Slice(s * k, k);
            Simd.Axpy(1f, es, eSum);
            Simd.MultiplyAdd(es, es, u);
        }
        for (int d = 0; d < k; d++) u[d] = 0.5f * (eSum[d] * eSum[d] - u[d]);
    }

    /// <summary>
    /// The FM interaction Σ_d ½ ((Σ_s e_sd)² − Σ_s e_sd²) in double precision, for inference: the difference cancels
    /// most of the terms' magnitude, and in float its rounding would dominate a score near 0.
    /// </summary>
    public static double FmInteraction(ReadOnlySpan<float> e, int n, int k)
    {
        int w = System.Numerics.Vector<float>.Count, d = 0;
        var total = System.Numerics.Vector<double>.Zero;
        for (; d + w <= k; d += w)
        {
            System.Numerics.Vector<double> sumLo = default, sumHi = default, sqLo = default, sqHi = default;
            for (int s = 0; s < n; s++)
            {
                System.Numerics.Vector.Widen(new System.Numerics.Vector<float>(e.Slice(s * k + d, w)), out var lo, out var hi);
                sumLo += lo;
                sumHi += hi;
                sqLo += lo * lo;
                sqHi += hi * hi;
            }
            total += sumLo * sumLo - sqLo + (sumHi * sumHi - sqHi);
        }
        double result = System.Numerics.Vector.Sum(total);
        for (; d < k; d++)
        {
            double sum = 0, squares = 0;
            for (int s = 0; s < n; s++)
            {
                double x = e[s * k + d];
                sum += x;
                squares += x * x;
            }
            result += sum * sum - squares;
        }
        return 0.5 * result;
    }

    /// <summary>de_s = du ⊙ (Σ e - e_s).</summary>
    public static void FmPoolBackward(ReadOnlySpan<float> du, ReadOnlySpan<float> e, ReadOnlySpan<float> eSum, int n, int k, Span<float> de)
    {
        for (int s = 0; s < n; s++)
        {
            var es = e.Slice(s * k, k);
            var ds = de.Slice(s * k, k);
            for (int d = 0; d < k; d++) ds[d] = du[d] * (eSum[d] - es[d]);
        }
    }

    // ---- output and loss: ŷ = w0 + linear + p · u' ---------------------------------------------

    public static float OutputForward(float w0, float linear, ReadOnlySpan<float> p, ReadOnlySpan<float> uDrop) =>
        w0 + linear + Simd.Dot(p, uDrop);

    /// <summary>Loss of one row and dℓ/dŷ (unscaled).</summary>
    public static float Loss(LossKind kind, float yhat, float label, out float g)
    {
        if (kind == LossKind.Squared)
        {
            float r = yhat - label;
            g = 2 * r;
            return r * r;
        }
        float y = label > 0 ? 1f : 0f;
        float sig = yhat >= 0 ? 1f / (1f + MathF.Exp(-yhat)) : MathF.Exp(yhat) / (1f + MathF.Exp(yhat));
        g = sig - y;
        return MathF.Max(yhat, 0) - yhat * y + MathF.Log(1f + MathF.Exp(-MathF.Abs(yhat)));
    }

    // ---- the fused sample -----------------------------------------------------------------------

    /// <summary>Forward only; returns ŷ and (if <paramref name="attention"/> is not empty) the row's attention weights.</summary>
    public static float Forward(ModelShape sh, ReadOnlySpan<float> dense, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        ReadOnlySpan<int> ids, ReadOnlySpan<float> vals, SampleScratch sc, Span<float> attention)
    {
        int n = ids.Length, k = sh.K;
        // The score's terms are summed in double and rounded once: predictions near 0 keep their relative precision.
        double w0Linear = dense[sh.OffsetW0] + GatherForward(v, lin, ids, vals, k, sc.E);
        if (sh.Kind == ModelKind.Fm)
            return (float)(w0Linear + FmInteraction(sc.E, n, k));
        var u = sc.U.AsSpan();
        int pairs = ModelShape.PairCount(n);
        PairwiseForward(sc.E, n, k, sc.Q);
        AttentionForward(sc.Q, pairs, dense, sh, sc.Z, sc.Score);
        var a = sc.A.AsSpan(0, pairs);
        SoftmaxForward(sc.Score, a);
        PoolForward(a, sc.Q, k, u);
        if (!attention.IsEmpty) a.CopyTo(attention);
        return (float)(w0Linear + DotDouble(dense.Slice(sh.OffsetP, k), u));
    }

    /// <summary>Σ a_d b_d, each product rounded to float and summed in double.</summary>
    private static double DotDouble(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int d = 0; d < a.Length; d++) sum += a[d] * b[d];
        return sum;
    }

    /// <summary>
    /// Forward and backward of one training sample. Writes de per slot (n x k), accumulates the
    /// dense gradient into <paramref name="dDense"/>, returns ŷ; <paramref name="g"/> gets dL/dŷ
    /// (scaled) and <paramref name="loss"/> the unscaled row loss.
    /// </summary>
    public static float ForwardBackward(ModelShape sh, ReadOnlySpan<float> dense, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        ReadOnlySpan<int> ids, ReadOnlySpan<float> vals, float label, int row, in StepParams step,
        SampleScratch sc, Span<float> de, Span<float> dDense, out float g, out float loss)
    {
        int n = ids.Length, k = sh.K, pairs = ModelShape.PairCount(n);
        bool afm = sh.Kind == ModelKind.Afm;
        float linear = (float)GatherForward(v, lin, ids, vals, k, sc.E);
        var u = sc.U.AsSpan();
        var a = sc.A.AsSpan(0, pairs);
        var aDrop = sc.ADrop.AsSpan(0, pairs);
        if (afm)
        {
            PairwiseForward(sc.E, n, k, sc.Q);
            AttentionForward(sc.Q, pairs, dense, sh, sc.Z, sc.Score);
            SoftmaxForward(sc.Score, a);
            float inv0 = 1f / step.Keep0;
            for (int p = 0; p < pairs; p++)
                aDrop[p] = DropoutRng.Keep(step.Seed, row + step.RowOffset, DropoutRng.AttentionStream, p, step.Keep0) ? a[p] * inv0 : 0f;
            PoolForward(aDrop, sc.Q, k, u);
        }
        else
        {
            FmPoolForward(sc.E, n, k, sc.ESum, u);
        }
        var uDrop = sc.UDrop.AsSpan();
        var mask1 = sc.DU.AsSpan(); // holds the keep1 mask scaled by 1/keep1 until du is formed
        float inv1 = 1f / step.Keep1;
        for (int d = 0; d < k; d++)
        {
            mask1[d] = DropoutRng.Keep(step.Seed, row + step.RowOffset, DropoutRng.PooledStream, d, step.Keep1) ? inv1 : 0f;
            uDrop[d] = u[d] * mask1[d];
        }
        var pvec = dense.Slice(sh.OffsetP, k);
        float yhat = OutputForward(dense[sh.OffsetW0], linear, pvec, uDrop);
        loss = Loss(step.Loss, yhat, label, out float g0);
        g = g0 * step.Scale;

        // output backward: dw0 = g, dp = g u', du = g p ⊙ mask1
        dDense[sh.OffsetW0] += g;
        var du = sc.DU.AsSpan();
        if (afm) Simd.Axpy(g, uDrop, dDense.Slice(sh.OffsetP, k));
        for (int d = 0; d < k; d++) du[d] = g * pvec[d] * mask1[d];

        var deRow = de[..(n * k)];
        if (!afm)
        {
            FmPoolBackward(du, sc.E, sc.ESum, n, k, deRow);
            return yhat;
        }

        // pool backward: da' = du · q; dq (direct) = a' du. Dropout: da = da' mask0 / keep0.
        var da = sc.Score.AsSpan(0, pairs); // scores are no longer needed
        for (int p = 0; p < pairs; p++)
        {
            float dap = Simd.Dot(du, sc.Q.AsSpan(p * k, k));
            da[p] = aDrop[p] != 0f ? dap / step.Keep0 : 0f;
        }
        SoftmaxBackward(a, da);
        deRow.Clear();
        var dq = sc.DQ.AsSpan();
        int pi = 0;
        for (int j = 1; j < n; j++)
        {
            for (int i = 0; i < j; i++, pi++)
            {
                for (int d = 0; d < k; d++) dq[d] = aDrop[pi] * du[d];
                AttentionBackward(da[pi], sc.Z.AsSpan(pi * sh.T, sh.T), sc.Q.AsSpan(pi * k, k), dense, sh, dDense, sc.DZ, dq);
                PairwiseBackward(dq, sc.E, i, j, k, deRow);
            }
        }
        return yhat;
    }
}
