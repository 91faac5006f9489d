using System.Runtime.Intrinsics;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels.Cpu;

/// <summary>
/// The CPU accelerator's kernels: parallel over fixed chunks of rows (so results do not depend on
/// the thread count), each chunk with its own partial dense gradient (no false sharing, no locks),
/// and the embedding scatter parallel over the batch's distinct ids (no atomics).
/// </summary>
internal sealed class CpuAfmKernels : AfmKernels
{
    /// <summary>Rows per chunk of work; also the granularity of the partial dense gradients.</summary>
    internal const int ChunkRows = 32;

    private readonly ParallelOptions _parallel;
    private readonly ThreadLocal<SampleScratch> _scratch;
    private readonly ThreadLocal<FastScratch>? _fastScratch;
    private readonly PaddedParams? _padded;
    private readonly float[] _denseGrad;

    public CpuAfmKernels(CpuAccelerator accelerator, ModelShape shape) : base(accelerator, shape)
    {
        _parallel = new ParallelOptions { MaxDegreeOfParallelism = accelerator.MaxThreads };
        _scratch = new ThreadLocal<SampleScratch>(() => new SampleScratch(shape));
        _denseGrad = new float[shape.DenseSize];
        if (shape.Kind == ModelKind.Afm && accelerator.Variant == CpuKernelVariant.Fast)
        {
            _fastScratch = new ThreadLocal<FastScratch>(() => new FastScratch(shape, ChunkRows), trackAllValues: true);
            _padded = new PaddedParams(shape);
        }
    }

    protected override int PartialCount => (Shape.BatchCapacity + ChunkRows - 1) / ChunkRows;

    private static T[] D<T>(DeviceBuffer<T> b) where T : unmanaged => ((CpuBuffer<T>)b).Data;

    public override void Forward(DeviceModel model, DeviceBatch batch, DeviceBuffer<float> yhat, DeviceBuffer<float>? attention)
    {
        var sh = Shape;
        int m = sh.MaxNnz, pairs = sh.Pairs, rows = batch.Rows;
        float[] dense = D(model.Dense), v = D(model.V), lin = D(model.Linear);
        int[] ids = D(batch.Ids), counts = D(batch.Counts);
        float[] vals = D(batch.Values), y = D(yhat);
        float[]? att = attention is null ? null : D(attention);
        if (att is not null && sh.Kind == ModelKind.Afm) Array.Clear(att, 0, rows * pairs);
        _padded?.Load(sh, dense);
        int chunks = (rows + ChunkRows - 1) / ChunkRows;
        Parallel.For(0, chunks, _parallel, c =>
        {
            int end = Math.Min(rows, (c + 1) * ChunkRows);
            if (_fastScratch is not null)
            {
                FastAfm.Forward(sh, _padded!, dense, v, lin, ids, vals, counts, c * ChunkRows, end, _fastScratch.Value!, y,
                    sh.Kind == ModelKind.Afm ? att : null);
                return;
            }
            var sc = _scratch.Value!;
            for (int r = c * ChunkRows; r < end; r++)
            {
                int n = counts[r];
                var aOut = att is null || sh.Kind != ModelKind.Afm ? Span<float>.Empty : att.AsSpan(r * pairs, ModelShape.PairCount(n));
                y[r] = AfmSample.Forward(sh, dense, v, lin, ids.AsSpan(r * m, n), vals.AsSpan(r * m, n), sc, aOut);
            }
        });
    }

    public override void ForwardBackward(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in StepParams step)
    {
        var sh = Shape;
        var st = step;
        int m = sh.MaxNnz, k = sh.K, rows = batch.Rows, stride = sh.DenseSize + 1;
        float[] dense = D(model.Dense), v = D(model.V), lin = D(model.Linear);
        int[] ids = D(batch.Ids), counts = D(batch.Counts);
        float[] vals = D(batch.Values), labels = D(batch.Labels);
        float[] yhat = D(work.Yhat), grad = D(work.Gradient), loss = D(work.Loss), de = D(work.EmbeddingGrad), partials = D(work.Partials);
        _padded?.Load(sh, dense);
        int chunks = (rows + ChunkRows - 1) / ChunkRows;
        Parallel.For(0, chunks, _parallel, c =>
        {
            var sc = _scratch.Value!;
            var fast = _fastScratch?.Value;
            fast?.ClearAccumulators();
            var part = partials.AsSpan(c * stride, stride);
            part.Clear();
            var dDense = part[..sh.DenseSize];
            int end = Math.Min(rows, (c + 1) * ChunkRows);
            if (fast is not null)
            {
                FastAfm.ForwardBackward(sh, _padded!, dense, v, lin, ids, vals, counts, labels, c * ChunkRows, end, st, fast, de, dDense, yhat, grad, loss);
                FastAfm.FlushAccumulators(sh, fast, dDense);
            }
            else
            {
                for (int r = c * ChunkRows; r < end; r++)
                {
                    int n = counts[r];
                    yhat[r] = AfmSample.ForwardBackward(sh, dense, v, lin, ids.AsSpan(r * m, n), vals.AsSpan(r * m, n), labels[r], r, st, sc,
                        de.AsSpan(r * m * k, m * k), dDense, out grad[r], out loss[r]);
                }
            }
            float lossSum = 0;
            for (int r = c * ChunkRows; r < end; r++) lossSum += loss[r];
            part[sh.DenseSize] = lossSum;
        });
        for (int c = chunks; c < PartialCount; c++) partials.AsSpan(c * stride, stride).Clear();
    }

    public override void ReduceDense(TrainWorkspace work)
    {
        int size = Shape.DenseSize, stride = size + 1;
        float[] partials = D(work.Partials), grad = D(work.DenseGrad), lossSum = D(work.LossSum);
        Array.Clear(grad);
        float loss = 0;
        for (int c = 0; c < work.PartialCount; c++)
        {
            Simd.Axpy(1f, partials.AsSpan(c * stride, size), grad);
            loss += partials[c * stride + size];
        }
        lossSum[0] += loss;
    }

    public override void UpdateSparse(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in OptimizerParams opt)
    {
        int m = Shape.MaxNnz, k = Shape.K, unique = batch.UniqueCount;
        var o = opt;
        float[] v = D(model.V), lin = D(model.Linear), de = D(work.EmbeddingGrad), g = D(work.Gradient), vals = D(batch.Values);
        float[]? v1 = model.VState1 is null ? null : D(model.VState1), v2 = model.VState2 is null ? null : D(model.VState2);
        float[]? l1 = model.LinearState1 is null ? null : D(model.LinearState1), l2 = model.LinearState2 is null ? null : D(model.LinearState2);
        int[] uid = D(batch.UniqueIds), uoff = D(batch.UniqueOffsets), occ = D(batch.Occurrences);
        const int Grain = 64;
        Parallel.For(0, (unique + Grain - 1) / Grain, _parallel, c =>
        {
            Span<float> dv = stackalloc float[k];
            int end = Math.Min(unique, (c + 1) * Grain);
            for (int u = c * Grain; u < end; u++)
            {
                int id = uid[u];
                dv.Clear();
                float dw = 0;
                for (int o2 = uoff[u]; o2 < uoff[u + 1]; o2++)
                {
                    int slot = occ[o2];
                    float x = vals[slot];
                    Simd.Axpy(x, de.AsSpan(slot * k, k), dv);
                    dw += g[slot / m] * x;
                }
                Optimizer.Apply(o, v.AsSpan(id * k, k), dv, v1 is null ? default : v1.AsSpan(id * k, k), v2 is null ? default : v2.AsSpan(id * k, k));
                Optimizer.Apply(o, lin.AsSpan(id, 1), new ReadOnlySpan<float>(ref dw), l1 is null ? default : l1.AsSpan(id, 1), l2 is null ? default : l2.AsSpan(id, 1));
            }
        });
    }

    public override void UpdateDense(DeviceModel model, TrainWorkspace work, in OptimizerParams opt)
    {
        var sh = Shape;
        float[] dense = D(model.Dense), grad = D(work.DenseGrad);
        float[]? s1 = model.DenseState1 is null ? null : D(model.DenseState1), s2 = model.DenseState2 is null ? null : D(model.DenseState2);
        int wLen = sh.T * sh.K;
        Span<float> g = _denseGrad;
        grad.CopyTo(g);
        for (int i = 0; i < wLen; i++) g[i] += 2f * opt.Lambda * dense[i];
        int fixedP = sh.Kind == ModelKind.Fm ? sh.OffsetP : -1;
        // For FM, p is not a parameter: update [0, OffsetP) and w0 only.
        int end = fixedP >= 0 ? fixedP : sh.DenseSize;
        Optimizer.Apply(opt, dense.AsSpan(0, end), g[..end], s1 is null ? default : s1.AsSpan(0, end), s2 is null ? default : s2.AsSpan(0, end));
        if (fixedP >= 0)
        {
            int w0 = sh.OffsetW0;
            Optimizer.Apply(opt, dense.AsSpan(w0, 1), g.Slice(w0, 1), s1 is null ? default : s1.AsSpan(w0, 1), s2 is null ? default : s2.AsSpan(w0, 1));
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        _scratch.Dispose();
        if (_fastScratch is not null)
        {
            foreach (var s in _fastScratch.Values) s.Dispose();
            _fastScratch.Dispose();
        }
        _padded?.Dispose();
    }
}

/// <summary>The element-wise optimizer updates, shared by the sparse and dense paths (512-bit body, scalar tail).</summary>
internal static class Optimizer
{
    public static void Apply(in OptimizerParams o, Span<float> w, ReadOnlySpan<float> g, Span<float> s1, Span<float> s2)
    {
        int n = w.Length, i = 0;
        const int L = 16;
        switch (o.Kind)
        {
            case OptimizerKind.Sgd:
            {
                var lr = Vector512.Create(o.LearningRate);
                for (; i <= n - L; i += L)
                    Vector512.FusedMultiplyAdd(-lr, Vector512.Create(g.Slice(i, L)), Vector512.Create(w.Slice(i, L))).CopyTo(w.Slice(i, L));
                for (; i < n; i++) w[i] -= o.LearningRate * g[i];
                break;
            }
            case OptimizerKind.Adagrad:
            {
                var lr = Vector512.Create(o.LearningRate);
                var eps = Vector512.Create(o.Epsilon);
                for (; i <= n - L; i += L)
                {
                    var gi = Vector512.Create(g.Slice(i, L));
                    var acc = Vector512.FusedMultiplyAdd(gi, gi, Vector512.Create(s1.Slice(i, L)));
                    acc.CopyTo(s1.Slice(i, L));
                    (Vector512.Create(w.Slice(i, L)) - lr * gi / (Vector512.Sqrt(acc) + eps)).CopyTo(w.Slice(i, L));
                }
                for (; i < n; i++)
                {
                    s1[i] += g[i] * g[i];
                    w[i] -= o.LearningRate * g[i] / (MathF.Sqrt(s1[i]) + o.Epsilon);
                }
                break;
            }
            case OptimizerKind.Adam:
            {
                float c1 = o.AdamC1, c2 = o.AdamC2;
                var b1 = Vector512.Create(o.Beta1);
                var b2 = Vector512.Create(o.Beta2);
                var nb1 = Vector512.Create(1 - o.Beta1);
                var nb2 = Vector512.Create(1 - o.Beta2);
                var vc1 = Vector512.Create(c1);
                var vc2 = Vector512.Create(c2);
                var eps = Vector512.Create(o.Epsilon);
                for (; i <= n - L; i += L)
                {
                    var gi = Vector512.Create(g.Slice(i, L));
                    var m = b1 * Vector512.Create(s1.Slice(i, L)) + nb1 * gi;
                    var v = b2 * Vector512.Create(s2.Slice(i, L)) + nb2 * gi * gi;
                    m.CopyTo(s1.Slice(i, L));
                    v.CopyTo(s2.Slice(i, L));
                    (Vector512.Create(w.Slice(i, L)) - vc1 * m / (Vector512.Sqrt(v) * vc2 + eps)).CopyTo(w.Slice(i, L));
                }
                for (; i < n; i++)
                {
                    s1[i] = o.Beta1 * s1[i] + (1 - o.Beta1) * g[i];
                    s2[i] = o.Beta2 * s2[i] + (1 - o.Beta2) * g[i] * g[i];
                    w[i] -= c1 * s1[i] / (MathF.Sqrt(s2[i]) * c2 + o.Epsilon);
                }
                break;
            }
        }
    }
}
