namespace Afm.Gpu.Data;

/// <summary>
/// A compact in-memory sparse dataset in CSR form: row <c>r</c> owns the non-zeros
/// <c>FeatureIds[Offsets[r]..Offsets[r+1])</c> with values <c>Values[...]</c> and label <c>Labels[r]</c>.
/// </summary>
public sealed class SparseDataset
{
    /// <summary>Creates a dataset from CSR arrays; the arrays are taken, not copied.</summary>
    /// <param name="offsets">Row offsets, length rows + 1, starting at 0 and non-decreasing.</param>
    /// <param name="featureIds">Feature id of every non-zero (all &gt;= 0).</param>
    /// <param name="values">Value of every non-zero (finite).</param>
    /// <param name="labels">One finite label per row.</param>
    /// <param name="featureCount">Number of features (every id is below it); 0 means max id + 1.</param>
    /// <param name="name">Where the data came from (a file path or a description), used in messages.</param>
    public SparseDataset(long[] offsets, int[] featureIds, float[] values, float[] labels, int featureCount = 0, string name = "<memory>")
    {
        ArgumentNullException.ThrowIfNull(offsets);
        ArgumentNullException.ThrowIfNull(featureIds);
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(labels);
        if (offsets.Length != labels.Length + 1)
            throw new ArgumentException($"offsets has {offsets.Length} entries; expected rows + 1 = {labels.Length + 1}.", nameof(offsets));
        if (featureIds.Length != values.Length)
            throw new ArgumentException($"featureIds ({featureIds.Length}) and values ({values.Length}) differ in length.", nameof(values));
        if (offsets[0] != 0 || offsets[^1] != featureIds.Length)
            throw new ArgumentException("offsets must start at 0 and end at the number of non-zeros.", nameof(offsets));
        int maxId = -1, maxNnz = 0;
        for (int r = 0; r < labels.Length; r++)
        {
            long n = offsets[r + 1] - offsets[r];
            if (n < 0) throw new ArgumentException($"offsets decrease at row {r}.", nameof(offsets));
            if (n > maxNnz) maxNnz = (int)n;
        }
        foreach (int id in featureIds)
        {
            if (id < 0) throw new ArgumentException($"negative feature id {id}.", nameof(featureIds));
            if (id > maxId) maxId = id;
        }
        if (featureCount == 0) featureCount = maxId + 1;
        if (featureCount <= maxId)
            throw new ArgumentException($"featureCount {featureCount} is not above the largest feature id {maxId}.", nameof(featureCount));
        Offsets = offsets;
        FeatureIds = featureIds;
        Values = values;
        Labels = labels;
        FeatureCount = featureCount;
        MaxNnz = maxNnz;
        Name = name;
    }

    /// <summary>Row offsets into <see cref="FeatureIds"/> and <see cref="Values"/>, length <see cref="Rows"/> + 1.</summary>
    public long[] Offsets { get; }
    /// <summary>Feature id of each non-zero.</summary>
    public int[] FeatureIds { get; }
    /// <summary>Value of each non-zero.</summary>
    public float[] Values { get; }
    /// <summary>Label of each row.</summary>
    public float[] Labels { get; }
    /// <summary>Number of features: every id is below it.</summary>
    public int FeatureCount { get; }
    /// <summary>Largest number of non-zeros in one row.</summary>
    public int MaxNnz { get; }
    /// <summary>Where the data came from, for messages.</summary>
    public string Name { get; }
    /// <summary>Number of rows.</summary>
    public int Rows => Labels.Length;
    /// <summary>Total number of non-zeros.</summary>
    public long NonZeros => FeatureIds.Length;

    /// <summary>Non-zero count of row <paramref name="row"/>.</summary>
    public int RowLength(int row) => (int)(Offsets[row + 1] - Offsets[row]);

    /// <summary>Feature ids of row <paramref name="row"/>.</summary>
    public ReadOnlySpan<int> RowIds(int row) => FeatureIds.AsSpan((int)Offsets[row], RowLength(row));

    /// <summary>Values of row <paramref name="row"/>.</summary>
    public ReadOnlySpan<float> RowValues(int row) => Values.AsSpan((int)Offsets[row], RowLength(row));

    /// <summary>Returns a new dataset holding the given rows, in the given order.</summary>
    public SparseDataset Subset(ReadOnlySpan<int> rows, string? name = null)
    {
        var off = new long[rows.Length + 1];
        long nnz = 0;
        for (int i = 0; i < rows.Length; i++) { nnz += RowLength(rows[i]); off[i + 1] = nnz; }
        var ids = new int[nnz];
        var vals = new float[nnz];
        var labels = new float[rows.Length];
        for (int i = 0; i < rows.Length; i++)
        {
            RowIds(rows[i]).CopyTo(ids.AsSpan((int)off[i]));
            RowValues(rows[i]).CopyTo(vals.AsSpan((int)off[i]));
            labels[i] = Labels[rows[i]];
        }
        return new SparseDataset(off, ids, vals, labels, FeatureCount, name ?? Name);
    }

    /// <summary>
    /// The rows of <paramref name="parts"/> one after the other, with the largest of their feature counts; an empty
    /// list gives a dataset without rows.
    /// </summary>
    public static SparseDataset Concat(IReadOnlyList<SparseDataset> parts, string name)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 1 && parts[0].Name == name) return parts[0];
        long rows = 0, nnz = 0;
        int features = 0;
        foreach (var p in parts) { rows += p.Rows; nnz += p.NonZeros; features = Math.Max(features, p.FeatureCount); }
        var offsets = new long[checked((int)rows) + 1];
        var ids = new int[nnz];
        var values = new float[nnz];
        var labels = new float[rows];
        int row = 0;
        long at = 0;
        foreach (var p in parts)
        {
            for (int r = 1; r <= p.Rows; r++) offsets[row + r] = at + p.Offsets[r];
            p.FeatureIds.CopyTo(ids, at);
            p.Values.CopyTo(values, at);
            p.Labels.CopyTo(labels, row);
            row += p.Rows;
            at += p.NonZeros;
        }
        return new SparseDataset(offsets, ids, values, labels, features, name);
    }

    /// <summary>
    /// The rows without their non-zeros whose id is <paramref name="featureCount"/> or more: for a model of that many
    /// features, the ids it never saw (new users or items), which then count as absent. Every row is kept, in order,
    /// even one left without features (its prediction is the bias). Returns this dataset when no id is that large.
    /// </summary>
    /// <param name="featureCount">The model's feature count, and the result's <see cref="FeatureCount"/> when ids were dropped.</param>
    /// <param name="dropped">How many non-zeros were left out.</param>
    /// <param name="rowsChanged">How many rows lost at least one.</param>
    public SparseDataset KeepIdsBelow(int featureCount, out long dropped, out int rowsChanged)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(featureCount);
        dropped = 0;
        rowsChanged = 0;
        if (FeatureCount <= featureCount) return this;
        foreach (int id in FeatureIds) if (id >= featureCount) dropped++;
        var offsets = new long[Rows + 1];
        var ids = new int[FeatureIds.Length - dropped];
        var values = new float[ids.Length];
        long kept = 0;
        for (int r = 0; r < Rows; r++)
        {
            long start = kept;
            for (long i = Offsets[r]; i < Offsets[r + 1]; i++)
            {
                if (FeatureIds[i] >= featureCount) continue;
                ids[kept] = FeatureIds[i];
                values[kept++] = Values[i];
            }
            if (kept - start < Offsets[r + 1] - Offsets[r]) rowsChanged++;
            offsets[r + 1] = kept;
        }
        return new SparseDataset(offsets, ids, values, Labels, featureCount, Name);
    }

    /// <summary>Returns this dataset with <see cref="FeatureCount"/> raised to at least <paramref name="featureCount"/>.</summary>
    public SparseDataset WithFeatureCount(int featureCount) =>
        featureCount <= FeatureCount ? this : new SparseDataset(Offsets, FeatureIds, Values, Labels, featureCount, Name);
}
