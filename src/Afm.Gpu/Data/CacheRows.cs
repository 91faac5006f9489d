using Afm.Gpu.Model;

namespace Afm.Gpu.Data;

/// <summary>
/// The rows of a <see cref="CacheFile"/>, read chunk by chunk so that memory stays bounded whatever the file's size.
/// An epoch visits the chunks in a shuffled order; <see cref="BufferChunks"/> chunks at a time are gathered into a
/// buffer whose rows are shuffled and cut into mini-batches (rows left over at a buffer's end join the next buffer),
/// while the next chunks are read in the background. Validation rows are held out by a seeded hash of the row's
/// index in the file, so that no list of them is kept.
/// </summary>
/// <remarks>
/// Statistics (<see cref="LabelRange"/>, <see cref="BaselineLoss"/>, <see cref="Magnitudes"/>,
/// <see cref="MeanPairCount"/>, <see cref="FirstNonBinaryLabel"/>) come from the cache's header and so cover
/// every row of the file, held out or not.
/// </remarks>
public sealed class CacheRows : RowSource
{
    /// <summary>Which rows of the file a source takes.</summary>
    private enum Selection { All, Kept, HeldOut }

    private readonly CacheFile _file;
    private readonly Selection _selection;
    private readonly ulong _threshold;
    private readonly int _seed;
    private readonly int _featureCount;
    private long _rows = -1;

    /// <summary>All rows of <paramref name="file"/>, with <paramref name="bufferRows"/> rows (rounded up to whole chunks) shuffled together.</summary>
    /// <param name="file">The open cache; it stays owned by the caller.</param>
    /// <param name="bufferRows">Rows shuffled together in one buffer; at least one chunk.</param>
    public CacheRows(CacheFile file, long bufferRows = DefaultBufferRows)
        : this(file, Selection.All, 0, 0, file.Header.FeatureCount, BufferChunksFor(file, bufferRows))
    {
    }

    private CacheRows(CacheFile file, Selection selection, ulong threshold, int seed, int featureCount, int bufferChunks)
    {
        _file = file ?? throw new ArgumentNullException(nameof(file));
        _selection = selection;
        _threshold = threshold;
        _seed = seed;
        _featureCount = featureCount;
        BufferChunks = bufferChunks;
    }

    /// <summary>Rows shuffled together unless asked otherwise.</summary>
    public const long DefaultBufferRows = 1 << 20;

    /// <summary>Chunks gathered into one shuffle buffer.</summary>
    public int BufferChunks { get; }

    /// <summary>The cache read.</summary>
    public CacheFile File => _file;

    /// <inheritdoc/>
    public override string Name => _selection == Selection.HeldOut ? _file.Path + " (held out)" : _file.Path;

    /// <inheritdoc/>
    public override long Rows => _rows >= 0 ? _rows : _rows = CountRows();

    /// <inheritdoc/>
    public override int FeatureCount => _featureCount;

    /// <inheritdoc/>
    public override int MaxNnz => _file.Header.MaxNnz;

    /// <inheritdoc/>
    public override (float Min, float Max) LabelRange() => (_file.Header.LabelMin, _file.Header.LabelMax);

    /// <inheritdoc/>
    public override (float Values, float Labels) Magnitudes() => (_file.Header.MaxAbsValue, _file.Header.MaxAbsLabel);

    /// <inheritdoc/>
    public override (long Row, float Label)? FirstNonBinaryLabel() =>
        _file.Header.FirstNonBinaryRow < 0 ? null : (_file.Header.FirstNonBinaryRow, _file.Header.FirstNonBinaryLabel);

    /// <inheritdoc/>
    public override double BaselineLoss(LossKind loss)
    {
        var h = _file.Header;
        if (loss == LossKind.Logistic) return RowStatistics.LogisticBaseline((double)h.Positives / Math.Max(1, h.Rows));
        return RowStatistics.SquaredBaseline(h.LabelMean, h.LabelM2 / Math.Max(1, h.Rows));
    }

    /// <inheritdoc/>
    public override double MeanPairCount() => _file.Header.PairSum / Math.Max(1, _file.Header.Rows);

    /// <inheritdoc/>
    public override RowOrder CreateOrder() => new ChunkOrder(this);

    /// <summary>A shuffled chunk order per epoch, and a seed for the shuffles of the rows within each buffer.</summary>
    private sealed class ChunkOrder(CacheRows source) : RowOrder
    {
        private readonly int[] _chunks = Enumerable.Range(0, source._file.ChunkCount).ToArray();
        private int _epochSeed;

        public override void Shuffle(Random rng)
        {
            rng.Shuffle(_chunks);
            _epochSeed = rng.Next();
        }

        public override IEnumerable<RowBatch> Batches(int batchSize) => source.Batches((int[])_chunks.Clone(), _epochSeed, batchSize);
    }

    /// <summary>
    /// The mini-batches of one epoch: the chunks in <paramref name="order"/>, <see cref="BufferChunks"/> at a time
    /// (plus the rows left over from the buffer before), each buffer's rows shuffled.
    /// </summary>
    private IEnumerable<RowBatch> Batches(int[] order, int seed, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        int bufferIndex = 0;
        var parts = new List<SparseDataset>();
        SparseDataset? carry = null;
        int taken = 0;
        foreach (var (c, chunk) in _file.ReadChunks(order, BufferChunks))
        {
            parts.Add(Select(c, chunk));
            bool last = ++taken == order.Length;
            if (parts.Count < BufferChunks && !last) continue;
            if (carry is not null) parts.Insert(0, carry);
            var buffer = SparseDataset.Concat(parts, _file.Path);
            parts.Clear();
            var rows = Enumerable.Range(0, buffer.Rows).ToArray();
            new Random(unchecked(seed * 31 + bufferIndex++)).Shuffle(rows);
            int full = last ? buffer.Rows : buffer.Rows / batchSize * batchSize;
            for (int start = 0; start < full; start += batchSize)
                yield return new RowBatch(buffer, new ArraySegment<int>(rows, start, Math.Min(batchSize, full - start)));
            carry = full < buffer.Rows ? buffer.Subset(rows.AsSpan(full)) : null;
        }
    }

    /// <inheritdoc/>
    public override IEnumerable<SparseDataset> Blocks()
    {
        foreach (var (c, chunk) in _file.ReadChunks(Enumerable.Range(0, _file.ChunkCount).ToArray()))
        {
            var rows = Select(c, chunk);
            if (rows.Rows > 0) yield return rows;
        }
    }

    /// <inheritdoc/>
    public override SparseDataset Head(int rows)
    {
        var parts = new List<SparseDataset>();
        long have = 0;
        foreach (var block in Blocks())
        {
            if (have >= rows) break;
            parts.Add(have + block.Rows <= rows ? block : block.Subset(Enumerable.Range(0, (int)(rows - have)).ToArray()));
            have += parts[^1].Rows;
        }
        return SparseDataset.Concat(parts, Name);
    }

    /// <inheritdoc/>
    public override (RowSource Train, RowSource Validation) Split(float fraction, int seed)
    {
        if (_selection != Selection.All) throw new InvalidOperationException("only all rows of a cache can be split");
        ulong threshold = (ulong)Math.Min(fraction * 18446744073709551616.0, ulong.MaxValue);
        var validation = new CacheRows(_file, Selection.HeldOut, threshold, seed, _featureCount, BufferChunks);
        long held = validation.Rows, total = Rows;
        if (held == 0)
            throw new ArgumentException($"{Name}: a validation fraction of {fraction} of {total} rows holds out no row; raise it (to at least {1.0 / total:G3}) or set it to 0 for no validation");
        if (held >= total)
            throw new ArgumentException($"{Name}: a validation fraction of {fraction} of {total} rows leaves no training row; lower it");
        return (new CacheRows(_file, Selection.Kept, threshold, seed, _featureCount, BufferChunks), validation);
    }

    /// <inheritdoc/>
    public override RowSource WithFeatureCount(int featureCount) =>
        featureCount <= _featureCount ? this : new CacheRows(_file, _selection, _threshold, _seed, featureCount, BufferChunks);

    /// <inheritdoc/>
    public override uint AppendFingerprint(uint crc)
    {
        var bytes = new byte[32];
        BitConverter.TryWriteBytes(bytes.AsSpan(0), _file.Header.Checksum);
        BitConverter.TryWriteBytes(bytes.AsSpan(8), (int)_selection);
        BitConverter.TryWriteBytes(bytes.AsSpan(12), _seed);
        BitConverter.TryWriteBytes(bytes.AsSpan(16), _threshold);
        BitConverter.TryWriteBytes(bytes.AsSpan(24), _featureCount);
        BitConverter.TryWriteBytes(bytes.AsSpan(28), BufferChunks);
        return Crc32.Append(crc, bytes);
    }

    /// <summary>Whether row <paramref name="row"/> (0-based in the file) is held out at this threshold and seed.</summary>
    internal static bool IsHeldOut(long row, ulong threshold, int seed) => Mix((ulong)row ^ ((ulong)(uint)seed << 32 | 0x5EED)) < threshold;

    /// <summary>SplitMix64's finaliser: a well-mixed 64-bit hash.</summary>
    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private bool Takes(long row) => _selection switch
    {
        Selection.All => true,
        Selection.HeldOut => IsHeldOut(row, _threshold, _seed),
        _ => !IsHeldOut(row, _threshold, _seed),
    };

    /// <summary>The rows of chunk <paramref name="chunk"/> this source takes.</summary>
    private SparseDataset Select(int chunk, SparseDataset rows)
    {
        if (_selection == Selection.All) return _featureCount > rows.FeatureCount ? rows.WithFeatureCount(_featureCount) : rows;
        long first = _file.ChunkFirstRow(chunk);
        var take = new List<int>(rows.Rows);
        for (int r = 0; r < rows.Rows; r++)
            if (Takes(first + r)) take.Add(r);
        return rows.Subset(take.ToArray()).WithFeatureCount(_featureCount);
    }

    private long CountRows()
    {
        if (_selection == Selection.All) return _file.Header.Rows;
        long n = 0;
        for (long r = 0; r < _file.Header.Rows; r++)
            if (Takes(r)) n++;
        return n;
    }

    private static int BufferChunksFor(CacheFile file, long bufferRows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferRows);
        long chunkRows = Math.Max(1, file.Header.ChunkRows);
        return (int)Math.Clamp((bufferRows + chunkRows - 1) / chunkRows, 1, Math.Max(1, file.ChunkCount));
    }
}
