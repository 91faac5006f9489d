using System.Globalization;
using System.Text;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Synthetic;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;
using CliApp = Afm.Cli.Cli;

namespace Afm.Gpu.Tests;

/// <summary>The binary dataset cache: layout, checks, implicit caching, out-of-core training and the CLI.</summary>
public sealed class DataCacheTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-cache-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>Writes <paramref name="data"/> as libFM text (values and labels round-trip exactly).</summary>
    private string WriteText(string name, SparseDataset data, bool comments = false)
    {
        var sb = new StringBuilder();
        for (int r = 0; r < data.Rows; r++)
        {
            if (comments && r % 17 == 0) sb.Append("# a comment\n\n");
            sb.Append(data.Labels[r].ToString("R", CultureInfo.InvariantCulture));
            var ids = data.RowIds(r);
            var vals = data.RowValues(r);
            for (int i = 0; i < ids.Length; i++)
                sb.Append(' ').Append(ids[i]).Append(':').Append(vals[i].ToString("R", CultureInfo.InvariantCulture));
            sb.Append('\n');
        }
        string path = PathOf(name);
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    /// <summary>Ragged rows of 0 to 11 non-zeros (empty rows included).</summary>
    private static SparseDataset Ragged(int rows, int seed, LossKind loss = LossKind.Squared) =>
        Fixtures.RaggedData(50, Enumerable.Range(0, rows).Select(i => (i * 7 + seed) % 12).ToArray(), loss, seed);

    private static void AssertSameRows(SparseDataset expected, SparseDataset actual)
    {
        Assert.Equal(expected.Rows, actual.Rows);
        Assert.Equal(expected.Offsets, actual.Offsets);
        Assert.Equal(expected.FeatureIds, actual.FeatureIds);
        // bit for bit: the cache stores the floats the reader produced
        Assert.Equal(expected.Values.Select(BitConverter.SingleToInt32Bits), actual.Values.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(expected.Labels.Select(BitConverter.SingleToInt32Bits), actual.Labels.Select(BitConverter.SingleToInt32Bits));
    }

    private static void Patch(string path, long offset, Func<byte, byte> change)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = offset;
        int b = f.ReadByte();
        f.Position = offset;
        f.WriteByte(change((byte)b));
    }

    [Fact]
    public void TextToCacheAndBackGivesTheSameRowsElementWiseAndTheHeaderDescribesThem()
    {
        var data = Ragged(203, 3);
        string text = WriteText("rows.libfm", data, comments: true);
        var read = LibFmReader.Read(text);
        string cache = PathOf("rows.afmbin");
        var written = CacheFile.Write(text, cache, chunkRows: 16);

        using var file = CacheFile.Open(cache);
        Assert.Equal(written, file.Header);
        Assert.Equal(13, file.ChunkCount);
        Assert.Equal(16, file.ChunkRows(0));
        Assert.Equal(203 - 12 * 16, file.ChunkRows(12));
        AssertSameRows(read, file.ReadAll());

        var h = file.Header;
        Assert.Equal(read.Rows, h.Rows);
        Assert.Equal(read.NonZeros, h.NonZeros);
        Assert.Equal(read.FeatureCount, h.FeatureCount);
        Assert.Equal(read.MaxNnz, h.MaxNnz);
        Assert.Equal(read.Labels.Min(), h.LabelMin);
        Assert.Equal(read.Labels.Max(), h.LabelMax);
        double mean = read.Labels.Average(y => (double)y);
        Assert.Equal(mean, h.LabelMean, 1e-12);
        Assert.Equal(read.Labels.Sum(y => (y - mean) * (y - mean)), h.LabelM2, 1e-9);
        Assert.Equal(read.Labels.Count(y => y > 0), h.Positives);
        Assert.Equal(Enumerable.Range(0, read.Rows).Sum(r => (double)Kernels.ModelShape.PairCount(read.RowLength(r))), h.PairSum);
        Assert.Equal(read.Values.Max(MathF.Abs), h.MaxAbsValue);
        Assert.Equal(new FileInfo(text).Length, h.SourceLength);
        Assert.Equal(CacheFile.Fingerprint(null), h.OptionsFingerprint);
        Assert.NotEqual(CacheFile.Fingerprint(new LibFmReadOptions { MaxRows = 5 }), h.OptionsFingerprint);

        // the statistics a row source gives match those of the rows in memory
        var rows = new CacheRows(file);
        var memory = RowSource.Of(read);
        Assert.Equal(memory.LabelRange(), rows.LabelRange());
        Assert.Equal(memory.MeanPairCount(), rows.MeanPairCount(), 1e-12);
        Assert.Equal(memory.BaselineLoss(LossKind.Squared), rows.BaselineLoss(LossKind.Squared), 1e-9);
        Assert.Equal(memory.FirstNonBinaryLabel(), rows.FirstNonBinaryLabel());
    }

    [Fact]
    public void OneHotChunksStoreNoValuesAndReadBackAsOnes()
    {
        // Chunks of 8 rows: the first two all one-hot, the third with one value of 0.5; every chunk reads back exactly.
        var builder = new SparseDatasetBuilder();
        var rng = new Random(3);
        for (int r = 0; r < 24; r++)
        {
            int[] ids = [rng.Next(0, 10), rng.Next(10, 20), rng.Next(20, 30)];
            builder.Add(ids, r == 17 ? [1f, 0.5f, 1f] : [1f, 1f, 1f], r % 2);
        }
        var data = builder.Build(30);
        string text = WriteText("onehot.libfm", data);
        string cache = PathOf("onehot.afmbin");
        CacheFile.Write(text, cache, chunkRows: 8);
        using (var file = CacheFile.Open(cache))
        {
            AssertSameRows(LibFmReader.Read(text), file.ReadAll());
            Assert.Equal(file.ChunkByteRange(0).Length, file.ChunkByteRange(1).Length);
            Assert.Equal(file.ChunkByteRange(0).Length + 4 * 24, file.ChunkByteRange(2).Length); // the values of 24 non-zeros
        }
        // A damaged byte in a values-free chunk is still caught.
        var (offset, _) = ChunkRange(cache, 1);
        Patch(cache, offset + 40, b => (byte)(b ^ 1));
        using var damaged = CacheFile.Open(cache);
        Assert.Contains("chunk 1 of 3", Assert.Throws<DataFormatException>(() => damaged.ReadChunk(1)).Message);
    }

    private static (long Offset, long Length) ChunkRange(string cache, int chunk)
    {
        using var file = CacheFile.Open(cache);
        return file.ChunkByteRange(chunk);
    }

    [Fact]
    public void ACorruptChunkIsAOneLineErrorNamingTheFileAndTheChunk()
    {
        string text = WriteText("c.libfm", Ragged(100, 4));
        string cache = PathOf("c.afmbin");
        CacheFile.Write(text, cache, chunkRows: 10);
        (long offset, long length) range;
        using (var file = CacheFile.Open(cache)) range = file.ChunkByteRange(3);
        Patch(cache, range.offset + range.length / 2, b => (byte)(b ^ 0x10));

        using var corrupt = CacheFile.Open(cache);
        corrupt.ReadChunk(2); // the others still read
        var e = Assert.Throws<DataFormatException>(() => corrupt.ReadChunk(3));
        Assert.Equal(cache, e.File);
        Assert.Equal($"{cache}: chunk 3 of 10 (rows 31-40) is corrupt (checksum mismatch); rebuild the cache with 'afm-gpu cache'", e.Message);
        // read in the background while training, it is raised as itself
        using var acc = new CpuAccelerator();
        var train = new Trainer(acc, new TrainerOptions { Model = ModelKind.Fm, K = 4, Epochs = 1, ValidationFraction = 0 });
        var thrown = Assert.Throws<DataFormatException>(() => train.Train(new CacheRows(corrupt, 20), null));
        Assert.Contains("chunk 3 of 10", thrown.Message);
    }

    [Fact]
    public void AFileOfAnotherKindVersionOrADamagedHeaderIsRefusedWithItsReason()
    {
        string text = WriteText("v.libfm", Ragged(40, 5));
        Assert.Equal($"{text}: not an afm-gpu data cache", Assert.Throws<DataFormatException>(() => CacheFile.Open(text)).Message);
        Assert.False(CacheFile.IsCache(text));

        string cache = PathOf("v.afmbin");
        CacheFile.Write(text, cache, chunkRows: 8);
        Assert.True(CacheFile.IsCache(cache));
        string other = PathOf("other.afmbin");
        File.Copy(cache, other);
        Patch(other, 8, _ => 2);
        Assert.Contains("data cache version 2; this afm-gpu reads version 1", Assert.Throws<DataFormatException>(() => CacheFile.Open(other)).Message);

        File.Copy(cache, other, overwrite: true);
        Patch(other, 50, b => (byte)(b + 1));
        Assert.Contains("header is corrupt (checksum mismatch)", Assert.Throws<DataFormatException>(() => CacheFile.Open(other)).Message);

        var bytes = File.ReadAllBytes(cache);
        File.WriteAllBytes(other, bytes[..(bytes.Length - 20)]);
        Assert.Contains("truncated", Assert.Throws<DataFormatException>(() => CacheFile.Open(other)).Message);
        File.WriteAllBytes(other, bytes[..100]);
        Assert.Contains("truncated", Assert.Throws<DataFormatException>(() => CacheFile.Open(other)).Message);
        Assert.Contains("file not found", Assert.Throws<DataFormatException>(() => CacheFile.Open(PathOf("none.afmbin"))).Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(100)]
    public void AnEpochFromACacheVisitsEveryRowOnceInFullBatchesWithAReplayableOrder(int bufferRows)
    {
        var data = Ragged(157, 6);
        string text = WriteText("e.libfm", data);
        string cache = PathOf("e.afmbin");
        CacheFile.Write(text, cache, chunkRows: 10);
        using var file = CacheFile.Open(cache);
        var rows = new CacheRows(file, bufferRows);
        Assert.Equal(Math.Min(16, (bufferRows + 9) / 10), rows.BufferChunks);

        List<List<string>> Epochs(int seed)
        {
            var order = rows.CreateOrder();
            var rng = new Random(seed);
            var epochs = new List<List<string>>();
            for (int e = 0; e < 2; e++)
            {
                order.Shuffle(rng);
                var batches = order.Batches(32).ToList();
                Assert.All(batches.SkipLast(1), b => Assert.Equal(32, b.Rows.Count));
                Assert.Equal(157, batches.Sum(b => b.Rows.Count));
                epochs.Add(batches.SelectMany(b => b.Rows.Select(r => RowKey(b.Data, r))).ToList());
            }
            return epochs;
        }
        var first = Epochs(9);
        var expected = Enumerable.Range(0, data.Rows).Select(r => RowKey(data, r)).Order().ToList();
        Assert.All(first, epoch => Assert.Equal(expected, epoch.Order().ToList()));
        Assert.NotEqual(first[0], first[1]);
        var again = Epochs(9);
        Assert.Equal(first[0], again[0]);
        Assert.Equal(first[1], again[1]);
    }

    private static string RowKey(SparseDataset d, int r) =>
        $"{d.Labels[r]:R}|{string.Join(',', d.RowIds(r).ToArray())}|{string.Join(',', d.RowValues(r).ToArray().Select(v => v.ToString("R", CultureInfo.InvariantCulture)))}";

    [Fact]
    public void HeldOutRowsAreASeededFractionDisjointFromTheTrainingRows()
    {
        var data = Ragged(3000, 7);
        for (int r = 0; r < data.Rows; r++) data.Labels[r] = r; // labels name the rows
        string cache = PathOf("s.afmbin");
        CacheFile.Write(WriteText("s.libfm", data), cache, chunkRows: 128);
        using var file = CacheFile.Open(cache);
        var (train, valid) = new CacheRows(file).Split(0.1f, 3);
        var kept = train.Blocks().SelectMany(b => b.Labels).ToList();
        var held = valid.Blocks().SelectMany(b => b.Labels).ToList();
        Assert.Equal(kept.Count, train.Rows);
        Assert.Equal(held.Count, valid.Rows);
        Assert.Equal(Enumerable.Range(0, 3000).Select(i => (float)i), kept.Concat(held).Order());
        // 300 expected; the binomial's standard deviation is 16
        Assert.InRange(held.Count, 240, 360);
        var (_, other) = new CacheRows(file).Split(0.1f, 4);
        Assert.NotEqual(held, other.Blocks().SelectMany(b => b.Labels).ToList());
        Assert.Throws<ArgumentException>(() => new CacheRows(file).Split(1e-9f, 3));
    }

    [Fact]
    public void TrainingFromACacheReachesTheQualityOfTrainingInMemory()
    {
        // The same rows in the same number of epochs; the cache shuffles by chunks and holds out by a hash of the
        // row, so the two runs differ in order and validation rows, not in what they can learn.
        var planted = PlantedData.Generate(trainRows: 12_000, testRows: 3_000);
        string cache = PathOf("p.afmbin");
        CacheFile.Write(WriteText("p.libfm", planted.Train), cache, chunkRows: 500);
        var o = new TrainerOptions { Model = ModelKind.Fm, K = 8, Epochs = 6, BatchSize = 256, LearningRate = 0.1f, Patience = 0, Seed = 3 };
        using var acc = new CpuAccelerator();
        var memory = new Trainer(acc, o).Train(planted.Train).Model;
        using var file = CacheFile.Open(cache);
        var fromCache = new Trainer(acc, o).Train(new CacheRows(file, bufferRows: 2_000), null).Model;

        double Rmse(AfmModel m)
        {
            using var p = new Predictor(acc, m, planted.Test.MaxNnz);
            return Metrics.Compute(p.Predict(planted.Test), planted.Test.Labels, LossKind.Squared).Rmse;
        }
        double a = Rmse(memory), b = Rmse(fromCache);
        Assert.True(Math.Abs(a - b) <= 0.05 * a, $"test RMSE in memory {a:F4}, from the cache {b:F4}: more than 5 % apart");
        // and both learned: far below predicting the mean
        double sd = Math.Sqrt(planted.Test.Labels.Select(y => (double)y).Select(y => y - planted.Test.Labels.Average(z => (double)z)).Average(d => d * d));
        Assert.True(b < 0.8 * sd, $"test RMSE from the cache {b:F4}, label sd {sd:F4}");
    }

    [Fact]
    public void TheRecipeRunsFromACacheAndTwoRunsWithOneSeedGiveTheSameModel()
    {
        var data = Ragged(700, 13);
        string cache = PathOf("r.afmbin");
        CacheFile.Write(WriteText("r.libfm", data), cache, chunkRows: 50);
        using var file = CacheFile.Open(cache);
        using var acc = new CpuAccelerator();
        var o = new TrainerOptions { K = 4, T = 4, Epochs = 2, BatchSize = 64, Patience = 0, LambdaCandidates = [0f, 1f] };
        var lines = new List<string>();
        RecipeResult Run()
        {
            var recipe = new Recipe(acc, o);
            recipe.Message += lines.Add;
            return recipe.Run(new CacheRows(file, 100), null);
        }
        var a = Run();
        var b = Run();
        Assert.NotNull(a.Pretraining);
        Assert.True(a.HeldOut > 0);
        Assert.Contains(lines, l => l.StartsWith($"validation: {a.HeldOut} of 700 training rows held out"));
        foreach (var ((name, x, _), (_, y, _)) in a.Model.Tensors().Zip(b.Model.Tensors()))
            Assert.True(x.AsSpan().SequenceEqual(y), $"{name} differs between two runs with the same seed");
    }

    [Fact]
    public void TrainingFromACacheStoppedAndResumedFromItsCheckpointEndsBitIdentical()
    {
        string cache = PathOf("k.afmbin");
        CacheFile.Write(WriteText("k.libfm", Ragged(600, 14)), cache, chunkRows: 40);
        using var file = CacheFile.Open(cache);
        using var acc = new CpuAccelerator();
        var o = new TrainerOptions { Model = ModelKind.Fm, K = 4, Epochs = 4, BatchSize = 32, Patience = 0, Keep1 = 0.8f };
        var reference = new Trainer(acc, o).Train(new CacheRows(file, 80), null).Model;

        var checkpoint = new CheckpointOptions { Directory = PathOf("ck"), Resume = true };
        using (var cancel = new CancellationTokenSource())
        {
            var stopped = new Trainer(acc, o) { Checkpoint = checkpoint };
            stopped.Progress += p => { if (p.Epoch == 3 && p.RowsDone > 200) cancel.Cancel(); };
            Assert.ThrowsAny<OperationCanceledException>(() => stopped.Train(new CacheRows(file, 80), null, cancel: cancel.Token));
        }
        Assert.Equal(2, CheckpointOptions.LastEpoch(checkpoint.Directory));
        var resumed = new Trainer(acc, o) { Checkpoint = checkpoint }.Train(new CacheRows(file, 80), null).Model;
        foreach (var ((name, x, _), (_, y, _)) in reference.Tensors().Zip(resumed.Tensors()))
            Assert.True(x.AsSpan().SequenceEqual(y), $"{name} differs from the uninterrupted run's");
    }

    [Fact]
    public void AnImplicitCacheIsReusedWhileTheFileIsUnchangedAndRebuiltOtherwise()
    {
        string text = WriteText("i.libfm", Ragged(60, 8));
        string dir = PathOf("cache-dir");
        var log = new List<string>();
        (CacheFile, bool) Open(LibFmReadOptions? options = null) => DataCache.OpenOrBuild(text, dir, options, log.Add);

        var (first, built) = Open();
        Assert.True(built);
        Assert.StartsWith(dir, first.Path);
        Assert.Equal(60, first.Header.Rows);
        first.Dispose();
        var (second, again) = Open();
        Assert.False(again);
        Assert.Contains("using the cache", log[^1]);
        second.Dispose();

        File.SetLastWriteTimeUtc(text, File.GetLastWriteTimeUtc(text).AddSeconds(5));
        var (touched, rebuilt) = Open();
        Assert.True(rebuilt);
        Assert.Contains("changed", log[^1]);
        touched.Dispose();

        File.AppendAllText(text, "3 1:1 2:1\n");
        var (grown, rebuilt2) = Open();
        Assert.True(rebuilt2);
        Assert.Equal(61, grown.Header.Rows);
        string path = grown.Path;
        grown.Dispose();

        // Other reading options have a cache of their own, and the first stays in use beside it.
        var (other, rebuilt3) = Open(new LibFmReadOptions { MaxRows = 10 });
        Assert.True(rebuilt3);
        Assert.Equal(10, other.Header.Rows);
        string otherPath = other.Path;
        Assert.NotEqual(path, otherPath);
        other.Dispose();
        var (hashed, rebuilt4) = Open(new LibFmReadOptions { HashBits = 8 });
        Assert.True(rebuilt4);
        hashed.Dispose();
        var (plain, again2) = Open();
        Assert.False(again2);
        Assert.Equal(path, plain.Path);
        Assert.Equal(61, plain.Header.Rows);
        plain.Dispose();
        var (limited, again3) = Open(new LibFmReadOptions { MaxRows = 10 });
        Assert.False(again3);
        limited.Dispose();

        Patch(otherPath, 60, b => (byte)~b);
        var (repaired, rebuilt5) = Open(new LibFmReadOptions { MaxRows = 10 });
        Assert.True(rebuilt5);
        Assert.Contains("header is corrupt", log[^1]);
        Assert.Equal(otherPath, repaired.Path);
        repaired.Dispose();
        Assert.Equal(3, Directory.GetFiles(dir).Length);
    }

    [Fact]
    public void ACacheDirectoryThatCannotBeMadeIsOneLineNamingIt()
    {
        string text = WriteText("d.libfm", Ragged(20, 2));
        string blocker = WriteText("not-a-dir", Ragged(2, 1));
        var e = Assert.Throws<IOException>(() => DataCache.OpenOrBuild(text, blocker, null));
        Assert.Equal($"cannot create the cache directory '{blocker}' for {text}: a file of that name exists (--cache-dir DIR for another directory, --cache off to read the text)", e.Message);
        var e2 = Assert.Throws<IOException>(() => DataCache.OpenOrBuild(text, Path.Combine(blocker, "sub"), null));
        Assert.Equal($"cannot create the cache directory '{Path.Combine(blocker, "sub")}' for {text}: '{blocker}' is a file (--cache-dir DIR for another directory, --cache off to read the text)", e2.Message);
    }

    [Fact]
    public void ProcessesThatNeedOneImplicitCacheAtOnceConvertTheFileOnce()
    {
        // Two users of one cache starting together (as the ranks of an MPI job on one machine do): one converts, the
        // other waits on the cache's lock and then uses what the first wrote. Without the lock both would convert.
        string text = WriteText("shared.libfm", Ragged(200_000, 3));
        string dir = PathOf("cache-dir");
        var logs = new[] { new List<string>(), new List<string>() };
        using var start = new Barrier(2);
        var results = new (int Rows, string Path, bool Built)[2];
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            var (file, built) = DataCache.OpenOrBuild(text, dir, null, line => { lock (logs[i]) logs[i].Add(line); });
            using (file) results[i] = ((int)file.Header.Rows, file.Path, built);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Equal(1, results.Count(r => r.Built));
        Assert.All(results, r => Assert.Equal(200_000, r.Rows));
        Assert.Equal(results[0].Path, results[1].Path);
        Assert.Equal(1, logs.Sum(l => l.Count(line => line.StartsWith("converting", StringComparison.Ordinal))));
        Assert.Equal(1, logs.Sum(l => l.Count(line => line.StartsWith("using the cache", StringComparison.Ordinal))));
        Assert.Equal(results[0].Path, Assert.Single(Directory.GetFiles(dir))); // the lock file goes with the lock
    }

    [Fact]
    public void StreamedMetricsEqualTheExactOnesAndTheBinnedAucIsClose()
    {
        var rng = new Random(5);
        var labels = Enumerable.Range(0, 5000).Select(_ => (float)rng.Next(2)).ToArray();
        var pred = labels.Select(y => (float)Math.Clamp(0.3 * y + 0.7 * rng.NextDouble(), 0, 1)).ToArray();
        var sum = new MetricsAccumulator(LossKind.Logistic);
        for (int start = 0; start < labels.Length; start += 777)
        {
            int n = Math.Min(777, labels.Length - start);
            sum.Add(pred.AsSpan(start, n), labels.AsSpan(start, n));
        }
        var exact = Metrics.Compute(pred, labels, LossKind.Logistic);
        var streamed = sum.Result();
        Assert.Equal(exact.Rows, streamed.Rows);
        Assert.Equal(exact.LogLoss, streamed.LogLoss, 1e-12);
        Assert.Equal(exact.Rmse, streamed.Rmse, 1e-12);
        Assert.Equal(exact.Auc, streamed.Auc, 1e-3);
    }

    [Theory]
    [InlineData(-1f, 1f)]
    [InlineData(0f, 1f)]
    [InlineData(3f, 7f)]
    public void ASquaredModelOnTwoValuedLabelsGetsTheAucOfItsRawScores(float low, float high)
    {
        var rng = new Random(7);
        int n = 3000;
        var labels = Enumerable.Range(0, n).Select(_ => rng.Next(3) == 0 ? high : low).ToArray();
        // raw scores spill beyond the labels' range; the predictions are them clipped, so many tie at the ends
        var scores = labels.Select(y => (float)(y + (high - low) * 3 * (rng.NextDouble() - 0.5))).ToArray();
        var pred = scores.Select(s => Math.Clamp(s, low, high)).ToArray();
        double wins = 0;
        int pos = 0;
        for (int i = 0; i < n; i++)
        {
            if (labels[i] != high) continue;
            pos++;
            for (int j = 0; j < n; j++)
                if (labels[j] == low) wins += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0;
        }
        double pairwise = wins / ((double)pos * (n - pos));
        var exact = Metrics.Compute(pred, labels, LossKind.Squared, scores);
        Assert.Equal(pairwise, exact.Auc, 1e-9);
        Assert.True(Metrics.Compute(pred, labels, LossKind.Squared).Auc < pairwise - 0.01, "clipped ties rank worse");
        Assert.EndsWith($" auc {exact.Auc:F4}", exact.Format(LossKind.Squared));

        var model = new AfmModel(ModelKind.Afm, 10, 2, 2, LossKind.Squared) { LabelMin = low, LabelMax = high };
        var sum = new MetricsAccumulator(model);
        for (int start = 0; start < n; start += 701)
        {
            int count = Math.Min(701, n - start);
            sum.Add(pred.AsSpan(start, count), labels.AsSpan(start, count), scores.AsSpan(start, count));
        }
        var streamed = sum.Result();
        Assert.Equal(exact.Rmse, streamed.Rmse, 1e-12);
        Assert.Equal(exact.Mae, streamed.Mae, 1e-12);
        Assert.Equal(exact.Auc, streamed.Auc, 1e-3);
    }

    [Fact]
    public void ASquaredModelOnRatingsOrOneLabelGetsNoAuc()
    {
        float[] ratings = [1, 2, 3, 4, 5, 1, 2];
        float[] pred = [1.5f, 2, 2.5f, 4, 4.5f, 1, 2.2f];
        var m = Metrics.Compute(pred, ratings, LossKind.Squared);
        Assert.True(double.IsNaN(m.Auc));
        Assert.DoesNotContain("auc", m.Format(LossKind.Squared));
        Assert.True(double.IsNaN(Metrics.Compute([0.5f, 0.7f], [1f, 1f], LossKind.Squared).Auc));
        var sum = new MetricsAccumulator(LossKind.Squared);
        sum.Add(pred.AsSpan(0, 2), [1f, 2f]); // two values so far
        Assert.False(double.IsNaN(sum.Result().Auc));
        sum.Add(pred.AsSpan(2), ratings.AsSpan(2)); // then a third
        Assert.True(double.IsNaN(sum.Result().Auc));
    }

    private (int Code, string Out, string Err) Cli(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void TheCacheCommandConvertsAndRefusesAMissingInputAnOutputThatIsTheInputAndACacheAsInput()
    {
        string text = WriteText("cli.libfm", Ragged(80, 9));
        string cache = PathOf("cli.afmbin");
        var (code, stdout, stderr) = Cli("cache", text, "-o", cache, "--chunk-rows", "16");
        Assert.True(code == 0, stderr);
        Assert.Contains("80 rows", stdout);
        Assert.Contains("5 chunks of 16 rows", stdout);
        using (var file = CacheFile.Open(cache)) AssertSameRows(LibFmReader.Read(text), file.ReadAll());

        var missing = Cli("cache", PathOf("none.libfm"), "-o", PathOf("none.afmbin"));
        Assert.Equal(1, missing.Code);
        Assert.Equal($"afm-gpu: error: {PathOf("none.libfm")}: file not found", missing.Err.Trim());
        var same = Cli("cache", text, "-o", text);
        Assert.Equal(1, same.Code);
        Assert.Contains("is also an input of this command", same.Err);
        Assert.Single(same.Err.Trim().Split('\n'));
        var twice = Cli("cache", cache, "-o", PathOf("again.afmbin"));
        Assert.Equal(1, twice.Code);
        Assert.Contains("is already an afm-gpu data cache", twice.Err);
        File.WriteAllText(PathOf("broken.libfm"), "1 1:1\n2 3:x\n");
        var broken = Cli("cache", PathOf("broken.libfm"), "-o", PathOf("broken.afmbin"));
        Assert.Equal(1, broken.Code);
        Assert.Equal($"afm-gpu: error: {PathOf("broken.libfm")}:2: malformed token '3:x' (expected id:value)", broken.Err.Trim());
        Assert.Empty(Directory.GetFiles(_dir, "broken.afmbin*")); // no cache, no temporary file
        var bad = Cli("cache", text, "-o", PathOf("x.afmbin"), "--chunk-rows", "0");
        Assert.Equal(1, bad.Code);
        Assert.Contains("--chunk-rows 0", bad.Err);
    }

    [Fact]
    public void AHashedCacheHoldsTheHashedRowsAndServesOnlyAModelHashedTheSameWay()
    {
        var text = new System.Text.StringBuilder();
        for (int r = 0; r < 120; r++)
            text.Append(r % 2).Append($" user={r % 17} item:{r % 23}x 7:0.5 age:{r % 9 + 1}\n");
        string data = PathOf("named.libfm");
        File.WriteAllText(data, text.ToString());
        string cache = PathOf("named.afmbin");
        var (code, stdout, stderr) = Cli("cache", data, "-o", cache, "--hash-bits", "9", "--chunk-rows", "32");
        Assert.True(code == 0, stderr);
        var hashed = new LibFmReadOptions { HashBits = 9 };
        using (var file = CacheFile.Open(cache))
        {
            Assert.Equal(9, file.Header.HashBits);
            AssertSameRows(LibFmReader.Read(data, hashed), file.ReadAll());
            file.CheckAgainst(hashed with { BinaryLabels = true, FeatureCount = 512 });
            var e = Assert.Throws<DataFormatException>(() => file.CheckAgainst(new LibFmReadOptions()));
            Assert.Contains("hashed into 2^9 rows", e.Message);
            Assert.Throws<DataFormatException>(() => file.CheckAgainst(new LibFmReadOptions { HashBits = 10 }));
        }
        // The format and hashing change the fingerprint; limits and threads do not.
        Assert.NotEqual(CacheFile.Fingerprint(new LibFmReadOptions()), CacheFile.Fingerprint(hashed));
        Assert.Equal(CacheFile.Fingerprint(hashed), CacheFile.Fingerprint(hashed with { Threads = 1, MaxRowNonZeros = 4, BinaryLabels = true }));

        // Trained from the cache with the same hashing, the model predicts the text as it predicts the cache.
        string model = PathOf("named.afm");
        var train = Cli("train", "--train", cache, "--hash-bits", "9", "--model", "fm", "-k", "4", "--epochs", "2", "-a", "cpu", "--no-progress", "-o", model);
        Assert.True(train.Code == 0, train.Err);
        Assert.Equal(Cli("predict", "-m", model, "-d", data, "-a", "cpu").Out, Cli("predict", "-m", model, "-d", cache, "-a", "cpu").Out);
        var unhashed = Cli("train", "--train", cache, "--model", "fm", "-k", "4", "--epochs", "1", "-a", "cpu", "--no-progress", "-o", PathOf("plain.afm"));
        Assert.Equal(1, unhashed.Code);
        string error = unhashed.Err.Trim().Split('\n')[^1];
        Assert.StartsWith($"afm-gpu: error: {cache}: the cache holds libfm rows hashed into 2^9 rows", error);
        Assert.EndsWith("build the cache with the same --format and --hash-bits", error);
        Assert.DoesNotContain("   at ", unhashed.Err);
    }

    [Fact]
    public void ACacheIsAcceptedWhereverADataFileIsAndGivesTheSameScoresAndPredictions()
    {
        string train = WriteText("t.libfm", Ragged(400, 10)), test = WriteText("u.libfm", Ragged(90, 11));
        string trainCache = PathOf("t.afmbin"), testCache = PathOf("u.afmbin");
        Assert.Equal(0, Cli("cache", train, "-o", trainCache, "--chunk-rows", "64").Code);
        Assert.Equal(0, Cli("cache", test, "-o", testCache, "--chunk-rows", "16").Code);
        string model = PathOf("m.afm");
        var trained = Cli("train", "--train", trainCache, "--test", testCache, "--model", "fm", "-k", "4", "--epochs", "2", "--batch", "64",
            "--shuffle-buffer", "128", "-a", "cpu", "--no-progress", "-o", model);
        Assert.True(trained.Code == 0, trained.Err + trained.Out);
        Assert.Contains("a cache read by chunks of 64 rows, 2 chunks shuffled together", trained.Out);
        Assert.Matches(@"validation: \d+ of 400 training rows held out", trained.Out);
        Assert.Matches(@"test \(.*u\.afmbin\): 90 rows  rmse \d\.\d{4}", trained.Out);

        // evaluate and predict: the cache, read block by block, gives what the text gives
        var fromText = Cli("evaluate", "-m", model, "-d", test, "-a", "cpu");
        var fromCache = Cli("evaluate", "-m", model, "-d", testCache, "-a", "cpu");
        Assert.Equal(0, fromCache.Code);
        Assert.Equal(fromText.Out.Replace(test, ""), fromCache.Out.Replace(testCache, ""));
        var predText = Cli("predict", "-m", model, "-d", test, "-a", "cpu");
        var predCache = Cli("predict", "-m", model, "-d", testCache, "-a", "cpu");
        Assert.Equal(0, predCache.Code);
        Assert.Equal(predText.Out, predCache.Out);
        Assert.Equal(90, predCache.Out.Trim().Split('\n').Length);

        // a corrupt chunk is one line naming it, no stack trace
        long middle;
        using (var file = CacheFile.Open(testCache)) middle = file.ChunkByteRange(2).Offset + 4;
        Patch(testCache, middle, b => (byte)(b ^ 1));
        var corrupt = Cli("evaluate", "-m", model, "-d", testCache, "-a", "cpu");
        Assert.Equal(1, corrupt.Code);
        Assert.Equal($"afm-gpu: error: {testCache}: chunk 2 of 6 (rows 33-48) is corrupt (checksum mismatch); rebuild the cache with 'afm-gpu cache'", corrupt.Err.Trim().Split('\n')[^1]);
    }

    [Fact]
    public void TrainConvertsATextFileOnceIntoTheCacheDirectoryWhenAsked()
    {
        string train = WriteText("auto.libfm", Ragged(300, 12));
        string dir = PathOf("implicit");
        string[] common = ["train", "--train", train, "--model", "fm", "-k", "4", "--epochs", "1", "-a", "cpu", "--no-progress", "--cache-dir", dir];
        string[] args = [.. common, "--cache", "always", "-o", PathOf("a.afm")];
        var first = Cli(args);
        Assert.True(first.Code == 0, first.Err + first.Out);
        Assert.Contains($"converting {train}", first.Out);
        var second = Cli(args);
        Assert.Contains("using the cache", second.Out);
        Assert.DoesNotContain("converting", second.Out);
        Assert.Single(Directory.GetFiles(dir));
        Assert.Empty(Directory.GetFiles(_dir, "*.afmbin")); // nothing next to the data
        var off = Cli([.. common, "--cache", "off", "-o", PathOf("b.afm")]);
        Assert.True(off.Code == 0, off.Err);
        Assert.DoesNotContain("using the cache", off.Out);
        Assert.DoesNotContain("converting", off.Out);
        var small = Cli([.. common, "-o", PathOf("c.afm")]); // auto: a small file is read into memory
        Assert.DoesNotContain("using the cache", small.Out);
        var bad = Cli([.. common, "--cache", "sometimes", "-o", PathOf("d.afm")]);
        Assert.Equal(1, bad.Code);
        Assert.Contains("--cache sometimes: use auto, always or off", bad.Err);
    }
}
