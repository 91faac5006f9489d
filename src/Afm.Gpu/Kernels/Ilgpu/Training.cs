using ILGPU;

namespace Afm.Gpu.Kernels.Ilgpu;

/// <summary>
/// The kernel entry points. Forward: one group per row. Training: a fixed number of groups, each taking
/// <see cref="StepArgs.RowsPerGroup"/> consecutive rows and holding the row's embeddings in shared memory; the
/// pair products are recomputed from them where needed, so nothing of size pairs x k reaches global memory.
/// No atomics: every dense-gradient element has one owner in the group, accumulated across its rows and written
/// once to the group's partial; <see cref="ReduceDense"/> sums the partials in group order. Results are
/// deterministic run to run.
/// </summary>
internal static partial class GpuKernels
{
    /// <summary>Inference, AFM: ŷ per row and, when <paramref name="wantAttention"/> is 1, the row's attention (0 past its pairs).</summary>
    public static void ForwardAfm<TS>(ModelViews model, BatchViews batch, ArrayView<float> yhat, ArrayView<float> attention, int wantAttention)
        where TS : struct, IKernelShape
    {
        var L = Layout<TS>();
        var sh = SharedMemory.GetDynamic<float>();
        int m = default(TS).M, group = default(TS).Group, pairs = m * (m - 1) / 2;
        int r = Grid.IdxX, tid = ILGPU.Group.IdxX;
        int n = r < batch.Rows ? batch.Counts[r] : 0;
        var sE = sh.SubView(L.E, L.DE - L.E);
        var sS = sh.SubView(L.S, L.A - L.S);
        var sA = sh.SubView(L.A, L.AD - L.A);
        var sU = sh.SubView(L.U, L.DU - L.U);
        var sc = sh.SubView(L.Sc, 2);
        var red = sh.SubView(L.Red, L.RedLength);
        Gather<TS>(r, n, model, batch, sh.SubView(L.Id, m).Cast<int>(), sh.SubView(L.X, m), sE, sc);
        AttentionForward<TS>(r, n, model.Dense, sE, sS, sA, sA, sU, red, sS, false, 0u, 1f);
        if (wantAttention != 0)
        {
            int np = n * (n - 1) / 2;
            for (int p = tid; p < pairs; p += group) attention[(long)r * pairs + p] = p < np ? sA[p] : 0f;
        }
        float y = Output<TS>(model.Dense, sU, red, sc[0]);
        if (tid == 0 && r < batch.Rows) yhat[r] = y;
    }

    /// <summary>Inference, FM: ŷ per row.</summary>
    public static void ForwardFm<TS>(ModelViews model, BatchViews batch, ArrayView<float> yhat, ArrayView<float> attention, int wantAttention)
        where TS : struct, IKernelShape
    {
        var L = Layout<TS>();
        var sh = SharedMemory.GetDynamic<float>();
        int m = default(TS).M;
        int r = Grid.IdxX;
        int n = r < batch.Rows ? batch.Counts[r] : 0;
        var sE = sh.SubView(L.E, L.U - L.E);
        var sU = sh.SubView(L.U, L.DU - L.U);
        var sc = sh.SubView(L.Sc, 2);
        var red = sh.SubView(L.Red, L.RedLength);
        Gather<TS>(r, n, model, batch, sh.SubView(L.Id, m).Cast<int>(), sh.SubView(L.X, m), sE, sc);
        FmPool<TS>(n, sE, sh.SubView(L.ESum, L.Acc - L.ESum), sU);
        float y = Output<TS>(model.Dense, sU, red, sc[0]);
        if (ILGPU.Group.IdxX == 0 && r < batch.Rows) yhat[r] = y;
    }

    /// <summary>
    /// Fused forward and backward, AFM or FM: ŷ, dL/dŷ (times the scale), the unscaled row loss, dL/de per slot
    /// (0 in padding) and the group's partial dense gradient followed by its loss sum.
    /// </summary>
    public static void Train<TS>(ModelViews model, BatchViews batch, TrainViews work, StepArgs step)
        where TS : struct, IKernelShape
    {
        var L = Layout<TS>();
        var sh = SharedMemory.GetDynamic<float>();
        int k = default(TS).K, t = default(TS).T, m = default(TS).M, tile = default(TS).Tile, group = default(TS).Group;
        bool fm = t == 0;
        int dense = t * k + 2 * t + k + 1, offP = t * k + 2 * t, offW0 = offP + k, pairs = m * (m - 1) / 2;
        int tid = ILGPU.Group.IdxX;
        var sId = sh.SubView(L.Id, m).Cast<int>();
        var sX = sh.SubView(L.X, m);
        var sE = sh.SubView(L.E, m * SharedLayout.EStride(k, t));
        var sU = sh.SubView(L.U, k);
        var sDU = sh.SubView(L.DU, k);
        var sc = sh.SubView(L.Sc, 2);
        var red = sh.SubView(L.Red, L.RedLength);
        var gAcc = work.Partials.SubView((long)Grid.IdxX * (dense + 1), dense + 1);
        var sAcc = default(TS).GlobalAccumulator != 0 ? gAcc : sh.SubView(L.Acc, dense);
        var sZR = sh.SubView(L.ZR, fm ? 1 : tile * t);
        var sDQ = sh.SubView(L.DQ, fm ? 1 : tile * k);
        var sDE = sh.SubView(L.DE, fm ? 1 : m * k);
        var sS = sh.SubView(L.S, fm ? 1 : L.A - L.S);
        var sA = sh.SubView(L.A, fm ? 1 : L.A - L.S);
        var sAD = sh.SubView(L.AD, fm ? 1 : L.A - L.S);
        var sESum = sh.SubView(L.ESum, k);

        for (int e = tid; e < dense; e += group) AccSet<TS>(sAcc, gAcc, e, 0f);
        float lossSum = 0f; // work-item 0's
        float inv1 = 1f / step.Keep1;
        // Each accumulator element is then owned by one work-item for the rest of the kernel, but not always by the
        // one that zeroed it: in global memory, the zeros are made visible to the group before the barrier.
        if (default(TS).GlobalAccumulator != 0) MemoryFence.GroupLevel();
        ILGPU.Group.Barrier();

        for (int i = 0; i < step.RowsPerGroup; i++)
        {
            int r = Grid.IdxX * step.RowsPerGroup + i;
            if (r >= batch.Rows) break; // the same for the whole group
            int n = batch.Counts[r];
            Gather<TS>(r, n, model, batch, sId, sX, sE, sc);
            if (fm) FmPool<TS>(n, sE, sESum, sU);
            else AttentionForward<TS>(r + step.RowOffset, n, model.Dense, sE, sS, sA, sAD, sU, red, sZR, tile >= pairs, step.Seed, step.Keep0);
            // pooled-vector dropout: sDU holds the mask (0 or 1/keep1) until du is formed
            for (int d = tid; d < k; d += group)
            {
                float m1 = DropoutRng.Keep(step.Seed, r + step.RowOffset, DropoutRng.PooledStream, d, step.Keep1) ? inv1 : 0f;
                sDU[d] = m1;
                sU[d] = sU[d] * m1;
            }
            ILGPU.Group.Barrier();
            float y = Output<TS>(model.Dense, sU, red, sc[0]);
            if (tid == 0)
            {
                float l = Cpu.AfmSample.Loss((Model.LossKind)step.Loss, y, batch.Labels[r], out float g0); // the CPU kernels' loss, compiled by ILGPU
                float g = g0 * step.Scale;
                work.Yhat[r] = y;
                work.Gradient[r] = g;
                work.Loss[r] = l;
                lossSum += l;
                AccSet<TS>(sAcc, gAcc, offW0, AccGet<TS>(sAcc, gAcc, offW0) + g);
                sc[1] = g;
            }
            ILGPU.Group.Barrier();
            float gr = sc[1];
            for (int d = tid; d < k; d += group)
            {
                if (!fm) AccSet<TS>(sAcc, gAcc, offP + d, AccGet<TS>(sAcc, gAcc, offP + d) + gr * sU[d]);
                sDU[d] = gr * model.Dense[offP + d] * sDU[d];
            }
            ILGPU.Group.Barrier();
            if (fm) FmPoolBackward<TS>(r, n, sE, sESum, sDU, work.EmbeddingGrad);
            else
            {
                AttentionBackward<TS>(n, model.Dense, sE, sS, sA, sAD, sDU, sZR, sDQ, sDE, red, sAcc, gAcc, step.Keep0);
                for (int it = tid; it < m * k; it += group)
                    work.EmbeddingGrad[(long)r * m * k + it] = it < n * k ? sDE[it] : 0f;
            }
            ILGPU.Group.Barrier();
        }

        if (default(TS).GlobalAccumulator == 0)
            for (int e = tid; e < dense; e += group) gAcc[e] = sAcc[e];
        if (tid == 0) gAcc[dense] = lossSum;
    }

    private static SharedLayout Layout<TS>() where TS : struct, IKernelShape =>
        new(default(TS).K, default(TS).T, default(TS).M, default(TS).Tile, default(TS).Group, default(TS).GlobalAccumulator != 0);
}
