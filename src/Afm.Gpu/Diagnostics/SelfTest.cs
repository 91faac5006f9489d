using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;

namespace Afm.Gpu.Diagnostics;

/// <summary>One tensor compared by <see cref="SelfTest.Run"/>.</summary>
/// <param name="Shape">The shape case, e.g. <c>AFM m=39 k=16 t=16</c>.</param>
/// <param name="Kernel">The kernel and the output compared, e.g. <c>fwd/bwd dE</c>.</param>
/// <param name="MaxAbsError">Largest element-wise |candidate - reference| (infinity for a non-finite value or a length mismatch).</param>
/// <param name="MaxRelError"><paramref name="MaxAbsError"/> divided by the largest |reference| element of the tensor.</param>
/// <param name="Pass">Whether <paramref name="MaxRelError"/> is within <see cref="SelfTest.Tolerance"/>.</param>
public sealed record SelfTestRow(string Shape, string Kernel, double MaxAbsError, double MaxRelError, bool Pass);

/// <summary>
/// Runs every AFM kernel on a candidate accelerator and a reference one (normally the CPU) with
/// identical random inputs, for several shapes, and compares the outputs element-wise.
/// </summary>
public static class SelfTest
{
    /// <summary>
    /// Pass threshold on <see cref="SelfTestRow.MaxRelError"/>: errors are measured relative to the
    /// tensor's magnitude (its largest |element|), not per element, because float32 sums taken in a
    /// different order differ by a few ulps of the largest partial sums, whatever an element's own size.
    /// 1e-4 is about a thousand float32 ulps: far above reordering noise, far below any real bug.
    /// </summary>
    public const double Tolerance = 1e-4;

    /// <summary>A shape case: model kind, k, t, non-zeros per row in [MinNnz, MaxNnz], loss.</summary>
    private sealed record Case(string Name, ModelKind Kind, int K, int T, int MinNnz, int MaxNnz, LossKind Loss);

    private static readonly Case[] Cases =
    [
        new("AFM m=10 k=16 t=16", ModelKind.Afm, 16, 16, 10, 10, LossKind.Squared),
        new("AFM ragged 0..12 k=8 t=5", ModelKind.Afm, 8, 5, 0, 12, LossKind.Logistic),
        new("AFM m=39 k=16 t=16", ModelKind.Afm, 16, 16, 39, 39, LossKind.Squared),
        // few pairs on a wide group: each pair's z = W q split over work-items, slices of t not a multiple of 8
        new("AFM ragged 2..5 k=8 t=12", ModelKind.Afm, 8, 12, 2, 5, LossKind.Logistic),
        new("AFM m=3 k=64 t=64", ModelKind.Afm, 64, 64, 3, 3, LossKind.Logistic),
        new("AFM m=3 k=128 t=128", ModelKind.Afm, 128, 128, 3, 3, LossKind.Squared),
        new("FM ragged 0..12 k=16", ModelKind.Fm, 16, 0, 0, 12, LossKind.Squared),
    ];

    private const int Features = 97, Capacity = 64, Rows = 61;

    /// <summary>Runs every kernel of every shape case on both accelerators and compares the outputs.</summary>
    /// <param name="candidate">The accelerator under test.</param>
    /// <param name="reference">The accelerator trusted (normally the CPU one).</param>
    /// <param name="seed">Seed of the random inputs.</param>
    /// <returns>One row per compared tensor, in a fixed order.</returns>
    public static IReadOnlyList<SelfTestRow> Run(Accelerator candidate, Accelerator reference, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        ArgumentNullException.ThrowIfNull(reference);
        var result = new List<SelfTestRow>();
        for (int c = 0; c < Cases.Length; c++)
        {
            var inputs = new Inputs(Cases[c], seed * 7919 + c);
            var want = Execute(reference, inputs);
            var got = Execute(candidate, inputs);
            foreach (var (name, expected) in want)
            {
                var actual = got.Find(o => o.Name == name).Values;
                var (abs, rel) = Compare(actual, expected);
                result.Add(new SelfTestRow(Cases[c].Name, name, abs, rel, rel <= Tolerance));
            }
        }
        return result;
    }

    /// <summary>The rows as an aligned text table.</summary>
    public static string Format(IEnumerable<SelfTestRow> rows)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{"shape",-26} {"kernel / output",-24} {"max abs err",12} {"max rel err",12}  result");
        foreach (var r in rows)
            sb.AppendLine($"{r.Shape,-26} {r.Kernel,-24} {r.MaxAbsError,12:0.00e+00} {r.MaxRelError,12:0.00e+00}  {(r.Pass ? "pass" : "FAIL")}");
        return sb.ToString();
    }

    private static (double Abs, double Rel) Compare(float[]? actual, float[] expected)
    {
        if (actual is null || actual.Length != expected.Length) return (double.PositiveInfinity, double.PositiveInfinity);
        double abs = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double a = actual[i], e = expected[i];
            if (!double.IsFinite(a) || !double.IsFinite(e)) return (double.PositiveInfinity, double.PositiveInfinity);
            abs = Math.Max(abs, Math.Abs(a - e));
            scale = Math.Max(scale, Math.Abs(e));
        }
        return (abs, abs == 0 ? 0 : scale == 0 ? double.PositiveInfinity : abs / scale);
    }

    /// <summary>The random inputs of one case, shared by both accelerators.</summary>
    private sealed class Inputs
    {
        public Inputs(Case c, int seed)
        {
            var rng = new Random(seed);
            Case = c;
            Model = new AfmModel(c.Kind, Features, c.K, Math.Max(c.T, 1), c.Loss);
            Fill(Model.V, 0.5, rng);
            Fill(Model.Linear, 0.1, rng);
            Model.W0[0] = 0.2f;
            if (c.Kind == ModelKind.Afm)
            {
                Fill(Model.AttnW, 1.0 / Math.Sqrt(c.K), rng);
                Fill(Model.AttnB, 0.3, rng);
                Fill(Model.AttnH, 1, rng);
                Fill(Model.Proj, 1, rng);
            }
            var offsets = new long[Rows + 1];
            var ids = new List<int>();
            var vals = new List<float>();
            var labels = new float[Rows];
            for (int r = 0; r < Rows; r++)
            {
                int n = rng.Next(c.MinNnz, c.MaxNnz + 1);
                foreach (int id in Enumerable.Range(0, Features).OrderBy(_ => rng.Next()).Take(n))
                {
                    ids.Add(id);
                    vals.Add(rng.Next(3) == 0 ? 1f : (float)(rng.NextDouble() * 2 - 1));
                }
                offsets[r + 1] = ids.Count;
                labels[r] = c.Loss == LossKind.Squared ? (float)(1 + 4 * rng.NextDouble()) : rng.Next(2);
            }
            Data = new SparseDataset(offsets, ids.ToArray(), vals.ToArray(), labels, Features);
            Shape = ModelShape.Of(Model, c.MaxNnz, Capacity);
            Step = new StepParams(c.Loss, c.Kind == ModelKind.Afm ? 0.8f : 1f, 0.9f, DropoutRng.StepSeed((uint)seed, 7), 1f / Rows);
            EmbeddingGrad = Random((long)Capacity * Shape.MaxNnz * c.K, 0.1, rng);
            Gradient = Random(Capacity, 0.1, rng);
            DenseGrad = Random(Shape.DenseSize, 0.1, rng);
            State1 = Random(Shape.DenseSize + (long)Features * (c.K + 1), 0.05, rng);
            State2 = Random(State1.Length, 0.05, rng);
            for (int i = 0; i < State2.Length; i++) State2[i] = State2[i] * State2[i]; // second moments are >= 0
        }

        public Case Case { get; }
        public AfmModel Model { get; }
        public SparseDataset Data { get; }
        public ModelShape Shape { get; }
        public StepParams Step { get; }
        public float[] EmbeddingGrad { get; }
        public float[] Gradient { get; }
        public float[] DenseGrad { get; }
        /// <summary>Optimizer state: [dense | V | w], first and second moments (Adagrad uses |State1|).</summary>
        public float[] State1 { get; }
        public float[] State2 { get; }

        private static float[] Random(long n, double scale, Random rng)
        {
            var a = new float[n];
            Fill(a, scale, rng);
            return a;
        }

        private static void Fill(float[] a, double scale, Random rng)
        {
            for (int i = 0; i < a.Length; i++) a[i] = (float)(scale * (rng.NextDouble() * 2 - 1) * 1.7320508);
        }
    }

    private static List<(string Name, float[] Values)> Execute(Accelerator acc, Inputs input)
    {
        var sh = input.Shape;
        var outputs = new List<(string, float[])>();
        using var kernels = acc.CreateKernels(sh);
        using var batch = kernels.CreateBatch();
        using var work = kernels.CreateWorkspace();
        var host = new HostBatch(sh.BatchCapacity, sh.MaxNnz, sh.FeatureCount);
        host.Fill(input.Data, Enumerable.Range(0, Rows).ToArray(), forTraining: true);
        batch.Upload(host);

        using (var model = kernels.CreateModel())
        {
            model.Upload(input.Model);
            using var yhat = acc.Allocate<float>(sh.BatchCapacity);
            using var attention = acc.Allocate<float>((long)sh.BatchCapacity * sh.Pairs);
            kernels.Forward(model, batch, yhat, attention);
            outputs.Add(("forward yhat", Head(yhat, Rows)));
            if (sh.Kind == ModelKind.Afm) outputs.Add(("forward attention", Head(attention, (long)Rows * sh.Pairs)));

            kernels.ForwardBackward(model, batch, work, input.Step);
            work.LossSum.Clear();
            kernels.ReduceDense(work);
            outputs.Add(("fwd/bwd yhat", Head(work.Yhat, Rows)));
            outputs.Add(("fwd/bwd g", Head(work.Gradient, Rows)));
            outputs.Add(("fwd/bwd loss", Head(work.Loss, Rows)));
            outputs.Add(("fwd/bwd dE", RealSlots(work.EmbeddingGrad.ToArray(), host, sh.K)));
            outputs.Add(("reduced dense grad", work.DenseGrad.ToArray()));
            outputs.Add(("loss sum", work.LossSum.ToArray()));
        }

        // The update kernels get identical gradients (not each accelerator's own), so they are compared alone.
        work.EmbeddingGrad.CopyFrom(input.EmbeddingGrad);
        work.Gradient.CopyFrom(input.Gradient);
        work.DenseGrad.CopyFrom(input.DenseGrad);
        foreach (var opt in new[] { OptimizerKind.Sgd, OptimizerKind.Adagrad, OptimizerKind.Adam })
        {
            using var model = kernels.CreateModel(opt);
            model.Upload(input.Model);
            SetState(model, input, opt);
            var op = new OptimizerParams(opt, 0.05f, 0.01f, 3, Epsilon: opt == OptimizerKind.Adam ? 1e-8f : 1e-10f, L2Embedding: 0.02f, L2Linear: 0.03f);
            kernels.UpdateSparse(model, batch, work, op);
            kernels.UpdateDense(model, work, op);
            string name = opt.ToString();
            outputs.Add(($"sparse {name} V", model.V.ToArray()));
            outputs.Add(($"sparse {name} w", model.Linear.ToArray()));
            outputs.Add(($"dense {name}", model.Dense.ToArray()));
        }
        if (kernels.SupportsGradientExchange) AddSplitSparse(acc, kernels, batch, work, input, outputs);
        return outputs;
    }

    /// <summary>The sparse update in its two halves (data-parallel training): the gathered gradients, and Adam applied from them.</summary>
    private static void AddSplitSparse(Accelerator acc, AfmKernels kernels, DeviceBatch batch, TrainWorkspace work, Inputs input, List<(string, float[])> outputs)
    {
        using var grads = acc.Allocate<float>((long)Math.Max(1, batch.UniqueCount) * (input.Shape.K + 1));
        kernels.GatherSparse(batch, work, grads);
        outputs.Add(("sparse gather dV, dw", Head(grads, (long)batch.UniqueCount * (input.Shape.K + 1))));
        using var model = kernels.CreateModel(OptimizerKind.Adam);
        model.Upload(input.Model);
        SetState(model, input, OptimizerKind.Adam);
        kernels.ApplySparse(model, batch.UniqueIds, grads, batch.UniqueCount, new OptimizerParams(OptimizerKind.Adam, 0.05f, 0.01f, 3, Epsilon: 1e-8f, L2Embedding: 0.02f, L2Linear: 0.03f));
        outputs.Add(("sparse apply Adam V", model.V.ToArray()));
        outputs.Add(("sparse apply Adam w", model.Linear.ToArray()));
    }

    private static float[] Head(DeviceBuffer<float> b, long n)
    {
        var a = new float[n];
        b.CopyTo(a);
        return a;
    }

    /// <summary>dE of the slots that hold a non-zero (padding slots are not part of the contract).</summary>
    private static float[] RealSlots(float[] de, HostBatch host, int k)
    {
        var list = new List<float>();
        for (int r = 0; r < host.Rows; r++)
            list.AddRange(de.AsSpan(r * host.MaxNnz * k, host.Counts[r] * k).ToArray());
        return list.ToArray();
    }

    private static void SetState(DeviceModel model, Inputs input, OptimizerKind opt)
    {
        if (opt == OptimizerKind.Sgd) return;
        int dense = input.Shape.DenseSize, v = input.Model.V.Length;
        var s1 = input.State1;
        if (opt == OptimizerKind.Adagrad) s1 = Array.ConvertAll(s1, Math.Abs);
        model.DenseState1!.CopyFrom(s1.AsSpan(0, dense));
        model.VState1!.CopyFrom(s1.AsSpan(dense, v));
        model.LinearState1!.CopyFrom(s1.AsSpan(dense + v, Features));
        if (opt != OptimizerKind.Adam) return;
        var s2 = input.State2;
        model.DenseState2!.CopyFrom(s2.AsSpan(0, dense));
        model.VState2!.CopyFrom(s2.AsSpan(dense, v));
        model.LinearState2!.CopyFrom(s2.AsSpan(dense + v, Features));
    }
}
