using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Afm.Gpu.Kernels.Ilgpu;

/// <summary>
/// The attention part of AFM, forward and backward side by side: q_ij = e_i ⊙ e_j, z = W q + b, s = h · relu(z),
/// a = softmax over the row's real pairs, a' = a after dropout, u = Σ a' q; and, per backward tile of whole pair
/// columns, dz = ds h [z &gt; 0], dW += dz qᵀ, db, dh, dq = a' du + Wᵀ dz and de. Pairs are numbered
/// column-major over the upper triangle (<see cref="ModelShape.PairIndex"/>), so a row of n non-zeros owns the
/// first n (n - 1) / 2 and padding never enters the softmax.
/// </summary>
internal static partial class GpuKernels
{
    private const float NegativeBig = -3.402823466e38f;

    /// <summary>Column j and row i of pair p = j (j - 1) / 2 + i, i &lt; j.</summary>
    private static int PairColumn(int p)
    {
        int j = (int)((1f + XMath.Sqrt(8f * p + 1f)) * 0.5f);
        while (j * (j - 1) / 2 > p) --j;
        while ((j + 1) * j / 2 <= p) ++j;
        return j;
    }

    /// <summary>
    /// Work-items per pair in the z = W q passes: a power of two such that all the pairs times it fit the group and
    /// each work-item's slice of t is a whole number of <paramref name="unit"/>s (4 where <see cref="ZRun{TS}"/> reads
    /// four t's at a time, see <see cref="SharedLayout.Vectorised"/>; else 1).
    /// </summary>
    internal static int ZSlices(int t, int m, int tile, int group, int unit)
    {
        int pairs = m * (m - 1) / 2, ta = t > 0 ? t : 1;
        if (pairs < 1) pairs = 1;
        if (tile < pairs) return 1;
        for (int s = 16; s > 1; s >>= 1)
            if (pairs * s <= group && ta % (s * unit) == 0) return s;
        return 1;
    }

    /// <summary>
    /// relu(z_t) for t in [t0, t1) of pair (i, j): returns Σ h_t relu(z_t), and stores relu(z_t) at zr[slot t + t]
    /// when asked. Where rows are 16-byte aligned (<see cref="SharedLayout.Vectorised"/>), sixteen (then eight, four)
    /// t's at a time over four d's at a time: e_i, e_j and each row of W read as four floats, q_d formed once and used by sixteen
    /// independent multiply-add chains. Otherwise four t's at a time over single d's. The rest one t at a time.
    /// </summary>
    private static float ZRun<TS>(ArrayView<float> dense, ArrayView<float> sE, int i, int j, int t0, int t1,
        ArrayView<float> zr, int slot, bool store)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, es = SharedLayout.EStride(k, t), offB = t * k, offH = offB + t;
        int ei = i * es, ej = j * es;
        float score = 0f;
        int c = t0;
        if (SharedLayout.Vectorised(k, t))
        {
            for (; c + 15 < t1; c += 16) score += ZBlock<TS>(dense, sE, ei, ej, c, 4, zr, slot, store);
            for (; c + 7 < t1; c += 8) score += ZBlock<TS>(dense, sE, ei, ej, c, 2, zr, slot, store);
            for (; c + 3 < t1; c += 4) score += ZBlock<TS>(dense, sE, ei, ej, c, 1, zr, slot, store);
        }
        else
        {
            for (; c + 3 < t1; c += 4)
            {
                float z0 = 0f, z1 = 0f, z2 = 0f, z3 = 0f;
                int w0 = c * k;
                for (int d = 0; d < k; d++)
                {
                    float q = sE[ei + d] * sE[ej + d];
                    z0 += dense[w0 + d] * q;
                    z1 += dense[w0 + k + d] * q;
                    z2 += dense[w0 + 2 * k + d] * q;
                    z3 += dense[w0 + 3 * k + d] * q;
                }
                score += Relu4(dense, offB, offH, c, z0, z1, z2, z3, zr, slot * t, store);
            }
        }
        // the t's the blocks leave, one at a time (none where ZSlices keeps slices whole fours)
        for (; c < t1; c++)
        {
            float z = 0f;
            for (int d = 0; d < k; d++) z += dense[c * k + d] * (sE[ei + d] * sE[ej + d]);
            float r = Relu(z + dense[offB + c]);
            score += dense[offH + c] * r;
            if (store) zr[slot * t + c] = r;
        }
        return score;
    }

    /// <summary>
    /// relu(z) of <paramref name="n4"/> x 4 consecutive t's from <paramref name="c"/> for the pair whose e rows start at
    /// <paramref name="ei"/>, <paramref name="ej"/>: e_i, e_j and each row of W read four floats at a time, q_d formed
    /// once for all of them (n4 is a constant at each call: 4, 2 or 1). 64-bit indices: the rows' addresses then
    /// differ by constants the compiler folds into the loads. Returns Σ h_t relu(z_t), stores relu(z) when asked.
    /// </summary>
    private static float ZBlock<TS>(ArrayView<float> dense, ArrayView<float> sE, int ei, int ej, int c, int n4,
        ArrayView<float> zr, int slot, bool store)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, offB = t * k, offH = offB + t, kq = k / 4;
        var e4 = sE.Cast<Float4>();
        var w4 = dense.AsAligned16().Cast<Float4>();
        long i4 = ei / 4, j4 = ej / 4, w = (long)c * kq, stride = 4L * kq;
        Float4 zA = default, zB = default, zC = default, zD = default;
        for (long d = 0; d < kq; d++)
        {
            Float4 a = e4[i4 + d], b = e4[j4 + d];
            var q = new Float4 { X = a.X * b.X, Y = a.Y * b.Y, Z = a.Z * b.Z, W = a.W * b.W };
            zA = ZStep(zA, w4, w + d, kq, q);
            if (n4 >= 2) zB = ZStep(zB, w4, w + stride + d, kq, q);
            if (n4 >= 4)
            {
                zC = ZStep(zC, w4, w + 2 * stride + d, kq, q);
                zD = ZStep(zD, w4, w + 3 * stride + d, kq, q);
            }
        }
        float score = Relu4(dense, offB, offH, c, zA.X, zA.Y, zA.Z, zA.W, zr, slot * t, store);
        if (n4 >= 2) score += Relu4(dense, offB, offH, c + 4, zB.X, zB.Y, zB.Z, zB.W, zr, slot * t, store);
        if (n4 >= 4)
        {
            score += Relu4(dense, offB, offH, c + 8, zC.X, zC.Y, zC.Z, zC.W, zr, slot * t, store);
            score += Relu4(dense, offB, offH, c + 12, zD.X, zD.Y, zD.Z, zD.W, zr, slot * t, store);
        }
        return score;
    }

    /// <summary>z_r += W[row r] · q over four d's for the four rows r of a block (W's rows kq Float4s apart).</summary>
    private static Float4 ZStep(Float4 z, ArrayView<Float4> w4, long at, long kq, Float4 q)
    {
        z.X = Dot(z.X, w4[at], q.X, q.Y, q.Z, q.W);
        z.Y = Dot(z.Y, w4[at + kq], q.X, q.Y, q.Z, q.W);
        z.Z = Dot(z.Z, w4[at + 2 * kq], q.X, q.Y, q.Z, q.W);
        z.W = Dot(z.W, w4[at + 3 * kq], q.X, q.Y, q.Z, q.W);
        return z;
    }

    /// <summary>z + w · q over four d's, in d order.</summary>
    private static float Dot(float z, Float4 w, float qx, float qy, float qz, float qw)
    {
        z += w.X * qx;
        z += w.Y * qy;
        z += w.Z * qz;
        return z + w.W * qw;
    }

    /// <summary>relu(z + b) for t's c .. c + 3: their h-weighted sum, and stored at zr[row + c ..] when asked.</summary>
    private static float Relu4(ArrayView<float> dense, int offB, int offH, int c, float z0, float z1, float z2, float z3,
        ArrayView<float> zr, int row, bool store)
    {
        float r0 = Relu(z0 + dense[offB + c]), r1 = Relu(z1 + dense[offB + c + 1]);
        float r2 = Relu(z2 + dense[offB + c + 2]), r3 = Relu(z3 + dense[offB + c + 3]);
        if (store)
        {
            zr[row + c] = r0;
            zr[row + c + 1] = r1;
            zr[row + c + 2] = r2;
            zr[row + c + 3] = r3;
        }
        float score = dense[offH + c] * r0;
        score += dense[offH + c + 1] * r1;
        score += dense[offH + c + 2] * r2;
        return score + dense[offH + c + 3] * r3;
    }

    private static float Relu(float z) => z > 0f ? z : 0f;

    /// <summary>
    /// Forward of the attention part for the row's pairs: sS = h · relu(W q + b) (relu(z) kept in sZR when
    /// <paramref name="keepZ"/>), a = softmax(s) into sA, a' = a mask / keep0 into sAD, u = Σ a' q into sU.
    /// Ends with a barrier.
    /// </summary>
    private static void AttentionForward<TS>(int row, int n, ArrayView<float> dense, ArrayView<float> sE,
        ArrayView<float> sS, ArrayView<float> sA, ArrayView<float> sAD, ArrayView<float> sU, ArrayView<float> red,
        ArrayView<float> sZR, bool keepZ, uint seed, float keep0)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, m = default(TS).M, group = default(TS).Group, es = SharedLayout.EStride(k, default(TS).T);
        int zs = ZSlices(t, m, default(TS).Tile, group, SharedLayout.Vectorised(k, t) ? 4 : 1), slice = t / zs;
        int tid = ILGPU.Group.IdxX, np = n * (n - 1) / 2;
        float mx = NegativeBig;
        for (int it = tid; it < np * zs; it += group)
        {
            int p = it / zs, t0 = (it - p * zs) * slice;
            int j = PairColumn(p), i = p - j * (j - 1) / 2;
            float score = ZRun<TS>(dense, sE, i, j, t0, t0 + slice, sZR, p, keepZ);
            if (zs > 1) red[it] = score;
            else
            {
                sS[p] = score;
                mx = score > mx ? score : mx;
            }
        }
        if (zs > 1)
        {
            ILGPU.Group.Barrier();
            for (int p = tid; p < np; p += group)
            {
                float score = red[p * zs];
                for (int sl = 1; sl < zs; sl++) score += red[p * zs + sl];
                sS[p] = score;
                mx = score > mx ? score : mx;
            }
            ILGPU.Group.Barrier();
        }
        mx = GroupMax(mx, red, group);
        float part = 0f;
        for (int p = tid; p < np; p += group)
        {
            float ex = XMath.Exp(sS[p] - mx);
            sA[p] = ex;
            part += ex;
        }
        float inv = 1f / GroupSum(part, red, group);
        float inv0 = 1f / keep0;
        for (int p = tid; p < np; p += group)
        {
            float a = sA[p] * inv;
            sA[p] = a;
            sAD[p] = DropoutRng.Keep(seed, row, DropoutRng.AttentionStream, p, keep0) ? a * inv0 : 0f;
        }
        ILGPU.Group.Barrier();
        // u: team g of k work-items sums the pairs [g c, g c + c) for dimension d, then the teams are added in order
        int teams = group >= k ? group / k : 1;
        int chunk = (np + teams - 1) / teams;
        for (int it = tid; it < teams * k; it += group)
        {
            int g = it / k, d = it - g * k;
            int p0 = g * chunk, p1 = p0 + chunk < np ? p0 + chunk : np;
            float acc = 0f;
            if (p0 < p1)
            {
                int j = PairColumn(p0), i = p0 - j * (j - 1) / 2;
                for (int p = p0; p < p1; p++)
                {
                    acc += sAD[p] * (sE[i * es + d] * sE[j * es + d]);
                    if (++i == j)
                    {
                        i = 0;
                        ++j;
                    }
                }
            }
            red[it] = acc;
        }
        ILGPU.Group.Barrier();
        for (int d = tid; d < k; d += group)
        {
            float u = 0f;
            for (int g = 0; g < teams; g++) u += red[g * k + d];
            sU[d] = u;
        }
        ILGPU.Group.Barrier();
    }

    /// <summary>
    /// Backward of the attention part for one row, given du in sDU: da = (du · q) / keep0 where kept, the softmax
    /// backward ds = a (da - Σ a da) into sS, then per tile db, dh, dW (into the accumulator), dq and de (into sDE).
    /// Ends with a barrier.
    /// </summary>
    private static void AttentionBackward<TS>(int n, ArrayView<float> dense, ArrayView<float> sE, ArrayView<float> sS,
        ArrayView<float> sA, ArrayView<float> sAD, ArrayView<float> sDU, ArrayView<float> sZR, ArrayView<float> sDQ,
        ArrayView<float> sDE, ArrayView<float> red, ArrayView<float> sAcc, ArrayView<float> gAcc, float keep0)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, m = default(TS).M, tile = default(TS).Tile, group = default(TS).Group;
        int es = SharedLayout.EStride(k, default(TS).T), offB = t * k, offH = offB + t;
        int pairs = m * (m - 1) / 2;
        bool keepZ = tile >= pairs;
        int tid = ILGPU.Group.IdxX, np = n * (n - 1) / 2;

        float dot = 0f;
        for (int p = tid; p < np; p += group)
        {
            int j = PairColumn(p), i = p - j * (j - 1) / 2;
            float dap = 0f;
            for (int d = 0; d < k; d++) dap += sDU[d] * (sE[i * es + d] * sE[j * es + d]);
            float da = sAD[p] != 0f ? dap / keep0 : 0f;
            sS[p] = da;
            dot += sA[p] * da;
        }
        dot = GroupSum(dot, red, group);
        for (int p = tid; p < np; p += group) sS[p] = sA[p] * (sS[p] - dot);
        for (int it = tid; it < n * k; it += group) sDE[it] = 0f;
        ILGPU.Group.Barrier();

        // dW blocks: 16 t's per q where that still gives every work-item one, else 8 or 4 (t a multiple of 4), else 1
        bool vec = SharedLayout.Vectorised(k, t);
        int dwr = !vec ? 1 : t % 16 == 0 && t / 16 * k >= group ? 16 : t % 8 == 0 ? 8 : 4;
        int dwItems = t / dwr * k;
        // tiles of whole pair columns [j0, j1), cut for m slots, up to the row's n
        int j0 = 1;
        while (j0 < n)
        {
            int pb = j0 * (j0 - 1) / 2, j1 = j0 + 1;
            while (j1 < m && (j1 + 1) * j1 / 2 - pb <= tile) ++j1;
            int jn = j1 < n ? j1 : n;
            int tp = jn * (jn - 1) / 2 - pb;

            if (!keepZ)
            {
                for (int pt = tid; pt < tp; pt += group)
                {
                    int p = pb + pt, j = PairColumn(p), i = p - j * (j - 1) / 2;
                    ZRun<TS>(dense, sE, i, j, 0, t, sZR, pt, true);
                }
                ILGPU.Group.Barrier();
            }

            // db, dh, and relu(z) turned into dz = ds h [z > 0] in place: work-item t owns column t
            for (int c = tid; c < t; c += group)
            {
                float h = dense[offH + c], gb = AccGet<TS>(sAcc, gAcc, offB + c), gh = AccGet<TS>(sAcc, gAcc, offH + c);
                for (int pt = 0; pt < tp; pt++)
                {
                    float zr = sZR[pt * t + c], ds = sS[pb + pt];
                    float dz = zr > 0f ? ds * h : 0f;
                    gb += dz;
                    gh += ds * zr;
                    sZR[pt * t + c] = dz;
                }
                AccSet<TS>(sAcc, gAcc, offB + c, gb);
                AccSet<TS>(sAcc, gAcc, offH + c, gh);
            }
            ILGPU.Group.Barrier();

            // dW += dz qᵀ: a work-item owns dwr elements of W's column d, so that one q serves all of them (rows of
            // dz read four floats at a time where aligned); the tile's pairs are walked column by column, in pair order
            for (int it = tid; it < dwItems; it += group)
            {
                int tb = it / k, d = it - tb * k, t0 = tb * dwr;
                if (vec) DwBlock<TS>(sE, sZR, sAcc, gAcc, j0, jn, t0, d, dwr);
                else
                {
                    int pt = 0;
                    float a0 = AccGet<TS>(sAcc, gAcc, t0 * k + d);
                    for (int j = j0; j < jn; j++)
                    {
                        float ej = sE[j * es + d];
                        for (int i = 0; i < j; i++, pt++) a0 += sZR[pt * t + t0] * (sE[i * es + d] * ej);
                    }
                    AccSet<TS>(sAcc, gAcc, t0 * k + d, a0);
                }
            }

            // dq = a' du + Wᵀ dz: a work-item owns dimensions d0 .. d0 + dqc - 1 of a run of 4 pairs, so that each W
            // element read serves 4 pairs and each dz element dqc dimensions (a run past the tile's end repeats its last
            // pair and drops it); the loop starts where dW's items end, to share the group out between the two
            int runs = (tp + 3) / 4, dqc = vec ? 4 : 1;
            for (int it = (tid + group - dwItems % group) % group; it < runs * (k / dqc); it += group)
            {
                int run = it / (k / dqc), d0 = (it - run * (k / dqc)) * dqc, pt0 = run * 4;
                int nr = tp - pt0 < 4 ? tp - pt0 : 4;
                if (vec) DqBlock<TS>(dense, sAD, sDU, sZR, sDQ, pb, pt0, nr, d0);
                else
                {
                    int p1 = pt0 + (nr > 1 ? 1 : 0), p2 = pt0 + (nr > 2 ? 2 : nr - 1), p3 = pt0 + (nr > 3 ? 3 : nr - 1);
                    float du = sDU[d0];
                    float q0 = sAD[pb + pt0] * du, q1 = sAD[pb + p1] * du, q2 = sAD[pb + p2] * du, q3 = sAD[pb + p3] * du;
                    for (int cc = 0; cc < t; cc++)
                    {
                        float w = dense[cc * k + d0];
                        q0 += sZR[pt0 * t + cc] * w;
                        q1 += sZR[p1 * t + cc] * w;
                        q2 += sZR[p2 * t + cc] * w;
                        q3 += sZR[p3 * t + cc] * w;
                    }
                    sDQ[pt0 * k + d0] = q0;
                    if (nr > 1) sDQ[(pt0 + 1) * k + d0] = q1;
                    if (nr > 2) sDQ[(pt0 + 2) * k + d0] = q2;
                    if (nr > 3) sDQ[(pt0 + 3) * k + d0] = q3;
                }
            }
            ILGPU.Group.Barrier();

            // de_s += Σ dq ⊙ e_partner over the tile's pairs that hold s, in pair order
            for (int it = tid; it < n * k; it += group)
            {
                int s = it / k, d = it - s * k;
                float a = sDE[it];
                if (s >= j0 && s < jn)
                {
                    int b = s * (s - 1) / 2 - pb;
                    for (int i = 0; i < s; i++) a += sDQ[(b + i) * k + d] * sE[i * es + d];
                }
                for (int j = s + 1 > j0 ? s + 1 : j0; j < jn; j++)
                    a += sDQ[(j * (j - 1) / 2 + s - pb) * k + d] * sE[j * es + d];
                sDE[it] = a;
            }
            ILGPU.Group.Barrier();
            j0 = j1;
        }
    }

    /// <summary>
    /// One dW block: W[t0 .. t0 + dwr - 1, d] += Σ over the tile's pairs of dz[pair, t] q_d, dz read four floats at a
    /// time (dwr is 4, 8 or 16).
    /// </summary>
    private static void DwBlock<TS>(ArrayView<float> sE, ArrayView<float> sZR, ArrayView<float> sAcc, ArrayView<float> gAcc,
        int j0, int jn, int t0, int d, int dwr)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, es = SharedLayout.EStride(k, t), tq = t / 4;
        var z4 = sZR.Cast<Float4>();
        var acc = new Acc16 { A = Acc4<TS>(sAcc, gAcc, t0, d) };
        if (dwr >= 8) acc.B = Acc4<TS>(sAcc, gAcc, t0 + 4, d);
        if (dwr >= 16)
        {
            acc.C = Acc4<TS>(sAcc, gAcc, t0 + 8, d);
            acc.D = Acc4<TS>(sAcc, gAcc, t0 + 12, d);
        }
        long row = t0 / 4;
        for (int j = j0; j < jn; j++)
        {
            float ej = sE[j * es + d];
            long ei = d;
            // two pairs a pass, then the odd one; pairs in order
            int i = 0;
            for (; i + 1 < j; i += 2)
            {
                acc = DwStep(acc, z4, row, sE[ei] * ej, dwr);
                acc = DwStep(acc, z4, row + tq, sE[ei + es] * ej, dwr);
                row += 2 * tq;
                ei += 2 * es;
            }
            if (i < j)
            {
                acc = DwStep(acc, z4, row, sE[ei] * ej, dwr);
                row += tq;
            }
        }
        SetAcc4<TS>(sAcc, gAcc, t0, d, acc.A);
        if (dwr >= 8) SetAcc4<TS>(sAcc, gAcc, t0 + 4, d, acc.B);
        if (dwr >= 16)
        {
            SetAcc4<TS>(sAcc, gAcc, t0 + 8, d, acc.C);
            SetAcc4<TS>(sAcc, gAcc, t0 + 12, d, acc.D);
        }
    }

    /// <summary>dW accumulators of up to 16 consecutive t's at one d.</summary>
    private struct Acc16
    {
        public Float4 A;
        public Float4 B;
        public Float4 C;
        public Float4 D;
    }

    /// <summary>One pair's step of a dW block: acc[t] += dz[pair, t] q for the block's dwr t's (dz row at z4[row]).</summary>
    private static Acc16 DwStep(Acc16 acc, ArrayView<Float4> z4, long row, float q, int dwr)
    {
        acc.A = Axpy(acc.A, z4[row], q);
        if (dwr >= 8) acc.B = Axpy(acc.B, z4[row + 1], q);
        if (dwr >= 16)
        {
            acc.C = Axpy(acc.C, z4[row + 2], q);
            acc.D = Axpy(acc.D, z4[row + 3], q);
        }
        return acc;
    }

    private static Float4 Axpy(Float4 acc, Float4 z, float q)
    {
        acc.X += z.X * q;
        acc.Y += z.Y * q;
        acc.Z += z.Z * q;
        acc.W += z.W * q;
        return acc;
    }

    /// <summary>W's accumulated gradient at t .. t + 3, column d.</summary>
    private static Float4 Acc4<TS>(ArrayView<float> sAcc, ArrayView<float> gAcc, int t, int d) where TS : struct, IKernelShape
    {
        int k = default(TS).K;
        return new Float4
        {
            X = AccGet<TS>(sAcc, gAcc, t * k + d), Y = AccGet<TS>(sAcc, gAcc, (t + 1) * k + d),
            Z = AccGet<TS>(sAcc, gAcc, (t + 2) * k + d), W = AccGet<TS>(sAcc, gAcc, (t + 3) * k + d),
        };
    }

    private static void SetAcc4<TS>(ArrayView<float> sAcc, ArrayView<float> gAcc, int t, int d, Float4 v) where TS : struct, IKernelShape
    {
        int k = default(TS).K;
        AccSet<TS>(sAcc, gAcc, t * k + d, v.X);
        AccSet<TS>(sAcc, gAcc, (t + 1) * k + d, v.Y);
        AccSet<TS>(sAcc, gAcc, (t + 2) * k + d, v.Z);
        AccSet<TS>(sAcc, gAcc, (t + 3) * k + d, v.W);
    }

    /// <summary>
    /// One dq block: dimensions d0 .. d0 + 3 of the run of 4 pairs from tile pair pt0 (nr of them real): dq = a' du +
    /// Σ_t dz[pair, t] W[t, d], with four t's a step: four rows of W and each pair's four dz read four floats at a
    /// time, 64 multiply-adds from 8 reads.
    /// </summary>
    private static void DqBlock<TS>(ArrayView<float> dense, ArrayView<float> sAD, ArrayView<float> sDU, ArrayView<float> sZR,
        ArrayView<float> sDQ, int pb, int pt0, int nr, int d0)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, kq = k / 4, tq = t / 4;
        var w4 = dense.AsAligned16().Cast<Float4>();
        var z4 = sZR.Cast<Float4>();
        var u4 = sDU.Cast<Float4>();
        int p1 = pt0 + (nr > 1 ? 1 : 0), p2 = pt0 + (nr > 2 ? 2 : nr - 1), p3 = pt0 + (nr > 3 ? 3 : nr - 1);
        Float4 du = u4[d0 / 4];
        float ad0 = sAD[pb + pt0], ad1 = sAD[pb + p1], ad2 = sAD[pb + p2], ad3 = sAD[pb + p3];
        Float4 q0 = Scale(du, ad0), q1 = Scale(du, ad1), q2 = Scale(du, ad2), q3 = Scale(du, ad3);
        long z0 = pt0 * tq, z1 = p1 * tq, z2 = p2 * tq, z3 = p3 * tq;
        int wc = d0 / 4;
        long wr = wc;
        // two steps of four t's a pass, then the odd one
        long c = 0;
        for (; c + 1 < tq; c += 2, wr += 8 * kq)
        {
            Float4 w0 = w4[wr], w1 = w4[wr + kq], w2 = w4[wr + 2 * kq], w3 = w4[wr + 3 * kq];
            q0 = DqStep(q0, z4[z0 + c], w0, w1, w2, w3);
            q1 = DqStep(q1, z4[z1 + c], w0, w1, w2, w3);
            q2 = DqStep(q2, z4[z2 + c], w0, w1, w2, w3);
            q3 = DqStep(q3, z4[z3 + c], w0, w1, w2, w3);
            w0 = w4[wr + 4 * kq];
            w1 = w4[wr + 5 * kq];
            w2 = w4[wr + 6 * kq];
            w3 = w4[wr + 7 * kq];
            q0 = DqStep(q0, z4[z0 + c + 1], w0, w1, w2, w3);
            q1 = DqStep(q1, z4[z1 + c + 1], w0, w1, w2, w3);
            q2 = DqStep(q2, z4[z2 + c + 1], w0, w1, w2, w3);
            q3 = DqStep(q3, z4[z3 + c + 1], w0, w1, w2, w3);
        }
        if (c < tq)
        {
            Float4 w0 = w4[wr], w1 = w4[wr + kq], w2 = w4[wr + 2 * kq], w3 = w4[wr + 3 * kq];
            q0 = DqStep(q0, z4[z0 + c], w0, w1, w2, w3);
            q1 = DqStep(q1, z4[z1 + c], w0, w1, w2, w3);
            q2 = DqStep(q2, z4[z2 + c], w0, w1, w2, w3);
            q3 = DqStep(q3, z4[z3 + c], w0, w1, w2, w3);
        }
        var dq4 = sDQ.Cast<Float4>();
        dq4[pt0 * kq + wc] = q0;
        if (nr > 1) dq4[(pt0 + 1) * kq + wc] = q1;
        if (nr > 2) dq4[(pt0 + 2) * kq + wc] = q2;
        if (nr > 3) dq4[(pt0 + 3) * kq + wc] = q3;
    }

    private static Float4 Scale(Float4 v, float a) => new() { X = a * v.X, Y = a * v.Y, Z = a * v.Z, W = a * v.W };

    /// <summary>q += Σ over four t's of dz_t W[t, d0 .. d0 + 3], t in order: 16 multiply-adds.</summary>
    private static Float4 DqStep(Float4 q, Float4 dz, Float4 w0, Float4 w1, Float4 w2, Float4 w3)
    {
        q.X += dz.X * w0.X; q.Y += dz.X * w0.Y; q.Z += dz.X * w0.Z; q.W += dz.X * w0.W;
        q.X += dz.Y * w1.X; q.Y += dz.Y * w1.Y; q.Z += dz.Y * w1.Z; q.W += dz.Y * w1.W;
        q.X += dz.Z * w2.X; q.Y += dz.Z * w2.Y; q.Z += dz.Z * w2.Z; q.W += dz.Z * w2.W;
        q.X += dz.W * w3.X; q.Y += dz.W * w3.Y; q.Z += dz.W * w3.Z; q.W += dz.W * w3.W;
        return q;
    }

    /// <summary>Element e of the group's dense-gradient accumulator (shared, or the group's slice of the partials).</summary>
    private static float AccGet<TS>(ArrayView<float> shared, ArrayView<float> global, int e) where TS : struct, IKernelShape =>
        default(TS).GlobalAccumulator != 0 ? global[e] : shared[e];

    private static void AccSet<TS>(ArrayView<float> shared, ArrayView<float> global, int e, float v) where TS : struct, IKernelShape
    {
        if (default(TS).GlobalAccumulator != 0) global[e] = v;
        else shared[e] = v;
    }
}
