using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Hashing;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using Afm.Gpu.IO;

namespace Afm.Gpu.Data;

/// <summary>
/// The fixed header of a binary dataset cache (<c>.afmbin</c>): what the rows are, where they came from and with
/// which reading options. The layout is in docs/data-cache.md.
/// </summary>
public sealed record CacheHeader
{
    /// <summary>Format of the text the cache was converted from (0: libFM / libsvm text).</summary>
    public int FormatId { get; init; }
    /// <summary>Feature hashing applied when reading (ids hashed into 2^HashBits rows); 0: none.</summary>
    public int HashBits { get; init; }
    /// <summary>Fingerprint (XxHash64) of the <see cref="LibFmReadOptions"/> the text was read with.</summary>
    public ulong OptionsFingerprint { get; init; }
    /// <summary>Length in bytes of the source text file.</summary>
    public long SourceLength { get; init; }
    /// <summary>Last write time of the source text file (UTC ticks).</summary>
    public long SourceWriteTicks { get; init; }
    /// <summary>Rows.</summary>
    public long Rows { get; init; }
    /// <summary>Non-zeros.</summary>
    public long NonZeros { get; init; }
    /// <summary>Number of features: every id is below it.</summary>
    public int FeatureCount { get; init; }
    /// <summary>Largest number of non-zeros in one row.</summary>
    public int MaxNnz { get; init; }
    /// <summary>Rows per chunk (the last chunk may hold fewer).</summary>
    public int ChunkRows { get; init; }
    /// <summary>Number of chunks.</summary>
    public int ChunkCount { get; init; }
    /// <summary>Smallest label.</summary>
    public float LabelMin { get; init; }
    /// <summary>Largest label.</summary>
    public float LabelMax { get; init; }
    /// <summary>Mean label.</summary>
    public double LabelMean { get; init; }
    /// <summary>Sum of squared deviations of the labels from their mean.</summary>
    public double LabelM2 { get; init; }
    /// <summary>Rows whose label is above 0 (the positives of logistic loss).</summary>
    public long Positives { get; init; }
    /// <summary>0-based index of the first row whose label is not 0, 1 or -1; -1 when all are.</summary>
    public long FirstNonBinaryRow { get; init; }
    /// <summary>The label of <see cref="FirstNonBinaryRow"/>.</summary>
    public float FirstNonBinaryLabel { get; init; }
    /// <summary>Largest magnitude of a feature value.</summary>
    public float MaxAbsValue { get; init; }
    /// <summary>Largest magnitude of a label.</summary>
    public float MaxAbsLabel { get; init; }
    /// <summary>Sum over rows of the row's feature pair count n (n - 1) / 2.</summary>
    public double PairSum { get; init; }
    /// <summary>XxHash64 of the header's first 248 bytes, as stored.</summary>
    public ulong Checksum { get; init; }
}

/// <summary>
/// A binary dataset cache: libFM rows converted once into chunks of CSR arrays with a checksum each, read back
/// through memory mapping one chunk at a time, so that a file of any size is used in bounded memory. Write one with
/// <see cref="Write"/>, open it with <see cref="Open"/>; <see cref="ReadChunk"/> verifies a chunk's checksum and
/// fails with a <see cref="DataFormatException"/> naming the file and chunk. The layout is in docs/data-cache.md.
/// </summary>
public sealed class CacheFile : IDisposable
{
    /// <summary>The first 8 bytes of every cache file.</summary>
    public static ReadOnlySpan<byte> Magic => "AFMBIN\r\n"u8;

    /// <summary>The layout version this code writes and reads.</summary>
    public const int Version = 1;

    /// <summary>Rows per chunk unless asked otherwise.</summary>
    public const int DefaultChunkRows = 1 << 16;

    /// <summary>The conventional file name extension of a cache.</summary>
    public const string Extension = ".afmbin";

    private const int HeaderBytes = 256;
    private const int ChecksumOffset = HeaderBytes - 8;
    private const int TableEntryBytes = 32;

    private readonly MemoryMappedFile _map;
    private readonly long[] _chunkOffsets;
    private readonly int[] _chunkRowCounts;
    private readonly long[] _chunkNonZeros;
    private readonly ulong[] _chunkChecksums;
    private readonly bool[] _chunkOnes;
    private readonly long[] _chunkFirstRows;

    private CacheFile(string path, MemoryMappedFile map, CacheHeader header, long[] offsets, int[] rows, long[] nnz, ulong[] checksums, bool[] ones)
    {
        _chunkOnes = ones;
        Path = path;
        _map = map;
        Header = header;
        _chunkOffsets = offsets;
        _chunkRowCounts = rows;
        _chunkNonZeros = nnz;
        _chunkChecksums = checksums;
        _chunkFirstRows = new long[rows.Length + 1];
        for (int c = 0; c < rows.Length; c++) _chunkFirstRows[c + 1] = _chunkFirstRows[c] + rows[c];
    }

    /// <summary>The cache file's path.</summary>
    public string Path { get; }

    /// <summary>The header.</summary>
    public CacheHeader Header { get; }

    /// <summary>Number of chunks.</summary>
    public int ChunkCount => _chunkRowCounts.Length;

    /// <summary>Rows of chunk <paramref name="chunk"/>.</summary>
    public int ChunkRows(int chunk) => _chunkRowCounts[chunk];

    /// <summary>0-based index in the file of the first row of chunk <paramref name="chunk"/>.</summary>
    public long ChunkFirstRow(int chunk) => _chunkFirstRows[chunk];

    /// <summary>Where chunk <paramref name="chunk"/> lies in the file.</summary>
    internal (long Offset, long Length) ChunkByteRange(int chunk) => (_chunkOffsets[chunk], ChunkBytes(_chunkRowCounts[chunk], _chunkNonZeros[chunk], _chunkOnes[chunk]));

    /// <summary>
    /// Whether the file at <paramref name="path"/> starts with the cache magic (false when it cannot be read). A pipe
    /// is not read (it is no cache), so that its first bytes stay for the reader.
    /// </summary>
    public static bool IsCache(string path)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            if (!f.CanSeek) return false;
            Span<byte> head = stackalloc byte[8];
            return f.ReadAtLeast(head, 8, throwOnEndOfStream: false) == 8 && head.SequenceEqual(Magic);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// A fingerprint of what reading options make of the text: XxHash64 of the UTF-8 text
    /// <c>format=F;hash_bits=B;max_rows=N</c> (the <see cref="InputEncoding"/> and the row limit). Options that only
    /// check the rows (limits, labels) or tune the reading (threads) do not change it.
    /// </summary>
    public static ulong Fingerprint(LibFmReadOptions? options) =>
        XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(Inv($"format={FormatIdOf(options)};hash_bits={HashBitsOf(options)};max_rows={options?.MaxRows ?? 0}{CsvColumnsOf(options)}")));

    /// <summary>
    /// For CSV, what the fingerprint adds: <c>;label=L;ignore=I</c> (the label column and the ignored ones), <c>;numeric=N</c> when there are numeric columns,
    /// <c>;bucket=B</c> when there are bucketed ones, and
    /// <c>;label_optional=1</c> when the label column may be absent (data to be scored), so that a cache of such rows is
    /// never taken for labelled ones; empty for other formats, whose fingerprints stay as they were.
    /// </summary>
    private static string CsvColumnsOf(LibFmReadOptions? options)
    {
        if (options is null || !CsvFormat.HasHeader(options.Format)) return "";
        var input = options.Encoding;
        string numeric = string.IsNullOrEmpty(input.NumericColumns) ? "" : $";numeric={input.NumericColumns}";
        string bucket = input.BucketColumns is null ? "" : $";bucket={input.BucketColumns}";
        return $";label={input.LabelColumn};ignore={input.IgnoredColumns}{numeric}{bucket}{(options.LabelOptional ? ";label_optional=1" : "")}";
    }

    /// <summary>The reading options a cache of text read with <paramref name="options"/> is built with: what changes the rows read, nothing that only checks them.</summary>
    public static LibFmReadOptions BuildOptions(LibFmReadOptions? options) => new()
    {
        Format = options?.Format ?? DataFormat.LibFm,
        HashBits = options?.HashBits ?? 0,
        LabelColumn = options?.LabelColumn,
        IgnoredColumns = options?.IgnoredColumns,
        NumericColumns = options?.NumericColumns,
        BucketColumns = options?.BucketColumns,
        LabelOptional = options?.LabelOptional ?? false,
        RequireAllColumns = options?.RequireAllColumns ?? true,
        MaxRows = options?.MaxRows ?? 0,
        Threads = options?.Threads ?? 0,
    };

    private static string Inv(FormattableString s) => s.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Converts the libFM text file <paramref name="source"/> into a cache at <paramref name="output"/>, streaming:
    /// the text is read block by block (<see cref="LibFmReader.ReadBlocks(string, LibFmReadOptions?, int)"/>) and each block is written as a chunk
    /// while the next is parsed, so memory holds a few chunks whatever the file's size. The file is written
    /// atomically, its header completed at the end.
    /// </summary>
    /// <param name="source">The libFM text file.</param>
    /// <param name="output">The cache file to write (not <paramref name="source"/>).</param>
    /// <param name="options">Reading options; their fingerprint is kept in the header.</param>
    /// <param name="chunkRows">Rows per chunk.</param>
    /// <returns>The header written.</returns>
    /// <exception cref="DataFormatException">The text is missing, empty or malformed (with its line).</exception>
    public static CacheHeader Write(string source, string output, LibFmReadOptions? options = null, int chunkRows = DefaultChunkRows)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkRows);
        if (FilePaths.Same(source, output))
            throw new ArgumentException($"{output}: the cache would overwrite its source text; choose another output");
        var info = new FileInfo(source);
        if (!info.Exists)
        {
            if (Directory.Exists(source)) throw new DataFormatException(source, 0, "is a directory, not a data file");
            throw new DataFormatException(source, 0, "file not found");
        }
        long length = info.Length, ticks = info.LastWriteTimeUtc.Ticks;
        CacheHeader? header = null;
        AtomicFile.Write(output, stream =>
        {
            var writer = new ChunkWriter(stream);
            writer.Begin();
            foreach (var block in Prefetch(LibFmReader.ReadBlocks(source, options, chunkRows), 2))
                writer.Add(block);
            header = writer.Finish(new CacheHeader
            {
                FormatId = FormatIdOf(options),
                HashBits = HashBitsOf(options),
                OptionsFingerprint = Fingerprint(options),
                SourceLength = length,
                SourceWriteTicks = ticks,
                ChunkRows = chunkRows,
            });
        });
        return header!;
    }

    /// <summary>The format id of text read with <paramref name="options"/>: the <see cref="DataFormat"/> (0, libFM / libsvm text; 1, Criteo TSV; 2, CSV; 3, TSV with a header).</summary>
    internal static int FormatIdOf(LibFmReadOptions? options) => (int)(options?.Format ?? DataFormat.LibFm);

    /// <summary>The hash bits of text read with <paramref name="options"/> (0: ids used as written).</summary>
    internal static int HashBitsOf(LibFmReadOptions? options) => options?.HashBits ?? 0;

    /// <summary>Opens a cache, checking its magic, version, header checksum and chunk table.</summary>
    /// <exception cref="DataFormatException">The file is missing, not a cache, of another version, truncated or corrupt.</exception>
    public static CacheFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists)
            throw new DataFormatException(path, 0, Directory.Exists(path) ? "is a directory, not a data file" : "file not found");
        if (info.Length < HeaderBytes)
            throw new DataFormatException(path, 0, IsCache(path) ? "the cache is truncated (shorter than its header)" : "not an afm-gpu data cache");
        MemoryMappedFile map;
        try
        {
            map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DataFormatException(path, 0, "permission denied", e);
        }
        try
        {
            var head = ReadBytes(map, 0, HeaderBytes);
            var header = ParseHeader(path, head);
            long tableOffset = BinaryPrimitives.ReadInt64LittleEndian(head.AsSpan(80));
            long tableBytes = (long)header.ChunkCount * TableEntryBytes + 8;
            if (tableOffset < HeaderBytes || tableOffset + tableBytes > info.Length)
                throw new DataFormatException(path, 0, "the cache is truncated (its chunk table is missing); rebuild it with 'afm-gpu cache'");
            var table = ReadBytes(map, tableOffset, (int)tableBytes);
            if (XxHash64.HashToUInt64(table.AsSpan(0, table.Length - 8)) != BinaryPrimitives.ReadUInt64LittleEndian(table.AsSpan(table.Length - 8)))
                throw new DataFormatException(path, 0, "the cache's chunk table is corrupt (checksum mismatch); rebuild it with 'afm-gpu cache'");
            int n = header.ChunkCount;
            var offsets = new long[n];
            var rows = new int[n];
            var nnz = new long[n];
            var sums = new ulong[n];
            var ones = new bool[n];
            for (int c = 0; c < n; c++)
            {
                var e = table.AsSpan(c * TableEntryBytes, TableEntryBytes);
                offsets[c] = BinaryPrimitives.ReadInt64LittleEndian(e);
                rows[c] = BinaryPrimitives.ReadInt32LittleEndian(e[8..]);
                int flags = BinaryPrimitives.ReadInt32LittleEndian(e[12..]);
                ones[c] = (flags & ValuesAreOnes) != 0;
                nnz[c] = BinaryPrimitives.ReadInt64LittleEndian(e[16..]);
                sums[c] = BinaryPrimitives.ReadUInt64LittleEndian(e[24..]);
                if ((flags & ~ValuesAreOnes) != 0 || offsets[c] < HeaderBytes || rows[c] < 0 || nnz[c] < 0
                    || offsets[c] + ChunkBytes(rows[c], nnz[c], ones[c]) > tableOffset)
                    throw new DataFormatException(path, 0, $"the cache's chunk table is inconsistent at chunk {c}; rebuild it with 'afm-gpu cache'");
            }
            return new CacheFile(path, map, header, offsets, rows, nnz, sums, ones);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    private static CacheHeader ParseHeader(string path, byte[] h)
    {
        var s = h.AsSpan();
        if (!s[..8].SequenceEqual(Magic)) throw new DataFormatException(path, 0, "not an afm-gpu data cache");
        int version = BinaryPrimitives.ReadInt32LittleEndian(s[8..]);
        if (version != Version)
            throw new DataFormatException(path, 0, $"data cache version {version}; this afm-gpu reads version {Version}: rebuild it with 'afm-gpu cache'");
        ulong checksum = BinaryPrimitives.ReadUInt64LittleEndian(s[ChecksumOffset..]);
        if (XxHash64.HashToUInt64(s[..ChecksumOffset]) != checksum)
            throw new DataFormatException(path, 0, "the cache's header is corrupt (checksum mismatch); rebuild it with 'afm-gpu cache'");
        return new CacheHeader
        {
            FormatId = BinaryPrimitives.ReadInt32LittleEndian(s[16..]),
            HashBits = BinaryPrimitives.ReadInt32LittleEndian(s[20..]),
            OptionsFingerprint = BinaryPrimitives.ReadUInt64LittleEndian(s[24..]),
            SourceLength = BinaryPrimitives.ReadInt64LittleEndian(s[32..]),
            SourceWriteTicks = BinaryPrimitives.ReadInt64LittleEndian(s[40..]),
            Rows = BinaryPrimitives.ReadInt64LittleEndian(s[48..]),
            NonZeros = BinaryPrimitives.ReadInt64LittleEndian(s[56..]),
            FeatureCount = BinaryPrimitives.ReadInt32LittleEndian(s[64..]),
            MaxNnz = BinaryPrimitives.ReadInt32LittleEndian(s[68..]),
            ChunkRows = BinaryPrimitives.ReadInt32LittleEndian(s[72..]),
            ChunkCount = BinaryPrimitives.ReadInt32LittleEndian(s[76..]),
            LabelMin = BinaryPrimitives.ReadSingleLittleEndian(s[88..]),
            LabelMax = BinaryPrimitives.ReadSingleLittleEndian(s[92..]),
            LabelMean = BinaryPrimitives.ReadDoubleLittleEndian(s[96..]),
            LabelM2 = BinaryPrimitives.ReadDoubleLittleEndian(s[104..]),
            Positives = BinaryPrimitives.ReadInt64LittleEndian(s[112..]),
            FirstNonBinaryRow = BinaryPrimitives.ReadInt64LittleEndian(s[120..]),
            FirstNonBinaryLabel = BinaryPrimitives.ReadSingleLittleEndian(s[128..]),
            MaxAbsValue = BinaryPrimitives.ReadSingleLittleEndian(s[132..]),
            MaxAbsLabel = BinaryPrimitives.ReadSingleLittleEndian(s[136..]),
            PairSum = BinaryPrimitives.ReadDoubleLittleEndian(s[144..]),
            Checksum = checksum,
        };
    }

    private static byte[] FormatHeader(CacheHeader h, long tableOffset)
    {
        var b = new byte[HeaderBytes];
        var s = b.AsSpan();
        Magic.CopyTo(s);
        BinaryPrimitives.WriteInt32LittleEndian(s[8..], Version);
        BinaryPrimitives.WriteInt32LittleEndian(s[12..], HeaderBytes);
        BinaryPrimitives.WriteInt32LittleEndian(s[16..], h.FormatId);
        BinaryPrimitives.WriteInt32LittleEndian(s[20..], h.HashBits);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], h.OptionsFingerprint);
        BinaryPrimitives.WriteInt64LittleEndian(s[32..], h.SourceLength);
        BinaryPrimitives.WriteInt64LittleEndian(s[40..], h.SourceWriteTicks);
        BinaryPrimitives.WriteInt64LittleEndian(s[48..], h.Rows);
        BinaryPrimitives.WriteInt64LittleEndian(s[56..], h.NonZeros);
        BinaryPrimitives.WriteInt32LittleEndian(s[64..], h.FeatureCount);
        BinaryPrimitives.WriteInt32LittleEndian(s[68..], h.MaxNnz);
        BinaryPrimitives.WriteInt32LittleEndian(s[72..], h.ChunkRows);
        BinaryPrimitives.WriteInt32LittleEndian(s[76..], h.ChunkCount);
        BinaryPrimitives.WriteInt64LittleEndian(s[80..], tableOffset);
        BinaryPrimitives.WriteSingleLittleEndian(s[88..], h.LabelMin);
        BinaryPrimitives.WriteSingleLittleEndian(s[92..], h.LabelMax);
        BinaryPrimitives.WriteDoubleLittleEndian(s[96..], h.LabelMean);
        BinaryPrimitives.WriteDoubleLittleEndian(s[104..], h.LabelM2);
        BinaryPrimitives.WriteInt64LittleEndian(s[112..], h.Positives);
        BinaryPrimitives.WriteInt64LittleEndian(s[120..], h.FirstNonBinaryRow);
        BinaryPrimitives.WriteSingleLittleEndian(s[128..], h.FirstNonBinaryLabel);
        BinaryPrimitives.WriteSingleLittleEndian(s[132..], h.MaxAbsValue);
        BinaryPrimitives.WriteSingleLittleEndian(s[136..], h.MaxAbsLabel);
        BinaryPrimitives.WriteDoubleLittleEndian(s[144..], h.PairSum);
        // bytes 152..247 are reserved (0)
        BinaryPrimitives.WriteUInt64LittleEndian(s[ChecksumOffset..], XxHash64.HashToUInt64(s[..ChecksumOffset]));
        return b;
    }

    /// <summary>Bytes of a chunk of <paramref name="rows"/> rows and <paramref name="nnz"/> non-zeros.</summary>
    private static long ChunkBytes(long rows, long nnz, bool onesOmitted) => 4 * (rows + 1) + 4 * rows + (onesOmitted ? 4 : 8) * nnz;

    /// <summary>Chunk flag: every value of the chunk is 1 (one-hot data) and the values array is not stored.</summary>
    private const int ValuesAreOnes = 1;

    private static byte[] ReadBytes(MemoryMappedFile map, long offset, int length)
    {
        var bytes = new byte[length];
        using var view = map.CreateViewStream(offset, length, MemoryMappedFileAccess.Read);
        view.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>
    /// Reads chunk <paramref name="chunk"/> as a dataset (its rows in file order), verifying its checksum. The
    /// mapped view is released before returning, so only the returned arrays stay in memory. Thread-safe.
    /// </summary>
    /// <exception cref="DataFormatException">The chunk's checksum does not match or its arrays are inconsistent.</exception>
    public SparseDataset ReadChunk(int chunk)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(chunk);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(chunk, ChunkCount);
        int rows = _chunkRowCounts[chunk];
        int nnz = checked((int)_chunkNonZeros[chunk]);
        var offsets = new int[rows + 1];
        var labels = new float[rows];
        var ids = new int[nnz];
        var values = new float[nnz];
        bool ones = _chunkOnes[chunk];
        var hash = new XxHash64();
        using (var view = _map.CreateViewStream(_chunkOffsets[chunk], ChunkBytes(rows, nnz, ones), MemoryMappedFileAccess.Read))
        {
            ReadArray(view, MemoryMarshal.AsBytes(offsets.AsSpan()), hash);
            ReadArray(view, MemoryMarshal.AsBytes(labels.AsSpan()), hash);
            ReadArray(view, MemoryMarshal.AsBytes(ids.AsSpan()), hash);
            if (ones) values.AsSpan().Fill(1f);
            else ReadArray(view, MemoryMarshal.AsBytes(values.AsSpan()), hash);
        }
        if (hash.GetCurrentHashAsUInt64() != _chunkChecksums[chunk])
            throw ChunkError(chunk, "is corrupt (checksum mismatch)");
        var longOffsets = new long[rows + 1];
        for (int r = 0; r <= rows; r++) longOffsets[r] = offsets[r];
        try
        {
            return new SparseDataset(longOffsets, ids, values, labels, Header.FeatureCount, Path);
        }
        catch (ArgumentException e)
        {
            throw ChunkError(chunk, $"is inconsistent ({e.Message})");
        }
    }

    private DataFormatException ChunkError(int chunk, string what) => new(Path, 0,
        $"chunk {chunk} of {ChunkCount} (rows {ChunkFirstRow(chunk) + 1}-{ChunkFirstRow(chunk + 1)}) {what}; rebuild the cache with 'afm-gpu cache'");

    private static void ReadArray(Stream view, Span<byte> bytes, XxHash64 hash)
    {
        view.ReadExactly(bytes);
        hash.Append(bytes);
    }

    /// <summary>
    /// Reads the chunks <paramref name="order"/> in that order with up to <paramref name="ahead"/> of them read in
    /// the background ahead of the consumer (each verified as <see cref="ReadChunk"/> does). A failure to read one is
    /// raised where it would have been consumed.
    /// </summary>
    public IEnumerable<(int Chunk, SparseDataset Rows)> ReadChunks(IReadOnlyList<int> order, int ahead = 2) =>
        Prefetch(order.Select(c => (c, ReadChunk(c))), ahead);

    /// <summary>
    /// Enumerates <paramref name="source"/> on a background thread, up to <paramref name="ahead"/> items ahead of the
    /// consumer; an exception of the source is rethrown to the consumer; stopping early stops the producer.
    /// </summary>
    internal static IEnumerable<T> Prefetch<T>(IEnumerable<T> source, int ahead)
    {
        using var queue = new BlockingCollection<T>(Math.Max(1, ahead));
        using var stop = new CancellationTokenSource();
        Exception? failure = null;
        var producer = Task.Run(() =>
        {
            try
            {
                foreach (var item in source)
                    queue.Add(item, stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
            catch (Exception e) { failure = e; }
            finally { queue.CompleteAdding(); }
        });
        try
        {
            foreach (var item in queue.GetConsumingEnumerable())
                yield return item;
            producer.Wait();
            if (failure is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
        finally
        {
            stop.Cancel();
            try { producer.Wait(); }
            catch (AggregateException) { }
        }
    }

    /// <summary>
    /// Checks the cache's rows against what reading the text with <paramref name="options"/> would have checked
    /// (feature count, id limit, row length, binary labels), naming the file and the figure; the rows themselves
    /// were read with the options in the header.
    /// </summary>
    /// <exception cref="DataFormatException">A limit of <paramref name="options"/> is exceeded.</exception>
    public void CheckAgainst(LibFmReadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var h = Header;
        if (h.FormatId != FormatIdOf(options) || h.HashBits != HashBitsOf(options))
            throw new DataFormatException(Path, 0, $"the cache holds {Describe(h.FormatId, h.HashBits)}, but {Describe(FormatIdOf(options), HashBitsOf(options))} is needed here; build the cache with the same --format and --hash-bits");
        if (CsvFormat.HasHeader((DataFormat)h.FormatId) && !CsvColumnsMatch(h.OptionsFingerprint, options))
            throw new DataFormatException(Path, 0, $"the cache holds CSV rows read with other label, ignored, numeric or bucketed columns than {options.Encoding} needs here; build the cache with the same --label-column, --ignore-columns, --numeric-columns and --bucket-columns");
        if (options.FeatureCount > 0 && h.FeatureCount > options.FeatureCount)
            throw new DataFormatException(Path, 0, $"feature ids go up to {h.FeatureCount - 1}, not below the model's feature count {options.FeatureCount} (features new since training; afm-gpu's --unknown-ids ignore drops such ids)");
        if (options.MaxFeatureCount > 0 && h.FeatureCount > options.MaxFeatureCount)
            throw new DataFormatException(Path, 0, $"feature id {h.FeatureCount - 1} is too large: an embedding table this wide holds ids up to {options.MaxFeatureCount - 1} (ids index the table directly; renumber them densely from 0)");
        if (options.MaxRowNonZeros > 0 && h.MaxNnz > options.MaxRowNonZeros)
            throw new DataFormatException(Path, 0, $"a row has {h.MaxNnz} non-zeros; at most {options.MaxRowNonZeros} are allowed for this model, as all pairs of a row are held in memory at once (prune or split long rows)");
        if (options.BinaryLabels && h.FirstNonBinaryRow >= 0)
            throw new DataFormatException(Path, 0, $"row {h.FirstNonBinaryRow + 1} has label {h.FirstNonBinaryLabel}: logistic loss takes labels 0/1 or -1/1");
    }

    /// <summary>
    /// Whether a CSV cache of fingerprint <paramref name="fingerprint"/> was read with the columns of
    /// <paramref name="options"/>: with or without its row limit, and labelled, or (where labels are not needed) without
    /// its label column.
    /// </summary>
    private static bool CsvColumnsMatch(ulong fingerprint, LibFmReadOptions options)
    {
        foreach (long maxRows in (long[])[options.MaxRows, 0])
            foreach (bool optional in options.LabelOptional ? (bool[])[false, true] : [false])
                if (fingerprint == Fingerprint(options with { MaxRows = maxRows, LabelOptional = optional }))
                    return true;
        return false;
    }

    private static string Describe(int formatId, int hashBits) =>
        ((DataFormat)formatId).ToString().ToLowerInvariant() + " rows " + (hashBits > 0 ? $"hashed into 2^{hashBits} rows" : "with ids as written");

    /// <summary>All rows in memory, in file order (for work that needs them all at once).</summary>
    public SparseDataset ReadAll() => SparseDataset.Concat(ReadChunks(Enumerable.Range(0, ChunkCount).ToArray()).Select(c => c.Rows).ToList(), Path);

    /// <inheritdoc/>
    public void Dispose() => _map.Dispose();

    /// <summary>Writes chunks to a stream and gathers what the header says about them.</summary>
    private sealed class ChunkWriter(Stream stream)
    {
        private readonly List<(long Offset, int Rows, long Nnz, ulong Checksum, bool Ones)> _table = [];
        private long _rows, _nnz, _positives, _firstNonBinary = -1;
        private int _features, _maxNnz;
        private float _min = float.PositiveInfinity, _max = float.NegativeInfinity, _nonBinaryLabel, _maxAbsValue, _maxAbsLabel;
        private double _mean, _m2, _pairs;

        public void Begin() => stream.Write(new byte[HeaderBytes]);

        public void Add(SparseDataset block)
        {
            if (block.NonZeros > int.MaxValue) throw new DataFormatException(block.Name, 0, "a chunk holds more than 2^31 non-zeros; use fewer rows per chunk");
            var offsets = new int[block.Rows + 1];
            for (int r = 0; r <= block.Rows; r++) offsets[r] = (int)block.Offsets[r];
            var hash = new XxHash64();
            long at = stream.Position;
            Put(MemoryMarshal.AsBytes(offsets.AsSpan()), hash);
            Put(MemoryMarshal.AsBytes(block.Labels.AsSpan()), hash);
            Put(MemoryMarshal.AsBytes(block.FeatureIds.AsSpan()), hash);
            // One-hot data (every value 1, as in most CTR logs) stores no values: a third less to write and read.
            bool ones = !block.Values.AsSpan().ContainsAnyExcept(1f);
            if (!ones) Put(MemoryMarshal.AsBytes(block.Values.AsSpan()), hash);
            _table.Add((at, block.Rows, block.NonZeros, hash.GetCurrentHashAsUInt64(), ones));
            Gather(block);
        }

        private void Put(ReadOnlySpan<byte> bytes, XxHash64 hash)
        {
            stream.Write(bytes);
            hash.Append(bytes);
        }

        private void Gather(SparseDataset block)
        {
            _features = Math.Max(_features, block.FeatureCount);
            _maxNnz = Math.Max(_maxNnz, block.MaxNnz);
            var labels = block.Labels;
            double sum = 0;
            for (int r = 0; r < labels.Length; r++)
            {
                float y = labels[r];
                _min = MathF.Min(_min, y);
                _max = MathF.Max(_max, y);
                _maxAbsLabel = MathF.Max(_maxAbsLabel, MathF.Abs(y));
                if (y > 0) _positives++;
                if (_firstNonBinary < 0 && y is not (0f or 1f or -1f)) (_firstNonBinary, _nonBinaryLabel) = (_rows + r, y);
                sum += y;
                _pairs += Kernels.ModelShape.PairCount(block.RowLength(r));
            }
            // The block's mean and sum of squared deviations, merged into the running ones (Chan et al.'s update).
            int n = labels.Length;
            if (n > 0)
            {
                double mean = sum / n, m2 = 0;
                foreach (float y in labels) m2 += (y - mean) * (y - mean);
                long total = _rows + n;
                double delta = mean - _mean;
                _mean += delta * n / total;
                _m2 += m2 + delta * delta * _rows * n / total;
            }
            _maxAbsValue = Math.Max(_maxAbsValue, Kernels.Cpu.Simd.MaxMagnitude(block.Values));
            _rows += block.Rows;
            _nnz += block.NonZeros;
        }


        public CacheHeader Finish(CacheHeader given)
        {
            long tableOffset = stream.Position;
            var table = new byte[_table.Count * TableEntryBytes + 8];
            for (int c = 0; c < _table.Count; c++)
            {
                var e = table.AsSpan(c * TableEntryBytes);
                BinaryPrimitives.WriteInt64LittleEndian(e, _table[c].Offset);
                BinaryPrimitives.WriteInt32LittleEndian(e[8..], _table[c].Rows);
                BinaryPrimitives.WriteInt32LittleEndian(e[12..], _table[c].Ones ? ValuesAreOnes : 0);
                BinaryPrimitives.WriteInt64LittleEndian(e[16..], _table[c].Nnz);
                BinaryPrimitives.WriteUInt64LittleEndian(e[24..], _table[c].Checksum);
            }
            BinaryPrimitives.WriteUInt64LittleEndian(table.AsSpan(table.Length - 8), XxHash64.HashToUInt64(table.AsSpan(0, table.Length - 8)));
            stream.Write(table);
            var header = given with
            {
                Rows = _rows, NonZeros = _nnz, FeatureCount = _features, MaxNnz = _maxNnz, ChunkCount = _table.Count,
                LabelMin = _min, LabelMax = _max, LabelMean = _mean, LabelM2 = _m2, Positives = _positives,
                FirstNonBinaryRow = _firstNonBinary, FirstNonBinaryLabel = _nonBinaryLabel,
                MaxAbsValue = _maxAbsValue, MaxAbsLabel = _maxAbsLabel, PairSum = _pairs,
            };
            var bytes = FormatHeader(header, tableOffset);
            stream.Position = 0;
            stream.Write(bytes);
            stream.Position = stream.Length;
            return header with { Checksum = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(ChecksumOffset)) };
        }
    }
}
