using ILGPU;
using ILGPU.Algorithms;

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

    /// <summary>Work-items per pair in the z = W q passes: a power of two dividing t such that all the pairs times it fit the group.</summary>
    internal static int ZSlices(int t, int m, int tile, int group)
    {
        int pairs = m * (m - 1) / 2, ta = t > 0 ? t : 1;
        if (pairs < 1) pairs = 1;
        if (tile < pairs) return 1;
        for (int s = 16; s > 1; s >>= 1)
            if (pairs * s <= group && ta % s == 0) return s;
        return 1;
    }

    /// <summary>
    /// relu(z_t) for t in [t0, t1) of pair (i, j), four t's at a time (four independent multiply-add chains over
    /// d, sharing each q_d): returns Σ h_t relu(z_t), and stores relu(z_t) at zr[slot t + t] when asked.
    /// </summary>
    private static float ZRun<TS>(ArrayView<float> dense, ArrayView<float> sE, int i, int j, int t0, int t1,
        ArrayView<float> zr, int slot, bool store)
        where TS : struct, IKernelShape
    {
        int k = default(TS).K, t = default(TS).T, es = k | 1, offB = t * k, offH = offB + t;
        int ei = i * es, ej = j * es;
        float score = 0f;
        int c = t0;
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
            float r0 = Relu(z0 + dense[offB + c]), r1 = Relu(z1 + dense[offB + c + 1]);
            float r2 = Relu(z2 + dense[offB + c + 2]), r3 = Relu(z3 + dense[offB + c + 3]);
            score += dense[offH + c] * r0;
            score += dense[offH + c + 1] * r1;
            score += dense[offH + c + 2] * r2;
            score += dense[offH + c + 3] * r3;
            if (store)
            {
                zr[slot * t + c] = r0;
                zr[slot * t + c + 1] = r1;
                zr[slot * t + c + 2] = r2;
                zr[slot * t + c + 3] = r3;
            }
        }
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
        int k = default(TS).K, t = default(TS).T, m = default(TS).M, group = default(TS).Group, es = k | 1;
        int zs = ZSlices(t, m, default(TS).Tile, group), slice = t / zs;
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
        int es = k | 1, offB = t * k, offH = offB + t;
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

        // dW blocks: 4 t's per q where t is a multiple of 4
        int dwr = t % 4 == 0 ? 4 : 1;
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

            // dW += dz qᵀ: a work-item owns dwr elements of W's column d, so that one q serves all of them
            for (int it = tid; it < dwItems; it += group)
            {
                int tb = it / k, d = it - tb * k, t0 = tb * dwr, pt = 0;
                float a0 = AccGet<TS>(sAcc, gAcc, t0 * k + d), a1 = 0f, a2 = 0f, a3 = 0f;
                if (dwr == 4)
                {
                    a1 = AccGet<TS>(sAcc, gAcc, (t0 + 1) * k + d);
                    a2 = AccGet<TS>(sAcc, gAcc, (t0 + 2) * k + d);
                    a3 = AccGet<TS>(sAcc, gAcc, (t0 + 3) * k + d);
                }
                for (int j = j0; j < jn; j++)
                {
                    float ej = sE[j * es + d];
                    for (int i = 0; i < j; i++, pt++)
                    {
                        float q = sE[i * es + d] * ej;
                        int z = pt * t + t0;
                        a0 += sZR[z] * q;
                        if (dwr == 4)
                        {
                            a1 += sZR[z + 1] * q;
                            a2 += sZR[z + 2] * q;
                            a3 += sZR[z + 3] * q;
                        }
                    }
                }
                AccSet<TS>(sAcc, gAcc, t0 * k + d, a0);
                if (dwr == 4)
                {
                    AccSet<TS>(sAcc, gAcc, (t0 + 1) * k + d, a1);
                    AccSet<TS>(sAcc, gAcc, (t0 + 2) * k + d, a2);
                    AccSet<TS>(sAcc, gAcc, (t0 + 3) * k + d, a3);
                }
            }

            // dq = a' du + Wᵀ dz: a work-item owns dimension d of a run of 4 pairs, so that each W element read
            // serves 4 pairs (a run past the tile's end repeats its last pair and drops it); the loop starts where
            // dW's items end, to share the group out between the two
            int runs = (tp + 3) / 4;
            for (int it = (tid + group - dwItems % group) % group; it < runs * k; it += group)
            {
                int run = it / k, d = it - run * k, pt0 = run * 4;
                int nr = tp - pt0 < 4 ? tp - pt0 : 4;
                int p1 = pt0 + (nr > 1 ? 1 : 0), p2 = pt0 + (nr > 2 ? 2 : nr - 1), p3 = pt0 + (nr > 3 ? 3 : nr - 1);
                float du = sDU[d];
                float q0 = sAD[pb + pt0] * du, q1 = sAD[pb + p1] * du, q2 = sAD[pb + p2] * du, q3 = sAD[pb + p3] * du;
                for (int c = 0; c < t; c++)
                {
                    float w = dense[c * k + d];
                    q0 += sZR[pt0 * t + c] * w;
                    q1 += sZR[p1 * t + c] * w;
                    q2 += sZR[p2 * t + c] * w;
                    q3 += sZR[p3 * t + c] * w;
                }
                sDQ[pt0 * k + d] = q0;
                if (nr > 1) sDQ[(pt0 + 1) * k + d] = q1;
                if (nr > 2) sDQ[(pt0 + 2) * k + d] = q2;
                if (nr > 3) sDQ[(pt0 + 3) * k + d] = q3;
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

    /// <summary>Element e of the group's dense-gradient accumulator (shared, or the group's slice of the partials).</summary>
    private static float AccGet<TS>(ArrayView<float> shared, ArrayView<float> global, int e) where TS : struct, IKernelShape =>
        default(TS).GlobalAccumulator != 0 ? global[e] : shared[e];

    private static void AccSet<TS>(ArrayView<float> shared, ArrayView<float> global, int e, float v) where TS : struct, IKernelShape
    {
        if (default(TS).GlobalAccumulator != 0) global[e] = v;
        else shared[e] = v;
    }
}
