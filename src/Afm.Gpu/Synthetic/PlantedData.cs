using Afm.Gpu.Data;

namespace Afm.Gpu.Synthetic;

/// <summary>
/// A synthetic CTR-style dataset drawn from a planted model: <see cref="Fields"/> categorical fields
/// of <see cref="ValuesPerField"/> values each (one-hot, so every row has one non-zero per field),
/// small linear effects, and strong pairwise interactions on a few planted field pairs only:
/// y = bias + Σ w_f[x_f] + Σ_{(f,g) planted} s · ⟨a_f[x_f], a_g[x_g]⟩ + noise.
/// An AFM should learn to attend to the planted pairs; an FM must spread its capacity over all pairs.
/// </summary>
public sealed class PlantedData
{
    /// <summary>Number of fields.</summary>
    public int Fields { get; }
    /// <summary>Values per field.</summary>
    public int ValuesPerField { get; }
    /// <summary>The planted field pairs (f &lt; g).</summary>
    public IReadOnlyList<(int F, int G)> PlantedPairs { get; }
    /// <summary>Field of every feature id.</summary>
    public int[] FieldOf { get; }
    /// <summary>Training rows.</summary>
    public SparseDataset Train { get; }
    /// <summary>Held-out test rows from the same model.</summary>
    public SparseDataset Test { get; }

    private PlantedData(int fields, int values, IReadOnlyList<(int, int)> planted, SparseDataset train, SparseDataset test)
    {
        Fields = fields;
        ValuesPerField = values;
        PlantedPairs = planted;
        FieldOf = Enumerable.Range(0, fields * values).Select(i => i / values).ToArray();
        Train = train;
        Test = test;
    }

    /// <summary>Feature id of value <paramref name="v"/> of field <paramref name="f"/>.</summary>
    public int FeatureId(int f, int v) => f * ValuesPerField + v;

    /// <summary>
    /// Generates the default demo data: 8 fields of 20 values, rank-8 interactions planted on the
    /// field pairs (0,1), (2,5), (3,7), (4,6). Representing them all at once takes 32 dimensions,
    /// more than a k = 16 FM has, while an AFM can attend to the planted pairs and reuse dimensions.
    /// </summary>
    public static PlantedData Generate(int trainRows = 40_000, int testRows = 10_000, int seed = 2017,
        int fields = 8, int valuesPerField = 20, IReadOnlyList<(int, int)>? planted = null, int rank = 8, float strength = 1.5f, float noise = 0.1f)
    {
        planted ??= [(0, 1), (2, 5), (3, 7), (4, 6)];
        foreach (var (f, g) in planted)
            if (f < 0 || g <= f || g >= fields) throw new ArgumentException($"planted pair ({f},{g}) is not a pair of distinct fields below {fields}");
        var rng = new Random(seed);
        double Normal()
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
        var linear = new double[fields, valuesPerField];
        var factors = new double[planted.Count, 2, valuesPerField, rank];
        for (int f = 0; f < fields; f++)
            for (int v = 0; v < valuesPerField; v++) linear[f, v] = 0.2 * Normal();
        for (int p = 0; p < planted.Count; p++)
            for (int side = 0; side < 2; side++)
                for (int v = 0; v < valuesPerField; v++)
                    for (int r = 0; r < rank; r++) factors[p, side, v, r] = Normal() / Math.Sqrt(rank);

        SparseDataset Draw(int rows, string name)
        {
            var off = new long[rows + 1];
            var ids = new int[rows * fields];
            var vals = new float[rows * fields];
            var labels = new float[rows];
            var x = new int[fields];
            for (int i = 0; i < rows; i++)
            {
                double y = 0;
                for (int f = 0; f < fields; f++)
                {
                    x[f] = rng.Next(valuesPerField);
                    ids[i * fields + f] = f * valuesPerField + x[f];
                    vals[i * fields + f] = 1f;
                    y += linear[f, x[f]];
                }
                for (int p = 0; p < planted.Count; p++)
                {
                    double dot = 0;
                    for (int r = 0; r < rank; r++) dot += factors[p, 0, x[planted[p].Item1], r] * factors[p, 1, x[planted[p].Item2], r];
                    y += strength * dot;
                }
                labels[i] = (float)(y + noise * Normal());
                off[i + 1] = (i + 1) * fields;
            }
            return new SparseDataset(off, ids, vals, labels, fields * valuesPerField, name);
        }
        var train = Draw(trainRows, "synthetic (train)");
        var test = Draw(testRows, "synthetic (test)");
        return new PlantedData(fields, valuesPerField, planted, train, test);
    }
}
