using Afm.Gpu.Model;

namespace Afm.Gpu.Tests.Reference;

/// <summary>A test row: ids, values, label.</summary>
public sealed record RefRow(int[] Ids, double[] Values, double Label);

/// <summary>Double-precision parameters, laid out as <see cref="AfmModel"/>.</summary>
public sealed class RefParams
{
    public double W0;
    public double[] W = [], V = [], AttnW = [], B = [], H = [], P = [];

    public static RefParams From(AfmModel m) => new()
    {
        W0 = m.W0[0],
        W = Array.ConvertAll(m.Linear, x => (double)x),
        V = Array.ConvertAll(m.V, x => (double)x),
        AttnW = Array.ConvertAll(m.AttnW, x => (double)x),
        B = Array.ConvertAll(m.AttnB, x => (double)x),
        H = Array.ConvertAll(m.AttnH, x => (double)x),
        P = Array.ConvertAll(m.Proj, x => (double)x),
    };

    public RefParams Clone() => new()
    {
        W0 = W0, W = (double[])W.Clone(), V = (double[])V.Clone(), AttnW = (double[])AttnW.Clone(),
        B = (double[])B.Clone(), H = (double[])H.Clone(), P = (double[])P.Clone(),
    };

    /// <summary>The parameter arrays by name (w0 wrapped in a one-element view via callbacks).</summary>
    public IEnumerable<(string Name, double[] Data)> Arrays()
    {
        yield return ("w", W);
        yield return ("V", V);
        yield return ("W", AttnW);
        yield return ("b", B);
        yield return ("h", H);
        yield return ("p", P);
    }
}

/// <summary>
/// The AFM / FM model written straight from its formulas in double precision, one sample at a time,
/// materialising every intermediate (q, z, s, a, u). No dropout. This is the independent reference
/// for the gradient checks; it shares no code with the library's kernels.
/// </summary>
public static class AfmReference
{
    public sealed class Sample
    {
        public double Yhat;
        public double[] A = [];
    }

    public static Sample Forward(ModelKind kind, RefParams prm, int k, int t, RefRow row)
    {
        int n = row.Ids.Length;
        var e = new double[n][];
        double lin = 0;
        for (int s = 0; s < n; s++)
        {
            e[s] = new double[k];
            for (int d = 0; d < k; d++) e[s][d] = prm.V[row.Ids[s] * k + d] * row.Values[s];
            lin += prm.W[row.Ids[s]] * row.Values[s];
        }
        var pairs = Pairs(n);
        var u = new double[k];
        var a = new double[pairs.Count];
        if (kind == ModelKind.Fm)
        {
            foreach (var (i, j) in pairs)
                for (int d = 0; d < k; d++) u[d] += e[i][d] * e[j][d];
            Array.Fill(a, 1.0);
            double fm = 0;
            for (int d = 0; d < k; d++) fm += u[d];
            return new Sample { Yhat = prm.W0 + lin + fm, A = a };
        }
        var score = new double[pairs.Count];
        for (int p = 0; p < pairs.Count; p++)
        {
            var (i, j) = pairs[p];
            var q = Q(e, i, j, k);
            for (int r = 0; r < t; r++)
            {
                double z = prm.B[r];
                for (int d = 0; d < k; d++) z += prm.AttnW[r * k + d] * q[d];
                score[p] += prm.H[r] * Math.Max(z, 0);
            }
        }
        if (pairs.Count > 0)
        {
            double max = score.Max(), sum = 0;
            for (int p = 0; p < a.Length; p++) { a[p] = Math.Exp(score[p] - max); sum += a[p]; }
            for (int p = 0; p < a.Length; p++) a[p] /= sum;
        }
        for (int p = 0; p < pairs.Count; p++)
        {
            var q = Q(e, pairs[p].I, pairs[p].J, k);
            for (int d = 0; d < k; d++) u[d] += a[p] * q[d];
        }
        double y = prm.W0 + lin;
        for (int d = 0; d < k; d++) y += prm.P[d] * u[d];
        return new Sample { Yhat = y, A = a };
    }

    /// <summary>Batch loss: mean of per-row losses plus λ ‖W‖².</summary>
    public static double Loss(ModelKind kind, LossKind loss, RefParams prm, int k, int t, IReadOnlyList<RefRow> rows, double lambda)
    {
        double total = 0;
        foreach (var row in rows) total += RowLoss(loss, Forward(kind, prm, k, t, row).Yhat, row.Label, out _);
        double l2 = 0;
        foreach (double w in prm.AttnW) l2 += w * w;
        return total / rows.Count + lambda * l2;
    }

    public static double RowLoss(LossKind loss, double yhat, double label, out double g)
    {
        if (loss == LossKind.Squared)
        {
            g = 2 * (yhat - label);
            return (yhat - label) * (yhat - label);
        }
        double y = label > 0 ? 1 : 0;
        double sig = 1 / (1 + Math.Exp(-yhat));
        g = sig - y;
        return -(y * Math.Log(sig) + (1 - y) * Math.Log(1 - sig));
    }

    /// <summary>Analytic gradients of <see cref="Loss"/> by the chain rule, term by term (dw0 = g, dp = g u, softmax backward, ...).</summary>
    public static RefParams Gradient(ModelKind kind, LossKind loss, RefParams prm, int k, int t, IReadOnlyList<RefRow> rows, double lambda, out double dW0)
    {
        var gr = new RefParams
        {
            W = new double[prm.W.Length], V = new double[prm.V.Length], AttnW = new double[prm.AttnW.Length],
            B = new double[prm.B.Length], H = new double[prm.H.Length], P = new double[prm.P.Length],
        };
        dW0 = 0;
        foreach (var row in rows)
        {
            int n = row.Ids.Length;
            var fwd = Forward(kind, prm, k, t, row);
            RowLoss(loss, fwd.Yhat, row.Label, out double g);
            g /= rows.Count;
            dW0 += g;
            var e = new double[n][];
            for (int s = 0; s < n; s++)
            {
                e[s] = new double[k];
                for (int d = 0; d < k; d++) e[s][d] = prm.V[row.Ids[s] * k + d] * row.Values[s];
                gr.W[row.Ids[s]] += g * row.Values[s];
            }
            var pairs = Pairs(n);
            var de = new double[n][];
            for (int s = 0; s < n; s++) de[s] = new double[k];
            var du = new double[k];
            for (int d = 0; d < k; d++) du[d] = g * (kind == ModelKind.Fm ? 1 : prm.P[d]);
            var a = fwd.A;
            var u = new double[k];
            for (int p = 0; p < pairs.Count; p++)
            {
                var q = Q(e, pairs[p].I, pairs[p].J, k);
                for (int d = 0; d < k; d++) u[d] += a[p] * q[d];
            }
            if (kind == ModelKind.Afm)
                for (int d = 0; d < k; d++) gr.P[d] += g * u[d];
            var da = new double[pairs.Count];
            var dq = new double[pairs.Count][];
            for (int p = 0; p < pairs.Count; p++)
            {
                var q = Q(e, pairs[p].I, pairs[p].J, k);
                dq[p] = new double[k];
                for (int d = 0; d < k; d++) { da[p] += du[d] * q[d]; dq[p][d] = a[p] * du[d]; }
            }
            if (kind == ModelKind.Afm)
            {
                double sum = 0;
                for (int p = 0; p < pairs.Count; p++) sum += a[p] * da[p];
                for (int p = 0; p < pairs.Count; p++)
                {
                    double ds = a[p] * (da[p] - sum);
                    var q = Q(e, pairs[p].I, pairs[p].J, k);
                    for (int r = 0; r < t; r++)
                    {
                        double z = prm.B[r];
                        for (int d = 0; d < k; d++) z += prm.AttnW[r * k + d] * q[d];
                        gr.H[r] += ds * Math.Max(z, 0);
                        double dz = z > 0 ? ds * prm.H[r] : 0;
                        gr.B[r] += dz;
                        for (int d = 0; d < k; d++)
                        {
                            gr.AttnW[r * k + d] += dz * q[d];
                            dq[p][d] += prm.AttnW[r * k + d] * dz;
                        }
                    }
                }
            }
            for (int p = 0; p < pairs.Count; p++)
            {
                var (i, j) = pairs[p];
                for (int d = 0; d < k; d++) { de[i][d] += dq[p][d] * e[j][d]; de[j][d] += dq[p][d] * e[i][d]; }
            }
            for (int s = 0; s < n; s++)
                for (int d = 0; d < k; d++) gr.V[row.Ids[s] * k + d] += de[s][d] * row.Values[s];
        }
        for (int i = 0; i < prm.AttnW.Length; i++) gr.AttnW[i] += 2 * lambda * prm.AttnW[i];
        return gr;
    }

    /// <summary>Pairs (i, j), i &lt; j, in the engine's order: for j, for i &lt; j.</summary>
    public static List<(int I, int J)> Pairs(int n)
    {
        var list = new List<(int, int)>();
        for (int j = 1; j < n; j++)
            for (int i = 0; i < j; i++) list.Add((i, j));
        return list;
    }

    private static double[] Q(double[][] e, int i, int j, int k)
    {
        var q = new double[k];
        for (int d = 0; d < k; d++) q[d] = e[i][d] * e[j][d];
        return q;
    }
}
