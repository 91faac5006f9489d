using System.Runtime.InteropServices;
using Afm.Gpu.Distributed;
using Xunit;

namespace Afm.Gpu.Tests;

/// <summary>
/// The merge of the ranks' gradient lists (no MPI needed): on any number of threads it equals a plain merge in rank
/// order bit for bit, ids in order of first appearance.
/// </summary>
public class SparseMergeTests
{
    private const int Features = 3000, Row = 33; // an odd row: the vector loops' tails too

    /// <summary>Rank r's list: distinct ids drawn from a skewed distribution (so ranks share many), gradients of mixed magnitude.</summary>
    private static (int[] Ids, float[] Grads) List(Random rng, int n)
    {
        var ids = new HashSet<int>();
        while (ids.Count < n) ids.Add((int)(Features * Math.Pow(rng.NextDouble(), 2)));
        var grads = new float[n * Row];
        for (int i = 0; i < grads.Length; i++) grads[i] = (float)((rng.NextDouble() - 0.5) * Math.Pow(10, rng.Next(-6, 3)));
        return ([.. ids], grads);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(8)]
    public void AnyNumberOfThreadsMergesAsOnePlainPassInRankOrder(int threads)
    {
        var rng = new Random(7);
        var lists = new[] { 2000, 0, 1500, 2400, 900 }.Select(n => List(rng, n)).ToArray();
        int rowBytes = sizeof(int) + Row * sizeof(float);
        int[] counts = [.. lists.Select(l => l.Ids.Length * rowBytes)], offsets = new int[lists.Length];
        for (int r = 1; r < lists.Length; r++) offsets[r] = offsets[r - 1] + counts[r - 1];
        var all = new byte[counts.Sum()];
        for (int r = 0; r < lists.Length; r++)
        {
            MemoryMarshal.AsBytes(lists[r].Ids.AsSpan()).CopyTo(all.AsSpan(offsets[r]));
            MemoryMarshal.AsBytes(lists[r].Grads.AsSpan()).CopyTo(all.AsSpan(offsets[r] + lists[r].Ids.Length * sizeof(int)));
        }
        Assert.True((long)lists.Sum(l => l.Ids.Length) * Row >= SparseMerge.ParallelFloats, "the lists must be large enough for the threads");

        // The plain merge: rank by rank, each list in order; an id's first gradient copied, later ones added.
        var order = new List<int>();
        var sums = new Dictionary<int, float[]>();
        foreach (var (ids, grads) in lists)
            for (int j = 0; j < ids.Length; j++)
            {
                if (!sums.TryGetValue(ids[j], out var sum))
                {
                    sums[ids[j]] = grads.AsSpan(j * Row, Row).ToArray();
                    order.Add(ids[j]);
                }
                else for (int d = 0; d < Row; d++) sum[d] += grads[j * Row + d];
            }

        var place = new int[Features];
        int[] slots = [], mergedIds = new int[all.Length / rowBytes];
        var mergedGrads = new float[mergedIds.Length * Row];
        for (int round = 0; round < 2; round++) // again with the work arrays as the first round left them
        {
            Array.Fill(mergedGrads, float.NaN);
            int merged = SparseMerge.Run(all, counts, offsets, Row, place, ref slots, mergedIds, mergedGrads, threads);
            Assert.Equal(order.Count, merged);
            Assert.Equal(order, mergedIds.Take(merged));
            for (int p = 0; p < merged; p++)
            {
                var expected = sums[order[p]];
                for (int d = 0; d < Row; d++)
                    Assert.True(BitConverter.SingleToInt32Bits(expected[d]) == BitConverter.SingleToInt32Bits(mergedGrads[p * Row + d]),
                        $"id {order[p]} element {d}: {mergedGrads[p * Row + d]:R}, plain merge {expected[d]:R}");
            }
            Assert.All(place, v => Assert.Equal(0, v));
        }
    }
}
