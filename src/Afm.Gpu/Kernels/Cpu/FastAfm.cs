using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Afm.Gpu.Accelerators.Cpu;
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

/// <summary>
/// Per-thread scratch of the fast path, 64-byte aligned, padded rows (Kp / Tp floats). Pair rows of
/// up to <see cref="GroupRows"/> samples are stacked (at most <see cref="RowCap"/> rows) so the
/// attention products run as one matrix product per group rather than per sample.
/// </summary>
internal sealed unsafe class FastScratch : IDisposable
{
    /// <summary>Stacked pair rows a group aims for: enough to amortise streaming W and dW through the cache.</summary>
    public const int TargetRows = 128;

    public readonly int Kp, Tp, M, RowCap, GroupRows;
    public readonly float* E, Q, Z, DZ, DQ, DE, Score, A, ADrop, U, UDrop, DU, Mask1, AccW, AccB, AccH, AccP;
    private readonly float* _block;
    private readonly nuint _bytes;

    public FastScratch(ModelShape s, int groupRows)
    {
        Kp = Gemm.Pad(s.K); Tp = Gemm.Pad(Math.Max(s.T, 1));
        M = s.MaxNnz;
        GroupRows = groupRows;
        RowCap = Math.Max(s.Pairs, TargetRows);
        int m = M, g = groupRows, r = RowCap;
        int[] sizes = [g * m * Kp, r * Kp, r * Tp, r * Tp, r * Kp, m * Kp, r, r, r, g * Kp, g * Kp, g * Kp, g * Kp, Tp * Kp, Tp, Tp, Kp];
        long total = sizes.Sum(x => (long)x);
        _bytes = (nuint)(total * sizeof(float));
        _block = (float*)NativeMemory.AlignedAlloc(_bytes, 64);
        NativeMemory.Clear(_block, _bytes);
        float* cur = _block;
        float* Next(int n) { float* p = cur; cur += n; return p; }
        E = Next(sizes[0]); Q = Next(sizes[1]); Z = Next(sizes[2]); DZ = Next(sizes[3]); DQ = Next(sizes[4]); DE = Next(sizes[5]);
        Score = Next(sizes[6]); A = Next(sizes[7]); ADrop = Next(sizes[8]);
        U = Next(sizes[9]); UDrop = Next(sizes[10]); DU = Next(sizes[11]); Mask1 = Next(sizes[12]);
        AccW = Next(Tp * Kp); AccB = Next(Tp); AccH = Next(Tp); AccP = Next(Kp);
    }

    public void ClearAccumulators() => NativeMemory.Clear(AccW, (nuint)((Tp * Kp + 2 * Tp + Kp) * sizeof(float)));

    public void Dispose() => NativeMemory.AlignedFree(_block);
}

/// <summary>
/// The fused AFM step with the attention MLP as three register-blocked matrix products over the
/// stacked pair rows of a group of samples (Z = Q Wᵀ, dW += dZᵀ Q, dQ = dZ W), everything else
/// vectorised over the padded k / t dimension with the vectors of <typeparamref name="TOps"/>. Each
/// output row of Z and dQ depends only on its own pair, and dW accumulates pair after pair in order,
/// so grouping does not change any result. Same math as <see cref="AfmSample"/>, which stays as the
/// readable version.
/// </summary>
internal static unsafe class FastAfm<TOps, TV> where TOps : struct, IVec<TV> where TV : struct
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV L(float* p) => TOps.Load(p);

    /// <summary>One sample of a group: where its rows live and what the forward pass left.</summary>
    private struct Member
    {
        public int Row, N, Pairs, Offset;
        public float Linear;
    }

    /// <summary>e_s = v_id x_s into <paramref name="e"/>, q rows at <paramref name="q"/>; returns Σ w x.</summary>
    private static float GatherPairs(int k, int kp, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        ReadOnlySpan<int> ids, ReadOnlySpan<float> vals, float* e, float* q)
    {
        int n = ids.Length, w = TOps.Count;
        float linear = 0;
        fixed (float* pv = v)
        {
            for (int s = 0; s < n; s++)
            {
                int id = ids[s];
                float x = vals[s];
                linear += lin[id] * x;
                float* row = pv + (long)id * k;
                float* es = e + s * kp;
                var vx = TOps.Splat(x);
                int d = 0;
                for (; d + w <= k; d += w) TOps.Store(TOps.Mul(L(row + d), vx), es + d);
                for (; d < k; d++) es[d] = row[d] * x;
            }
        }
        int p = 0;
        for (int j = 1; j < n; j++)
            for (int i = 0; i < j; i++, p++)
                for (int d = 0; d < kp; d += w)
                    TOps.Store(TOps.Mul(L(e + i * kp + d), L(e + j * kp + d)), q + p * kp + d);
        return linear;
    }

    /// <summary>z += b, s = h · relu(z), a = softmax(s) over one sample's rows.</summary>
    private static void ScoresSoftmax(PaddedParams w, FastScratch sc, int offset, int pairs)
    {
        int tp = sc.Tp, lanes = TOps.Count;
        float max = float.NegativeInfinity;
        for (int p = offset; p < offset + pairs; p++)
        {
            float* z = sc.Z + p * tp;
            var acc = TOps.Zero;
            for (int r = 0; r < tp; r += lanes)
            {
                var zr = TOps.Add(L(z + r), L(w.B + r));
                TOps.Store(zr, z + r);
                acc = TOps.Fma(TOps.Max(zr, TOps.Zero), L(w.H + r), acc);
            }
            float s = TOps.Sum(acc);
            sc.Score[p] = s;
            if (s > max) max = s;
        }
        float sum = 0;
        for (int p = offset; p < offset + pairs; p++) { float e = MathF.Exp(sc.Score[p] - max); sc.A[p] = e; sum += e; }
        float inv = 1f / sum;
        for (int p = offset; p < offset + pairs; p++) sc.A[p] *= inv;
    }

    /// <summary>u = Σ a_p q_p over one sample's rows.</summary>
    private static void Pool(float* a, float* q, int kp, int pairs, float* u)
    {
        for (int d = 0; d < kp; d += TOps.Count)
        {
            // four independent accumulators hide the FMA latency
            TV a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero;
            int p = 0;
            for (; p + 4 <= pairs; p += 4)
            {
                a0 = TOps.Fma(TOps.Splat(a[p]), L(q + p * kp + d), a0);
                a1 = TOps.Fma(TOps.Splat(a[p + 1]), L(q + (p + 1) * kp + d), a1);
                a2 = TOps.Fma(TOps.Splat(a[p + 2]), L(q + (p + 2) * kp + d), a2);
                a3 = TOps.Fma(TOps.Splat(a[p + 3]), L(q + (p + 3) * kp + d), a3);
            }
            for (; p < pairs; p++) a0 = TOps.Fma(TOps.Splat(a[p]), L(q + p * kp + d), a0);
            TOps.Store(TOps.Add(TOps.Add(a0, a1), TOps.Add(a2, a3)), u + d);
        }
    }

    /// <summary>Σ x ⊙ y over <paramref name="n"/> padded floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* x, float* y, int n)
    {
        var acc = TOps.Zero;
        for (int d = 0; d < n; d += TOps.Count) acc = TOps.Fma(L(x + d), L(y + d), acc);
        return TOps.Sum(acc);
    }

    /// <summary>
    /// Inference for rows [<paramref name="first"/>, <paramref name="end"/>) of a batch, grouped like
    /// <see cref="ForwardBackward"/>: ŷ per row and, when <paramref name="attention"/> is given,
    /// each row's weights at <c>row * pairStride</c>.
    /// </summary>
    public static void Forward(ModelShape sh, PaddedParams w, ReadOnlySpan<float> dense, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        int[] ids, float[] vals, int[] counts, int first, int end, FastScratch sc, float[] yhat, float[]? attention)
    {
        Span<Member> group = stackalloc Member[sc.GroupRows];
        int m = sh.MaxNnz, k = sh.K, kp = sc.Kp, tp = sc.Tp, stride = sh.Pairs;
        for (int r = first; r < end;)
        {
            int count = NextGroup(counts, ref r, end, sc, group);
            int rows = group[count - 1].Offset + group[count - 1].Pairs;
            for (int g = 0; g < count; g++)
            {
                ref var mb = ref group[g];
                mb.Linear = GatherPairs(k, kp, v, lin, ids.AsSpan(mb.Row * m, mb.N), vals.AsSpan(mb.Row * m, mb.N), sc.E + g * m * kp, sc.Q + mb.Offset * kp);
            }
            long t0 = CpuProfile.Start();
            Gemm<TOps, TV>.Run(sc.Q, kp, 1, w.WT, tp, sc.Z, tp, rows, kp, tp, accumulate: false);
            CpuProfile.Stop(t0);
            for (int g = 0; g < count; g++)
            {
                var mb = group[g];
                ScoresSoftmax(w, sc, mb.Offset, mb.Pairs);
                Pool(sc.A + mb.Offset, sc.Q + mb.Offset * kp, kp, mb.Pairs, sc.U);
                if (attention is not null) new ReadOnlySpan<float>(sc.A + mb.Offset, mb.Pairs).CopyTo(attention.AsSpan(mb.Row * stride));
                yhat[mb.Row] = dense[sh.OffsetW0] + mb.Linear + Dot(w.P, sc.U, kp);
            }
        }
    }

    /// <summary>Takes consecutive rows from <paramref name="r"/> while their pairs fit the scratch; returns how many.</summary>
    private static int NextGroup(int[] counts, ref int r, int end, FastScratch sc, Span<Member> group)
    {
        int count = 0, rows = 0;
        while (r < end && count < group.Length)
        {
            int n = counts[r], pairs = ModelShape.PairCount(n);
            if (count > 0 && rows + pairs > sc.RowCap) break;
            group[count++] = new Member { Row = r, N = n, Pairs = pairs, Offset = rows };
            rows += pairs;
            r++;
        }
        return count;
    }

    /// <summary>
    /// Forward and backward of rows [<paramref name="first"/>, <paramref name="end"/>) of a batch,
    /// in groups whose stacked pairs fit the scratch. Writes ŷ, g, loss and de per row; the dense
    /// gradients gather in the scratch accumulators (see <see cref="FastAfm.FlushAccumulators"/>).
    /// </summary>
    public static void ForwardBackward(ModelShape sh, PaddedParams w, ReadOnlySpan<float> dense, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        int[] ids, float[] vals, int[] counts, float[] labels, int first, int end, in StepParams step, FastScratch sc,
        float[] de, Span<float> dDense, float[] yhat, float[] grad, float[] loss)
    {
        Span<Member> group = stackalloc Member[sc.GroupRows];
        int m = sh.MaxNnz;
        for (int r = first; r < end;)
        {
            int count = NextGroup(counts, ref r, end, sc, group);
            int rows = group[count - 1].Offset + group[count - 1].Pairs;
            Group(sh, w, dense, v, lin, ids, vals, labels, group[..count], rows, m, step, sc, de, dDense, yhat, grad, loss);
        }
    }

    private static void Group(ModelShape sh, PaddedParams w, ReadOnlySpan<float> dense, ReadOnlySpan<float> v, ReadOnlySpan<float> lin,
        int[] ids, float[] vals, float[] labels, Span<Member> group, int rows, int m, in StepParams step, FastScratch sc,
        float[] de, Span<float> dDense, float[] yhat, float[] grad, float[] loss)
    {
        int k = sh.K, kp = sc.Kp, tp = sc.Tp, lanes = TOps.Count;
        float inv0 = 1f / step.Keep0, inv1 = 1f / step.Keep1;

        // forward: gather and pair products of every member, then one Z = Q Wᵀ for the group
        for (int g = 0; g < group.Length; g++)
        {
            ref var mb = ref group[g];
            mb.Linear = GatherPairs(k, kp, v, lin, ids.AsSpan(mb.Row * m, mb.N), vals.AsSpan(mb.Row * m, mb.N), sc.E + g * m * kp, sc.Q + mb.Offset * kp);
        }
        long t0 = CpuProfile.Start();
        Gemm<TOps, TV>.Run(sc.Q, kp, 1, w.WT, tp, sc.Z, tp, rows, kp, tp, accumulate: false);
        CpuProfile.Stop(t0);

        float* da = sc.Score; // scores become da, then ds, once the softmax has used them
        for (int g = 0; g < group.Length; g++)
        {
            var mb = group[g];
            int off = mb.Offset, pairs = mb.Pairs;
            ScoresSoftmax(w, sc, off, pairs);
            if (step.Keep0 >= 1f) new ReadOnlySpan<float>(sc.A + off, pairs).CopyTo(new Span<float>(sc.ADrop + off, pairs));
            else
                for (int p = 0; p < pairs; p++)
                    sc.ADrop[off + p] = DropoutRng.Keep(step.Seed, mb.Row + step.RowOffset, DropoutRng.AttentionStream, p, step.Keep0) ? sc.A[off + p] * inv0 : 0f;
            float* u = sc.U + g * kp, uDrop = sc.UDrop + g * kp, mask1 = sc.Mask1 + g * kp, du = sc.DU + g * kp;
            Pool(sc.ADrop + off, sc.Q + off * kp, kp, pairs, u);
            if (step.Keep1 >= 1f)
            {
                // no dropout: the mask is 1 everywhere (padding included, where p and u are 0)
                var one = TOps.Splat(1f);
                for (int d = 0; d < kp; d += lanes) { TOps.Store(one, mask1 + d); TOps.Store(L(u + d), uDrop + d); }
            }
            else
                for (int d = 0; d < k; d++)
                {
                    float k1 = DropoutRng.Keep(step.Seed, mb.Row + step.RowOffset, DropoutRng.PooledStream, d, step.Keep1) ? inv1 : 0f;
                    mask1[d] = k1;
                    uDrop[d] = u[d] * k1;
                }
            float y = dense[sh.OffsetW0] + mb.Linear + Dot(w.P, uDrop, kp);
            yhat[mb.Row] = y;
            loss[mb.Row] = AfmSample.Loss(step.Loss, y, labels[mb.Row], out float g0);
            float gg = g0 * step.Scale;
            grad[mb.Row] = gg;
            dDense[sh.OffsetW0] += gg;
            var vg = TOps.Splat(gg);
            for (int d = 0; d < kp; d += lanes)
            {
                TOps.Store(TOps.Fma(vg, L(uDrop + d), L(sc.AccP + d)), sc.AccP + d);
                TOps.Store(TOps.Mul(TOps.Mul(vg, L(w.P + d)), L(mask1 + d)), du + d);
            }
            // pool and softmax backward: da' = du · q, da = da' mask0 / keep0, ds = a (da - Σ a da)
            float dot = 0;
            for (int p = off; p < off + pairs; p++)
            {
                float dap = sc.ADrop[p] != 0f ? Dot(du, sc.Q + p * kp, kp) * inv0 : 0f;
                da[p] = dap;
                dot += sc.A[p] * dap;
            }
            for (int p = off; p < off + pairs; p++) da[p] = sc.A[p] * (da[p] - dot);
        }

        // attention MLP backward over all stacked rows: dz = ds h ⊙ [z > 0]; dh += ds relu(z); db += dz
        // (rows in the inner loop so the b and h accumulators stay in registers)
        for (int r = 0; r < tp; r += lanes)
        {
            var h = L(w.H + r);
            var accB = L(sc.AccB + r);
            var accH = L(sc.AccH + r);
            for (int p = 0; p < rows; p++)
            {
                var vds = TOps.Splat(da[p]);
                var zr = L(sc.Z + p * tp + r);
                var dzr = TOps.WherePositive(zr, TOps.Mul(vds, h));
                TOps.Store(dzr, sc.DZ + p * tp + r);
                accB = TOps.Add(accB, dzr);
                accH = TOps.Fma(vds, TOps.Max(zr, TOps.Zero), accH);
            }
            TOps.Store(accB, sc.AccB + r);
            TOps.Store(accH, sc.AccH + r);
        }
        // dW += dZᵀ Q (Tp x Kp), dQ = dZ W (rows x Kp)
        t0 = CpuProfile.Start();
        Gemm<TOps, TV>.Run(sc.DZ, 1, tp, sc.Q, kp, sc.AccW, kp, tp, rows, kp, accumulate: true);
        Gemm<TOps, TV>.Run(sc.DZ, tp, 1, w.W, kp, sc.DQ, kp, rows, tp, kp, accumulate: false);
        CpuProfile.Stop(t0);

        // dq += a' du (direct path); de_i += dq ⊙ e_j, de_j += dq ⊙ e_i, per member. For a fixed j the
        // de_j accumulator stays in a register across the column of pairs (i < j).
        for (int g = 0; g < group.Length; g++)
        {
            var mb = group[g];
            int n = mb.N;
            float* e = sc.E + g * m * kp, du = sc.DU + g * kp, dq = sc.DQ + mb.Offset * kp, aDrop = sc.ADrop + mb.Offset;
            new Span<float>(sc.DE, n * kp).Clear();
            for (int d = 0; d < kp; d += lanes)
            {
                var vdu = L(du + d);
                int pi = 0;
                for (int j = 1; j < n; j++)
                {
                    var ej = L(e + j * kp + d);
                    var accJ = L(sc.DE + j * kp + d);
                    for (int i = 0; i < j; i++, pi++)
                    {
                        var q = TOps.Fma(TOps.Splat(aDrop[pi]), vdu, L(dq + pi * kp + d));
                        float* dei = sc.DE + i * kp + d;
                        TOps.Store(TOps.Fma(q, ej, L(dei)), dei);
                        accJ = TOps.Fma(q, L(e + i * kp + d), accJ);
                    }
                    TOps.Store(accJ, sc.DE + j * kp + d);
                }
            }
            var rowDe = de.AsSpan(mb.Row * m * k, n * k);
            for (int s = 0; s < n; s++) new ReadOnlySpan<float>(sc.DE + s * kp, k).CopyTo(rowDe.Slice(s * k, k));
        }
    }
}

/// <summary>The width-independent parts of the fast path.</summary>
internal static unsafe class FastAfm
{
    /// <summary>Adds the chunk's padded accumulators (W, b, h, p) into a partial dense gradient.</summary>
    public static void FlushAccumulators(ModelShape sh, FastScratch sc, Span<float> dDense)
    {
        int k = sh.K, t = sh.T;
        for (int r = 0; r < t; r++) Simd.Axpy(1f, new ReadOnlySpan<float>(sc.AccW + r * sc.Kp, k), dDense.Slice(r * k, k));
        Simd.Axpy(1f, new ReadOnlySpan<float>(sc.AccB, t), dDense.Slice(sh.OffsetB, t));
        Simd.Axpy(1f, new ReadOnlySpan<float>(sc.AccH, t), dDense.Slice(sh.OffsetH, t));
        Simd.Axpy(1f, new ReadOnlySpan<float>(sc.AccP, k), dDense.Slice(sh.OffsetP, k));
    }
}
