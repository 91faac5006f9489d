using Afm.Gpu.Model;

namespace Afm.Gpu.Data;

/// <summary>Options for <see cref="LibFmReader"/>.</summary>
public sealed record LibFmReadOptions
{
    /// <summary>
    /// Number of features of the model the data is for: every id must be below it, otherwise reading fails.
    /// 0 (the default) derives it from the data as the largest id + 1; with <see cref="HashBits"/> it is 2^B.
    /// </summary>
    public int FeatureCount { get; init; }

    /// <summary>Stop after this many data rows; 0 (the default) reads them all.</summary>
    public long MaxRows { get; init; }

    /// <summary>
    /// Labels must be 0, 1 or -1, as logistic loss takes them (0/1 or -1/1); any other label fails with its line.
    /// False (the default) accepts any finite label.
    /// </summary>
    public bool BinaryLabels { get; init; }

    /// <summary>
    /// The most non-zeros a row may have (0, the default: no limit beyond the format's). A longer row fails with
    /// its line: a model holds all pairs of a row in memory at once (see <see cref="Limits.MaxRowNonZeros"/>).
    /// </summary>
    public int MaxRowNonZeros { get; init; }

    /// <summary>
    /// The most features a model for this data may have, so every id must be below it (0, the default: no limit
    /// beyond the format's). A larger id fails with its line: ids index the embedding table directly
    /// (see <see cref="Limits.MaxFeatureCount"/>). With <see cref="HashBits"/>, 2^B must not exceed it.
    /// </summary>
    public int MaxFeatureCount { get; init; }

    /// <summary>
    /// 0 (the default): feature ids index the embedding table directly and named features are an error.
    /// B in 1..<see cref="FeatureHash.MaxBits"/>: every feature, numeric or named, goes to row
    /// <see cref="FeatureHash.Row(ReadOnlySpan{byte}, int)"/> of 2^B rows, and the feature count is 2^B.
    /// </summary>
    public int HashBits { get; init; }

    /// <summary>The text format (libFM by default; <see cref="DataFormat.Criteo"/> needs <see cref="HashBits"/>).</summary>
    public DataFormat Format { get; init; }

    /// <summary>Threads that parse text (0, the default: one per core).</summary>
    public int Threads { get; init; }

    /// <summary>Bytes of text per parse chunk (a chunk grows when one line is longer); small values test chunking.</summary>
    internal int ChunkBytes { get; init; } = LibFmReader.DefaultChunkBytes;

    /// <summary>The format and hashing these options read, as a model stores them.</summary>
    public InputEncoding Encoding => new(Format, HashBits);

    /// <summary>
    /// Options that read data for <paramref name="model"/> the way it was trained (its format and hashing), checking
    /// what the model needs (ids below its feature count, rows it can hold, binary labels for logistic loss when
    /// <paramref name="labelsMatter"/>) as the data is read, so that a problem names its line.
    /// </summary>
    public static LibFmReadOptions For(AfmModel model, bool labelsMatter)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new()
        {
            FeatureCount = model.FeatureCount,
            BinaryLabels = labelsMatter && model.Loss == LossKind.Logistic,
            MaxRowNonZeros = Limits.MaxRowNonZeros(model.K, model.T),
            HashBits = model.Input.HashBits,
            Format = model.Input.Format,
        };
    }
}
