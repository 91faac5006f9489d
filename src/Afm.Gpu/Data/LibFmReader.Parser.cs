using System.Buffers;
using System.Globalization;
using System.Text;

namespace Afm.Gpu.Data;

/// <summary>The parse of one chunk: lines, tokens, numbers and hashing.</summary>
public static partial class LibFmReader
{
    /// <summary>A problem on the line being parsed.</summary>
    private sealed class LineException(string problem) : Exception(problem);

    /// <summary>Parses chunks of text with fixed options; safe to use from several threads at once.</summary>
    [System.Runtime.CompilerServices.SkipLocalsInit]
    private sealed partial class ChunkParser
    {
        private readonly LibFmReadOptions _o;
        private readonly int _maxId, _bits;

        public ChunkParser(LibFmReadOptions options)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(options.FeatureCount);
            ArgumentOutOfRangeException.ThrowIfNegative(options.MaxRows);
            ArgumentOutOfRangeException.ThrowIfNegative(options.MaxRowNonZeros);
            ArgumentOutOfRangeException.ThrowIfNegative(options.MaxFeatureCount);
            ArgumentOutOfRangeException.ThrowIfNegative(options.Threads);
            options.Encoding.Validate();
            _o = options;
            _bits = options.HashBits;
            _maxId = options.MaxFeatureCount > 0 ? Math.Min(options.MaxFeatureCount - 1, MaxFeatureId) : MaxFeatureId;
            int hashed = options.Encoding.HashedFeatureCount;
            if (hashed > 0 && options.MaxFeatureCount > 0 && hashed > options.MaxFeatureCount)
                throw new ArgumentException($"hash bits {_bits}: 2^{_bits} = {hashed} embedding rows, more than a model of this size holds ({options.MaxFeatureCount}); use fewer hash bits");
            if (hashed > 0 && options.FeatureCount > 0 && options.FeatureCount != hashed)
                throw new ArgumentException($"feature count {options.FeatureCount} does not match hash bits {_bits} (2^{_bits} = {hashed} rows)");
            FeatureCount = options.FeatureCount > 0 ? options.FeatureCount : hashed;
        }

        /// <summary>The feature count of every block: the options' or 2^B; 0 (the largest id + 1) when neither.</summary>
        public int FeatureCount { get; }

        /// <summary>Whether each chunk records the names hashed to each row (<see cref="ParsedChunk.Names"/>).</summary>
        public bool RecordNames { get; init; }

        public ParsedChunk Parse(TextChunk text)
        {
            var chunk = new ParsedChunk(text.Length) { Names = RecordNames ? new HashedNames() : null };
            try
            {
                ParseLines(text.Buffer.AsSpan(0, text.Length), chunk);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(text.Buffer);
            }
            return chunk;
        }

        private void ParseLines(ReadOnlySpan<byte> text, ParsedChunk chunk)
        {
            long line = 0;
            while (!text.IsEmpty)
            {
                int end = text.IndexOfAny((byte)'\n', (byte)'\r');
                var lineText = end < 0 ? text : text[..end];
                int next = end < 0 ? text.Length : end + (text[end] == '\r' && end + 1 < text.Length && text[end + 1] == '\n' ? 2 : 1);
                text = text[next..];
                line++;
                try
                {
                    if (_o.Format == DataFormat.Criteo) ParseCriteoLine(lineText, chunk);
                    else if (CsvFormat.HasHeader(_o.Format)) ParseCsvLine(lineText, chunk);
                    else ParseLibFmLine(lineText, chunk);
                }
                catch (LineException e)
                {
                    int start = chunk.RowStart(chunk.Rows);
                    chunk.Ids.RemoveRange(start, chunk.Ids.Count - start);
                    chunk.Values.RemoveRange(start, chunk.Values.Count - start);
                    chunk.Error = (line, e.Message);
                    break;
                }
            }
            chunk.Lines = line;
        }

        private static bool IsBlankOrComment(ReadOnlySpan<byte> line)
        {
            int first = line.IndexOfAnyExcept((byte)' ', (byte)'\t');
            return first < 0 || line[first] == '#';
        }

        private void ParseLibFmLine(ReadOnlySpan<byte> rest, ParsedChunk chunk)
        {
            if (IsBlankOrComment(rest)) return;
            var token = NextToken(ref rest);
            if (token.Contains((byte)':'))
                throw Error($"missing label (first token '{Show(token)}' is a feature)");
            if (token.Contains((byte)',') && !TryParseFloat(token, out _))
                throw Error($"malformed label '{Show(token)}' (expected a number; for comma-separated text with a header line, use the csv format: --format csv)");
            float label = ParseLabel(token);
            int start = chunk.Ids.Count;
            while (!(token = NextToken(ref rest)).IsEmpty)
            {
                if (_bits > 0)
                {
                    var name = HashedName(token, out float value);
                    AddHashed(chunk, name, value);
                }
                else
                {
                    var (id, value) = NumericFeature(token);
                    chunk.Ids.Add(id);
                    chunk.Values.Add(value);
                }
                if (_o.MaxRowNonZeros > 0 && chunk.Ids.Count - start > _o.MaxRowNonZeros)
                {
                    long n = chunk.Ids.Count - start;
                    while (!NextToken(ref rest).IsEmpty) n++;
                    throw TooLong(n);
                }
            }
            EndRow(chunk, label);
        }

        private static void EndRow(ParsedChunk chunk, float label)
        {
            chunk.Labels.Add(label);
            chunk.RowEnds.Add(chunk.Ids.Count);
        }

        private LineException TooLong(long n) =>
            Error($"the row has {n} non-zeros ({n * (n - 1) / 2} feature pairs); at most {_o.MaxRowNonZeros} are allowed for this model, as all pairs of a row are held in memory at once (prune or split long rows)");

        private float ParseLabel(ReadOnlySpan<byte> token)
        {
            if (!TryParseFloat(token, out float label))
                throw Error($"malformed label '{Show(token)}' (expected a number)");
            if (NotFinite(token, label))
                throw Error($"label '{Show(token)}' is not finite");
            if (MathF.Abs(label) > MaxMagnitude)
                throw Error($"label '{Show(token)}' is too large (the limit is {MaxMagnitude:G} in magnitude, so that squared errors stay finite); scale the labels");
            if (_o.BinaryLabels && label is not (0f or 1f or -1f))
                throw Error($"label '{Show(token)}' is not binary: logistic loss takes labels 0/1 or -1/1");
            return label;
        }

        /// <summary>An <c>id:value</c> token without hashing.</summary>
        private (int Id, float Value) NumericFeature(ReadOnlySpan<byte> token)
        {
            // The common case in one pass: digits, the only colon, a plain decimal; anything else takes the general path.
            int i = 0;
            long id64 = 0;
            for (uint d; i < token.Length && (d = (uint)(token[i] - '0')) <= 9 && id64 <= MaxFeatureId; i++) id64 = id64 * 10 + d;
            if (i > 0 && id64 <= MaxFeatureId && i < token.Length - 1 && token[i] == ':' && TryParsePlainDecimal(token[(i + 1)..], out float plain))
                return CheckedFeature(token, (int)id64, plain);
            int colon = token.LastIndexOf((byte)':');
            if (colon <= 0 || colon == token.Length - 1)
                throw colon < 0 && !FeatureHash.IsDigits(token) && !token.StartsWith("-"u8) ? NamedWithoutHashing(token) : Malformed(token, "id:value");
            var idText = token[..colon];
            bool digits = FeatureHash.IsDigits(idText), negative = idText[0] == '-' && FeatureHash.IsDigits(idText[1..]);
            if (!TryParseFloat(token[(colon + 1)..], out float value))
                throw digits || negative ? Malformed(token, "id:value") : NamedWithoutHashing(token);
            if (!TryParseId(idText, out int id))
                throw negative ? Error($"negative feature id in '{Show(token)}'")
                    : digits ? Error($"feature id in '{Show(token)}' is too large (the limit is {MaxFeatureId})")
                    : NamedWithoutHashing(token);
            return CheckedFeature(token, id, value);
        }

        /// <summary>What a user can do about an id the model has no row for.</summary>
        private const string UnknownIdHint = " (a feature new since training; afm-gpu's --unknown-ids ignore, or SparseDataset.KeepIdsBelow, drops such ids)";

        private (int Id, float Value) CheckedFeature(ReadOnlySpan<byte> token, int id, float value)
        {
            CheckValue(token, value);
            if (_o.FeatureCount > 0 && id >= _o.FeatureCount)
                throw Error($"feature id {id} is not below the model's feature count {_o.FeatureCount}{UnknownIdHint}");
            if (id > _maxId)
                throw Error($"feature id {id} is too large: an embedding table this wide holds ids up to {_maxId} (ids index the table directly; renumber them densely from 0, or hash them with --hash-bits B)");
            return (id, value);
        }

        /// <summary>The feature name and value of any token with hashing: <c>name:value</c>, <c>field:category</c> or <c>name</c> (see the class remarks).</summary>
        private static ReadOnlySpan<byte> HashedName(ReadOnlySpan<byte> token, out float value)
        {
            int colon = token.LastIndexOf((byte)':');
            value = 1f;
            if (colon < 0) return token;
            if (colon == 0 || colon == token.Length - 1) throw Malformed(token, "name:value");
            if (!TryParseFloat(token[(colon + 1)..], out value))
            {
                value = 1f;
                return token;
            }
            CheckValue(token, value);
            return token[..colon];
        }

        private static void CheckValue(ReadOnlySpan<byte> token, float value)
        {
            // the value's text is looked up only for a value that is not finite: this runs for every feature
            if (!float.IsFinite(value) && NotFinite(token[(token.LastIndexOf((byte)':') + 1)..], value))
                throw Error($"value in '{Show(token)}' is not finite");
            if (MathF.Abs(value) > MaxMagnitude)
                throw Error($"value in '{Show(token)}' is too large (the limit is {MaxMagnitude:G} in magnitude, so that products of two values stay finite); scale the feature");
        }

        private static LineException Malformed(ReadOnlySpan<byte> token, string expected) => Error($"malformed token '{Show(token)}' (expected {expected})");

        private static LineException NamedWithoutHashing(ReadOnlySpan<byte> token) =>
            Error($"feature '{Show(token)}' is named, not a numeric id:value; hash named features with --hash-bits B (2^B embedding rows)");

        private void ParseCriteoLine(ReadOnlySpan<byte> line, ParsedChunk chunk)
        {
            if (IsBlankOrComment(line)) return;
            int columns = line.Count((byte)'\t') + 1;
            if (columns != CriteoFormat.Columns)
                throw Error($"{columns} tab-separated columns; a Criteo line has {CriteoFormat.Columns} (label, I1..I{CriteoFormat.IntegerColumns}, C1..C{CriteoFormat.CategoricalColumns})"
                    + (columns == 1 && line.Contains((byte)',') ? "; for comma-separated text with a header line, use the csv format: --format csv" : ""));
            Span<byte> name = stackalloc byte[256];
            var rest = line;
            float label = ParseLabel(NextColumn(ref rest));
            for (int j = 1; j <= CriteoFormat.IntegerColumns; j++)
            {
                var text = NextColumn(ref rest);
                if (text.IsEmpty) continue;
                if (!TryParseInteger(text, out long v))
                    throw Error($"column I{j}: malformed integer '{Show(text)}'");
                AddHashed(chunk, name[..CriteoFormat.WriteIntegerFeature(name, j, v)]);
            }
            for (int j = 1; j <= CriteoFormat.CategoricalColumns; j++)
            {
                var text = NextColumn(ref rest);
                if (text.IsEmpty) continue;
                int prefix = CriteoFormat.WritePrefix(name, 'C', j);
                if (prefix + text.Length <= name.Length)
                {
                    text.CopyTo(name[prefix..]);
                    AddHashed(chunk, name[..(prefix + text.Length)]);
                }
                else
                {
                    var longName = new byte[prefix + text.Length];
                    name[..prefix].CopyTo(longName);
                    text.CopyTo(longName.AsSpan(prefix));
                    AddHashed(chunk, longName);
                }
            }
            if (_o.MaxRowNonZeros > 0 && chunk.Ids.Count - chunk.RowStart(chunk.Rows) > _o.MaxRowNonZeros)
                throw TooLong(chunk.Ids.Count - chunk.RowStart(chunk.Rows));
            EndRow(chunk, label);
        }

        /// <summary>Adds the feature <paramref name="name"/> hashed; <paramref name="fieldLength"/>: the bytes of its field's name at its start, where known (-1: <see cref="FeatureMap.DefaultField"/>).</summary>
        private void AddHashed(ParsedChunk chunk, ReadOnlySpan<byte> name, float value = 1f, int fieldLength = -1)
        {
            int row = FeatureHash.Row(name, _bits);
            chunk.Ids.Add(row);
            chunk.Values.Add(value);
            chunk.Names?.Add(row, name, fieldLength);
        }

        private static ReadOnlySpan<byte> NextColumn(ref ReadOnlySpan<byte> rest)
        {
            int tab = rest.IndexOf((byte)'\t');
            var column = tab < 0 ? rest : rest[..tab];
            rest = tab < 0 ? [] : rest[(tab + 1)..];
            return column;
        }

        private static LineException Error(string problem) => new(problem);
    }

    /// <summary>Returns the next space/tab-separated token of <paramref name="rest"/> (empty at the end) and advances past it.</summary>
    private static ReadOnlySpan<byte> NextToken(ref ReadOnlySpan<byte> rest)
    {
        // A plain loop: tokens are a few bytes, too short for a vectorised search to pay for its setup.
        int start = 0;
        while (start < rest.Length && (rest[start] == ' ' || rest[start] == '\t')) start++;
        int end = start;
        while (end < rest.Length && rest[end] != ' ' && rest[end] != '\t') end++;
        var token = rest[start..end];
        rest = rest[end..];
        return token;
    }

    /// <summary>Parses a non-negative decimal <see cref="int"/> up to <see cref="MaxFeatureId"/> (digits only).</summary>
    private static bool TryParseId(ReadOnlySpan<byte> s, out int id)
    {
        id = 0;
        long v = 0;
        foreach (byte c in s)
        {
            uint digit = (uint)(c - '0');
            if (digit > 9 || (v = v * 10 + digit) > MaxFeatureId)
                return false;
        }
        id = (int)v;
        return !s.IsEmpty;
    }

    /// <summary>Parses <c>[+-]digits</c> (at most 18 digits) as a <see cref="long"/>.</summary>
    private static bool TryParseInteger(ReadOnlySpan<byte> s, out long value)
    {
        value = 0;
        bool negative = !s.IsEmpty && s[0] == '-';
        if (!s.IsEmpty && (s[0] == '-' || s[0] == '+')) s = s[1..];
        if (s.IsEmpty || s.Length > 18) return false;
        foreach (byte c in s)
        {
            uint digit = (uint)(c - '0');
            if (digit > 9) return false;
            value = value * 10 + digit;
        }
        if (negative) value = -value;
        return true;
    }

    /// <summary>
    /// Parses a float like <see cref="float.TryParse(ReadOnlySpan{byte}, NumberStyles, IFormatProvider?, out float)"/>
    /// with <see cref="NumberStyles.Float"/> and the invariant culture, with a fast path for plain decimals, and takes
    /// C's and Python's spelling of an infinity as well
    /// (<c>inf</c>, <c>-inf</c>, any case), so that such a value is reported as not finite rather than as malformed.
    /// </summary>
    private static bool TryParseFloat(ReadOnlySpan<byte> s, out float value)
    {
        if (TryParsePlainDecimal(s, out value) || float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out value))
            return true;
        var unsigned = !s.IsEmpty && (s[0] == '-' || s[0] == '+') ? s[1..] : s;
        if (!System.Text.Ascii.EqualsIgnoreCase(unsigned, "inf"u8)) return false;
        value = s[0] == '-' ? float.NegativeInfinity : float.PositiveInfinity;
        return true;
    }

    /// <summary>
    /// Whether <paramref name="text"/>, parsed as <paramref name="value"/>, says NaN or infinity. A number with digits
    /// that is beyond single precision's range (<c>1e39</c>) also parses as an infinity; it is too large, not this,
    /// and the callers' magnitude check reports it so.
    /// </summary>
    private static bool NotFinite(ReadOnlySpan<byte> text, float value) =>
        float.IsNaN(value) || float.IsInfinity(value) && !text.ContainsAnyInRange((byte)'0', (byte)'9');

    /// <summary>
    /// Parses <c>[+-]digits[.digits]</c> with at most 7 digits in all. The digits and the power of ten are then exact
    /// floats, so one (correctly rounded) division gives the same result as <see cref="float.Parse(string)"/>.
    /// Returns false for anything else, which the caller hands to the general parser.
    /// </summary>
    private static bool TryParsePlainDecimal(ReadOnlySpan<byte> s, out float value)
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
            byte c = s[i];
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

    /// <summary>The token for a message, shortened if it is long.</summary>
    private static string Show(ReadOnlySpan<byte> token)
    {
        string text = Encoding.UTF8.GetString(token);
        return IO.Printable.Escape(text.Length <= 40 ? text : $"{text[..40]}...");
    }
}
