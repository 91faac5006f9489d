using Afm.Gpu.Data;

namespace Afm.Gpu.Kernels;

/// <summary>
/// A mini-batch assembled on the host: rows padded to <see cref="MaxNnz"/> slots and, for training,
/// the distinct ids with their slots (a counting sort in O(non-zeros): no sorting, no allocation).
/// </summary>
public sealed class HostBatch
{
    // id -> 1 + its index among the batch's distinct ids; 0 for ids not in the batch (all 0 between fills)
    private readonly int[] _local;
    // per slot: the index of its id among the distinct ids; per distinct id: the next free place in Occurrences
    private readonly int[] _slotLocal;
    private readonly int[] _cursor;

    /// <summary>Creates an empty batch for up to <paramref name="capacity"/> rows.</summary>
    public HostBatch(int capacity, int maxNnz, int featureCount)
    {
        Capacity = capacity;
        MaxNnz = maxNnz;
        int slots = capacity * maxNnz;
        Ids = new int[slots];
        Values = new float[slots];
        Counts = new int[capacity];
        Labels = new float[capacity];
        UniqueIds = new int[slots];
        UniqueOffsets = new int[slots + 1];
        Occurrences = new int[slots];
        _local = new int[featureCount];
        _slotLocal = new int[slots];
        _cursor = new int[slots];
    }

    /// <summary>Most rows.</summary>
    public int Capacity { get; }
    /// <summary>Slots per row.</summary>
    public int MaxNnz { get; }
    /// <summary>Rows filled.</summary>
    public int Rows { get; private set; }
    /// <summary>Feature id per slot.</summary>
    public int[] Ids { get; }
    /// <summary>Value per slot.</summary>
    public float[] Values { get; }
    /// <summary>Non-zeros per row.</summary>
    public int[] Counts { get; }
    /// <summary>Label per row.</summary>
    public float[] Labels { get; }
    /// <summary>Distinct ids (training only), in order of first appearance.</summary>
    public int[] UniqueIds { get; }
    /// <summary>Offsets into <see cref="Occurrences"/>.</summary>
    public int[] UniqueOffsets { get; }
    /// <summary>Slots (row * MaxNnz + s) grouped by distinct id.</summary>
    public int[] Occurrences { get; }
    /// <summary>Number of distinct ids (0 unless built for training).</summary>
    public int UniqueCount { get; private set; }

    /// <summary>Fills the batch with <paramref name="rows"/> of <paramref name="data"/>.</summary>
    /// <param name="data">Source dataset.</param>
    /// <param name="rows">Row indices, at most <see cref="Capacity"/>.</param>
    /// <param name="forTraining">Also build the distinct-id lists the sparse update needs.</param>
    public void Fill(SparseDataset data, ReadOnlySpan<int> rows, bool forTraining)
    {
        if (rows.Length > Capacity) throw new ArgumentException($"{rows.Length} rows exceed the batch capacity {Capacity}", nameof(rows));
        int m = MaxNnz;
        for (int b = 0; b < rows.Length; b++)
        {
            int r = rows[b];
            var ids = data.RowIds(r);
            var vals = data.RowValues(r);
            if (ids.Length > m)
                throw new ArgumentException($"{data.Name}: row {r + 1} has {ids.Length} non-zeros, more than the {m} this model was set up for");
            ids.CopyTo(Ids.AsSpan(b * m));
            vals.CopyTo(Values.AsSpan(b * m));
            Ids.AsSpan(b * m + ids.Length, m - ids.Length).Clear();
            Values.AsSpan(b * m + ids.Length, m - ids.Length).Clear();
            Counts[b] = ids.Length;
            Labels[b] = data.Labels[r];
        }
        Rows = rows.Length;
        UniqueCount = forTraining ? BuildUnique() : 0;
    }

    private int BuildUnique()
    {
        int m = MaxNnz, u = 0;
        int[] local = _local, ids = Ids, counts = UniqueOffsets, unique = UniqueIds, slotLocal = _slotLocal;
        try
        {
            for (int b = 0; b < Rows; b++)
            {
                for (int slot = b * m, end = slot + Counts[b]; slot < end; slot++)
                {
                    int id = ids[slot];
                    int l = local[id] - 1;
                    if (l < 0)
                    {
                        l = u++;
                        local[id] = u;
                        unique[l] = id;
                        counts[u] = 0;
                    }
                    counts[l + 1]++;
                    slotLocal[slot] = l;
                }
            }
            counts[0] = 0;
            for (int i = 0; i < u; i++) counts[i + 1] += counts[i];
            var cursor = _cursor;
            Array.Copy(counts, cursor, u);
            for (int b = 0; b < Rows; b++)
                for (int slot = b * m, end = slot + Counts[b]; slot < end; slot++)
                    Occurrences[cursor[slotLocal[slot]]++] = slot;
            return u;
        }
        finally
        {
            // leave the table all 0 for the next fill, also when an id was out of range
            for (int i = 0; i < u; i++) local[unique[i]] = 0;
        }
    }
}
