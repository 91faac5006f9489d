using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;

namespace Afm.Gpu.Tests;

/// <summary>
/// Kernel assertions written once and bound to each accelerator by a thin subclass. Tolerances:
/// the kernels compute in float32 against a float64 reference; sums run over at most a few
/// hundred terms of magnitude ~1, so 2e-4 relative plus 2e-5 absolute (scaled to the tensor's
/// largest element) covers rounding with room to spare while catching any real error.
/// </summary>
public abstract class KernelTestsBase
{
    protected const double RelTol = 2e-4, AbsTol = 2e-5;

    /// <summary>The accelerator under test, or null (with a reason) when absent on this machine.</summary>
    protected abstract Accelerator? CreateAccelerator(out string? skipReason);

    protected bool TryAccelerator(out Accelerator acc)
    {
        var a = CreateAccelerator(out string? why);
        if (a is null)
        {
            Console.WriteLine($"SKIPPED {GetType().Name}: {why}");
            acc = null!;
            return false;
        }
        acc = a;
        return true;
    }

    private static readonly int[] Lengths = [5, 3, 2, 4, 1, 0, 7, 6];

    public static TheoryData<ModelKind, LossKind, int, int> Shapes => new()
    {
        { ModelKind.Afm, LossKind.Squared, 4, 3 },
        { ModelKind.Afm, LossKind.Logistic, 16, 8 },
        { ModelKind.Afm, LossKind.Squared, 19, 5 },
        // t = 16: the GPU backward's 16-wide dW blocks where the work-group is narrow (16 work-items)
        { ModelKind.Afm, LossKind.Logistic, 16, 16 },
        // t = 4 and 12 (t % 8 == 4): the GPU backward's 4-wide dW blocks
        { ModelKind.Afm, LossKind.Squared, 8, 4 },
        { ModelKind.Afm, LossKind.Logistic, 12, 12 },
        { ModelKind.Fm, LossKind.Squared, 8, 0 },
        { ModelKind.Fm, LossKind.Logistic, 5, 0 },
    };

    private sealed class Setup : IDisposable
    {
        public required AfmKernels Kernels;
        public required DeviceModel Device;
        public required DeviceBatch Batch;
        public required TrainWorkspace Work;
        public void Dispose() { Work.Dispose(); Batch.Dispose(); Device.Dispose(); Kernels.Dispose(); }
    }

    private static Setup Prepare(Accelerator acc, AfmModel model, SparseDataset data, OptimizerKind opt, int maxNnz = 0)
    {
        var shape = ModelShape.Of(model, Math.Max(maxNnz, data.MaxNnz), data.Rows);
        var kernels = acc.CreateKernels(shape);
        var s = new Setup { Kernels = kernels, Device = kernels.CreateModel(opt), Batch = kernels.CreateBatch(), Work = kernels.CreateWorkspace() };
        s.Device.Upload(model);
        var host = new HostBatch(shape.BatchCapacity, shape.MaxNnz, model.FeatureCount);
        host.Fill(data, Enumerable.Range(0, data.Rows).ToArray(), forTraining: true);
        s.Batch.Upload(host);
        return s;
    }

    /// <summary>
    /// Rows of at most 5 (10 pairs) and 3 (3 pairs) non-zeros: few pairs on a wide group, where the forward splits
    /// each pair's z = W q over several work-items (<c>GpuKernels.ZSlices</c>); t = 4, 8, 12, 16, 20 once left slices
    /// that the four-t blocks did not cover.
    /// </summary>
    public static TheoryData<ModelKind, LossKind, int, int, int> ShortRowShapes => new()
    {
        { ModelKind.Afm, LossKind.Logistic, 8, 4, 5 },
        { ModelKind.Afm, LossKind.Squared, 12, 12, 5 },
        { ModelKind.Afm, LossKind.Squared, 8, 20, 5 },
        { ModelKind.Afm, LossKind.Logistic, 8, 8, 3 },
        { ModelKind.Afm, LossKind.Squared, 4, 16, 3 },
        { ModelKind.Afm, LossKind.Squared, 6, 6, 3 },
    };

    private static int[] ShortLengths(int max) => max == 5 ? [5, 3, 2, 4, 1, 0, 5, 2] : [3, 2, 1, 3, 0, 3, 2];

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardMatchesReference(ModelKind kind, LossKind loss, int k, int t) => ForwardMatches(kind, loss, k, t, Lengths);

    [Theory]
    [MemberData(nameof(ShortRowShapes))]
    public void ForwardOnShortRowsMatchesReference(ModelKind kind, LossKind loss, int k, int t, int maxLength) =>
        ForwardMatches(kind, loss, k, t, ShortLengths(maxLength));

    private void ForwardMatches(ModelKind kind, LossKind loss, int k, int t, int[] lengths)
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int features = 23;
        var model = Fixtures.RandomModel(kind, features, k, t, loss, seed: 3);
        var data = Fixtures.RaggedData(features, lengths, loss, seed: 5);
        using var s = Prepare(acc, model, data, OptimizerKind.Sgd);
        using var yhat = acc.Allocate<float>(data.Rows);
        using var att = acc.Allocate<float>((long)data.Rows * s.Kernels.Shape.Pairs);
        s.Kernels.Forward(s.Device, s.Batch, yhat, att);
        var y = yhat.ToArray();
        var a = att.ToArray();
        var prm = RefParams.From(model);
        var rows = Fixtures.Rows(data);
        int pairs = s.Kernels.Shape.Pairs;
        for (int r = 0; r < rows.Count; r++)
        {
            var reference = AfmReference.Forward(kind, prm, k, t, rows[r]);
            Fixtures.AssertClose([y[r]], [reference.Yhat], RelTol, AbsTol * 10, $"yhat row {r}");
            if (kind == ModelKind.Afm)
                Fixtures.AssertClose(a.AsSpan(r * pairs, reference.A.Length), reference.A, RelTol, AbsTol, $"attention row {r}");
        }
    }

    /// <summary>
    /// Shapes drawn at random (fixed seed): k in 1..20, t in 1..36, rows of 0..m non-zeros with m in 2..13 (one row of
    /// m), either loss; forward and gradients against the reference, so that a path no listed shape takes is still
    /// exercised.
    /// </summary>
    public static TheoryData<int, int, int, int> RandomShapes()
    {
        var data = new TheoryData<int, int, int, int>();
        var rng = new Random(7);
        for (int i = 0; i < 6; i++) data.Add(rng.Next(1, 21), rng.Next(1, 37), rng.Next(2, 14), i);
        return data;
    }

    [Theory]
    [MemberData(nameof(RandomShapes))]
    public void RandomShapesMatchReference(int k, int t, int m, int seed)
    {
        var rng = new Random(seed);
        var lengths = Enumerable.Range(0, 9).Select(_ => rng.Next(0, m + 1)).Append(m).ToArray();
        var loss = seed % 2 == 0 ? LossKind.Squared : LossKind.Logistic;
        ForwardMatches(ModelKind.Afm, loss, k, t, lengths);
        GradientsMatch(ModelKind.Afm, loss, k, t, lengths);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void GradientsMatchReference(ModelKind kind, LossKind loss, int k, int t) => GradientsMatch(kind, loss, k, t, Lengths);

    [Theory]
    [MemberData(nameof(ShortRowShapes))]
    public void GradientsOnShortRowsMatchReference(ModelKind kind, LossKind loss, int k, int t, int maxLength) =>
        GradientsMatch(kind, loss, k, t, ShortLengths(maxLength));

    private void GradientsMatch(ModelKind kind, LossKind loss, int k, int t, int[] lengths)
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int features = 23;
        const float lambda = 0.05f;
        var model = Fixtures.RandomModel(kind, features, k, t, loss, seed: 13);
        var data = Fixtures.RaggedData(features, lengths, loss, seed: 17);
        using var s = Prepare(acc, model, data, OptimizerKind.Sgd);
        var step = new StepParams(loss, 1f, 1f, 123, 1f / data.Rows);
        s.Kernels.ForwardBackward(s.Device, s.Batch, s.Work, step);
        s.Kernels.ReduceDense(s.Work);

        var prm = RefParams.From(model);
        var rows = Fixtures.Rows(data);
        var grad = AfmReference.Gradient(kind, loss, prm, k, t, rows, 0, out double dW0);
        var sh = s.Kernels.Shape;
        var dense = s.Work.DenseGrad.ToArray();
        double scale(double[] x) => x.Length == 0 ? 1 : Math.Max(1, x.Max(Math.Abs));
        Fixtures.AssertClose(dense.AsSpan(sh.OffsetW0, 1), [dW0], RelTol, AbsTol, "dw0");
        if (kind == ModelKind.Afm)
        {
            Fixtures.AssertClose(dense.AsSpan(0, t * k), grad.AttnW, RelTol, AbsTol * scale(grad.AttnW), "dW");
            Fixtures.AssertClose(dense.AsSpan(sh.OffsetB, t), grad.B, RelTol, AbsTol * scale(grad.B), "db");
            Fixtures.AssertClose(dense.AsSpan(sh.OffsetH, t), grad.H, RelTol, AbsTol * scale(grad.H), "dh");
            Fixtures.AssertClose(dense.AsSpan(sh.OffsetP, k), grad.P, RelTol, AbsTol * scale(grad.P), "dp");
        }

        // Sparse gradients through the update kernel: plain SGD with lr = 1 gives new = old - grad.
        var op = new OptimizerParams(OptimizerKind.Sgd, 1f, lambda, 1);
        s.Kernels.UpdateSparse(s.Device, s.Batch, s.Work, op);
        s.Kernels.UpdateDense(s.Device, s.Work, op);
        var after = new AfmModel(kind, features, k, Math.Max(t, 1), loss);
        s.Device.Download(after);
        var dV = new float[model.V.Length];
        var dw = new float[model.Linear.Length];
        for (int i = 0; i < dV.Length; i++) dV[i] = model.V[i] - after.V[i];
        for (int i = 0; i < dw.Length; i++) dw[i] = model.Linear[i] - after.Linear[i];
        // Subtraction of O(1) parameters costs ~1e-7 absolute, hence the looser absolute term.
        Fixtures.AssertClose(dV, grad.V, RelTol, 1e-6 + AbsTol * scale(grad.V), "dV");
        Fixtures.AssertClose(dw, grad.W, RelTol, 1e-6 + AbsTol * scale(grad.W), "dw");
        if (kind == ModelKind.Afm)
        {
            var expectW = new double[model.AttnW.Length];
            for (int i = 0; i < expectW.Length; i++) expectW[i] = model.AttnW[i] - (grad.AttnW[i] + 2 * lambda * model.AttnW[i]);
            Fixtures.AssertClose(after.AttnW, expectW, RelTol, 1e-6, "W after SGD step with λ");
        }
        else Assert.All(after.Proj, p => Assert.Equal(1f, p));
    }

    /// <summary>
    /// Lazy L2 on the embeddings and linear weights: a plain SGD step (lr = 1) takes the float64 reference's gradient
    /// plus 2 λ v (2 λ w) from every row the batch uses, and leaves every other row as it was.
    /// </summary>
    [Theory]
    [InlineData(ModelKind.Afm)]
    [InlineData(ModelKind.Fm)]
    public void L2ShrinksTheRowsABatchUsesAndNoOthers(ModelKind kind)
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int features = 40, k = 6; // ids beyond the batch's stay untouched
        const float l2v = 0.03f, l2w = 0.07f;
        int t = kind == ModelKind.Afm ? 4 : 0;
        var model = Fixtures.RandomModel(kind, features, k, t, LossKind.Squared, seed: 41);
        var data = Fixtures.RaggedData(23, Lengths, LossKind.Squared, seed: 42);
        using var s = Prepare(acc, model, data, OptimizerKind.Sgd);
        s.Kernels.ForwardBackward(s.Device, s.Batch, s.Work, new StepParams(LossKind.Squared, 1f, 1f, 1, 1f / data.Rows));
        s.Kernels.ReduceDense(s.Work);
        s.Kernels.UpdateSparse(s.Device, s.Batch, s.Work, new OptimizerParams(OptimizerKind.Sgd, 1f, 0f, 1, L2Embedding: l2v, L2Linear: l2w));
        var rows = Fixtures.Rows(data);
        var grad = AfmReference.Gradient(kind, LossKind.Squared, RefParams.From(model), k, t, rows, 0, out _);
        var used = new HashSet<int>(rows.SelectMany(r => r.Ids));
        Assert.True(used.Count is > 5 and < features);
        var expectV = new double[model.V.Length];
        var expectW = new double[model.Linear.Length];
        for (int id = 0; id < features; id++)
        {
            bool u = used.Contains(id);
            for (int d = 0; d < k; d++)
            {
                int i = id * k + d;
                expectV[i] = u ? model.V[i] - (grad.V[i] + 2 * l2v * model.V[i]) : model.V[i];
            }
            expectW[id] = u ? model.Linear[id] - (grad.W[id] + 2 * l2w * model.Linear[id]) : model.Linear[id];
        }
        Fixtures.AssertClose(s.Device.V.ToArray(), expectV, RelTol, 1e-6 + AbsTol, "V after an SGD step with L2");
        Fixtures.AssertClose(s.Device.Linear.ToArray(), expectW, RelTol, 1e-6 + AbsTol, "w after an SGD step with L2");
        var v = s.Device.V.ToArray();
        for (int id = 0; id < features; id++)
            if (!used.Contains(id))
                Assert.True(v.AsSpan(id * k, k).SequenceEqual(model.V.AsSpan(id * k, k)), $"row {id}, which no row uses, changed");
    }

    [Fact]
    public void AttentionWeightsShrunkToNothingBecomeZero()
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int features = 15, k = 8, t = 4;
        var model = Fixtures.RandomModel(ModelKind.Afm, features, k, t, LossKind.Squared, seed: 31);
        model.AttnW[0] = 1e-30f;
        model.AttnW[5] = -9e-25f;
        model.AttnW[7] = 2e-24f;
        model.AttnB[1] = 1e-30f; // not an attention weight: kept
        var data = Fixtures.RaggedData(features, Lengths, LossKind.Squared, seed: 32);
        using var s = Prepare(acc, model, data, OptimizerKind.Sgd);
        s.Work.DenseGrad.Clear();
        // A zero gradient and λ = 0: the step changes nothing but the tiny attention weights (TinyWeights.Threshold).
        s.Kernels.UpdateDense(s.Device, s.Work, new OptimizerParams(OptimizerKind.Sgd, 0.1f, 0f, 1));
        var after = new AfmModel(ModelKind.Afm, features, k, t, LossKind.Squared);
        s.Device.Download(after);
        var expected = (float[])model.AttnW.Clone();
        expected[0] = 0;
        expected[5] = 0;
        Assert.Equal(expected, after.AttnW);
        Assert.Equal(model.AttnB, after.AttnB);
        Assert.Equal(model.AttnH, after.AttnH);
        Assert.Equal(model.Proj, after.Proj);
    }

    [Theory]
    [InlineData(OptimizerKind.Adagrad)]
    [InlineData(OptimizerKind.Adam)]
    public void OptimizerStepsMatchScalarFormula(OptimizerKind opt)
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int features = 15, k = 8, t = 4;
        var model = Fixtures.RandomModel(ModelKind.Afm, features, k, t, LossKind.Squared, seed: 21);
        var data = Fixtures.RaggedData(features, Lengths, LossKind.Squared, seed: 22);
        using var s = Prepare(acc, model, data, opt);
        var prm = RefParams.From(model);
        var rows = Fixtures.Rows(data);
        // Two steps on the same batch: the second exercises non-zero optimizer state. The sparse
        // update moves V and w; the dense parameters are not updated here, so the reference's
        // W, b, h, p stay valid.
        var cur = prm.Clone();
        var state = new Dictionary<string, (double[] M1, double[] M2)>
        {
            ["V"] = (new double[prm.V.Length], new double[prm.V.Length]),
            ["w"] = (new double[prm.W.Length], new double[prm.W.Length]),
        };
        var touched = new HashSet<int>(rows.SelectMany(r => r.Ids));
        for (int stepNo = 1; stepNo <= 2; stepNo++)
        {
            var op = new OptimizerParams(opt, 0.05f, 0, stepNo, Epsilon: opt == OptimizerKind.Adam ? 1e-8f : 1e-10f);
            var g = AfmReference.Gradient(ModelKind.Afm, LossKind.Squared, cur, k, t, rows, 0, out _);
            void Step(double[] w, double[] grad, (double[] M1, double[] M2) st, int width)
            {
                foreach (int id in touched) // rows no sample touches get no update (lazy sparse update)
                {
                    for (int d = 0; d < width; d++)
                    {
                        int i = id * width + d;
                        double gi = grad[i];
                        if (opt == OptimizerKind.Adagrad)
                        {
                            st.M1[i] += gi * gi;
                            w[i] -= 0.05 * gi / (Math.Sqrt(st.M1[i]) + 1e-10);
                        }
                        else
                        {
                            st.M1[i] = 0.9 * st.M1[i] + 0.1 * gi;
                            st.M2[i] = 0.999 * st.M2[i] + 0.001 * gi * gi;
                            double mh = st.M1[i] / (1 - Math.Pow(0.9, stepNo)), vh = st.M2[i] / (1 - Math.Pow(0.999, stepNo));
                            w[i] -= 0.05 * mh / (Math.Sqrt(vh) + 1e-8);
                        }
                    }
                }
            }
            Step(cur.V, g.V, state["V"], k);
            Step(cur.W, g.W, state["w"], 1);
            s.Kernels.ForwardBackward(s.Device, s.Batch, s.Work, new StepParams(LossKind.Squared, 1, 1, 1, 1f / data.Rows));
            s.Kernels.ReduceDense(s.Work);
            s.Kernels.UpdateSparse(s.Device, s.Batch, s.Work, op);
            Fixtures.AssertClose(s.Device.V.ToArray(), cur.V, 1e-4, 2e-6, $"V after {opt} step {stepNo}");
            Fixtures.AssertClose(s.Device.Linear.ToArray(), cur.W, 1e-4, 2e-6, $"w after {opt} step {stepNo}");
        }
    }

    /// <summary>
    /// The sparse update in two halves (data-parallel training exchanges what is between them): the gathered gradients
    /// are the float64 reference's, and gathering then applying gives <see cref="AfmKernels.UpdateSparse"/>'s
    /// parameters and optimizer state bit for bit, over two steps (the second reads the state the first wrote).
    /// </summary>
    [Theory]
    [InlineData(ModelKind.Afm, OptimizerKind.Adagrad)]
    [InlineData(ModelKind.Afm, OptimizerKind.Adam)]
    [InlineData(ModelKind.Fm, OptimizerKind.Sgd)]
    public void GatherThenApplyIsTheSparseUpdate(ModelKind kind, OptimizerKind opt)
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int features = 23, k = 7;
        int t = kind == ModelKind.Afm ? 5 : 0;
        var model = Fixtures.RandomModel(kind, features, k, t, LossKind.Squared, seed: 31);
        var data = Fixtures.RaggedData(features, Lengths, LossKind.Squared, seed: 33);
        using var fused = Prepare(acc, model, data, opt);
        using var split = Prepare(acc, model, data, opt);
        int unique = split.Batch.UniqueCount;
        using var grads = acc.Allocate<float>((long)unique * (k + 1));
        var step = new StepParams(LossKind.Squared, 1f, 1f, 5, 1f / data.Rows);
        for (int stepNo = 1; stepNo <= 2; stepNo++)
        {
            var op = new OptimizerParams(opt, 0.05f, 0, stepNo, L2Embedding: 0.01f, L2Linear: 0.02f);
            fused.Kernels.ForwardBackward(fused.Device, fused.Batch, fused.Work, step);
            fused.Kernels.UpdateSparse(fused.Device, fused.Batch, fused.Work, op);
            split.Kernels.ForwardBackward(split.Device, split.Batch, split.Work, step);
            split.Kernels.GatherSparse(split.Batch, split.Work, grads);
            if (stepNo == 1)
            {
                var g = AfmReference.Gradient(kind, LossKind.Squared, RefParams.From(model), k, t, Fixtures.Rows(data), 0, out _);
                var ids = split.Batch.UniqueIds.ToArray().AsSpan(0, unique).ToArray();
                var got = grads.ToArray();
                var dv = ids.SelectMany(id => g.V.AsSpan(id * k, k).ToArray()).ToArray();
                Fixtures.AssertClose(Enumerable.Range(0, unique).SelectMany(u => got.AsSpan(u * (k + 1), k).ToArray()).ToArray(), dv, RelTol, AbsTol, "gathered dV");
                Fixtures.AssertClose(Enumerable.Range(0, unique).Select(u => got[u * (k + 1) + k]).ToArray(), ids.Select(id => g.W[id]).ToArray(), RelTol, AbsTol, "gathered dw");
            }
            split.Kernels.ApplySparse(split.Device, split.Batch.UniqueIds, grads, unique, op);
            foreach (var (a, b, name) in new[]
                {
                    (fused.Device.V, split.Device.V, "V"), (fused.Device.Linear, split.Device.Linear, "w"),
                    (fused.Device.VState1, split.Device.VState1, "V state 1"), (fused.Device.VState2, split.Device.VState2, "V state 2"),
                    (fused.Device.LinearState1, split.Device.LinearState1, "w state 1"), (fused.Device.LinearState2, split.Device.LinearState2, "w state 2"),
                })
            {
                if (a is null) continue;
                Assert.True(a.ToArray().AsSpan().SequenceEqual(b!.ToArray()), $"{name} after step {stepNo}: gather + apply differs from the fused update");
            }
        }
    }

    /// <summary>
    /// A batch that is the tail of a global batch, with <see cref="StepParams.RowOffset"/> its start, draws the
    /// global batch's dropout masks: its rows' outputs are those rows' outputs in the whole batch, bit for bit.
    /// </summary>
    [Theory]
    [InlineData(ModelKind.Afm)]
    [InlineData(ModelKind.Fm)]
    public void ARowOffsetDrawsTheGlobalBatchsDropoutMasks(ModelKind kind)
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int features = 23, k = 8, offset = 3;
        int t = kind == ModelKind.Afm ? 4 : 0;
        var model = Fixtures.RandomModel(kind, features, k, t, LossKind.Squared, seed: 41);
        var data = Fixtures.RaggedData(features, Lengths, LossKind.Squared, seed: 43);
        var tail = data.Subset(Enumerable.Range(offset, data.Rows - offset).ToArray());
        using var whole = Prepare(acc, model, data, OptimizerKind.Sgd, data.MaxNnz);
        using var part = Prepare(acc, model, tail, OptimizerKind.Sgd, data.MaxNnz);
        var step = new StepParams(LossKind.Squared, 0.6f, 0.6f, 99, 0.125f);
        whole.Kernels.ForwardBackward(whole.Device, whole.Batch, whole.Work, step);
        part.Kernels.ForwardBackward(part.Device, part.Batch, part.Work, step with { RowOffset = offset });
        int rows = tail.Rows, slots = data.MaxNnz * k;
        Assert.Equal(whole.Work.Yhat.ToArray().AsSpan(offset, rows).ToArray(), part.Work.Yhat.ToArray().AsSpan(0, rows).ToArray());
        Assert.Equal(whole.Work.Gradient.ToArray().AsSpan(offset, rows).ToArray(), part.Work.Gradient.ToArray().AsSpan(0, rows).ToArray());
        Assert.Equal(whole.Work.EmbeddingGrad.ToArray().AsSpan(offset * slots, rows * slots).ToArray(), part.Work.EmbeddingGrad.ToArray().AsSpan(0, rows * slots).ToArray());
        // and without the offset the masks differ
        part.Kernels.ForwardBackward(part.Device, part.Batch, part.Work, step);
        Assert.NotEqual(whole.Work.Yhat.ToArray().AsSpan(offset, rows).ToArray(), part.Work.Yhat.ToArray().AsSpan(0, rows).ToArray());
    }

    [Fact]
    public void AttentionIsOnSumsToOneAndDiffersAcrossPairs()
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        var model = Fixtures.RandomModel(ModelKind.Afm, 30, 8, 6, LossKind.Squared, seed: 31);
        var data = Fixtures.RaggedData(30, [6, 4, 9, 3, 2], LossKind.Squared, seed: 32);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        predictor.Predict(data, out var attention);
        for (int r = 0; r < data.Rows; r++)
        {
            var a = attention[r];
            Assert.Equal(data.RowLength(r) * (data.RowLength(r) - 1) / 2, a.Length);
            Assert.InRange(a.Sum(), 1 - 1e-5, 1 + 1e-5);
            Assert.All(a, x => Assert.InRange(x, 0f, 1f));
            if (a.Length >= 2) Assert.True(a.Max() - a.Min() > 1e-3, $"row {r}: attention is uniform ({string.Join(", ", a)})");
        }
    }

    [Fact]
    public void RaggedRowsEqualTheSameRowsPadded()
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        var model = Fixtures.RandomModel(ModelKind.Afm, 40, 8, 5, LossKind.Squared, seed: 41);
        var data = Fixtures.RaggedData(40, [4, 11, 2, 7, 0, 1, 3], LossKind.Squared, seed: 42);
        // Each row alone, padded only to its own length, against all rows in one batch padded to 11
        // and again padded to 20 slots: padding must never enter the softmax or the sums.
        var yhatTogether = ForwardRaw(acc, model, data, 0, out var attTogether, out int pairsTogether);
        var yhatWide = ForwardRaw(acc, model, data, 20, out var attWide, out int pairsWide);
        for (int r = 0; r < data.Rows; r++)
        {
            var single = data.Subset([r]);
            var y1 = ForwardRaw(acc, model, single, 0, out var att1, out _);
            int np = ModelShape.PairCount(data.RowLength(r));
            Assert.Equal(y1[0], yhatTogether[r]);
            Assert.Equal(y1[0], yhatWide[r]);
            Assert.Equal(att1.AsSpan(0, np).ToArray(), attTogether.AsSpan(r * pairsTogether, np).ToArray());
            Assert.Equal(att1.AsSpan(0, np).ToArray(), attWide.AsSpan(r * pairsWide, np).ToArray());
        }
    }

    [Fact]
    public void TrainingStepOfARowDoesNotDependOnItsBatchmates()
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        const int k = 8;
        var model = Fixtures.RandomModel(ModelKind.Afm, 60, k, 5, LossKind.Squared, seed: 61);
        // Enough rows and pairs that the batch is worked in several chunks and groups.
        var data = Fixtures.RaggedData(60, Enumerable.Range(0, 70).Select(i => (i * 7) % 13).ToArray(), LossKind.Squared, seed: 62);
        using var all = Prepare(acc, model, data, OptimizerKind.Sgd, 13);
        all.Kernels.ForwardBackward(all.Device, all.Batch, all.Work, new StepParams(LossKind.Squared, 1, 1, 5, 1f));
        var yAll = all.Work.Yhat.ToArray();
        var deAll = all.Work.EmbeddingGrad.ToArray();
        foreach (int r in new[] { 0, 1, 17, 40, 69 })
        {
            using var one = Prepare(acc, model, data.Subset([r]), OptimizerKind.Sgd, 13);
            one.Kernels.ForwardBackward(one.Device, one.Batch, one.Work, new StepParams(LossKind.Squared, 1, 1, 5, 1f));
            Assert.Equal(yAll[r], one.Work.Yhat.ToArray()[0]);
            int len = data.RowLength(r) * k;
            Assert.Equal(deAll.AsSpan(r * 13 * k, len).ToArray(), one.Work.EmbeddingGrad.ToArray().AsSpan(0, len).ToArray());
        }
    }

    private static float[] ForwardRaw(Accelerator acc, AfmModel model, SparseDataset data, int maxNnz, out float[] attention, out int pairs)
    {
        using var s = Prepare(acc, model, data, OptimizerKind.Sgd, Math.Max(2, maxNnz));
        using var yhat = acc.Allocate<float>(data.Rows);
        using var att = acc.Allocate<float>((long)data.Rows * s.Kernels.Shape.Pairs);
        s.Kernels.Forward(s.Device, s.Batch, yhat, att);
        attention = att.ToArray();
        pairs = s.Kernels.Shape.Pairs;
        return yhat.ToArray();
    }

    [Fact]
    public void DropoutMasksFollowTheSharedCounterRng()
    {
        if (!TryAccelerator(out var acc)) return;
        using var accOwner = acc;
        // With keep0 = keep1 = 0.5 the loss gradient must equal the reference evaluated with the
        // masks the shared RNG defines; here we check the cheap consequence: ŷ equals
        // w0 + linear + p · (u ⊙ mask1 / keep1) where u uses a ⊙ mask0 / keep0.
        const int k = 6, t = 4;
        var model = Fixtures.RandomModel(ModelKind.Afm, 20, k, t, LossKind.Squared, seed: 51);
        var data = Fixtures.RaggedData(20, [5, 4, 6, 3], LossKind.Squared, seed: 52);
        using var s = Prepare(acc, model, data, OptimizerKind.Sgd);
        uint seed = DropoutRng.StepSeed(99, 3);
        s.Kernels.ForwardBackward(s.Device, s.Batch, s.Work, new StepParams(LossKind.Squared, 0.5f, 0.5f, seed, 1f));
        var y = s.Work.Yhat.ToArray();
        var prm = RefParams.From(model);
        var rows = Fixtures.Rows(data);
        for (int r = 0; r < rows.Count; r++)
        {
            var row = rows[r];
            var a = AfmReference.Forward(ModelKind.Afm, prm, k, t, row).A;
            var pairs = AfmReference.Pairs(row.Ids.Length);
            double yhat = prm.W0;
            for (int s2 = 0; s2 < row.Ids.Length; s2++) yhat += prm.W[row.Ids[s2]] * row.Values[s2];
            for (int d = 0; d < k; d++)
            {
                double u = 0;
                for (int p = 0; p < pairs.Count; p++)
                {
                    if (!DropoutRng.Keep(seed, r, DropoutRng.AttentionStream, p, 0.5f)) continue;
                    var (i, j) = pairs[p];
                    u += a[p] / 0.5 * prm.V[row.Ids[i] * k + d] * row.Values[i] * prm.V[row.Ids[j] * k + d] * row.Values[j];
                }
                if (DropoutRng.Keep(seed, r, DropoutRng.PooledStream, d, 0.5f)) yhat += prm.P[d] * u / 0.5;
            }
            Fixtures.AssertClose([y[r]], [yhat], RelTol, AbsTol * 10, $"row {r} with dropout");
        }
    }
}
