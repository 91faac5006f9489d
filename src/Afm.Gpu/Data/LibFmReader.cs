using System.Runtime.InteropServices;
using System.Text;

namespace Afm.Gpu.Data;

/// <summary>
/// Reads libFM / libsvm text (or Criteo's TSV, <see cref="CriteoFormat"/>, or CSV with a header, <see cref="CsvFormat"/>) into a <see cref="SparseDataset"/>,
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
/// is read as <see cref="CriteoFormat"/> says, and blank and <c>#</c> lines are skipped likewise. With
/// <see cref="DataFormat.Csv"/> or <see cref="DataFormat.Tsv"/> the header line is read first, then each line as <see cref="CsvFormat"/> says (blank lines
/// are skipped; <c>#</c> has no meaning), and line numbers count the header as line 1.</para>
/// </remarks>
public static partial class LibFmReader
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

    /// <summary>Whether the file at <paramref name="path"/> is gzip data (its first two bytes are gzip's magic); false when it cannot be read or is a pipe.</summary>
    public static bool IsGzip(string path)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            if (!file.CanSeek) return false; // a pipe: looking would take its bytes
            Span<byte> magic = stackalloc byte[2];
            return file.ReadAtLeast(magic, 2, throwOnEndOfStream: false) == 2 && IsGzipMagic(magic);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static bool IsGzipMagic(ReadOnlySpan<byte> head) => head.Length >= 2 && head[0] == 0x1f && head[1] == 0x8b;

    /// <summary>
    /// Opens <paramref name="path"/> for sequential reading, failing with a <see cref="DataFormatException"/>; a gzip
    /// file (known by its first two bytes, whatever its name) is decompressed as it is read (<see cref="GzipInput"/>).
    /// </summary>
    private static Stream Open(string path)
    {
        try
        {
            // bufferSize 1: the chunks are the only buffer
            var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            // The first two bytes tell gzip from text; they are read once and handed on, so a pipe works too.
            var head = new byte[2];
            int n;
            try
            {
                n = file.ReadAtLeast(head, 2, throwOnEndOfStream: false);
            }
            catch
            {
                file.Dispose();
                throw;
            }
            var whole = new PrefixedStream(head.AsMemory(0, n), file);
            return IsGzipMagic(head.AsSpan(0, n)) ? new GzipInput(whole) : whole;
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
        long line = 0;
        if (CsvFormat.HasHeader(options.Format))
        {
            stream = ReadCsvHeader(stream, name, parser);
            line = 1;
        }
        var chunker = new Chunker(stream, name, Math.Max(16, options.ChunkBytes));
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
}
