using Afm.Gpu.Data;
using Afm.Gpu.Model;

namespace Afm.Gpu.Tests.Reference;

/// <summary>Random models and ragged batches for kernel tests.</summary>
public static class Fixtures
{
    public static AfmModel RandomModel(ModelKind kind, int features, int k, int t, LossKind loss, int seed, float vStd = 0.5f)
    {
        var rng = new Random(seed);
        var m = new AfmModel(kind, features, k, t, loss);
        Fill(m.V, vStd, rng);
        Fill(m.Linear, 0.1f, rng);
        m.W0[0] = 0.2f;
        if (kind == ModelKind.Afm)
        {
            Fill(m.AttnW, 0.7f, rng);
            Fill(m.AttnB, 0.3f, rng);
            Fill(m.AttnH, 1f, rng);
            Fill(m.Proj, 1f, rng);
        }
        return m;
    }

    public static void Fill(float[] a, float std, Random rng)
    {
        for (int i = 0; i < a.Length; i++) a[i] = (float)(std * (rng.NextDouble() * 2 - 1) * 1.7320508);
    }

    /// <summary>Rows with the given non-zero counts, distinct ids within a row, values in [-2, 2] (some exactly 1).</summary>
    public static SparseDataset RaggedData(int features, int[] lengths, LossKind loss, int seed)
    {
        var rng = new Random(seed);
        var off = new long[lengths.Length + 1];
        var ids = new List<int>();
        var vals = new List<float>();
        var labels = new float[lengths.Length];
        for (int r = 0; r < lengths.Length; r++)
        {
            var chosen = Enumerable.Range(0, features).OrderBy(_ => rng.Next()).Take(lengths[r]).ToArray();
            foreach (int id in chosen)
            {
                ids.Add(id);
                vals.Add(rng.Next(3) == 0 ? 1f : (float)Math.Round(rng.NextDouble() * 4 - 2, 3));
            }
            off[r + 1] = ids.Count;
            labels[r] = loss == LossKind.Squared ? (float)Math.Round(rng.NextDouble() * 4 + 1, 2) : rng.Next(2);
        }
        return new SparseDataset(off, ids.ToArray(), vals.ToArray(), labels, features);
    }

    /// <summary>
    /// Rows of <paramref name="nonZeros"/> binary features each, labelled by a planted FM (k = 4) scaled to unit variance:
    /// data on which an FM's pair sum grows with the square of the row length, so that Adagrad at 0.05 overshoots.
    /// </summary>
    public static SparseDataset ManyNonZeros(int rows, int features, int nonZeros, int seed)
    {
        var rng = new Random(seed);
        double Normal() => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        var w = Enumerable.Range(0, features).Select(_ => Normal()).ToArray();
        var v = Enumerable.Range(0, features * 4).Select(_ => Normal()).ToArray();
        var off = new long[rows + 1];
        var ids = new int[rows * nonZeros];
        var raw = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            var chosen = Enumerable.Range(0, features).OrderBy(_ => rng.Next()).Take(nonZeros).ToArray();
            chosen.CopyTo(ids, r * nonZeros);
            off[r + 1] = (r + 1) * nonZeros;
            double linear = chosen.Sum(i => w[i]), pairs = 0;
            for (int d = 0; d < 4; d++)
            {
                double sum = chosen.Sum(i => v[i * 4 + d]), squares = chosen.Sum(i => v[i * 4 + d] * v[i * 4 + d]);
                pairs += 0.5 * (sum * sum - squares);
            }
            raw[r] = linear / Math.Sqrt(nonZeros) + pairs / Math.Sqrt(nonZeros * (nonZeros - 1) / 2.0 * 4);
        }
        double mean = raw.Average(), std = Math.Sqrt(raw.Average(x => (x - mean) * (x - mean)));
        var labels = raw.Select(x => (float)((x - mean) / std + 0.3 * Normal())).ToArray();
        return new SparseDataset(off, ids, Enumerable.Repeat(1f, ids.Length).ToArray(), labels, features);
    }

    public static List<RefRow> Rows(SparseDataset d) =>
        Enumerable.Range(0, d.Rows).Select(r => new RefRow(d.RowIds(r).ToArray(), Array.ConvertAll(d.RowValues(r).ToArray(), v => (double)v), d.Labels[r])).ToList();

    /// <summary>Element-wise |a - b| &lt;= atol + rtol |b|; reports the first offenders.</summary>
    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double rtol, double atol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var bad = new List<string>();
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            if (!(err <= atol + rtol * Math.Abs(expected[i])) && bad.Count < 5)
                bad.Add($"[{i}] got {actual[i]:G9} expected {expected[i]:G9} (|err| {err:G3})");
        }
        Assert.True(bad.Count == 0, $"{what}: {string.Join("; ", bad)}");
    }

    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double rtol, double atol, string what) =>
        AssertClose(actual, Array.ConvertAll(expected.ToArray(), x => (double)x), rtol, atol, what);
}
