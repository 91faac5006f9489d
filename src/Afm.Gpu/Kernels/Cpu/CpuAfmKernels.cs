using System.Numerics;
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
    private readonly CpuSimdPath _path;

    public CpuAfmKernels(CpuAccelerator accelerator, ModelShape shape) : base(accelerator, shape)
    {
        _parallel = new ParallelOptions { MaxDegreeOfParallelism = accelerator.MaxThreads };
        _path = accelerator.SimdPath;
        _scratch = new ThreadLocal<SampleScratch>(() => new SampleScratch(shape));
        _denseGrad = new float[shape.DenseSize];
        if (shape.Kind == ModelKind.Afm && accelerator.Variant == CpuKernelVariant.Fast)
        {
            _fastScratch = new ThreadLocal<FastScratch>(() => new FastScratch(shape, ChunkRows), trackAllValues: true);
            _padded = new PaddedParams(shape);
        }
    }

    /// <summary>The vector width the kernels run on.</summary>
    internal CpuSimdPath Path => _path;

    /// <summary>The path and its micro-kernel block (or that the readable kernels run).</summary>
    public override string LaunchPlan => _fastScratch is null
        ? $"readable kernels, {CpuSimd.Name(_path)} ({Vector<float>.Count}-float Vector<T>)"
        : $"fast kernels, {CpuSimd.Describe(_path)}";

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
                var a = sh.Kind == ModelKind.Afm ? att : null;
                switch (_path)
                {
                    case CpuSimdPath.Avx512: FastAfm<V512, Vector512<float>>.Forward(sh, _padded!, dense, v, lin, ids, vals, counts, c * ChunkRows, end, _fastScratch.Value!, y, a); break;
                    case CpuSimdPath.Avx2: FastAfm<V256, Vector256<float>>.Forward(sh, _padded!, dense, v, lin, ids, vals, counts, c * ChunkRows, end, _fastScratch.Value!, y, a); break;
                    default: FastAfm<V128, Vector128<float>>.Forward(sh, _padded!, dense, v, lin, ids, vals, counts, c * ChunkRows, end, _fastScratch.Value!, y, a); break;
                }
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
                switch (_path)
                {
                    case CpuSimdPath.Avx512: FastAfm<V512, Vector512<float>>.ForwardBackward(sh, _padded!, dense, v, lin, ids, vals, counts, labels, c * ChunkRows, end, st, fast, de, dDense, yhat, grad, loss); break;
                    case CpuSimdPath.Avx2: FastAfm<V256, Vector256<float>>.ForwardBackward(sh, _padded!, dense, v, lin, ids, vals, counts, labels, c * ChunkRows, end, st, fast, de, dDense, yhat, grad, loss); break;
                    default: FastAfm<V128, Vector128<float>>.ForwardBackward(sh, _padded!, dense, v, lin, ids, vals, counts, labels, c * ChunkRows, end, st, fast, de, dDense, yhat, grad, loss); break;
                }
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
        int k = Shape.K, unique = batch.UniqueCount;
        var o = opt;
        var gather = new SparseGather(Shape, batch, work);
        var state = new SparseState(model);
        int[] uid = D(batch.UniqueIds);
        Parallel.For(0, (unique + SparseGrain - 1) / SparseGrain, _parallel, c =>
        {
            Span<float> dv = stackalloc float[k];
            int end = Math.Min(unique, (c + 1) * SparseGrain);
            for (int u = c * SparseGrain; u < end; u++)
            {
                float dw = gather.Row(u, dv);
                state.Apply(_path, o, uid[u], dv, dw);
            }
        });
    }

    public override bool SupportsGradientExchange => true;

    public override void GatherSparse(DeviceBatch batch, TrainWorkspace work, DeviceBuffer<float> grads)
    {
        int k = Shape.K, unique = batch.UniqueCount;
        var gather = new SparseGather(Shape, batch, work);
        float[] g = D(grads);
        Parallel.For(0, (unique + SparseGrain - 1) / SparseGrain, _parallel, c =>
        {
            int end = Math.Min(unique, (c + 1) * SparseGrain);
            for (int u = c * SparseGrain; u < end; u++)
            {
                var row = g.AsSpan(u * (k + 1), k + 1);
                row[k] = gather.Row(u, row[..k]);
            }
        });
    }

    public override void ApplySparse(DeviceModel model, DeviceBuffer<int> ids, DeviceBuffer<float> grads, int count, in OptimizerParams opt)
    {
        int k = Shape.K;
        var o = opt;
        var state = new SparseState(model);
        int[] id = D(ids);
        float[] g = D(grads);
        Parallel.For(0, (count + SparseGrain - 1) / SparseGrain, _parallel, c =>
        {
            int end = Math.Min(count, (c + 1) * SparseGrain);
            for (int u = c * SparseGrain; u < end; u++)
                state.Apply(_path, o, id[u], g.AsSpan(u * (k + 1), k), g[u * (k + 1) + k]);
        });
    }

    /// <summary>Distinct ids per parallel work item of the sparse update.</summary>
    private const int SparseGrain = 64;

    /// <summary>Gathers one distinct id's dV = Σ de x and dw = Σ g x over its slots, in slot order.</summary>
    private readonly struct SparseGather(ModelShape shape, DeviceBatch batch, TrainWorkspace work)
    {
        private readonly int _m = shape.MaxNnz, _k = shape.K;
        private readonly float[] _de = D(work.EmbeddingGrad), _g = D(work.Gradient), _vals = D(batch.Values);
        private readonly int[] _uoff = D(batch.UniqueOffsets), _occ = D(batch.Occurrences);

        public float Row(int u, Span<float> dv)
        {
            int k = _k;
            dv.Clear();
            float dw = 0;
            for (int o = _uoff[u]; o < _uoff[u + 1]; o++)
            {
                int slot = _occ[o];
                float x = _vals[slot];
                Simd.Axpy(x, _de.AsSpan(slot * k, k), dv);
                dw += _g[slot / _m] * x;
            }
            return dw;
        }
    }

    /// <summary>The embedding rows, linear weights and their optimizer state that the sparse update writes.</summary>
    private readonly struct SparseState(DeviceModel model)
    {
        private readonly int _k = model.Shape.K;
        private readonly float[] _v = D(model.V), _lin = D(model.Linear);
        private readonly float[]? _v1 = model.VState1 is null ? null : D(model.VState1), _v2 = model.VState2 is null ? null : D(model.VState2);
        private readonly float[]? _l1 = model.LinearState1 is null ? null : D(model.LinearState1), _l2 = model.LinearState2 is null ? null : D(model.LinearState2);

        /// <summary>The optimizer on row <paramref name="id"/>'s embedding and linear weight; with L2, their gradients gain 2 λ_V v and 2 λ_w w first.</summary>
        public void Apply(CpuSimdPath path, in OptimizerParams o, int id, ReadOnlySpan<float> dv, float dw)
        {
            int k = _k;
            var v = _v.AsSpan(id * k, k);
            var s1 = _v1 is null ? default : _v1.AsSpan(id * k, k);
            var s2 = _v2 is null ? default : _v2.AsSpan(id * k, k);
            if (o.L2Embedding != 0)
            {
                Span<float> g = stackalloc float[k];
                dv.CopyTo(g);
                Simd.Axpy(2f * o.L2Embedding, v, g);
                Optimizer.Apply(path, o, v, g, s1, s2);
            }
            else Optimizer.Apply(path, o, v, dv, s1, s2);
            if (o.L2Linear != 0) dw += 2f * o.L2Linear * _lin[id];
            Optimizer.Apply(path, o, _lin.AsSpan(id, 1), new ReadOnlySpan<float>(ref dw), _l1 is null ? default : _l1.AsSpan(id, 1), _l2 is null ? default : _l2.AsSpan(id, 1));
        }
    }

    public override void UpdateDense(DeviceModel model, TrainWorkspace work, in OptimizerParams opt)
    {
        var sh = Shape;
        float[] dense = D(model.Dense), grad = D(work.DenseGrad);
        float[]? s1 = model.DenseState1 is null ? null : D(model.DenseState1), s2 = model.DenseState2 is null ? null : D(model.DenseState2);
        int wLen = sh.T * sh.K;
        Span<float> g = _denseGrad;
        grad.CopyTo(g);
        Simd.Axpy(2f * opt.Lambda, dense.AsSpan(0, wLen), g[..wLen]);
        int fixedP = sh.Kind == ModelKind.Fm ? sh.OffsetP : -1;
        // For FM, p is not a parameter: update [0, OffsetP) and w0 only.
        int end = fixedP >= 0 ? fixedP : sh.DenseSize;
        Optimizer.Apply(_path, opt, dense.AsSpan(0, end), g[..end], s1 is null ? default : s1.AsSpan(0, end), s2 is null ? default : s2.AsSpan(0, end));
        if (fixedP >= 0)
        {
            int w0 = sh.OffsetW0;
            Optimizer.Apply(_path, opt, dense.AsSpan(w0, 1), g.Slice(w0, 1), s1 is null ? default : s1.AsSpan(w0, 1), s2 is null ? default : s2.AsSpan(w0, 1));
        }
        Simd.ZeroBelow(dense.AsSpan(0, wLen), TinyWeights.Threshold);
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

/// <summary>The element-wise optimizer updates, shared by the sparse and dense paths, on the process's vector width.</summary>
internal static class Optimizer
{
    public static void Apply(CpuSimdPath path, in OptimizerParams o, Span<float> w, ReadOnlySpan<float> g, Span<float> s1, Span<float> s2)
    {
        switch (path)
        {
            case CpuSimdPath.Avx512: Optimizer<V512, Vector512<float>>.Apply(o, w, g, s1, s2); break;
            case CpuSimdPath.Avx2: Optimizer<V256, Vector256<float>>.Apply(o, w, g, s1, s2); break;
            default: Optimizer<V128, Vector128<float>>.Apply(o, w, g, s1, s2); break;
        }
    }
}

/// <summary>The optimizer updates over the vectors of <typeparamref name="TOps"/> (vector body, scalar tail).</summary>
internal static unsafe class Optimizer<TOps, TV> where TOps : struct, IVec<TV> where TV : struct
{
    public static void Apply(in OptimizerParams o, Span<float> w, ReadOnlySpan<float> g, Span<float> s1, Span<float> s2)
    {
        int n = w.Length, i = 0, L = TOps.Count;
        fixed (float* pw = w, pg = g, p1 = s1, p2 = s2)
        {
            switch (o.Kind)
            {
                case OptimizerKind.Sgd:
                {
                    var nlr = TOps.Splat(-o.LearningRate);
                    for (; i <= n - L; i += L)
                        TOps.Store(TOps.Fma(nlr, TOps.Load(pg + i), TOps.Load(pw + i)), pw + i);
                    for (; i < n; i++) w[i] -= o.LearningRate * g[i];
                    break;
                }
                case OptimizerKind.Adagrad:
                {
                    var lr = TOps.Splat(o.LearningRate);
                    var eps = TOps.Splat(o.Epsilon);
                    for (; i <= n - L; i += L)
                    {
                        var gi = TOps.Load(pg + i);
                        var acc = TOps.Fma(gi, gi, TOps.Load(p1 + i));
                        TOps.Store(acc, p1 + i);
                        TOps.Store(TOps.Sub(TOps.Load(pw + i), TOps.Div(TOps.Mul(lr, gi), TOps.Add(TOps.Sqrt(acc), eps))), pw + i);
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
                    var b1 = TOps.Splat(o.Beta1);
                    var b2 = TOps.Splat(o.Beta2);
                    var nb1 = TOps.Splat(1 - o.Beta1);
                    var nb2 = TOps.Splat(1 - o.Beta2);
                    var vc1 = TOps.Splat(c1);
                    var vc2 = TOps.Splat(c2);
                    var eps = TOps.Splat(o.Epsilon);
                    for (; i <= n - L; i += L)
                    {
                        var gi = TOps.Load(pg + i);
                        var m = TOps.Add(TOps.Mul(b1, TOps.Load(p1 + i)), TOps.Mul(nb1, gi));
                        var v = TOps.Add(TOps.Mul(b2, TOps.Load(p2 + i)), TOps.Mul(TOps.Mul(nb2, gi), gi));
                        TOps.Store(m, p1 + i);
                        TOps.Store(v, p2 + i);
                        TOps.Store(TOps.Sub(TOps.Load(pw + i), TOps.Div(TOps.Mul(vc1, m), TOps.Add(TOps.Mul(TOps.Sqrt(v), vc2), eps))), pw + i);
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
}
