using System.IO.Hashing;
using System.Text;

namespace Afm.Gpu.Data;

/// <summary>The text format of a data file.</summary>
public enum DataFormat
{
    /// <summary>libFM / libsvm: <c>label token token ...</c> (see <see cref="LibFmReader"/>).</summary>
    LibFm = 0,
    /// <summary>Criteo's TSV: a 0/1 label, 13 integer and 26 categorical columns (see <see cref="CriteoFormat"/>).</summary>
    Criteo = 1,
    /// <summary>Comma-separated values with a header line: a label column and categorical columns (see <see cref="CsvFormat"/>).</summary>
    Csv = 2,
    /// <summary>Tab-separated values with a header line, read as <see cref="Csv"/> is, with tabs for commas and no quoting (see <see cref="CsvFormat"/>).</summary>
    Tsv = 3,
}

/// <summary>
/// How a model's data is read: the text format and the feature hashing. It is stored in the model file, so that
/// prediction, evaluation and explanation read data the way the model was trained.
/// </summary>
/// <param name="Format">The text format.</param>
/// <param name="HashBits">0: ids index the embedding table directly; B in 1..<see cref="FeatureHash.MaxBits"/>: every
/// feature is hashed into 2^B rows (<see cref="FeatureHash"/>).</param>
/// <param name="LabelColumn">CSV and TSV only: the header name of the label column.</param>
/// <param name="IgnoredColumns">CSV and TSV only: the header names of the columns that are neither label nor feature, joined by
/// commas (<c>""</c>: none); see <see cref="CsvFormat.JoinColumns"/>.</param>
/// <param name="NumericColumns">CSV and TSV only: the header names of the columns whose fields are numbers, each the feature
/// named after its column with the field as its value, joined by commas (<c>""</c>: none; every other column is
/// categorical).</param>
/// <param name="BucketColumns">CSV and TSV only: the header names of the columns of numbers (counts, amounts) whose
/// fields are bucketed on a log scale, each bucket a categorical feature of its column (<see cref="CsvFormat.Bucket"/>),
/// joined by commas (null or <c>""</c>: none, which is stored as null).</param>
public sealed record InputEncoding(DataFormat Format = DataFormat.LibFm, int HashBits = 0, string? LabelColumn = null, string? IgnoredColumns = null, string? NumericColumns = null, string? BucketColumns = null)
{
    private readonly string? _bucketColumns = string.IsNullOrEmpty(BucketColumns) ? null : BucketColumns;

    /// <summary>The bucketed CSV columns joined by commas, or null for none (<c>""</c> is taken as none).</summary>
    public string? BucketColumns
    {
        get => _bucketColumns;
        init => _bucketColumns = string.IsNullOrEmpty(value) ? null : value;
    }

    /// <summary>
    /// CSV (or with <paramref name="format"/> <see cref="DataFormat.Tsv"/>, TSV) whose label is the column <paramref name="labelColumn"/>, hashed into 2^<paramref name="hashBits"/> rows, with
    /// the columns <paramref name="ignoredColumns"/> left out, the columns <paramref name="numericColumns"/> read as numbers and
    /// the columns <paramref name="bucketColumns"/> read as numbers bucketed on a log scale.
    /// </summary>
    public static InputEncoding Csv(string labelColumn, int hashBits = CsvFormat.DefaultHashBits, IEnumerable<string>? ignoredColumns = null, IEnumerable<string>? numericColumns = null, DataFormat format = DataFormat.Csv, IEnumerable<string>? bucketColumns = null) =>
        new(format, hashBits, labelColumn, CsvFormat.JoinColumns(ignoredColumns ?? []), CsvFormat.JoinColumns(numericColumns ?? []), CsvFormat.JoinColumns(bucketColumns ?? []));

    /// <summary>The ignored CSV columns as a list (empty for other formats).</summary>
    public IReadOnlyList<string> IgnoredColumnList => string.IsNullOrEmpty(IgnoredColumns) ? [] : IgnoredColumns.Split(',');

    /// <summary>The numeric CSV columns as a list (empty for other formats).</summary>
    public IReadOnlyList<string> NumericColumnList => string.IsNullOrEmpty(NumericColumns) ? [] : NumericColumns.Split(',');

    /// <summary>The bucketed CSV columns as a list (empty for none and for other formats).</summary>
    public IReadOnlyList<string> BucketColumnList => BucketColumns is null ? [] : BucketColumns.Split(',');

    /// <summary>libFM text with numeric ids and no hashing: what a model file without this information means.</summary>
    public static InputEncoding Default { get; } = new();

    /// <summary>Whether this is <see cref="Default"/>.</summary>
    public bool IsDefault => Format == DataFormat.LibFm && HashBits == 0;

    /// <summary>The feature count hashing fixes (2^B), or 0 without hashing.</summary>
    public int HashedFeatureCount => HashBits > 0 ? 1 << HashBits : 0;

    /// <summary>A short description, e.g. <c>criteo, hashed into 2^20 rows (xxh64, seed 0)</c>.</summary>
    public override string ToString() =>
        $"{FormatName(Format)}{(CsvFormat.HasHeader(Format) ? $" (label column '{LabelColumn}'{(IgnoredColumnList.Count > 0 ? $", ignoring {string.Join(", ", IgnoredColumnList)}" : "")}{(NumericColumnList.Count > 0 ? $", numeric {string.Join(", ", NumericColumnList)}" : "")}{(BucketColumnList.Count > 0 ? $", bucketed {string.Join(", ", BucketColumnList)}" : "")})" : "")}, {(HashBits > 0 ? $"hashed into 2^{HashBits} rows ({FeatureHash.Spec})" : "ids index the table directly")}";

    /// <summary>The format's name as the command line spells it (<c>libfm</c>, <c>criteo</c>).</summary>
    public static string FormatName(DataFormat format) => format switch
    {
        DataFormat.LibFm => "libfm",
        DataFormat.Criteo => "criteo",
        DataFormat.Csv => "csv",
        DataFormat.Tsv => "tsv",
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "unknown data format"),
    };

    /// <summary>Throws <see cref="ArgumentException"/> when the format is unknown or <see cref="HashBits"/> is out of range.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(Format)) throw new ArgumentException($"unknown data format {(int)Format}", nameof(Format));
        if (HashBits is < 0 or > FeatureHash.MaxBits)
            throw new ArgumentException($"hash bits {HashBits}: must be in 1..{FeatureHash.MaxBits} (0 = no hashing)", nameof(HashBits));
        if ((Format == DataFormat.Criteo || CsvFormat.HasHeader(Format)) && HashBits == 0)
            throw new ArgumentException($"the {FormatName(Format)} format needs hashing: give hash bits in 1..{FeatureHash.MaxBits}", nameof(HashBits));
        if (CsvFormat.HasHeader(Format))
        {
            if (CsvFormat.ColumnNameError(LabelColumn) is { } label) throw new ArgumentException($"label column: {label}", nameof(LabelColumn));
            if (IgnoredColumns is null) throw new ArgumentException($"the {FormatName(Format)} format needs its ignored columns (\"\" for none)", nameof(IgnoredColumns));
            if (NumericColumns is null) throw new ArgumentException($"the {FormatName(Format)} format needs its numeric columns (\"\" for none)", nameof(NumericColumns));
            var ignored = IgnoredColumnList;
            foreach (var name in ignored)
            {
                if (CsvFormat.ColumnNameError(name) is { } bad) throw new ArgumentException($"ignored column: {bad}", nameof(IgnoredColumns));
                if (name == LabelColumn) throw new ArgumentException($"column '{name}' is the label column and cannot be ignored too", nameof(IgnoredColumns));
            }
            if (ignored.Distinct(StringComparer.Ordinal).Count() != ignored.Count)
                throw new ArgumentException($"ignored columns '{IgnoredColumns}' name a column twice", nameof(IgnoredColumns));
            var numeric = NumericColumnList;
            foreach (var name in numeric)
            {
                if (CsvFormat.ColumnNameError(name) is { } bad) throw new ArgumentException($"numeric column: {bad}", nameof(NumericColumns));
                if (name == LabelColumn) throw new ArgumentException($"column '{name}' is the label column and cannot be a numeric feature too", nameof(NumericColumns));
                if (ignored.Contains(name)) throw new ArgumentException($"column '{name}' is ignored and cannot be a numeric feature too", nameof(NumericColumns));
            }
            if (numeric.Distinct(StringComparer.Ordinal).Count() != numeric.Count)
                throw new ArgumentException($"numeric columns '{NumericColumns}' name a column twice", nameof(NumericColumns));
            var bucketed = BucketColumnList;
            foreach (var name in bucketed)
            {
                if (CsvFormat.ColumnNameError(name) is { } bad) throw new ArgumentException($"bucketed column: {bad}", nameof(BucketColumns));
                if (name == LabelColumn) throw new ArgumentException($"column '{name}' is the label column and cannot be a bucketed feature too", nameof(BucketColumns));
                if (ignored.Contains(name)) throw new ArgumentException($"column '{name}' is ignored and cannot be a bucketed feature too", nameof(BucketColumns));
                if (numeric.Contains(name)) throw new ArgumentException($"column '{name}' is a numeric column and cannot be bucketed too (a numeric column is one feature valued by its field, a bucketed one a feature per bucket)", nameof(BucketColumns));
            }
            if (bucketed.Distinct(StringComparer.Ordinal).Count() != bucketed.Count)
                throw new ArgumentException($"bucketed columns '{BucketColumns}' name a column twice", nameof(BucketColumns));
        }
        else if (LabelColumn is not null || IgnoredColumns is not null || NumericColumns is not null || BucketColumns is not null)
            throw new ArgumentException($"a label column, ignored, numeric and bucketed columns are for the csv and tsv formats, not {FormatName(Format)}", nameof(LabelColumn));
    }
}

/// <summary>
/// The feature hash: feature <c>name</c> goes to embedding row <c>XXH64(UTF-8 bytes of name, seed 0) mod 2^B</c>,
/// that is the low B bits of the 64-bit xxHash (XXH64, as <c>xxhash.xxh64_intdigest(name.encode(), 0)</c> in Python
/// computes it). A numeric id (ASCII digits only) is hashed as its decimal text without leading zeros, so <c>007</c>
/// and <c>7</c> are one feature (and <c>0</c> stays <c>0</c>).
/// </summary>
public static class FeatureHash
{
    /// <summary>The most hash bits: 2^30 rows.</summary>
    public const int MaxBits = 30;

    /// <summary>The seed of XXH64.</summary>
    public const ulong Seed = 0;

    /// <summary>The hash, in words, as stored with a model: <c>xxh64 seed 0 of the UTF-8 name, low B bits</c>.</summary>
    public const string Spec = "xxh64 seed 0 of the UTF-8 name, low B bits";

    /// <summary>The row of the feature whose name is <paramref name="utf8Name"/> (UTF-8 bytes), for 2^<paramref name="bits"/> rows.</summary>
    public static int Row(ReadOnlySpan<byte> utf8Name, int bits)
    {
        if (IsDigits(utf8Name))
        {
            int zeros = utf8Name.IndexOfAnyExcept((byte)'0');
            utf8Name = zeros < 0 ? utf8Name[^1..] : utf8Name[zeros..];
        }
        return (int)(XxHash64.HashToUInt64(utf8Name, (long)Seed) & ((1UL << bits) - 1));
    }

    /// <summary>The row of the feature named <paramref name="name"/>, for 2^<paramref name="bits"/> rows.</summary>
    public static int Row(string name, int bits)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentOutOfRangeException.ThrowIfLessThan(bits, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bits, MaxBits);
        return Row(Encoding.UTF8.GetBytes(name), bits);
    }

    internal static bool IsDigits(ReadOnlySpan<byte> s) => !s.IsEmpty && !s.ContainsAnyExceptInRange((byte)'0', (byte)'9');
}
