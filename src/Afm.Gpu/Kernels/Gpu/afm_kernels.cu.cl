/*
 * AFM / FM kernels, one source for OpenCL C 1.2 and CUDA C (see afm_common.h).
 * The CPU kernels (Kernels/Cpu/AfmSample.cs, CpuAfmKernels.cs) are the specification; every
 * formula below mirrors them, in the same order where the order is cheap to keep.
 *
 * Specialisation (-D, see GpuKernelSource.cs):
 *   AFM_K, AFM_T      embedding size, attention factor (AFM_T = 0 for FM)
 *   AFM_M, AFM_P      slots per row, pair slots per row = M (M - 1) / 2
 *   AFM_DENSE         packed dense vector length T K + 2 T + K + 1: [W | b | h | p | w0]
 *   AFM_WG            work-group size (a power of two); every kernel is launched with it
 *   AFM_TILE          pairs per backward tile (>= M - 1; tiles hold whole pair columns)
 *   AFM_NTILES        number of such tiles for a row of M slots
 *   AFM_RPG           rows per work-group of afm_forward_backward (group g: rows [g RPG, g RPG + RPG))
 *   AFM_FM            1 for FM (a = 1, p = 1, sum-square pooling), 0 for AFM
 *
 * Mapping. afm_forward: one work-group per row. afm_forward_backward: a fixed number of
 * work-groups, each taking AFM_RPG consecutive rows. Per row the group holds the row's
 * embeddings e (M x K) in local memory; the pair products q = e_i * e_j live in registers (one
 * work-item per pair, or AFM_ZS per pair each taking a slice of the t's when the work-group has
 * that many to spare), so nothing of size pairs x K reaches global memory. relu(z), z = W q + b,
 * goes to a local tile of whole pair columns (TILE x T): when all of a row's pairs fit one tile
 * (AFM_KEEPZ) the forward pass fills it, otherwise the backward recomputes it tile by tile. The
 * backward turns it into dz = ds h [z > 0] in place, then forms dW += dz q^T and dq = a' du + dz W
 * as register-blocked products: a work-item accumulates AFM_DW_R elements of dW per q it forms,
 * and AFM_DQ_R pairs x AFM_DQ_C dimensions of dq; rows of W and dz are read four floats at a
 * time. dq goes to a second tile (TILE x K), from which each de_s is summed by one work-item, in
 * the CPU's pair order.
 *
 * No atomics: every dense-gradient element is owned by one work-item of the group and
 * accumulated in local memory (acc) across the group's rows, then written once to the group's
 * partial; afm_reduce_dense sums the partials in group order. The embedding scatter
 * (afm_update_sparse) runs one work-item per (distinct id, dimension) over the host-built
 * occurrence lists. Results are deterministic run to run.
 *
 * Every loop that holds a barrier has a trip count fixed at compile time (rows past the batch
 * and tiles past a row are empty work): PoCL's work-group compiler mishandles barriers in
 * loops with data-dependent trip counts (stores to local memory vanish).
 */
#include "afm_common.h"

#define AFM_OFF_B (AFM_T * AFM_K)
#define AFM_OFF_H (AFM_OFF_B + AFM_T)
#define AFM_OFF_P (AFM_OFF_H + AFM_T)
#define AFM_OFF_W0 (AFM_OFF_P + AFM_K)
#define AFM_PA (AFM_P > 0 ? AFM_P : 1)
#define AFM_TA (AFM_T > 0 ? AFM_T : 1)
#define AFM_RED (AFM_WG > AFM_K ? AFM_WG : AFM_K)
/* row stride of e in local memory: odd, so that work-items reading e_i for different i at the
   same d hit different banks */
#define AFM_ES (AFM_K | 1)
/* pooling: the group splits into AFM_POOL_G teams of K work-items, each summing a run of pairs */
#define AFM_POOL_G (AFM_WG >= AFM_K ? AFM_WG / AFM_K : 1)
#define AFM_NEG_BIG (-3.402823466e38f)
/* register blocking of the backward tile: W elements per work-item in dW (a run of t's: 16 where that
   still gives every work-item one, else 8 or fewer), pairs per work-item in dq */
#define AFM_DW_R (AFM_TA % 16 == 0 && AFM_TA / 16 * AFM_K >= AFM_WG ? 16 : AFM_TA % 8 == 0 ? 8 : AFM_TA % 4 == 0 ? 4 : AFM_TA % 2 == 0 ? 2 : 1)
#define AFM_DQ_R (AFM_TILE_P >= 8 ? 8 : AFM_TILE_P >= 4 ? 4 : AFM_TILE_P >= 2 ? 2 : 1)
#define AFM_DQ_C (AFM_K4 && AFM_T4 ? 4 : 1)
#define AFM_DW_ITEMS (AFM_T / AFM_DW_R * AFM_K)
/* the forward's relu(z) serves the backward when a row's pairs are one tile (no recomputation) */
#define AFM_KEEPZ (AFM_NTILES == 1)
/* float4 reads: rows of W (K floats, global) and of the tile's dz (T floats, local) start 16-byte
   aligned when K, T are multiples of 4 */
#define AFM_K4 (AFM_K % 4 == 0)
#define AFM_T4 (AFM_TA % 4 == 0)
/* work-items per pair in the z = W q passes: a power of two dividing T such that a tile's pairs times
   it fit the work-group (so the forward's per-slice scores fit red[], which holds AFM_WG floats) */
#define AFM_TILE_P (AFM_TILE < AFM_PA ? AFM_TILE : AFM_PA)
#define AFM_ZS_FITS(s) (AFM_TILE_P == AFM_PA && AFM_PA * (s) <= AFM_WG && AFM_TA % (s) == 0)
#define AFM_ZS (AFM_ZS_FITS(16) ? 16 : AFM_ZS_FITS(8) ? 8 : AFM_ZS_FITS(4) ? 4 : AFM_ZS_FITS(2) ? 2 : 1)

#define OPT_ADAGRAD 0
#define OPT_ADAM 1
#define OPT_SGD 2
#define LOSS_SQUARED 0

/* ---- shared pieces ----------------------------------------------------------------------- */

/* lowbias32, as DropoutRng.Mix */
DEVICE_FN uint afm_mix(uint x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* DropoutRng.Keep, bit for bit */
DEVICE_FN int afm_keep(uint seed, int row, uint stream, int index, float keep)
{
    if (keep >= 1.0f) return 1;
    uint h = afm_mix(seed ^ afm_mix((uint)row * 0x85EBCA6BU ^ afm_mix((uint)index * 2U + stream)));
    return (float)(h >> 8) * (1.0f / 16777216.0f) < keep;
}

#if !AFM_FM
/* Column j of pair p = j (j - 1) / 2 + i, i < j. */
DEVICE_FN int afm_pair_col(int p)
{
    int j = (int)((1.0f + SQRT(8.0f * (float)p + 1.0f)) * 0.5f);
    while (j * (j - 1) / 2 > p) --j;
    while ((j + 1) * j / 2 <= p) ++j;
    return j;
}
#endif

/* Work-group sum / max; every work-item gets the result. Deterministic (fixed tree). */
DEVICE_FN float afm_wg_sum(float v, LPTR float* red)
{
    int t = LID(0);
    red[t] = v;
    BARRIER;
    for (int s = AFM_WG / 2; s > 0; s >>= 1) {
        if (t < s) red[t] += red[t + s];
        BARRIER;
    }
    float r = red[0];
    BARRIER;
    return r;
}

#if !AFM_FM
DEVICE_FN float afm_wg_max(float v, LPTR float* red)
{
    int t = LID(0);
    red[t] = v;
    BARRIER;
    for (int s = AFM_WG / 2; s > 0; s >>= 1) {
        if (t < s) red[t] = FMAX(red[t], red[t + s]);
        BARRIER;
    }
    float r = red[0];
    BARRIER;
    return r;
}
#endif

/*
 * Gather: sId/sX get the row's slots, sE[s ES + d] = v[id] x, sc[0] = Σ w_id x (sequential, as
 * the CPU). Ends with a barrier.
 */
DEVICE_FN void afm_gather(int r, int n, GLOBAL const float* RESTRICT v, GLOBAL const float* RESTRICT lin,
    GLOBAL const int* RESTRICT ids, GLOBAL const float* RESTRICT vals,
    LPTR int* sId, LPTR float* sX, LPTR float* sE, LPTR float* sc)
{
    int tid = LID(0);
    for (int s = tid; s < n; s += AFM_WG) {
        sId[s] = ids[r * AFM_M + s];
        sX[s] = vals[r * AFM_M + s];
    }
    BARRIER;
    for (int it = tid; it < n * AFM_K; it += AFM_WG) {
        int s = it / AFM_K, d = it % AFM_K;
        sE[s * AFM_ES + d] = v[(offs_t)sId[s] * AFM_K + d] * sX[s];
    }
    if (tid == 0) {
        float linear = 0.0f;
        for (int s = 0; s < n; ++s) linear += lin[sId[s]] * sX[s];
        sc[0] = linear;
    }
    BARRIER;
}

#if !AFM_FM
/* q = e_i ⊙ e_j for pair p (column j, row i) into registers */
DEVICE_FN void afm_pair_q(int p, LPTR const float* sE, float* q, int* pi, int* pj)
{
    int j = afm_pair_col(p), i = p - j * (j - 1) / 2;
    for (int d = 0; d < AFM_K; ++d) q[d] = sE[i * AFM_ES + d] * sE[j * AFM_ES + d];
    *pi = i;
    *pj = j;
}

/* z_t = W_t · q + b_t */
DEVICE_FN float afm_z(GLOBAL const float* RESTRICT dense, const float* q, int t)
{
    float z = 0.0f;
#if AFM_K4
    for (int d = 0; d < AFM_K; d += 4) {
        float4 w = LOAD4(dense, t * AFM_K + d);
        z += w.x * q[d];
        z += w.y * q[d + 1];
        z += w.z * q[d + 2];
        z += w.w * q[d + 3];
    }
#else
    for (int d = 0; d < AFM_K; ++d) z += dense[t * AFM_K + d] * q[d];
#endif
    return z + dense[AFM_OFF_B + t];
}

/* z_t and z_t+1 as two independent sums, so that their multiply-add chains overlap */
DEVICE_FN void afm_z2(GLOBAL const float* RESTRICT dense, const float* q, int t, float* z)
{
    float z0 = 0.0f, z1 = 0.0f;
#if AFM_K4
    for (int d = 0; d < AFM_K; d += 4) {
        float4 w0 = LOAD4(dense, t * AFM_K + d), w1 = LOAD4(dense, (t + 1) * AFM_K + d);
        z0 += w0.x * q[d];
        z1 += w1.x * q[d];
        z0 += w0.y * q[d + 1];
        z1 += w1.y * q[d + 1];
        z0 += w0.z * q[d + 2];
        z1 += w1.z * q[d + 2];
        z0 += w0.w * q[d + 3];
        z1 += w1.w * q[d + 3];
    }
#else
    for (int d = 0; d < AFM_K; ++d) {
        z0 += dense[t * AFM_K + d] * q[d];
        z1 += dense[(t + 1) * AFM_K + d] * q[d];
    }
#endif
    z[0] = z0 + dense[AFM_OFF_B + t];
    z[1] = z1 + dense[AFM_OFF_B + t + 1];
}

/*
 * relu(z_t) for the t's in [t0, t1) of pair p, two at a time: returns Σ h_t relu(z_t), and stores
 * relu(z_t) at zr[p T + t] when store is set (zr is not touched otherwise).
 */
DEVICE_FN float afm_z_run(GLOBAL const float* RESTRICT dense, const float* q, int t0, int t1, LPTR float* zr, int p, int store)
{
    float score = 0.0f;
    int t = t0;
    for (; t + 1 < t1; t += 2) {
        float z[2];
        afm_z2(dense, q, t, z);
        for (int c = 0; c < 2; ++c) {
            float r = z[c] > 0.0f ? z[c] : 0.0f;
            score += dense[AFM_OFF_H + t + c] * r;
            if (store) zr[p * AFM_T + t + c] = r;
        }
    }
    if (t < t1) {
        float z = afm_z(dense, q, t), r = z > 0.0f ? z : 0.0f;
        score += dense[AFM_OFF_H + t] * r;
        if (store) zr[p * AFM_T + t] = r;
    }
    return score;
}

/*
 * Forward of the attention part for the row's np pairs: sS[p] = h · relu(W q + b) with q in
 * registers (and relu(W q + b) into sZR[p T ..] when keepZ), then a = softmax(s) into sA, then
 * a' = a (masked, 1/keep0) into sAD, then u = Σ a' q into sU. Ends with a barrier.
 */
DEVICE_FN void afm_attention_forward(int row, int n, GLOBAL const float* RESTRICT dense,
    LPTR const float* sE, LPTR float* sS, LPTR float* sA, LPTR float* sAD, LPTR float* sU, LPTR float* red,
    LPTR float* sZR, int keepZ, uint seed, float keep0)
{
    int tid = LID(0), np = n * (n - 1) / 2;
    float mx = AFM_NEG_BIG;
    /* AFM_ZS work-items per pair, each summing a slice of the t's (into red when there are several,
       then the slices are added in order) */
    for (int it = tid; it < np * AFM_ZS; it += AFM_WG) {
        int p = it / AFM_ZS, t0 = it % AFM_ZS * (AFM_T / AFM_ZS), i, j;
        float q[AFM_K];
        afm_pair_q(p, sE, q, &i, &j);
        float score = afm_z_run(dense, q, t0, t0 + AFM_T / AFM_ZS, sZR, p, keepZ);
#if AFM_ZS > 1
        red[it] = score;
    }
    BARRIER;
    for (int p = tid; p < np; p += AFM_WG) {
        float score = red[p * AFM_ZS];
        for (int sl = 1; sl < AFM_ZS; ++sl) score += red[p * AFM_ZS + sl];
#endif
        sS[p] = score;
        mx = FMAX(mx, score);
    }
#if AFM_ZS > 1
    BARRIER; /* red is reused below */
#endif
    mx = afm_wg_max(mx, red);
    float part = 0.0f;
    for (int p = tid; p < np; p += AFM_WG) {
        float ex = EXP(sS[p] - mx);
        sA[p] = ex;
        part += ex;
    }
    float inv = 1.0f / afm_wg_sum(part, red);
    float inv0 = 1.0f / keep0;
    for (int p = tid; p < np; p += AFM_WG) {
        float a = sA[p] * inv;
        sA[p] = a;
        sAD[p] = afm_keep(seed, row, 0U, p, keep0) ? a * inv0 : 0.0f;
    }
    BARRIER;
    /* u: team g sums the pairs [g c, g c + c) for dimension d, then the teams are added in order */
    int chunk = (np + AFM_POOL_G - 1) / AFM_POOL_G;
    for (int it = tid; it < AFM_POOL_G * AFM_K; it += AFM_WG) {
        int d = it % AFM_K, g = it / AFM_K;
        int p0 = g * chunk, p1 = p0 + chunk < np ? p0 + chunk : np;
        float acc = 0.0f;
        if (p0 < p1) {
            int j = afm_pair_col(p0), i = p0 - j * (j - 1) / 2;
            for (int p = p0; p < p1; ++p) {
                float q = sE[i * AFM_ES + d] * sE[j * AFM_ES + d];
                acc += sAD[p] * q;
                if (++i == j) { i = 0; ++j; }
            }
        }
        red[it] = acc;
    }
    BARRIER;
    for (int d = tid; d < AFM_K; d += AFM_WG) {
        float u = 0.0f;
        for (int g = 0; g < AFM_POOL_G; ++g) u += red[g * AFM_K + d];
        sU[d] = u;
    }
    BARRIER;
}
#else
/* FM pooling: u = ((Σ e)^2 - Σ e^2) / 2 into sU, Σ e into sESum. Ends with a barrier. */
DEVICE_FN void afm_fm_pool(int n, LPTR const float* sE, LPTR float* sESum, LPTR float* sU)
{
    for (int d = LID(0); d < AFM_K; d += AFM_WG) {
        float sum = 0.0f, sq = 0.0f;
        for (int s = 0; s < n; ++s) {
            float e = sE[s * AFM_ES + d];
            sum += e;
            sq += e * e;
        }
        sESum[d] = sum;
        sU[d] = 0.5f * (sum * sum - sq);
    }
    BARRIER;
}
#endif

/* ŷ = w0 + linear + p · u, with u already dropped out; every work-item gets it. */
DEVICE_FN float afm_output(GLOBAL const float* RESTRICT dense, LPTR const float* sU, LPTR float* red, float linear)
{
    float part = 0.0f;
    for (int d = LID(0); d < AFM_K; d += AFM_WG) part += dense[AFM_OFF_P + d] * sU[d];
    return dense[AFM_OFF_W0] + linear + afm_wg_sum(part, red);
}

/* ---- inference ----------------------------------------------------------------------------- */

/* One work-group per row: ŷ, and the row's attention weights (0 past its real pairs) if wantAtt. */
KERNEL afm_forward(GLOBAL const float* RESTRICT dense, GLOBAL const float* RESTRICT v, GLOBAL const float* RESTRICT lin,
    GLOBAL const int* RESTRICT ids, GLOBAL const float* RESTRICT vals, GLOBAL const int* RESTRICT counts,
    int rows, GLOBAL float* RESTRICT yhat, GLOBAL float* RESTRICT attention, int wantAtt)
{
    LOCAL int sId[AFM_M];
    LOCAL float sX[AFM_M];
    LOCAL float sE[AFM_M * AFM_ES];
    LOCAL float sU[AFM_K];
    LOCAL float red[AFM_RED];
    LOCAL float sc[1];
#if !AFM_FM
    LOCAL float sS[AFM_PA];
    LOCAL float sA[AFM_PA];
#else
    LOCAL float sESum[AFM_K];
#endif
    int r = GROUP_ID(0), tid = LID(0);
    int n = r < rows ? counts[r] : 0; /* the grid has exactly rows groups */
    afm_gather(r, n, v, lin, ids, vals, sId, sX, sE, sc);
#if !AFM_FM
    afm_attention_forward(r, n, dense, sE, sS, sA, sA, sU, red, sS, 0, 0U, 1.0f);
    if (wantAtt) {
        int np = n * (n - 1) / 2;
        for (int p = tid; p < AFM_P; p += AFM_WG) attention[(offs_t)r * AFM_P + p] = p < np ? sA[p] : 0.0f;
    }
#else
    afm_fm_pool(n, sE, sESum, sU);
#endif
    float y = afm_output(dense, sU, red, sc[0]);
    if (tid == 0 && r < rows) yhat[r] = y;
}

/* ---- training ------------------------------------------------------------------------------ */

/*
 * Fused forward + backward. Writes yhat, g (dL/dŷ times scale), the unscaled row loss, dE
 * [rows x M x K] (0 in padding slots) and partials[group x (DENSE + 1)]: the group's dense
 * gradient and, last, its loss sum.
 */
KERNEL afm_forward_backward(GLOBAL const float* RESTRICT dense, GLOBAL const float* RESTRICT v, GLOBAL const float* RESTRICT lin,
    GLOBAL const int* RESTRICT ids, GLOBAL const float* RESTRICT vals, GLOBAL const int* RESTRICT counts,
    GLOBAL const float* RESTRICT labels, int rows,
    GLOBAL float* RESTRICT yhat, GLOBAL float* RESTRICT grad, GLOBAL float* RESTRICT loss,
    GLOBAL float* RESTRICT de, GLOBAL float* RESTRICT partials,
    int lossKind, float keep0, float keep1, uint seed, float scale)
{
    LOCAL int sId[AFM_M];
    LOCAL float sX[AFM_M];
    LOCAL float sE[AFM_M * AFM_ES];
    LOCAL float sU[AFM_K];
    LOCAL float sDU[AFM_K];
    LOCAL float red[AFM_RED];
    LOCAL float sc[2];
#if AFM_ACC_GLOBAL
    /* too large for local memory: accumulate straight into this group's own slice of partials
       (each element still has one owner at a time, so no atomics) */
    GLOBAL float* acc = partials + (offs_t)GROUP_ID(0) * (AFM_DENSE + 1);
#else
    LOCAL float acc[AFM_DENSE];
#endif
#if !AFM_FM
    LOCAL float sDE[AFM_M * AFM_K];
    LOCAL float sS[AFM_PA];   /* score, then da, then ds */
    LOCAL float sA[AFM_PA];   /* a */
    LOCAL float sAD[AFM_PA];  /* a' = a mask0 / keep0 */
    LOCAL float sZR[AFM_TILE * AFM_TA] ALIGN16; /* relu(z) of the tile's pairs, then dz */
    LOCAL float sDQ[AFM_TILE * AFM_K];          /* dq of the tile's pairs */
#else
    LOCAL float sESum[AFM_K];
#endif
    int tid = LID(0);
    for (int e = tid; e < AFM_DENSE; e += AFM_WG) acc[e] = 0.0f;
    float lossSum = 0.0f; /* work-item 0's */
    float inv1 = 1.0f / keep1;
    BARRIER;

    for (int i = 0; i < AFM_RPG; ++i) {
        int r = GROUP_ID(0) * AFM_RPG + i;
        int live = r < rows; /* past the batch: an empty row that writes nothing */
        int n = live ? counts[r] : 0;
        afm_gather(r, n, v, lin, ids, vals, sId, sX, sE, sc);
#if !AFM_FM
        afm_attention_forward(r, n, dense, sE, sS, sA, sAD, sU, red, sZR, AFM_KEEPZ, seed, keep0);
#else
        afm_fm_pool(n, sE, sESum, sU);
#endif
        /* pooled-vector dropout: sDU holds the mask (0 or 1/keep1) until du is formed */
        for (int d = tid; d < AFM_K; d += AFM_WG) {
            float m1 = afm_keep(seed, r, 1U, d, keep1) ? inv1 : 0.0f;
            sDU[d] = m1;
            sU[d] = sU[d] * m1;
        }
        BARRIER;
        float y = afm_output(dense, sU, red, sc[0]);
        if (tid == 0) {
            float label = live ? labels[r] : 0.0f, g0, l;
            if (lossKind == LOSS_SQUARED) {
                float res = y - label;
                g0 = 2.0f * res;
                l = res * res;
            } else {
                float t = label > 0.0f ? 1.0f : 0.0f;
                float sig = y >= 0.0f ? 1.0f / (1.0f + EXP(-y)) : EXP(y) / (1.0f + EXP(y));
                g0 = sig - t;
                l = FMAX(y, 0.0f) - y * t + LOG(1.0f + EXP(-FABS(y)));
            }
            float g = live ? g0 * scale : 0.0f;
            if (live) {
                yhat[r] = y;
                grad[r] = g;
                loss[r] = l;
                lossSum += l;
                acc[AFM_OFF_W0] += g;
            }
            sc[1] = g;
        }
        BARRIER;
        float g = sc[1];
        for (int d = tid; d < AFM_K; d += AFM_WG) {
            float pd = dense[AFM_OFF_P + d];
#if !AFM_FM
            acc[AFM_OFF_P + d] += g * sU[d];
#endif
            sDU[d] = g * pd * sDU[d];
        }
        BARRIER;

#if AFM_FM
        /* de_s = du ⊙ (Σ e - e_s) */
        for (int it = tid; live && it < AFM_M * AFM_K; it += AFM_WG) {
            int s = it / AFM_K, d = it % AFM_K;
            de[(offs_t)r * AFM_M * AFM_K + it] = s < n ? sDU[d] * (sESum[d] - sE[s * AFM_ES + d]) : 0.0f;
        }
#else
        int np = n * (n - 1) / 2;
        /* da = (du · q) / keep0 where kept; then softmax backward ds = a (da - Σ a da) */
        float dot = 0.0f;
        for (int p = tid; p < np; p += AFM_WG) {
            int j = afm_pair_col(p), i = p - j * (j - 1) / 2;
            float dap = 0.0f;
            for (int d = 0; d < AFM_K; ++d) dap += sDU[d] * (sE[i * AFM_ES + d] * sE[j * AFM_ES + d]);
            float da = sAD[p] != 0.0f ? dap / keep0 : 0.0f;
            sS[p] = da;
            dot += sA[p] * da;
        }
        dot = afm_wg_sum(dot, red);
        for (int p = tid; p < np; p += AFM_WG) sS[p] = sA[p] * (sS[p] - dot);
        for (int it = tid; it < n * AFM_K; it += AFM_WG) sDE[it] = 0.0f;
        BARRIER;

        /*
         * Tiles of whole pair columns [j0, j1), the same for every row (cut for M slots, then
         * clipped to the row's n), so that the barrier loop has a fixed trip count.
         */
        int j0 = 1;
        for (int tile = 0; tile < AFM_NTILES; ++tile) {
            int pb = j0 * (j0 - 1) / 2, j1 = j0 + 1;
            while (j1 < AFM_M && (j1 + 1) * j1 / 2 - pb <= AFM_TILE) ++j1;
            int jn = j1 < n ? j1 : n; /* the row's columns in this tile: [j0, jn) */
            int tp = jn > j0 ? jn * (jn - 1) / 2 - pb : 0;

#if !AFM_KEEPZ
            /* relu(z) per pair of the tile, q recomputed in registers; AFM_ZS work-items per pair, each
               computing a slice of the t's */
            for (int it = tid; it < tp * AFM_ZS; it += AFM_WG) {
                int pt = it / AFM_ZS, t0 = it % AFM_ZS * (AFM_T / AFM_ZS), i, j;
                float q[AFM_K];
                afm_pair_q(pb + pt, sE, q, &i, &j);
                afm_z_run(dense, q, t0, t0 + AFM_T / AFM_ZS, sZR, pt, 1);
            }
            BARRIER;
#endif

            /* db, dh, and relu(z) turned into dz = ds h [z > 0] in place: work-item t owns column t */
            for (int t = tid; t < AFM_T; t += AFM_WG) {
                float h = dense[AFM_OFF_H + t], gb = acc[AFM_OFF_B + t], gh = acc[AFM_OFF_H + t];
                for (int pt = 0; pt < tp; ++pt) {
                    float zr = sZR[pt * AFM_T + t], ds = sS[pb + pt];
                    float dz = zr > 0.0f ? ds * h : 0.0f;
                    gb += dz;
                    gh += ds * zr;
                    sZR[pt * AFM_T + t] = dz;
                }
                acc[AFM_OFF_B + t] = gb;
                acc[AFM_OFF_H + t] = gh;
            }
            BARRIER;

            /*
             * dW += dz qᵀ: a work-item owns a run of AFM_DW_R elements of W's column d (t0 .. t0 + R - 1),
             * so that one q serves R of them; the tile's pairs are walked column by column (e_j read once
             * per column), in pair order.
             */
            for (int it = tid; it < AFM_DW_ITEMS; it += AFM_WG) {
                int t0 = it / AFM_K * AFM_DW_R, d = it % AFM_K, pt = 0;
                float a[AFM_DW_R];
                for (int r = 0; r < AFM_DW_R; ++r) a[r] = acc[(t0 + r) * AFM_K + d];
                for (int j = j0; j < jn; ++j) {
                    float ej = sE[j * AFM_ES + d];
                    for (int i = 0; i < j; ++i, ++pt) {
                        float q = sE[i * AFM_ES + d] * ej;
#if AFM_T4 && AFM_DW_R % 4 == 0
                        for (int r = 0; r < AFM_DW_R; r += 4) {
                            float4 dz = LOAD4(sZR, pt * AFM_T + t0 + r);
                            a[r] += dz.x * q;
                            a[r + 1] += dz.y * q;
                            a[r + 2] += dz.z * q;
                            a[r + 3] += dz.w * q;
                        }
#else
                        for (int r = 0; r < AFM_DW_R; ++r) a[r] += sZR[pt * AFM_T + t0 + r] * q;
#endif
                    }
                }
                for (int r = 0; r < AFM_DW_R; ++r) acc[(t0 + r) * AFM_K + d] = a[r];
            }
            /*
             * dq = a' du + dz W. A work-item owns AFM_DQ_C dimensions (d0 ..) of a run of AFM_DQ_R pairs, so that
             * each W element read serves R pairs and each dz element C dimensions (a run past the tile's end
             * repeats its last pair, and drops it). The loop starts where dW's items end, to share out the two.
             */
            for (int it = (tid + AFM_WG - AFM_DW_ITEMS % AFM_WG) % AFM_WG; it < (tp + AFM_DQ_R - 1) / AFM_DQ_R * (AFM_K / AFM_DQ_C);
                 it += AFM_WG) {
                int pt0 = it / (AFM_K / AFM_DQ_C) * AFM_DQ_R, d0 = it % (AFM_K / AFM_DQ_C) * AFM_DQ_C;
                int nr = tp - pt0 < AFM_DQ_R ? tp - pt0 : AFM_DQ_R;
                float dq[AFM_DQ_R][AFM_DQ_C];
                int zrow[AFM_DQ_R];
                for (int r = 0; r < AFM_DQ_R; ++r) {
                    int pt = pt0 + (r < nr ? r : nr - 1);
                    float ad = sAD[pb + pt];
                    zrow[r] = pt * AFM_T;
                    for (int c = 0; c < AFM_DQ_C; ++c) dq[r][c] = ad * sDU[d0 + c];
                }
#if AFM_DQ_C == 4
                for (int t = 0; t < AFM_T; t += 4) {
                    float4 w0 = LOAD4(dense, t * AFM_K + d0), w1 = LOAD4(dense, (t + 1) * AFM_K + d0);
                    float4 w2 = LOAD4(dense, (t + 2) * AFM_K + d0), w3 = LOAD4(dense, (t + 3) * AFM_K + d0);
                    for (int r = 0; r < AFM_DQ_R; ++r) {
                        float4 dz = LOAD4(sZR, zrow[r] + t);
                        dq[r][0] += dz.x * w0.x;
                        dq[r][1] += dz.x * w0.y;
                        dq[r][2] += dz.x * w0.z;
                        dq[r][3] += dz.x * w0.w;
                        dq[r][0] += dz.y * w1.x;
                        dq[r][1] += dz.y * w1.y;
                        dq[r][2] += dz.y * w1.z;
                        dq[r][3] += dz.y * w1.w;
                        dq[r][0] += dz.z * w2.x;
                        dq[r][1] += dz.z * w2.y;
                        dq[r][2] += dz.z * w2.z;
                        dq[r][3] += dz.z * w2.w;
                        dq[r][0] += dz.w * w3.x;
                        dq[r][1] += dz.w * w3.y;
                        dq[r][2] += dz.w * w3.z;
                        dq[r][3] += dz.w * w3.w;
                    }
                }
#else
                for (int t = 0; t < AFM_T; ++t) {
                    float w = dense[t * AFM_K + d0];
                    for (int r = 0; r < AFM_DQ_R; ++r) dq[r][0] += sZR[zrow[r] + t] * w;
                }
#endif
                for (int r = 0; r < AFM_DQ_R; ++r)
                    if (r < nr)
                        for (int c = 0; c < AFM_DQ_C; ++c) sDQ[(pt0 + r) * AFM_K + d0 + c] = dq[r][c];
            }
            BARRIER;

            /* de_s += Σ dq ⊙ e_partner over the tile's pairs that hold s, in pair order */
            for (int it = tid; it < n * AFM_K; it += AFM_WG) {
                int s = it / AFM_K, d = it % AFM_K;
                float a = sDE[it];
                if (s >= j0 && s < jn) {
                    int base = s * (s - 1) / 2 - pb;
                    for (int i = 0; i < s; ++i) a += sDQ[(base + i) * AFM_K + d] * sE[i * AFM_ES + d];
                }
                for (int j = s + 1 > j0 ? s + 1 : j0; j < jn; ++j)
                    a += sDQ[(j * (j - 1) / 2 + s - pb) * AFM_K + d] * sE[j * AFM_ES + d];
                sDE[it] = a;
            }
            BARRIER;
            j0 = j1;
        }
        for (int it = tid; live && it < AFM_M * AFM_K; it += AFM_WG)
            de[(offs_t)r * AFM_M * AFM_K + it] = it < n * AFM_K ? sDE[it] : 0.0f;
#endif
        BARRIER;
    }

    GLOBAL float* out = partials + (offs_t)GROUP_ID(0) * (AFM_DENSE + 1);
#if !AFM_ACC_GLOBAL
    for (int e = tid; e < AFM_DENSE; e += AFM_WG) out[e] = acc[e];
#endif
    if (tid == 0) out[AFM_DENSE] = lossSum;
}

/* Dense gradient = Σ over groups of the partials (in group order); LossSum += Σ losses. */
KERNEL afm_reduce_dense(GLOBAL const float* RESTRICT partials, int groups, GLOBAL float* RESTRICT denseGrad, GLOBAL float* RESTRICT lossSum)
{
    int e = GID(0);
    if (e > AFM_DENSE) return;
    float s = 0.0f;
    for (int c = 0; c < groups; ++c) s += partials[(offs_t)c * (AFM_DENSE + 1) + e];
    if (e < AFM_DENSE) denseGrad[e] = s;
    else lossSum[0] += s;
}

/* One optimizer step of element i (Optimizer.Apply). */
DEVICE_FN float afm_step(int kind, float w, float g, GLOBAL float* s1, GLOBAL float* s2, offs_t i,
    float lr, float eps, float beta1, float beta2, float c1, float c2)
{
    if (kind == OPT_SGD) return w - lr * g;
    if (kind == OPT_ADAGRAD) {
        float a = s1[i] + g * g;
        s1[i] = a;
        return w - lr * g / (SQRT(a) + eps);
    }
    float m = beta1 * s1[i] + (1.0f - beta1) * g;
    float v2 = beta2 * s2[i] + (1.0f - beta2) * g * g;
    s1[i] = m;
    s2[i] = v2;
    return w - c1 * m / (SQRT(v2) * c2 + eps);
}

/*
 * One work-item per (distinct id, dimension): dV = Σ de x over the id's slots (and, for d = 0,
 * dw = Σ g x), then the optimizer on that element. Ids are distinct, so no two work-items share
 * an output: no atomics.
 */
KERNEL afm_update_sparse(GLOBAL float* RESTRICT v, GLOBAL float* RESTRICT lin,
    GLOBAL float* vs1, GLOBAL float* vs2, GLOBAL float* ls1, GLOBAL float* ls2,
    GLOBAL const float* RESTRICT de, GLOBAL const float* RESTRICT grad, GLOBAL const float* RESTRICT vals,
    GLOBAL const int* RESTRICT uniqueIds, GLOBAL const int* RESTRICT uniqueOffsets, GLOBAL const int* RESTRICT occurrences,
    int unique, int kind, float lr, float eps, float beta1, float beta2, float c1, float c2)
{
    int it = GID(0);
    if (it >= unique * AFM_K) return;
    int u = it / AFM_K, d = it % AFM_K, id = uniqueIds[u];
    float dv = 0.0f, dw = 0.0f;
    for (int o = uniqueOffsets[u], end = uniqueOffsets[u + 1]; o < end; ++o) {
        int slot = occurrences[o];
        float x = vals[slot];
        dv += x * de[(offs_t)slot * AFM_K + d];
        if (d == 0) dw += grad[slot / AFM_M] * x;
    }
    offs_t vi = (offs_t)id * AFM_K + d;
    v[vi] = afm_step(kind, v[vi], dv, vs1, vs2, vi, lr, eps, beta1, beta2, c1, c2);
    if (d == 0) lin[id] = afm_step(kind, lin[id], dw, ls1, ls2, id, lr, eps, beta1, beta2, c1, c2);
}

/* Element-wise over the dense vector; W's gradient gains 2 λ W; FM keeps p fixed. */
KERNEL afm_update_dense(GLOBAL float* RESTRICT dense, GLOBAL const float* RESTRICT denseGrad,
    GLOBAL float* s1, GLOBAL float* s2, float lambda,
    int kind, float lr, float eps, float beta1, float beta2, float c1, float c2)
{
    int e = GID(0);
    if (e >= AFM_DENSE) return;
    if (AFM_FM && e >= AFM_OFF_P && e < AFM_OFF_W0) return;
    float g = denseGrad[e];
    if (e < AFM_OFF_B) g += 2.0f * lambda * dense[e];
    dense[e] = afm_step(kind, dense[e], g, s1, s2, e, lr, eps, beta1, beta2, c1, c2);
}
