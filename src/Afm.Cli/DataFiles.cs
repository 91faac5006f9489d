using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Training;

namespace Afm.Cli;

/// <summary>The options of a command that reads data files.</summary>
internal interface IDataOptions
{
    string Cache { get; }
    string? CacheDirectory { get; }

    /// <summary>What to do with a feature id the model has no row for: <c>error</c> or <c>ignore</c> (drop it from its row).</summary>
    string UnknownIds => "error";
}

/// <summary>
/// Opens a command's data files: a binary cache (recognised by its magic) is read chunk by chunk; a text file is read
/// into memory, or with <c>--cache auto</c> (files of at least <see cref="DataCache.DefaultThreshold"/> bytes) or
/// <c>--cache always</c> converted once into the cache directory and read from there. Caches opened stay open
/// until disposal.
/// </summary>
internal sealed class DataFiles(IDataOptions o, TextWriter stdout) : IDisposable
{
    private readonly List<CacheFile> _open = [];

    /// <summary>The rows of <paramref name="path"/>, checked against <paramref name="read"/>.</summary>
    /// <param name="path">A text or cache file.</param>
    /// <param name="read">What the rows must satisfy (text is read with these options).</param>
    /// <param name="bufferRows">Rows a cache shuffles together in training.</param>
    public RowSource Open(string path, LibFmReadOptions read, long bufferRows = CacheRows.DefaultBufferRows)
    {
        path = Input(path);
        read = Unknown(read);
        if (bufferRows <= 0) throw new ArgumentException($"--shuffle-buffer {bufferRows}: must be at least 1 row");
        var cache = OpenCache(path, read);
        if (cache is null) return RowSource.Of(Known(LibFmReader.Read(path, read)));
        cache.CheckAgainst(read);
        return new CacheRows(cache, bufferRows);
    }

    private int _modelFeatures;
    private long _dropped, _droppedRows;

    /// <summary>With <c>--unknown-ids ignore</c>, <paramref name="read"/> without its bound on the ids (they are dropped by <see cref="Known"/>).</summary>
    private LibFmReadOptions Unknown(LibFmReadOptions read)
    {
        string mode = o.UnknownIds.ToLowerInvariant();
        if (mode is not ("error" or "ignore")) throw new ArgumentException($"--unknown-ids {o.UnknownIds}: use error or ignore");
        if (mode == "error" || read.FeatureCount == 0 || read.HashBits > 0) return read; // a hashed model has a row for every feature
        _modelFeatures = read.FeatureCount;
        return read with { FeatureCount = 0 };
    }

    /// <summary>
    /// <paramref name="block"/> without the ids the model has no row for, counted, under <c>--unknown-ids ignore</c>;
    /// otherwise the block itself. Every block read through <see cref="Open"/> goes through here before it is predicted.
    /// </summary>
    public SparseDataset Known(SparseDataset block)
    {
        if (_modelFeatures == 0) return block;
        var kept = block.KeepIdsBelow(_modelFeatures, out long dropped, out int rows);
        _dropped += dropped;
        _droppedRows += rows;
        return kept;
    }

    /// <summary>Says how many ids were dropped, if any were (<c>--unknown-ids ignore</c>).</summary>
    public void ReportUnknown(TextWriter w, string name)
    {
        if (_dropped > 0)
            w.WriteLine($"note: {name}: dropped {_dropped} non-zeros in {_droppedRows} rows whose feature ids the model has no row for (>= {_modelFeatures}); they count as absent");
    }

    /// <summary>All rows of <paramref name="path"/> in memory (for work that needs them at once).</summary>
    public SparseDataset ReadAll(string path, LibFmReadOptions read)
    {
        path = Input(path);
        read = Unknown(read);
        var cache = OpenCache(path, read);
        if (cache is null) return Known(LibFmReader.Read(path, read));
        cache.CheckAgainst(read);
        return Known(cache.ReadAll());
    }

    /// <summary>
    /// Whether the features of <paramref name="path"/> are named by the names hashed to each row: for a hashed model
    /// without a feature <paramref name="map"/>, from text (a cache keeps only the hashed ids).
    /// </summary>
    public static bool NamesFromText(string path, AfmModel model, FeatureMap? map) =>
        map is null && model.Input.HashBits > 0 && !CacheFile.IsCache(StandardInputAs(path));

    /// <summary>
    /// All rows of <paramref name="path"/> for <paramref name="model"/> in memory, and the map to name their features
    /// by: the names hashed to each row where <see cref="NamesFromText"/>, otherwise <paramref name="map"/>.
    /// </summary>
    public (SparseDataset Data, FeatureMap? Map) ReadAllNamed(string path, AfmModel model, FeatureMap? map)
    {
        path = Input(path);
        var read = LibFmReadOptions.For(model, labelsMatter: false);
        return NamesFromText(path, model, map) ? LibFmReader.ReadWithNames(path, read) : (ReadAll(path, read), map);
    }

    /// <summary>Where standard input is read from as a file: a data file given as <c>-</c>.</summary>
    internal const string StandardInput = "/dev/stdin";

    private bool _standardInputRead;

    /// <summary>The file to read for <paramref name="path"/>: <c>-</c> is standard input, which can be read once.</summary>
    private string Input(string path)
    {
        if (path != "-") return path;
        if (_standardInputRead) throw new ArgumentException("-: standard input is read once, so only one data file can be '-'");
        _standardInputRead = true;
        return StandardInputAs(path);
    }

    /// <summary><paramref name="path"/>, or for <c>-</c> the file that reads standard input (<c>/dev/stdin</c>).</summary>
    public static string StandardInputAs(string path)
    {
        if (path != "-") return path;
        if (OperatingSystem.IsWindows() || !File.Exists(StandardInput))
            throw new ArgumentException("-: reading data from standard input needs /dev/stdin, which this system lacks; give a file");
        return StandardInput;
    }

    /// <summary>The cache to read <paramref name="path"/> from, or null to read it as text.</summary>
    private CacheFile? OpenCache(string path, LibFmReadOptions read)
    {
        CacheFile? cache = null;
        if (CacheFile.IsCache(path)) cache = CacheFile.Open(path);
        else if (ShouldConvert(path))
        {
            // The cache holds the rows in the format and hashing read asks for; the model's limits are checked against its header.
            cache = DataCache.OpenOrBuild(path, o.CacheDirectory ?? DataCache.DefaultDirectory, CacheFile.BuildOptions(read), stdout.WriteLine).File;
        }
        if (cache is not null) _open.Add(cache);
        return cache;
    }

    private bool ShouldConvert(string path)
    {
        string mode = o.Cache.ToLowerInvariant();
        if (mode is not ("auto" or "always" or "off")) throw new ArgumentException($"--cache {o.Cache}: use auto, always or off");
        if (mode == "off" || !File.Exists(path) || !DataCache.IsSeekable(path)) return false; // a pipe is read as it comes
        return mode == "always" || new FileInfo(path).Length >= DataCache.DefaultThreshold;
    }

    /// <summary>
    /// The metrics of <paramref name="predictor"/> on <paramref name="data"/>: at once for rows in memory, block by
    /// block otherwise (<see cref="MetricsAccumulator"/>). With <paramref name="checkFinite"/>, a prediction that is
    /// not finite is an error naming the row.
    /// </summary>
    public static Metrics Score(Predictor predictor, RowSource data, bool checkFinite, Func<SparseDataset, SparseDataset>? known = null)
    {
        known ??= b => b;
        if (data.InMemory is { } rows)
        {
            var (pred, scores) = predictor.PredictWithScores(rows);
            if (checkFinite) Predictor.CheckFinite(pred, rows.Name, 0);
            return Metrics.Compute(pred, rows.Labels, predictor.Model.Loss, scores);
        }
        var sum = new MetricsAccumulator(predictor.Model);
        foreach (var raw in data.Blocks())
        {
            var block = known(raw);
            var (pred, scores) = predictor.PredictWithScores(block);
            if (checkFinite) Predictor.CheckFinite(pred, data.Name, sum.Rows);
            sum.Add(pred, block.Labels, scores);
        }
        return sum.Result();
    }

    public void Dispose()
    {
        foreach (var c in _open) c.Dispose();
    }
}
