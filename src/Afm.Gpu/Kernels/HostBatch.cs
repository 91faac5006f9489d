using Afm.Gpu.Data;

namespace Afm.Gpu.Kernels;

/// <summary>
/// A mini-batch assembled on the host: rows padded to <see cref="MaxNnz"/> slots and, for training,
/// the distinct ids with their slots (built in O(non-zeros) with a stamp table, no sorting).
/// </summary>
public sealed class HostBatch
{
    private readonly int[] _stamp;
    private readonly int[] _local;
    private int _epoch;

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
        _stamp = new int[featureCount];
        _local = new int[featureCount];
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
        if (++_epoch == int.MaxValue)
        {
            Array.Clear(_stamp);
            _epoch = 1;
        }
        int m = MaxNnz, u = 0;
        var counts = UniqueOffsets;
        for (int b = 0; b < Rows; b++)
        {
            for (int s = 0, n = Counts[b]; s < n; s++)
            {
                int id = Ids[b * m + s];
                if (_stamp[id] != _epoch)
                {
                    _stamp[id] = _epoch;
                    _local[id] = u;
                    UniqueIds[u] = id;
                    counts[++u] = 0;
                }
                counts[_local[id] + 1]++;
            }
        }
        counts[0] = 0;
        for (int i = 0; i < u; i++) counts[i + 1] += counts[i];
        // Fill: use the stamp table's companion as a cursor per distinct id.
        Span<int> cursor = u <= 4096 ? stackalloc int[u] : new int[u];
        for (int i = 0; i < u; i++) cursor[i] = counts[i];
        for (int b = 0; b < Rows; b++)
        {
            for (int s = 0, n = Counts[b]; s < n; s++)
            {
                int slot = b * m + s;
                Occurrences[cursor[_local[Ids[slot]]]++] = slot;
            }
        }
        return u;
    }
}
