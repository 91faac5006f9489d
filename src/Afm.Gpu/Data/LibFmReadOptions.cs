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

    /// <summary>The text format (libFM by default; <see cref="DataFormat.Criteo"/>, <see cref="DataFormat.Csv"/> and <see cref="DataFormat.Tsv"/> need <see cref="HashBits"/>).</summary>
    public DataFormat Format { get; init; }

    /// <summary>CSV and TSV only: the header name of the label column (null: <see cref="CsvFormat.DefaultLabelColumn"/>).</summary>
    public string? LabelColumn { get; init; }

    /// <summary>CSV and TSV only: the header names of the columns to leave out, joined by commas (null or <c>""</c>: none).</summary>
    public string? IgnoredColumns { get; init; }

    /// <summary>CSV and TSV only: the header names of the numeric columns, joined by commas (null or <c>""</c>: none).</summary>
    public string? NumericColumns { get; init; }

    /// <summary>CSV and TSV only: the header names of the columns of numbers bucketed on a log scale (<see cref="CsvFormat.Bucket"/>), joined by commas (null or <c>""</c>: none).</summary>
    public string? BucketColumns { get; init; }

    /// <summary>
    /// CSV and TSV only: the label column may be absent from the header (data to be scored), and then every row's label is 0.
    /// False (the default): the header must name the label.
    /// </summary>
    public bool LabelOptional { get; init; }

    /// <summary>
    /// CSV and TSV only: the header must name every ignored, numeric and bucketed column, so that a misspelt name fails
    /// rather than leave a column among the categorical features (true, the default, as for training data). False (data
    /// read for a trained model, whose columns were checked when it was trained): such a column may be absent, and a
    /// numeric or bucketed one is then missing from every row.
    /// </summary>
    public bool RequireAllColumns { get; init; } = true;

    /// <summary>Threads that parse text (0, the default: one per core).</summary>
    public int Threads { get; init; }

    /// <summary>Bytes of text per parse chunk (a chunk grows when one line is longer); small values test chunking.</summary>
    internal int ChunkBytes { get; init; } = LibFmReader.DefaultChunkBytes;

    /// <summary>The format and hashing these options read, as a model stores them.</summary>
    public InputEncoding Encoding => CsvFormat.HasHeader(Format)
        ? new(Format, HashBits, LabelColumn ?? CsvFormat.DefaultLabelColumn, IgnoredColumns ?? "", NumericColumns ?? "", BucketColumns)
        : new(Format, HashBits, LabelColumn, IgnoredColumns, NumericColumns, BucketColumns);

    /// <summary>Options that read text as <paramref name="input"/> says: its format, hashing and CSV columns.</summary>
    public static LibFmReadOptions Reading(InputEncoding input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new() { Format = input.Format, HashBits = input.HashBits, LabelColumn = input.LabelColumn, IgnoredColumns = input.IgnoredColumns, NumericColumns = input.NumericColumns, BucketColumns = input.BucketColumns };
    }

    /// <summary>
    /// Options that read data for <paramref name="model"/> the way it was trained (its format and hashing), checking
    /// what the model needs (ids below its feature count, rows it can hold, binary labels for logistic loss when
    /// <paramref name="labelsMatter"/>) as the data is read, so that a problem names its line. A CSV model's label column
    /// may be absent from data read where labels do not matter.
    /// </summary>
    public static LibFmReadOptions For(AfmModel model, bool labelsMatter)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Reading(model.Input) with
        {
            FeatureCount = model.FeatureCount,
            BinaryLabels = labelsMatter && model.Loss == LossKind.Logistic,
            MaxRowNonZeros = Limits.MaxRowNonZeros(model.K, model.T),
            LabelOptional = !labelsMatter,
            RequireAllColumns = false,
        };
    }
}
