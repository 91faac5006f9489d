using System.Text;

namespace Afm.Gpu.Data;

/// <summary>CSV text (<see cref="CsvFormat"/>): the header line, then one row per line.</summary>
public static partial class LibFmReader
{
    /// <summary>
    /// Reads the header line of CSV text from <paramref name="stream"/> into <paramref name="parser"/> and returns the
    /// stream of the lines after it.
    /// </summary>
    private static Stream ReadCsvHeader(Stream stream, string name, ChunkParser parser)
    {
        var buffer = new byte[4096];
        int length = 0, end;
        bool eof = false;
        while (true)
        {
            end = buffer.AsSpan(0, length).IndexOfAny((byte)'\n', (byte)'\r');
            // a CR at the end of what was read may be the first half of a CRLF
            if ((end >= 0 && !(buffer[end] == '\r' && end == length - 1 && !eof)) || eof) break;
            if (length == buffer.Length)
            {
                if (length >= CsvFormat.MaxHeaderBytes)
                    throw new DataFormatException(name, 1, $"the header line is longer than {CsvFormat.MaxHeaderBytes} bytes");
                Array.Resize(ref buffer, 2 * length);
            }
            int n;
            try
            {
                n = stream.Read(buffer, length, buffer.Length - length);
            }
            catch (InvalidDataException e)
            {
                throw Chunker.GzipDamaged(name, e);
            }
            length += n;
            eof = n == 0;
        }
        var text = buffer.AsSpan(0, length);
        int start = Chunker.TextStart(text, name);
        var header = end < 0 ? text[start..] : text[start..Math.Max(start, end)];
        if (header.IndexOfAnyExcept((byte)' ', (byte)'\t') < 0)
            throw new DataFormatException(name, 1, length == 0 ? "no header line: CSV data starts with a line naming its columns" : "the header line is blank: CSV data starts with a line naming its columns");
        parser.SetCsvHeader(header, name);
        int next = end < 0 ? length : end + (buffer[end] == '\r' && end + 1 < length && buffer[end + 1] == '\n' ? 2 : 1);
        return new PrefixedStream(buffer.AsMemory(next, length - next), new UnownedStream(stream));
    }

    /// <summary>A stream read through without being disposed with its reader: the caller of the read owns it.</summary>
    private sealed class UnownedStream(Stream inner) : IO.ReadOnlyStream
    {
        public override int Read(Span<byte> buffer) => inner.Read(buffer);
    }

    /// <summary>What a CSV column is.</summary>
    private enum CsvColumn : byte { Categorical, Numeric, Bucketed, Label, Ignored }

    /// <summary>What each CSV column is, from the header.</summary>
    private sealed class CsvLayout(string[] names, CsvColumn[] kinds)
    {
        private readonly byte[][] _prefixes = [.. names.Select((n, j) => Encoding.UTF8.GetBytes(kinds[j] == CsvColumn.Numeric ? n : n + "="))];

        /// <summary>Columns of the header.</summary>
        public int Count => kinds.Length;

        /// <summary>What column j is.</summary>
        public CsvColumn Kind(int j) => kinds[j];

        /// <summary>The name of column j.</summary>
        public string Name(int j) => names[j];

        /// <summary>
        /// The UTF-8 bytes <c>name=</c> of categorical column j (a field's feature is the prefix and the field) or of a
        /// bucketed one (the prefix and the field's bucket), <c>name</c> of a numeric one (its feature).
        /// </summary>
        public ReadOnlySpan<byte> Prefix(int j) => _prefixes[j];
    }

    private sealed partial class ChunkParser
    {
        private CsvLayout? _csv;

        /// <summary>A comma, or a tab for TSV.</summary>
        private byte Separator => CsvFormat.Separator(_o.Format);

        /// <summary>Whether fields may be quoted (CSV; a TSV field is as written).</summary>
        private bool Quoting => _o.Format == DataFormat.Csv;

        /// <summary>How a message names the fields of a line.</summary>
        private string FieldsWord => _o.Format == DataFormat.Tsv ? "tab-separated" : "comma-separated";

        /// <summary>Sets the columns from the CSV header line (line 1 of <paramref name="name"/>).</summary>
        public void SetCsvHeader(ReadOnlySpan<byte> header, string name)
        {
            var names = new List<string>();
            try
            {
                var rest = header;
                while (true)
                {
                    var field = NextCsvField(ref rest, Separator, Quoting, out bool last, out byte[]? unquoted);
                    names.Add(Encoding.UTF8.GetString(unquoted ?? field));
                    if (names.Count > CsvFormat.MaxColumns)
                        throw Error($"the header names more than {CsvFormat.MaxColumns} columns");
                    if (last) break;
                }
            }
            catch (LineException e)
            {
                throw new DataFormatException(name, 1, $"header: {e.Message}");
            }
            var index = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int j = 0; j < names.Count; j++)
            {
                string column = names[j].Trim();
                if (column.Length == 0) throw new DataFormatException(name, 1, $"header: column {j + 1} has no name");
                if (!index.TryAdd(column, j)) throw new DataFormatException(name, 1, $"header: column '{IO.Printable.Escape(column)}' appears twice");
                names[j] = column;
            }
            var input = _o.Encoding;
            string label = input.LabelColumn!;
            var kinds = new CsvColumn[names.Count];
            if (index.TryGetValue(label, out int labelIndex)) kinds[labelIndex] = CsvColumn.Label;
            else if (!_o.LabelOptional)
                throw new DataFormatException(name, 1, $"header: no column '{IO.Printable.Escape(label)}' for the label (--label-column names it); the columns are {Listed(names)}"
                    + (LooksLikeData(names) ? "; the first line looks like data: the file needs a header line naming its columns" : OtherSeparator(names)));
            foreach (var (columns, kind, what) in new[] { (input.IgnoredColumnList, CsvColumn.Ignored, "to ignore"), (input.NumericColumnList, CsvColumn.Numeric, "of numbers"), (input.BucketColumnList, CsvColumn.Bucketed, "to bucket") })
                foreach (var column in columns)
                {
                    if (index.TryGetValue(column, out int j)) kinds[j] = kind;
                    else if (_o.RequireAllColumns)
                        throw new DataFormatException(name, 1, $"header: no column '{IO.Printable.Escape(column)}' {what}; the columns are {Listed(names)}{OtherSeparator(names)}");
                }
            _csv = new CsvLayout([.. names], kinds);
        }

        /// <summary>
        /// Where the header is one column holding another separator (a semicolon-separated file, a TSV read as CSV or
        /// the other way round), what to do about it, for a message; else empty.
        /// </summary>
        private string OtherSeparator(List<string> names)
        {
            if (names.Count != 1) return "";
            string only = names[0];
            if (only.Contains('\t') && _o.Format == DataFormat.Csv) return "; the header is one column holding tabs: a tab-separated file is read with --format tsv";
            if (only.Contains(',') && _o.Format == DataFormat.Tsv) return "; the header is one column holding commas: a comma-separated file is read with --format csv";
            foreach (char c in ";|")
                if (only.Contains(c))
                    return $"; the header is one column holding '{c}': afm-gpu reads fields separated by {(_o.Format == DataFormat.Tsv ? "tabs" : "commas")} only, so save the file with commas (--format csv) or tabs (--format tsv)";
            return "";
        }

        /// <summary>Whether most of a header's names are numbers, as in a file without a header whose first line is a row.</summary>
        private static bool LooksLikeData(List<string> names) =>
            names.Count(n => double.TryParse(n, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _)) * 2 > names.Count;

        /// <summary>The first columns of a header, for a message.</summary>
        private static string Listed(List<string> names) =>
            string.Join(", ", names.Take(12).Select(n => IO.Printable.Escape(n))) + (names.Count > 12 ? $", ... ({names.Count} in all)" : "");

        private void ParseCsvLine(ReadOnlySpan<byte> line, ParsedChunk chunk)
        {
            if (line.IndexOfAnyExcept((byte)' ', (byte)'\t') < 0) return;
            var layout = _csv ?? throw new InvalidOperationException("CSV rows before the header");
            Span<byte> name = stackalloc byte[256];
            float label = 0f;
            int column = 0;
            var rest = line;
            byte separator = Separator;
            bool quoting = Quoting;
            while (true)
            {
                var field = NextCsvField(ref rest, separator, quoting, out bool last, out byte[]? unquoted);
                if (unquoted is not null) field = unquoted;
                if (column < layout.Count)
                {
                    var kind = layout.Kind(column);
                    if (kind == CsvColumn.Label)
                    {
                        if (field.IsEmpty) throw Error($"the label (column {column + 1}) is empty");
                        label = ParseLabel(field);
                    }
                    else if (kind == CsvColumn.Numeric && !field.IsEmpty)
                    {
                        if (!TryParseFloat(field, out float value))
                            throw Error($"column '{IO.Printable.Escape(layout.Name(column))}': '{Show(field)}' is not a number (it is a numeric column)");
                        CheckValue(field, value);
                        var feature = layout.Prefix(column); // the column's name: the feature and its field
                        // a zero is absent from a sparse row; kept, it would be a slot in the AFM's softmax
                        if (value != 0) AddHashed(chunk, feature, value, feature.Length);
                    }
                    else if (kind == CsvColumn.Bucketed && !field.IsEmpty)
                    {
                        if (!CsvFormat.TryParseBucketed(field, out double number))
                            throw Error($"column '{IO.Printable.Escape(layout.Name(column))}': '{Show(field)}' is not a finite number (it is a bucketed column)");
                        var prefix = layout.Prefix(column);
                        var bucketed = prefix.Length + CsvFormat.MaxBucketBytes <= name.Length ? name : new byte[prefix.Length + CsvFormat.MaxBucketBytes];
                        prefix.CopyTo(bucketed);
                        int length = prefix.Length + CsvFormat.WriteBucket(bucketed[prefix.Length..], number);
                        AddHashed(chunk, bucketed[..length], fieldLength: prefix.Length - 1);
                    }
                    else if (kind == CsvColumn.Categorical && !field.IsEmpty)
                    {
                        var prefix = layout.Prefix(column);
                        if (prefix.Length + field.Length <= name.Length)
                        {
                            prefix.CopyTo(name);
                            field.CopyTo(name[prefix.Length..]);
                            AddHashed(chunk, name[..(prefix.Length + field.Length)], fieldLength: prefix.Length - 1);
                        }
                        else
                        {
                            AddHashed(chunk, [.. prefix, .. field], fieldLength: prefix.Length - 1);
                        }
                    }
                }
                column++;
                if (last) break;
            }
            if (column != layout.Count)
                throw Error($"{column} {FieldsWord} fields; the header has {layout.Count}");
            if (_o.MaxRowNonZeros > 0 && chunk.Ids.Count - chunk.RowStart(chunk.Rows) > _o.MaxRowNonZeros)
                throw TooLong(chunk.Ids.Count - chunk.RowStart(chunk.Rows));
            EndRow(chunk, label);
        }

        /// <summary>
        /// The next field of <paramref name="rest"/> and advances past it and its <paramref name="separator"/>;
        /// <paramref name="last"/> when none follows. With <paramref name="quoting"/>, a quoted field is returned
        /// without its quotes, in <paramref name="unquoted"/> when it held <c>""</c>.
        /// </summary>
        private static ReadOnlySpan<byte> NextCsvField(ref ReadOnlySpan<byte> rest, byte separator, bool quoting, out bool last, out byte[]? unquoted)
        {
            unquoted = null;
            if (!quoting || rest.IsEmpty || rest[0] != '"')
            {
                int comma = rest.IndexOf(separator);
                last = comma < 0;
                var field = last ? rest : rest[..comma];
                rest = last ? [] : rest[(comma + 1)..];
                return field;
            }
            int at = 1;
            List<byte>? copy = null;
            while (true)
            {
                int quote = rest[at..].IndexOf((byte)'"');
                if (quote < 0) throw Error("a quoted field has no closing quote (a field may not hold a line break)");
                quote += at;
                if (quote + 1 < rest.Length && rest[quote + 1] == '"')
                {
                    copy ??= [];
                    copy.AddRange(rest[at..(quote + 1)]);
                    at = quote + 2;
                    continue;
                }
                var inside = rest[1..quote];
                if (copy is not null)
                {
                    copy.AddRange(rest[at..quote]);
                    unquoted = [.. copy];
                }
                var after = rest[(quote + 1)..];
                if (!after.IsEmpty && after[0] != separator)
                    throw Error($"text after the closing quote of a quoted field: '{Show(after[..Math.Min(after.Length, 20)])}'");
                last = after.IsEmpty;
                rest = last ? [] : after[1..];
                return copy is null ? inside : [];
            }
        }
    }
}
