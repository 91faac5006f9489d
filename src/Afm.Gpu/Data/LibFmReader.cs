using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
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

/// <summary>
/// Reads libFM / libsvm text (or Criteo's TSV, <see cref="CriteoFormat"/>) into a <see cref="SparseDataset"/>,
/// parsing in parallel and streaming.
/// </summary>
/// <remarks>
/// <para>Each libFM data line is <c>label token token ...</c>, separated by spaces or tabs; a row may have any
/// number of non-zeros, including none. A token is one of (the value is the part after the token's <em>last</em>
/// colon, and is "a number" when it parses as a float in the invariant culture):</para>
/// <list type="bullet">
/// <item><c>id:value</c>, <c>id</c> ASCII digits: the numeric feature <c>id</c> with that value (every libFM file);</item>
/// <item><c>name:value</c>, <c>name</c> any other text (it may contain colons): the named feature <c>name</c>;</item>
/// <item><c>field:category</c>, the part after the last colon not a number (e.g. <c>user:alice</c>): the named
/// feature <c>field:category</c> (the whole token) with value 1;</item>
/// <item><c>name</c>, a token without a colon (e.g. <c>user=42</c>): the named feature <c>name</c> with value 1.</item>
/// </list>
/// <para>Without hashing (<see cref="LibFmReadOptions.HashBits"/> = 0) only <c>id:value</c> is accepted and ids
/// index the embedding table directly; a named feature fails with its line and asks for hashing. With hashing, every
/// feature goes to row <see cref="FeatureHash.Row(ReadOnlySpan{byte}, int)"/> of its name (a numeric id's name is its
/// decimal text, of any length). An empty name or an empty value (<c>:1</c>, <c>3:</c>) is always malformed.</para>
/// <para>Values are kept as written. Labels and values must be finite and at most <see cref="MaxMagnitude"/> in
/// magnitude; without hashing, ids must be in 0..<see cref="MaxFeatureId"/>. Blank lines and lines whose first non-blank character is
/// <c>#</c> are skipped; lines end at LF, CRLF or CR; a UTF-8 byte order mark is skipped. Duplicate features within
/// a row are kept as given (neither merged nor summed). Every problem is reported as a
/// <see cref="DataFormatException"/> naming the file and the 1-based line; of several, the first in the file.</para>
/// <para>The text is read in chunks of about 1 MiB cut at line ends, parsed as UTF-8 bytes on
/// <see cref="LibFmReadOptions.Threads"/> threads and delivered in file order, with at most twice as many chunks in
/// flight as threads, so memory stays bounded whatever the file size. With <see cref="DataFormat.Criteo"/> each line
/// is read as <see cref="CriteoFormat"/> says, and blank and <c>#</c> lines are skipped likewise.</para>
/// </remarks>
public static class LibFmReader
{
    /// <summary>The largest feature id (so that the feature count, the largest id + 1, is an <see cref="int"/>).</summary>
    public const int MaxFeatureId = int.MaxValue - 1;

    /// <summary>
    /// The largest magnitude of a label or value: the product of two such values (a feature pair, a squared
    /// error) stays within single precision.
    /// </summary>
    public const float MaxMagnitude = 1e18f;

    /// <summary>Bytes of text per parse chunk (a chunk grows when one line is longer).</summary>
    internal const int DefaultChunkBytes = 1 << 20;

    /// <summary>Reads the file at <paramref name="path"/>.</summary>
    /// <param name="path">The data file.</param>
    /// <param name="options">Reading options; null means the defaults.</param>
    /// <returns>The dataset, named after <paramref name="path"/>.</returns>
    /// <exception cref="DataFormatException">The file is missing, empty, or malformed.</exception>
    public static SparseDataset Read(string path, LibFmReadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        return ReadBlocks(path, options, int.MaxValue).Single();
    }

    /// <summary>
    /// Reads the file at <paramref name="path"/> with hashing, as <see cref="Read(string, LibFmReadOptions?)"/> does, and
    /// also returns the names that went to each row, for explanations: a row's name is its feature's name (names that
    /// collide are joined by <c>|</c>), its field the part before the first <c>=</c> or <c>:</c>
    /// (<see cref="FeatureMap.DefaultField"/>), so that Criteo's features fall into their columns C1..C26, I1..I13.
    /// </summary>
    /// <exception cref="ArgumentException"><see cref="LibFmReadOptions.HashBits"/> is 0: without hashing, ids have no names.</exception>
    /// <exception cref="DataFormatException">The file is missing, empty, or malformed.</exception>
    public static (SparseDataset Data, FeatureMap Names) ReadWithNames(string path, LibFmReadOptions options)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        if (options.HashBits == 0) throw new ArgumentException("feature names come from hashing: give hash bits", nameof(options));
        var parser = new ChunkParser(options) { RecordNames = true };
        var names = new HashedNames();
        using var stream = Open(path);
        var data = Blocks(stream, path, options, parser, int.MaxValue, names).Single();
        return (data, names.ToFeatureMap());
    }

    /// <summary>Reads text from <paramref name="reader"/> (held in memory as UTF-8 while it is parsed).</summary>
    /// <param name="reader">The text source; it is read to its end and not disposed.</param>
    /// <param name="name">The source's name, used in messages and as the dataset's name.</param>
    /// <param name="options">Reading options; null means the defaults.</param>
    /// <returns>The dataset.</returns>
    /// <exception cref="DataFormatException">The text has no data rows or is malformed.</exception>
    public static SparseDataset Read(TextReader reader, string name, LibFmReadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(name);
        options ??= new LibFmReadOptions();
        var parser = new ChunkParser(options);
        var stream = new MemoryStream(new UTF8Encoding(false).GetBytes(reader.ReadToEnd()));
        return Blocks(stream, name, options, parser, int.MaxValue).Single();
    }

    /// <summary>
    /// Streams the file at <paramref name="path"/> as consecutive blocks of <paramref name="blockRows"/> rows (the
    /// last may have fewer), in file order, so that a file of any size is read in bounded memory. Each block's
    /// <see cref="SparseDataset.FeatureCount"/> is <see cref="LibFmReadOptions.FeatureCount"/> when set, 2^B with
    /// hashing, otherwise the block's largest id + 1. Messages name the file's own line numbers. The text is parsed
    /// in parallel ahead of the consumer, a few chunks at most.
    /// </summary>
    /// <exception cref="DataFormatException">The file is missing, empty, or malformed.</exception>
    public static IEnumerable<SparseDataset> ReadBlocks(string path, LibFmReadOptions? options = null, int blockRows = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockRows);
        options ??= new LibFmReadOptions();
        var parser = new ChunkParser(options);
        return OpenThenRead(path, options, parser, blockRows);
    }

    /// <summary>
    /// Streams UTF-8 text from <paramref name="stream"/> as <see cref="ReadBlocks(string, LibFmReadOptions?, int)"/> does a
    /// file: blocks of <paramref name="blockRows"/> rows in order, reading ahead a few chunks at most. The stream is read
    /// from its current position and not disposed.
    /// </summary>
    /// <param name="stream">The text, e.g. standard input or a decompressing stream.</param>
    /// <param name="name">The source's name, used in messages and as the blocks' name.</param>
    /// <param name="options">Reading options; null means the defaults.</param>
    /// <param name="blockRows">Rows per block (the last may have fewer).</param>
    /// <exception cref="DataFormatException">The text has no data rows or is malformed.</exception>
    public static IEnumerable<SparseDataset> ReadBlocks(Stream stream, string name, LibFmReadOptions? options = null, int blockRows = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(name);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockRows);
        options ??= new LibFmReadOptions();
        return Blocks(stream, name, options, new ChunkParser(options), blockRows);
    }

    private static IEnumerable<SparseDataset> OpenThenRead(string path, LibFmReadOptions options, ChunkParser parser, int blockRows)
    {
        using var stream = Open(path);
        foreach (var block in Blocks(stream, path, options, parser, blockRows))
            yield return block;
    }

    /// <summary>Opens <paramref name="path"/> for sequential reading, failing with a <see cref="DataFormatException"/>.</summary>
    private static FileStream Open(string path)
    {
        try
        {
            // bufferSize 1: the chunks are the only buffer
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new DataFormatException(path, 0, "file not found", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DataFormatException(path, 0, Directory.Exists(path) ? "is a directory, not a data file" : "permission denied", e);
        }
    }

    /// <summary>Cuts the parsed chunks of <paramref name="stream"/> into blocks of <paramref name="blockRows"/> rows, stopping at <see cref="LibFmReadOptions.MaxRows"/>.</summary>
    private static IEnumerable<SparseDataset> Blocks(Stream stream, string name, LibFmReadOptions options, ChunkParser parser, int blockRows, HashedNames? names = null)
    {
        var slices = new List<(ParsedChunk Chunk, int Start, int Count)>();
        long rows = 0, left = options.MaxRows > 0 ? options.MaxRows : long.MaxValue;
        int inBlock = 0;
        foreach (var chunk in ParseChunks(stream, name, options, parser))
        {
            if (chunk.Names is not null) names?.AddAll(chunk.Names);
            for (int at = 0; at < chunk.Rows && left > 0;)
            {
                int take = (int)Math.Min(Math.Min(chunk.Rows - at, blockRows - inBlock), left);
                slices.Add((chunk, at, take));
                at += take;
                inBlock += take;
                rows += take;
                left -= take;
                if (inBlock == blockRows)
                {
                    yield return Build(slices, parser.FeatureCount, name);
                    slices.Clear();
                    inBlock = 0;
                }
            }
            if (left == 0) break;
            if (chunk.Error is { } error)
                throw new DataFormatException(name, chunk.FirstLine + error.Line - 1, error.Problem);
        }
        if (inBlock > 0) yield return Build(slices, parser.FeatureCount, name);
        if (rows == 0) throw new DataFormatException(name, 0, "no data rows");
    }

    /// <summary>
    /// Reads <paramref name="stream"/> in chunks cut at line ends and parses them on worker threads, at most
    /// twice the thread count in flight, yielding them in file order with their first line numbers set.
    /// </summary>
    private static IEnumerable<ParsedChunk> ParseChunks(Stream stream, string name, LibFmReadOptions options, ChunkParser parser)
    {
        int threads = options.Threads > 0 ? options.Threads : Environment.ProcessorCount;
        var scheduler = new ConcurrentExclusiveSchedulerPair(TaskScheduler.Default, threads).ConcurrentScheduler;
        var pending = new Queue<Task<ParsedChunk>>();
        var chunker = new Chunker(stream, name, Math.Max(16, options.ChunkBytes));
        long line = 0;
        while (true)
        {
            while (pending.Count < 2 * threads && chunker.Next() is { } text)
                pending.Enqueue(Task.Factory.StartNew(() => parser.Parse(text), CancellationToken.None, TaskCreationOptions.DenyChildAttach, scheduler));
            if (pending.Count == 0) yield break;
            var chunk = pending.Dequeue().GetAwaiter().GetResult();
            chunk.FirstLine = line + 1;
            line += chunk.Lines;
            yield return chunk;
        }
    }

    /// <summary>One dataset from consecutive rows of parsed chunks.</summary>
    private static SparseDataset Build(List<(ParsedChunk Chunk, int Start, int Count)> slices, int featureCount, string name)
    {
        long nnz = 0;
        int rows = 0;
        foreach (var (c, start, count) in slices)
        {
            nnz += c.RowStart(start + count) - c.RowStart(start);
            rows += count;
        }
        var offsets = new long[rows + 1];
        var ids = new int[nnz];
        var values = new float[nnz];
        var labels = new float[rows];
        int row = 0;
        long at = 0;
        foreach (var (c, start, count) in slices)
        {
            int from = c.RowStart(start), to = c.RowStart(start + count);
            CollectionsMarshal.AsSpan(c.Ids)[from..to].CopyTo(ids.AsSpan((int)at));
            CollectionsMarshal.AsSpan(c.Values)[from..to].CopyTo(values.AsSpan((int)at));
            CollectionsMarshal.AsSpan(c.Labels).Slice(start, count).CopyTo(labels.AsSpan(row));
            for (int r = 0; r < count; r++)
                offsets[row + r + 1] = at + c.RowEnds[start + r] - from;
            row += count;
            at += to - from;
        }
        return new SparseDataset(offsets, ids, values, labels, featureCount, name);
    }

    /// <summary>Reads a stream in chunks that end at a line end (or the end of the stream).</summary>
    private sealed class Chunker(Stream stream, string name, int chunkBytes)
    {
        private byte[] _carry = [];
        private int _carryLength;
        private bool _end, _started;

        /// <summary>The next chunk (a pooled buffer the parser returns), or null at the end.</summary>
        public TextChunk? Next()
        {
            if (_end && _carryLength == 0) return null;
            byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Max(chunkBytes, 2 * _carryLength));
            _carry.AsSpan(0, _carryLength).CopyTo(buffer);
            int length = _carryLength;
            while (true)
            {
                if (!_end)
                {
                    int n = stream.ReadAtLeast(buffer.AsSpan(length), buffer.Length - length, throwOnEndOfStream: false);
                    length += n;
                    _end = length < buffer.Length;
                }
                if (!_started) length = SkipByteOrderMark(buffer, length);
                int cut = CutPoint(buffer.AsSpan(0, length), _end);
                if (cut >= 0)
                {
                    if (_carry.Length < length - cut) _carry = new byte[Math.Max(length - cut, chunkBytes)];
                    buffer.AsSpan(cut, length - cut).CopyTo(_carry);
                    _carryLength = length - cut;
                    if (cut > 0) return new TextChunk(buffer, cut);
                    ArrayPool<byte>.Shared.Return(buffer);
                    return null;
                }
                // one line fills the buffer: grow it
                byte[] larger = ArrayPool<byte>.Shared.Rent(2 * buffer.Length);
                buffer.AsSpan(0, length).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = larger;
            }
        }

        /// <summary>Drops a UTF-8 byte order mark at the start of the stream; fails on UTF-16 text.</summary>
        private int SkipByteOrderMark(byte[] buffer, int length)
        {
            var head = buffer.AsSpan(0, length);
            _started = true;
            if (head.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]))
            {
                head[3..].CopyTo(buffer);
                return length - 3;
            }
            if (head.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE]) || head.StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF]))
                throw new DataFormatException(name, 0, "is UTF-16 text; save it as UTF-8");
            return length;
        }

        /// <summary>
        /// Where a chunk of <paramref name="text"/> may end: after its last line end, but not between the CR and
        /// LF of a CRLF; -1 when there is none yet.
        /// </summary>
        private static int CutPoint(ReadOnlySpan<byte> text, bool end)
        {
            if (end) return text.Length;
            int i = text.LastIndexOfAny((byte)'\n', (byte)'\r');
            if (i == text.Length - 1 && text[i] == '\r')
                i = text[..i].LastIndexOfAny((byte)'\n', (byte)'\r');
            return i < 0 ? -1 : i + 1;
        }
    }

    /// <summary>A chunk of text: the first <see cref="Length"/> bytes of a pooled <see cref="Buffer"/>.</summary>
    private sealed record TextChunk(byte[] Buffer, int Length);

    /// <summary>The rows of one chunk, up to its first error.</summary>
    /// <param name="textBytes">The chunk's length, from which the lists' capacities are guessed (a feature takes at least 2 bytes, typically 6 or more).</param>
    private sealed class ParsedChunk(int textBytes)
    {
        public List<float> Labels { get; } = new(textBytes / 64);
        /// <summary>End of each row in <see cref="Ids"/>.</summary>
        public List<int> RowEnds { get; } = new(textBytes / 64);
        public List<int> Ids { get; } = new(textBytes / 6);
        public List<float> Values { get; } = new(textBytes / 6);
        /// <summary>With <see cref="ChunkParser.RecordNames"/>: the names hashed to each row, in order of appearance.</summary>
        public HashedNames? Names { get; init; }
        /// <summary>Lines in the chunk (counted to the error, if any).</summary>
        public long Lines { get; set; }
        /// <summary>The file's line number of the chunk's first line.</summary>
        public long FirstLine { get; set; }
        /// <summary>The first problem: its line within the chunk (1-based) and what it is.</summary>
        public (long Line, string Problem)? Error { get; set; }
        public int Rows => Labels.Count;
        public int RowStart(int row) => row == 0 ? 0 : RowEnds[row - 1];
    }

    /// <summary>The distinct names hashed to each row, in order of appearance (UTF-8 bytes).</summary>
    private sealed class HashedNames
    {
        private const int MaxShown = 3;
        private readonly Dictionary<int, List<byte[]>> _byRow = [];

        public void Add(int row, ReadOnlySpan<byte> name)
        {
            if (!_byRow.TryGetValue(row, out var names)) _byRow.Add(row, [name.ToArray()]);
            else if (names.Count <= MaxShown && !Contains(names, name)) names.Add(name.ToArray());
        }

        private static bool Contains(List<byte[]> names, ReadOnlySpan<byte> name)
        {
            foreach (byte[] n in names)
                if (name.SequenceEqual(n)) return true;
            return false;
        }

        /// <summary>Adds the names of a later chunk.</summary>
        public void AddAll(HashedNames later)
        {
            foreach (var (row, names) in later._byRow)
                foreach (byte[] name in names) Add(row, name);
        }

        public FeatureMap ToFeatureMap() => FeatureMap.FromNames(_byRow.Select(p =>
        {
            var names = p.Value.Select(n => Encoding.UTF8.GetString(n)).ToList();
            string shown = string.Join('|', names.Take(MaxShown)) + (names.Count > MaxShown ? "|..." : "");
            return (p.Key, shown, FeatureMap.DefaultField(names[0]));
        }));
    }

    /// <summary>A problem on the line being parsed.</summary>
    private sealed class LineException(string problem) : Exception(problem);

    /// <summary>Parses chunks of text with fixed options; safe to use from several threads at once.</summary>
    [System.Runtime.CompilerServices.SkipLocalsInit]
    private sealed class ChunkParser
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
            if (!float.IsFinite(label))
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
            CheckValue(token, value);
            if (_o.FeatureCount > 0 && id >= _o.FeatureCount)
                throw Error($"feature id {id} is not below the model's feature count {_o.FeatureCount}");
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
            if (!float.IsFinite(value))
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
                throw Error($"{columns} tab-separated columns; a Criteo line has {CriteoFormat.Columns} (label, I1..I{CriteoFormat.IntegerColumns}, C1..C{CriteoFormat.CategoricalColumns})");
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

        private void AddHashed(ParsedChunk chunk, ReadOnlySpan<byte> name, float value = 1f)
        {
            int row = FeatureHash.Row(name, _bits);
            chunk.Ids.Add(row);
            chunk.Values.Add(value);
            chunk.Names?.Add(row, name);
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
        int start = rest.IndexOfAnyExcept((byte)' ', (byte)'\t');
        if (start < 0)
        {
            rest = [];
            return [];
        }
        rest = rest[start..];
        int end = rest.IndexOfAny((byte)' ', (byte)'\t');
        if (end < 0) end = rest.Length;
        var token = rest[..end];
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
    /// with <see cref="NumberStyles.Float"/> and the invariant culture, with a fast path for plain decimals.
    /// </summary>
    private static bool TryParseFloat(ReadOnlySpan<byte> s, out float value) =>
        TryParsePlainDecimal(s, out value) || float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out value);

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
