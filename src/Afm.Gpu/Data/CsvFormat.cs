using System.Buffers.Text;
using System.Globalization;

namespace Afm.Gpu.Data;

/// <summary>
/// Comma-separated values with a header line, as click logs such as Avazu's come: the first line names the columns,
/// one of them is the label, some may be left out (an id, a timestamp), and every other column is categorical.
/// </summary>
/// <remarks>
/// <para><see cref="DataFormat.Tsv"/> is the same with tabs for commas, and without quoting: a TSV field is the text
/// between tabs, as written.</para>
/// <para>A CSV field is the text between commas, or a quoted field (<c>"a,b"</c>, with <c>""</c> for a quote inside it,
/// as RFC 4180 writes them; a field may not hold a line break). Lines end at LF, CRLF or CR; blank lines are skipped;
/// a UTF-8 byte order mark before the header is skipped. Every line must have as many fields as the header.</para>
/// <para>A present field <c>s</c> of a categorical column <c>col</c> becomes the feature <c>col=s</c> with value 1, so
/// that equal values in different columns differ and explanations group features by their column; a field of a numeric
/// column (<see cref="InputEncoding.NumericColumns"/>) is the feature <c>col</c> with the field as its value (none for
/// 0, a sparse row's zero, so that it takes no part in the attention); a field v of a bucketed column
/// (<see cref="InputEncoding.BucketColumns"/>) is the feature <c>col=b</c> with value 1, b its bucket on a log scale
/// (<see cref="Bucket"/>). Features
/// are hashed (<see cref="FeatureHash"/>); an empty field is missing and gives no feature. The label must be a number (0/1 or -1/1 for
/// logistic loss). Where labels are not needed (prediction, explanation) the label column may be absent from the
/// header, as in data to be scored, and data read for a trained model may lack its ignored and numeric columns; columns
/// are found by name, so their order may differ from the training data's.</para>
/// </remarks>
public static class CsvFormat
{
    /// <summary>The hash bits used when none are given: 2^20 embedding rows.</summary>
    public const int DefaultHashBits = 20;

    /// <summary>The label column's name when none is given.</summary>
    public const string DefaultLabelColumn = "label";

    /// <summary>The most columns a header may name.</summary>
    public const int MaxColumns = 4096;

    /// <summary>The most bytes a header line may have.</summary>
    internal const int MaxHeaderBytes = 1 << 20;

    /// <summary>Whether <paramref name="format"/> has a header line naming its columns: <see cref="DataFormat.Csv"/> or <see cref="DataFormat.Tsv"/>.</summary>
    public static bool HasHeader(DataFormat format) => format is DataFormat.Csv or DataFormat.Tsv;

    /// <summary>The byte that separates the fields of <paramref name="format"/>: a comma, or a tab for TSV.</summary>
    internal static byte Separator(DataFormat format) => format == DataFormat.Tsv ? (byte)'\t' : (byte)',';

    /// <summary>The feature name of column <paramref name="column"/> holding <paramref name="text"/>: <c>column=text</c>.</summary>
    public static string Feature(string column, string text) => $"{column}={text}";

    /// <summary>
    /// The bucket of a field v of a bucketed column, on the scale of Criteo's integer columns (<see cref="CriteoFormat.IntegerBucket"/>):
    /// <c>SP⌊v⌋</c> for |v| &lt;= 2 (<c>SP-2</c> .. <c>SP2</c>), <c>⌊(ln v)²⌋</c> for v &gt; 2 (100 gives <c>21</c>) and
    /// <c>N⌊(ln -v)²⌋</c> for v &lt; -2. An integer of at least -2 gets the bucket Criteo's converter gives it; a column
    /// of counts, prices or durations thus takes a few dozen features however wide its range, where a categorical
    /// column would take one per distinct value. A column of rates or fractions in [0, 1] suits
    /// <see cref="InputEncoding.NumericColumns"/> better: every such value but 1 falls into <c>SP0</c> here.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is not finite.</exception>
    public static string Bucket(double value)
    {
        Span<byte> text = stackalloc byte[MaxBucketBytes];
        return System.Text.Encoding.ASCII.GetString(text[..WriteBucket(text, value)]);
    }

    /// <summary>The feature of a field holding <paramref name="value"/> in the bucketed column <paramref name="column"/>: <c>column=b</c> (<see cref="Bucket"/>).</summary>
    public static string BucketFeature(string column, double value) => Feature(column, Bucket(value));

    /// <summary>The most bytes <see cref="WriteBucket"/> writes.</summary>
    internal const int MaxBucketBytes = 16;

    /// <summary>Writes the ASCII bucket of <paramref name="value"/> (<see cref="Bucket"/>) into <paramref name="dest"/>; returns its length.</summary>
    internal static int WriteBucket(Span<byte> dest, double value)
    {
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, "a bucketed value must be finite");
        int n = 0;
        int bucket;
        if (Math.Abs(value) <= 2)
        {
            dest[n++] = (byte)'S';
            dest[n++] = (byte)'P';
            bucket = (int)Math.Floor(value);
        }
        else
        {
            if (value < 0) dest[n++] = (byte)'N';
            double log = Math.Log(Math.Abs(value)); // at most 709.8 for a finite double: the square fits an int
            bucket = (int)(log * log);
        }
        Utf8Formatter.TryFormat(bucket, dest[n..], out int written);
        return n + written;
    }

    /// <summary>Parses a bucketed column's field as a finite number (any form <see cref="double.Parse(string, IFormatProvider)"/> takes with the invariant culture).</summary>
    internal static bool TryParseBucketed(ReadOnlySpan<byte> field, out double value) =>
        double.TryParse(field, NumberStyles.Float, CultureInfo.InvariantCulture, out value) && double.IsFinite(value);

    /// <summary>Joins column names with commas, as <see cref="InputEncoding.IgnoredColumns"/> stores them.</summary>
    public static string JoinColumns(IEnumerable<string> columns) => string.Join(",", columns);

    /// <summary>Why <paramref name="name"/> cannot name a column (null when it can): it must be non-empty and hold no comma, tab, quote or line break.</summary>
    public static string? ColumnNameError(string? name) =>
        string.IsNullOrEmpty(name) ? "a column name is empty"
        : name.AsSpan().IndexOfAny(",\t\"\r\n") >= 0 ? $"column name '{IO.Printable.Escape(name)}' holds a comma, tab, quote or line break"
        : null;
}
