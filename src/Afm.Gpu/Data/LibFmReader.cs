using System.Globalization;

namespace Afm.Gpu.Data;

/// <summary>Options for <see cref="LibFmReader"/>.</summary>
public sealed record LibFmReadOptions
{
    /// <summary>
    /// Number of features of the model the data is for: every id must be below it, otherwise reading fails.
    /// 0 (the default) derives it from the data as the largest id + 1.
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
    /// (see <see cref="Limits.MaxFeatureCount"/>).
    /// </summary>
    public int MaxFeatureCount { get; init; }
}

/// <summary>
/// Reads libFM / libsvm text data into a <see cref="SparseDataset"/>.
/// </summary>
/// <remarks>
/// Each data line is <c>label id:value id:value ...</c>, separated by spaces or tabs; a row may have any number of
/// non-zeros, including none. Feature values are kept as written. Labels and values are parsed with the invariant
/// culture and must be finite and at most <see cref="MaxMagnitude"/> in magnitude; ids must be in
/// 0..<see cref="MaxFeatureId"/>. Blank lines and lines whose first
/// non-blank character is <c>#</c> are skipped; lines end at LF, CRLF or CR (as <see cref="TextReader.ReadLine"/> sees them). Duplicate ids within a row are kept
/// as given (neither merged nor summed). Every problem is reported as a <see cref="DataFormatException"/>
/// naming the file and the 1-based line.
/// </remarks>
public static class LibFmReader
{
    private const int BufferSize = 1 << 16;

    /// <summary>The largest feature id (so that the feature count, the largest id + 1, is an <see cref="int"/>).</summary>
    public const int MaxFeatureId = int.MaxValue - 1;

    /// <summary>
    /// The largest magnitude of a label or value: the product of two such values (a feature pair, a squared
    /// error) stays within single precision.
    /// </summary>
    public const float MaxMagnitude = 1e18f;

    /// <summary>Reads the file at <paramref name="path"/>.</summary>
    /// <param name="path">The libFM file.</param>
    /// <param name="options">Reading options; null means the defaults.</param>
    /// <returns>The dataset, named after <paramref name="path"/>.</returns>
    /// <exception cref="DataFormatException">The file is missing, empty, or malformed.</exception>
    public static SparseDataset Read(string path, LibFmReadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var reader = new StreamReader(Open(path), System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true, BufferSize);
        return Read(reader, path, options);
    }

    /// <summary>Opens <paramref name="path"/> for sequential reading, failing with a <see cref="DataFormatException"/>.</summary>
    private static FileStream Open(string path)
    {
        FileStream stream;
        try
        {
            // bufferSize 1: the StreamReader's large buffer is the only one
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new DataFormatException(path, 0, "file not found", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DataFormatException(path, 0, Directory.Exists(path) ? "is a directory, not a data file" : "permission denied", e);
        }
        return stream;
    }

    /// <summary>Reads libFM text from <paramref name="reader"/>.</summary>
    /// <param name="reader">The text source; it is read to its end (or to <see cref="LibFmReadOptions.MaxRows"/>) and not disposed.</param>
    /// <param name="name">The source's name, used in messages and as the dataset's name.</param>
    /// <param name="options">Reading options; null means the defaults.</param>
    /// <returns>The dataset.</returns>
    /// <exception cref="DataFormatException">The text has no data rows or is malformed.</exception>
    public static SparseDataset Read(TextReader reader, string name, LibFmReadOptions? options = null)
    {
        long lineNo = 0;
        return Read(reader, name, options, ref lineNo) ?? throw new DataFormatException(name, 0, "no data rows");
    }

    /// <summary>
    /// Streams the file at <paramref name="path"/> as consecutive blocks of up to <paramref name="blockRows"/> rows,
    /// in file order, so that a file of any size is read in bounded memory. Each block's
    /// <see cref="SparseDataset.FeatureCount"/> is <see cref="LibFmReadOptions.FeatureCount"/> when set, otherwise
    /// the block's largest id + 1. Messages name the file's own line numbers.
    /// </summary>
    /// <exception cref="DataFormatException">The file is missing, empty, or malformed.</exception>
    public static IEnumerable<SparseDataset> ReadBlocks(string path, LibFmReadOptions? options = null, int blockRows = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockRows);
        options ??= new LibFmReadOptions();
        var blockOptions = options with { MaxRows = blockRows };
        using var reader = new StreamReader(Open(path), System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true, BufferSize);
        long lineNo = 0, rows = 0;
        while (options.MaxRows == 0 || rows < options.MaxRows)
        {
            if (options.MaxRows > 0) blockOptions = blockOptions with { MaxRows = Math.Min(blockRows, options.MaxRows - rows) };
            var block = Read(reader, path, blockOptions, ref lineNo);
            if (block is null) break;
            rows += block.Rows;
            yield return block;
        }
        if (rows == 0) throw new DataFormatException(path, 0, "no data rows");
    }

    /// <summary>Reads rows from <paramref name="reader"/>, counting lines on from <paramref name="lineNo"/>; null when no data row is left.</summary>
    private static SparseDataset? Read(TextReader reader, string name, LibFmReadOptions? options, ref long lineNo)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(name);
        options ??= new LibFmReadOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.FeatureCount);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxRows);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxRowNonZeros);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxFeatureCount);
        int maxId = options.MaxFeatureCount > 0 ? Math.Min(options.MaxFeatureCount - 1, MaxFeatureId) : MaxFeatureId;

        var offsets = new List<long> { 0 };
        var ids = new List<int>();
        var values = new List<float>();
        var labels = new List<float>();
        string? text;
        while ((options.MaxRows == 0 || labels.Count < options.MaxRows) && (text = reader.ReadLine()) is not null)
        {
            lineNo++;
            ReadOnlySpan<char> rest = text.AsSpan().TrimStart(" \t");
            if (rest.IsEmpty || rest[0] == '#')
                continue;

            var token = NextToken(ref rest);
            if (token.Contains(':'))
                throw Error(name, lineNo, $"missing label (first token '{Show(token)}' is a feature)");
            if (!TryParseFloat(token, out float label))
                throw Error(name, lineNo, $"malformed label '{Show(token)}' (expected a number)");
            if (!float.IsFinite(label))
                throw Error(name, lineNo, $"label '{Show(token)}' is not finite");
            if (MathF.Abs(label) > MaxMagnitude)
                throw Error(name, lineNo, $"label '{Show(token)}' is too large (the limit is {MaxMagnitude:G} in magnitude, so that squared errors stay finite); scale the labels");
            if (options.BinaryLabels && label is not (0f or 1f or -1f))
                throw Error(name, lineNo, $"label '{Show(token)}' is not binary: logistic loss takes labels 0/1 or -1/1");

            int start = ids.Count;
            while (!(token = NextToken(ref rest)).IsEmpty)
            {
                var (id, value) = ParseFeature(token, name, lineNo);
                if (options.FeatureCount > 0 && id >= options.FeatureCount)
                    throw Error(name, lineNo, $"feature id {id} is not below the model's feature count {options.FeatureCount}");
                if (id > maxId)
                    throw Error(name, lineNo, $"feature id {id} is too large: an embedding table this wide holds ids up to {maxId} (ids index the table directly; renumber them densely from 0)");
                ids.Add(id);
                values.Add(value);
                if (options.MaxRowNonZeros > 0 && ids.Count - start > options.MaxRowNonZeros)
                {
                    long n = ids.Count - start;
                    while (!NextToken(ref rest).IsEmpty) n++;
                    throw Error(name, lineNo, $"the row has {n} non-zeros ({n * (n - 1) / 2} feature pairs); at most {options.MaxRowNonZeros} are allowed for this model, as all pairs of a row are held in memory at once (prune or split long rows)");
                }
            }
            labels.Add(label);
            offsets.Add(ids.Count);
        }

        if (labels.Count == 0)
            return null;
        return new SparseDataset(offsets.ToArray(), ids.ToArray(), values.ToArray(), labels.ToArray(), options.FeatureCount, name);
    }

    /// <summary>Returns the next space/tab-separated token of <paramref name="rest"/> (empty at the end) and advances past it.</summary>
    private static ReadOnlySpan<char> NextToken(ref ReadOnlySpan<char> rest)
    {
        rest = rest.TrimStart(" \t");
        int end = rest.IndexOfAny(' ', '\t');
        if (end < 0) end = rest.Length;
        var token = rest[..end];
        rest = rest[end..];
        return token;
    }

    private static (int Id, float Value) ParseFeature(ReadOnlySpan<char> token, string name, long lineNo)
    {
        int colon = token.IndexOf(':');
        if (colon < 0)
            throw Error(name, lineNo, $"malformed token '{Show(token)}' (expected id:value)");
        var idText = token[..colon];
        var valueText = token[(colon + 1)..];
        if (!TryParseFloat(valueText, out float value))
            throw Error(name, lineNo, $"malformed token '{Show(token)}' (expected id:value)");
        if (!TryParseId(idText, out int id))
        {
            bool negative = idText.StartsWith('-') && IsDigits(idText[1..]);
            throw Error(name, lineNo,
                negative ? $"negative feature id in '{Show(token)}'"
                : IsDigits(idText) ? $"feature id in '{Show(token)}' is too large (the limit is {MaxFeatureId})"
                : $"malformed token '{Show(token)}' (expected id:value)");
        }
        if (!float.IsFinite(value))
            throw Error(name, lineNo, $"value in '{Show(token)}' is not finite");
        if (MathF.Abs(value) > MaxMagnitude)
            throw Error(name, lineNo, $"value in '{Show(token)}' is too large (the limit is {MaxMagnitude:G} in magnitude, so that products of two values stay finite); scale the feature");
        return (id, value);
    }

    /// <summary>Parses a non-negative decimal <see cref="int"/> (digits only).</summary>
    private static bool TryParseId(ReadOnlySpan<char> s, out int id)
    {
        id = 0;
        long v = 0;
        foreach (char c in s)
        {
            uint digit = (uint)(c - '0');
            if (digit > 9 || (v = v * 10 + digit) > MaxFeatureId)
                return false;
        }
        id = (int)v;
        return !s.IsEmpty;
    }

    /// <summary>
    /// Parses a float like <see cref="float.TryParse(ReadOnlySpan{char}, NumberStyles, IFormatProvider?, out float)"/>
    /// with <see cref="NumberStyles.Float"/> and the invariant culture, with a fast path for plain decimals.
    /// </summary>
    private static bool TryParseFloat(ReadOnlySpan<char> s, out float value) =>
        TryParsePlainDecimal(s, out value) || float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out value);

    /// <summary>
    /// Parses <c>[+-]digits[.digits]</c> with at most 7 digits in all. The digits and the power of ten are then exact
    /// floats, so one (correctly rounded) division gives the same result as <see cref="float.Parse(string)"/>.
    /// Returns false for anything else, which the caller hands to the general parser.
    /// </summary>
    private static bool TryParsePlainDecimal(ReadOnlySpan<char> s, out float value)
    {
        value = 0;
        int i = 0, digits = 0, scale = 0;
        bool negative = false, dot = false;
        if (!s.IsEmpty && (s[0] == '-' || s[0] == '+'))
        {
            negative = s[0] == '-';
            i = 1;
        }
        uint mantissa = 0;
        for (; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '.' && !dot)
            {
                dot = true;
                continue;
            }
            uint digit = (uint)(c - '0');
            if (digit > 9 || ++digits > 7)
                return false;
            mantissa = mantissa * 10 + digit;
            if (dot) scale++;
        }
        if (digits == 0)
            return false;
        value = mantissa / PowersOfTen[scale];
        if (negative) value = -value;
        return true;
    }

    private static ReadOnlySpan<float> PowersOfTen => [1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f, 1e6f, 1e7f];

    private static bool IsDigits(ReadOnlySpan<char> s) => !s.IsEmpty && !s.ContainsAnyExceptInRange('0', '9');

    /// <summary>The token for a message, shortened if it is long.</summary>
    private static string Show(ReadOnlySpan<char> token) => IO.Printable.Escape(token.Length <= 40 ? token.ToString() : $"{token[..40]}...");

    private static DataFormatException Error(string name, long lineNo, string problem) => new(name, lineNo, problem);
}
