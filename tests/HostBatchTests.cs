using Afm.Gpu.Data;
using Afm.Gpu.Kernels;

namespace Afm.Gpu.Tests;

/// <summary>
/// The host side of a batch: padded rows, and for training the distinct ids with the slots that hold each,
/// checked against a plain dictionary grouping, over several fills of one batch object.
/// </summary>
public sealed class HostBatchTests
{
    private static SparseDataset Data(int rows, int features, int seed)
    {
        var rng = new Random(seed);
        var offsets = new long[rows + 1];
        var ids = new List<int>();
        for (int r = 0; r < rows; r++)
        {
            int n = rng.Next(0, 6); // ragged, empty rows included
            for (int s = 0; s < n; s++) ids.Add(rng.Next(features));
            offsets[r + 1] = ids.Count;
        }
        var values = ids.Select(_ => (float)rng.NextDouble()).ToArray();
        return new SparseDataset(offsets, [.. ids], values, new float[rows], features);
    }

    private static void AssertMatchesGrouping(HostBatch batch)
    {
        // the expected lists: distinct ids in order of first appearance, each with its slots in slot order
        var expected = new List<(int Id, List<int> Slots)>();
        var index = new Dictionary<int, int>();
        for (int b = 0; b < batch.Rows; b++)
        {
            for (int s = 0; s < batch.Counts[b]; s++)
            {
                int slot = b * batch.MaxNnz + s, id = batch.Ids[slot];
                if (!index.TryGetValue(id, out int i)) index[id] = i = expected.Count;
                if (i == expected.Count) expected.Add((id, []));
                expected[i].Slots.Add(slot);
            }
        }
        Assert.Equal(expected.Count, batch.UniqueCount);
        Assert.Equal(0, batch.UniqueOffsets[0]);
        for (int u = 0; u < expected.Count; u++)
        {
            Assert.Equal(expected[u].Id, batch.UniqueIds[u]);
            var slots = batch.Occurrences[batch.UniqueOffsets[u]..batch.UniqueOffsets[u + 1]];
            Assert.Equal(expected[u].Slots, slots);
        }
    }

    [Fact]
    public void DistinctIdsAndTheirSlotsMatchAGroupingOverRepeatedFills()
    {
        var data = Data(rows: 300, features: 40, seed: 11);
        var batch = new HostBatch(capacity: 64, maxNnz: 5, featureCount: 40);
        var rng = new Random(3);
        for (int fill = 0; fill < 20; fill++)
        {
            var rows = Enumerable.Range(0, data.Rows).OrderBy(_ => rng.Next()).Take(rng.Next(1, 65)).ToArray();
            batch.Fill(data, rows, forTraining: true);
            Assert.Equal(rows.Length, batch.Rows);
            for (int b = 0; b < rows.Length; b++)
            {
                Assert.Equal(data.RowIds(rows[b]).ToArray(), batch.Ids.AsSpan(b * 5, batch.Counts[b]).ToArray());
                Assert.All(batch.Ids.AsSpan(b * 5 + batch.Counts[b], 5 - batch.Counts[b]).ToArray(), id => Assert.Equal(0, id));
            }
            AssertMatchesGrouping(batch);
        }
        batch.Fill(data, [0, 1, 2], forTraining: false);
        Assert.Equal(0, batch.UniqueCount);
    }

    [Fact]
    public void AnIdPastTheFeatureCountLeavesTheBatchUsable()
    {
        var data = new SparseDataset([0, 2, 4], [1, 2, 2, 9], [1f, 1f, 1f, 1f], [0f, 0f], featureCount: 10);
        var batch = new HostBatch(capacity: 2, maxNnz: 2, featureCount: 5); // the model knows 5 features only
        Assert.Throws<IndexOutOfRangeException>(() => batch.Fill(data, [0, 1], forTraining: true));
        batch.Fill(data, [0], forTraining: true);
        AssertMatchesGrouping(batch);
        Assert.Equal([1, 2], batch.UniqueIds[..batch.UniqueCount]);
    }
}
