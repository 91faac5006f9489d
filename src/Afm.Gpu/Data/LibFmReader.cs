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
}

/// <summary>
/// Reads libFM / libsvm text data into a <see cref="SparseDataset"/>.
/// </summary>
/// <remarks>
/// Each data line is <c>label id:value id:value ...</c>, separated by spaces or tabs; a row may have any number of
/// non-zeros, including none. Feature values are kept as written. Labels and values are parsed with the invariant
/// culture and must be finite; ids must be non-negative <see cref="int"/>s. Blank lines and lines whose first
/// non-blank character is <c>#</c> are skipped; lines end at LF, CRLF or CR (as <see cref="TextReader.ReadLine"/> sees them). Duplicate ids within a row are kept
/// as given (neither merged nor summed). Every problem is reported as a <see cref="DataFormatException"/>
/// naming the file and the 1-based line.
/// </remarks>
public static class LibFmReader
{
    private const int BufferSize = 1 << 16;

    /// <summary>Reads the file at <paramref name="path"/>.</summary>
    /// <param name="path">The libFM file.</param>
    /// <param name="options">Reading options; null means the defaults.</param>
    /// <returns>The dataset, named after <paramref name="path"/>.</returns>
    /// <exception cref="DataFormatException">The file is missing, empty, or malformed.</exception>
    public static SparseDataset Read(string path, LibFmReadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
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
        using var reader = new StreamReader(stream, System.Text.Encoding.UTF8, detectEncodingFromByteOrderMarks: true, BufferSize);
        return Read(reader, path, options);
    }

    /// <summary>Reads libFM text from <paramref name="reader"/>.</summary>
    /// <param name="reader">The text source; it is read to its end (or to <see cref="LibFmReadOptions.MaxRows"/>) and not disposed.</param>
    /// <param name="name">The source's name, used in messages and as the dataset's name.</param>
    /// <param name="options">Reading options; null means the defaults.</param>
    /// <returns>The dataset.</returns>
    /// <exception cref="DataFormatException">The text has no data rows or is malformed.</exception>
    public static SparseDataset Read(TextReader reader, string name, LibFmReadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(name);
        options ??= new LibFmReadOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.FeatureCount);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxRows);

        var offsets = new List<long> { 0 };
        var ids = new List<int>();
        var values = new List<float>();
        var labels = new List<float>();
        long lineNo = 0;
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

            while (!(token = NextToken(ref rest)).IsEmpty)
            {
                var (id, value) = ParseFeature(token, name, lineNo);
                if (options.FeatureCount > 0 && id >= options.FeatureCount)
                    throw Error(name, lineNo, $"feature id {id} is not below the model's feature count {options.FeatureCount}");
                ids.Add(id);
                values.Add(value);
            }
            labels.Add(label);
            offsets.Add(ids.Count);
        }

        if (labels.Count == 0)
            throw new DataFormatException(name, 0, "no data rows");
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
                : IsDigits(idText) ? $"feature id in '{Show(token)}' is too large (the limit is {int.MaxValue})"
                : $"malformed token '{Show(token)}' (expected id:value)");
        }
        if (!float.IsFinite(value))
            throw Error(name, lineNo, $"value in '{Show(token)}' is not finite");
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
            if (digit > 9 || (v = v * 10 + digit) > int.MaxValue)
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
    private static string Show(ReadOnlySpan<char> token) => token.Length <= 40 ? token.ToString() : $"{token[..40]}...";

    private static DataFormatException Error(string name, long lineNo, string problem) => new(name, lineNo, problem);
}
