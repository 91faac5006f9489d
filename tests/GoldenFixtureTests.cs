using System.Text.Json;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Tests.Reference;

namespace Afm.Gpu.Tests;

/// <summary>
/// Forward values, attention, loss and every gradient against tests/fixtures/golden_afm.json, written
/// in float64 by PyTorch autograd (bench/reference/make_golden.py): an implementation independent of
/// this project. The float64 reference must agree to 1e-9; the float32 kernels to the kernel
/// tolerances (2e-4 relative, 2e-5 absolute scaled by the tensor's magnitude).
/// </summary>
public class GoldenFixtureTests
{
    private static JsonElement[] Cases()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", "golden_afm.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => c.Clone()).ToArray();
    }

    public static TheoryData<int> CaseIndices() { var d = new TheoryData<int>(); for (int i = 0; i < 4; i++) d.Add(i); return d; }

    private static double[] D(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();
    private static float[] F(JsonElement e) => e.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();

    private sealed record Case(ModelKind Kind, LossKind Loss, double Lambda, AfmModel Model, SparseDataset Data, JsonElement Json);

    private static Case Load(int index)
    {
        var c = Cases()[index];
        var kind = c.GetProperty("model").GetString() == "afm" ? ModelKind.Afm : ModelKind.Fm;
        var loss = c.GetProperty("loss").GetString() == "squared" ? LossKind.Squared : LossKind.Logistic;
        int n = c.GetProperty("featureCount").GetInt32(), k = c.GetProperty("k").GetInt32(), t = c.GetProperty("t").GetInt32();
        var m = new AfmModel(kind, n, k, t, loss);
        var p = c.GetProperty("params");
        F(p.GetProperty("w0")).CopyTo(m.W0, 0);
        F(p.GetProperty("w")).CopyTo(m.Linear, 0);
        F(p.GetProperty("V")).CopyTo(m.V, 0);
        if (kind == ModelKind.Afm)
        {
            F(p.GetProperty("W")).CopyTo(m.AttnW, 0);
            F(p.GetProperty("b")).CopyTo(m.AttnB, 0);
            F(p.GetProperty("h")).CopyTo(m.AttnH, 0);
            F(p.GetProperty("p")).CopyTo(m.Proj, 0);
        }
        var b = new Afm.Gpu.SparseDatasetBuilder();
        foreach (var row in c.GetProperty("rows").EnumerateArray())
            b.Add(row.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(), F(row.GetProperty("values")), (float)row.GetProperty("label").GetDouble());
        return new Case(kind, loss, c.GetProperty("lambda").GetDouble(), m, b.Build(n), c);
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Float64ReferenceAgreesWithPyTorch(int index)
    {
        var c = Load(index);
        // The fixture's parameters were rounded to float32 when loaded; rebuild them exactly in double.
        var prm = RefParams.From(c.Model);
        var p = c.Json.GetProperty("params");
        prm.W0 = D(p.GetProperty("w0"))[0]; prm.W = D(p.GetProperty("w")); prm.V = D(p.GetProperty("V"));
        if (c.Kind == ModelKind.Afm) { prm.AttnW = D(p.GetProperty("W")); prm.B = D(p.GetProperty("b")); prm.H = D(p.GetProperty("h")); prm.P = D(p.GetProperty("p")); }
        var rows = c.Json.GetProperty("rows").EnumerateArray().Select(r => new RefRow(
            r.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(), D(r.GetProperty("values")), r.GetProperty("label").GetDouble())).ToList();
        int k = c.Model.K, t = c.Model.T;
        var yhat = D(c.Json.GetProperty("yhat"));
        for (int r = 0; r < rows.Count; r++)
        {
            var f = AfmReference.Forward(c.Kind, prm, k, t, rows[r]);
            Assert.Equal(yhat[r], f.Yhat, 9);
            if (c.Kind == ModelKind.Afm)
                Fixtures.AssertClose(Array.ConvertAll(f.A, x => (float)x), D(c.Json.GetProperty("attention")[r]), 1e-6, 1e-7, $"attention row {r}");
        }
        Assert.Equal(c.Json.GetProperty("lossValue").GetDouble(), AfmReference.Loss(c.Kind, c.Loss, prm, k, t, rows, c.Lambda), 9);
        var g = AfmReference.Gradient(c.Kind, c.Loss, prm, k, t, rows, c.Lambda, out double dw0);
        var gj = c.Json.GetProperty("grads");
        Assert.Equal(D(gj.GetProperty("w0"))[0], dw0, 9);
        foreach (var (name, data) in g.Arrays())
        {
            if (c.Kind == ModelKind.Fm && name is "W" or "b" or "h" or "p") continue;
            var expected = D(gj.GetProperty(name));
            for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - data[i]) <= 1e-9, $"{name}[{i}]: {data[i]} vs PyTorch {expected[i]}");
        }
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void CpuKernelsMatchPyTorch(int index)
    {
        foreach (var variant in new[] { CpuKernelVariant.Fast, CpuKernelVariant.Readable })
        {
            using var acc = new CpuAccelerator(variant: variant);
            Check(acc, Load(index));
        }
    }

    /// <summary>Shared with the other accelerators' suites.</summary>
    internal static void Check(Accelerator acc, int index) => Check(acc, Load(index));

    private static void Check(Accelerator acc, Case c)
    {
        const double Rel = 2e-4, Abs = 2e-5;
        var m = c.Model;
        var shape = ModelShape.Of(m, c.Data.MaxNnz, c.Data.Rows);
        using var kernels = acc.CreateKernels(shape);
        using var dev = kernels.CreateModel(OptimizerKind.Sgd);
        using var batch = kernels.CreateBatch();
        using var work = kernels.CreateWorkspace();
        dev.Upload(m);
        var host = new HostBatch(shape.BatchCapacity, shape.MaxNnz, m.FeatureCount);
        host.Fill(c.Data, Enumerable.Range(0, c.Data.Rows).ToArray(), forTraining: true);
        batch.Upload(host);
        using var att = acc.Allocate<float>((long)c.Data.Rows * shape.Pairs);
        kernels.Forward(dev, batch, work.Yhat, att);
        Fixtures.AssertClose(work.Yhat.ToArray(), D(c.Json.GetProperty("yhat")), Rel, Abs, "yhat");
        if (c.Kind == ModelKind.Afm)
        {
            var a = att.ToArray();
            for (int r = 0; r < c.Data.Rows; r++)
            {
                var expected = D(c.Json.GetProperty("attention")[r]);
                Fixtures.AssertClose(a.AsSpan(r * shape.Pairs, expected.Length), expected, Rel, Abs, $"attention row {r}");
            }
        }
        kernels.ForwardBackward(dev, batch, work, new StepParams(c.Loss, 1, 1, 0, 1f / c.Data.Rows));
        kernels.ReduceDense(work);
        var dense = work.DenseGrad.ToArray();
        var gj = c.Json.GetProperty("grads");
        double Scale(double[] x) => Math.Max(1, x.Max(Math.Abs));
        var w = m.AttnW;
        double dataLoss = c.Json.GetProperty("lossValue").GetDouble() - c.Lambda * w.Sum(x => (double)x * x);
        Assert.True(Math.Abs(work.Loss.ToArray().Take(c.Data.Rows).Average() - dataLoss) <= 1e-5 * Math.Max(1, Math.Abs(dataLoss)), "loss");
        Fixtures.AssertClose(dense.AsSpan(shape.OffsetW0, 1), D(gj.GetProperty("w0")), Rel, Abs, "dw0");
        if (c.Kind == ModelKind.Afm)
        {
            // The kernels' reduced gradient excludes the penalty; PyTorch's includes 2 λ W.
            var dW = dense.AsSpan(0, w.Length).ToArray();
            for (int i = 0; i < dW.Length; i++) dW[i] += (float)(2 * c.Lambda * w[i]);
            var eW = D(gj.GetProperty("W"));
            Fixtures.AssertClose(dW, eW, Rel, Abs * Scale(eW), "dW");
            foreach (var (name, off, len) in new[] { ("b", shape.OffsetB, m.T), ("h", shape.OffsetH, m.T), ("p", shape.OffsetP, m.K) })
            {
                var e = D(gj.GetProperty(name));
                Fixtures.AssertClose(dense.AsSpan(off, len), e, Rel, Abs * Scale(e), "d" + name);
            }
        }
        kernels.UpdateSparse(dev, batch, work, new OptimizerParams(OptimizerKind.Sgd, 1f, 0, 1));
        var after = new AfmModel(m.Kind, m.FeatureCount, m.K, Math.Max(m.T, 1), m.Loss);
        dev.Download(after);
        var dV = m.V.Zip(after.V, (x, y) => x - y).ToArray();
        var dw = m.Linear.Zip(after.Linear, (x, y) => x - y).ToArray();
        var eV = D(gj.GetProperty("V"));
        var ew = D(gj.GetProperty("w"));
        Fixtures.AssertClose(dV, eV, Rel, 1e-6 + Abs * Scale(eV), "dV");
        Fixtures.AssertClose(dw, ew, Rel, 1e-6 + Abs * Scale(ew), "dw");
    }
}
