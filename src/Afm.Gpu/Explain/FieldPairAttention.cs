using Afm.Gpu.Data;
using Afm.Gpu.Kernels;

namespace Afm.Gpu.Explain;

/// <summary>Mean attention a field pair receives over a dataset.</summary>
/// <param name="FieldA">Lower field index.</param>
/// <param name="FieldB">Higher field index.</param>
/// <param name="MeanAttention">Mean attention weight over the rows where the pair occurs.</param>
/// <param name="Occurrences">How many (row, pair) instances were averaged.</param>
public sealed record FieldPairScore(int FieldA, int FieldB, double MeanAttention, long Occurrences);

/// <summary>Global attention ranking by field pair.</summary>
public static class FieldPairAttention
{
    /// <summary>
    /// Ranks field pairs by mean attention, given per-row attention weights (pair order of
    /// <see cref="ModelShape.PairIndex"/>) and the field of every feature id. Most attended first.
    /// </summary>
    public static IReadOnlyList<FieldPairScore> Rank(SparseDataset data, float[][] attention, IReadOnlyList<int> fieldOf)
    {
        var sums = new Dictionary<(int, int), (double Sum, long Count)>();
        for (int r = 0; r < data.Rows; r++)
        {
            var ids = data.RowIds(r);
            var a = attention[r];
            int p = 0;
            for (int j = 1; j < ids.Length; j++)
            {
                for (int i = 0; i < j; i++, p++)
                {
                    int fi = fieldOf[ids[i]], fj = fieldOf[ids[j]];
                    var key = fi <= fj ? (fi, fj) : (fj, fi);
                    sums.TryGetValue(key, out var acc);
                    sums[key] = (acc.Sum + a[p], acc.Count + 1);
                }
            }
        }
        return sums.Select(kv => new FieldPairScore(kv.Key.Item1, kv.Key.Item2, kv.Value.Sum / kv.Value.Count, kv.Value.Count))
            .OrderByDescending(s => s.MeanAttention).ThenBy(s => s.FieldA).ThenBy(s => s.FieldB).ToList();
    }
}
