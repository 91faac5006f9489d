using System.Diagnostics;
using System.Globalization;
using System.Text;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Training;

namespace Afm.Bench;

/// <summary>
/// <c>afm-bench out-of-core</c>: the data cache and out-of-core training, measured. <c>generate</c> streams a
/// CTR-like libFM file of any size from a planted model; <c>run</c> converts a text file into a cache and trains an
/// FM from it (or, with <c>--in-memory</c>, from the text read into memory), scores a test file, and prints the
/// conversion rate, the test RMSE and the peak memory (managed heap, sampled, and the process's peak resident set,
/// VmHWM). bench/out-of-core.sh runs both under a <c>DOTNET_GCHeapHardLimit</c> cap.
/// </summary>
internal static class OutOfCore
{
    public const string Usage = """
        afm-bench out-of-core generate -o FILE --rows N [--seed S] [--fields F (16)] [--values V (200)]
        afm-bench out-of-core run --train FILE --test FILE [--cache FILE | --in-memory] [--epochs E]
                                  [--shuffle-buffer ROWS] [--chunk-rows ROWS] [--threads N]
        """;

    public static int Run(string[] args)
    {
        try
        {
            var a = Args.Parse(args);
            return a.Verb switch
            {
                "generate" => Generate(a),
                "run" => Measure(a),
                _ => throw new ArgumentException($"unknown out-of-core command '{a.Verb}'"),
            };
        }
        catch (Exception e) when (e is ArgumentException or DataFormatException or IOException)
        {
            Console.Error.WriteLine($"afm-bench: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
    }

    /// <summary>Command-line values of the mode.</summary>
    private sealed class Args
    {
        public string Verb = "";
        public readonly Dictionary<string, string> Values = [];
        public readonly HashSet<string> Flags = [];

        public static Args Parse(string[] args)
        {
            if (args.Length == 0) throw new ArgumentException("out-of-core needs 'generate' or 'run'");
            var a = new Args { Verb = args[0] };
            for (int i = 1; i < args.Length; i++)
            {
                if (args[i] == "--in-memory") a.Flags.Add(args[i]);
                else if (args[i].StartsWith('-') && i + 1 < args.Length) a.Values[args[i]] = args[++i];
                else throw new ArgumentException($"unexpected argument '{args[i]}'");
            }
            return a;
        }

        public string Text(string name) => Values.TryGetValue(name, out var v) ? v : throw new ArgumentException($"{name} is required");
        public string? Maybe(string name) => Values.GetValueOrDefault(name);
        public long Number(string name, long fallback) =>
            !Values.TryGetValue(name, out var v) ? fallback
            : long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) && n > 0 ? n
            : throw new ArgumentException($"{name} {v}: expected a positive integer");

        public double Real(string name, double fallback) =>
            !Values.TryGetValue(name, out var v) ? fallback
            : double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && x >= 0 && x < 1 ? x
            : throw new ArgumentException($"{name} {v}: expected a number in [0, 1)");
    }

    /// <summary>
    /// Rows of F fields with one of V values each (feature id f V + v, value 1); the label is a linear term per
    /// feature plus rank-4 interactions on F / 2 planted field pairs, plus noise. The model is drawn from a fixed
    /// seed, the rows from <c>--seed</c>, so that files of different sizes and seeds share the model.
    /// </summary>
    private static int Generate(Args a)
    {
        string output = a.Text("-o");
        long rows = a.Number("--rows", 0);
        if (rows == 0) throw new ArgumentException("--rows is required");
        int fields = (int)a.Number("--fields", 16), values = (int)a.Number("--values", 200), seed = (int)a.Number("--seed", 1);
        const int rank = 4;
        var model = new Random(2017);
        double Normal(Random r) => Math.Sqrt(-2 * Math.Log(1.0 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
        var linear = new double[fields * values];
        for (int i = 0; i < linear.Length; i++) linear[i] = 0.2 * Normal(model);
        var pairs = Enumerable.Range(0, fields / 2).Select(p => (F: 2 * p, G: (2 * p + 3) % fields)).Where(p => p.F != p.G).ToArray();
        var factors = new double[fields * values * rank];
        for (int i = 0; i < factors.Length; i++) factors[i] = Normal(model) / Math.Sqrt(rank);

        var rng = new Random(seed);
        var sw = Stopwatch.StartNew();
        using var w = new StreamWriter(output, false, new UTF8Encoding(false), 1 << 20);
        var x = new int[fields];
        var line = new StringBuilder();
        for (long r = 0; r < rows; r++)
        {
            double y = 0;
            for (int f = 0; f < fields; f++)
            {
                x[f] = f * values + rng.Next(values);
                y += linear[x[f]];
            }
            foreach (var (f, g) in pairs)
            {
                double dot = 0;
                for (int k = 0; k < rank; k++) dot += factors[x[f] * rank + k] * factors[x[g] * rank + k];
                y += dot;
            }
            y += 0.1 * Normal(rng);
            line.Clear().Append(y.ToString("F4", CultureInfo.InvariantCulture));
            for (int f = 0; f < fields; f++) line.Append(' ').Append(x[f]).Append(":1");
            w.Write(line.Append('\n'));
        }
        w.Flush();
        Console.WriteLine($"generated {output}: {rows} rows of {fields} fields, {new FileInfo(output).Length / 1e6:F0} MB in {sw.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    private static int Measure(Args a)
    {
        string trainText = a.Text("--train"), test = a.Text("--test");
        int epochs = (int)a.Number("--epochs", 2), threads = (int)a.Number("--threads", Environment.ProcessorCount);
        bool inMemory = a.Flags.Contains("--in-memory");
        string? limit = Environment.GetEnvironmentVariable("DOTNET_GCHeapHardLimit");
        string load = File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";
        Console.WriteLine($"machine: {Environment.ProcessorCount} logical cores, {CpuSimd.Name(CpuSimd.Path)}, load average {load}; " +
            $"GC heap hard limit: {(limit is null ? "none" : $"{Convert.ToInt64(limit, 16) / (1 << 20)} MiB (DOTNET_GCHeapHardLimit={limit})")}" +
            $"{(Environment.GetEnvironmentVariable("DOTNET_GCConserveMemory") is { } c ? $", DOTNET_GCConserveMemory={c}" : "")}");
        using var peak = new HeapSampler();
        var options = new TrainerOptions
        {
            Model = ModelKind.Fm, K = 8, Epochs = epochs, BatchSize = 1024, LearningRate = 0.05f, Patience = 0, Seed = (int)a.Number("--seed", 1),
            ValidationFraction = (float)a.Real("--validation-fraction", 0.1),
        };
        using var acc = new CpuAccelerator(threads);
        RowSource train;
        CacheFile? cache = null;
        double textMb = new FileInfo(trainText).Length / 1e6;
        if (inMemory)
        {
            var sw = Stopwatch.StartNew();
            var rows = LibFmReader.Read(trainText);
            Console.WriteLine($"read {trainText} into memory: {rows.Rows} rows, {textMb:F0} MB of text in {sw.Elapsed.TotalSeconds:F1} s");
            train = RowSource.Of(rows);
        }
        else
        {
            string cachePath = a.Text("--cache");
            var parse = Stopwatch.StartNew();
            long parsed = LibFmReader.ReadBlocks(trainText).Sum(b => (long)b.Rows);
            double parseSeconds = parse.Elapsed.TotalSeconds;
            Console.WriteLine($"parsing alone (LibFmReader.ReadBlocks, blocks discarded): {parsed} rows in {parseSeconds:F1} s = {textMb / parseSeconds:F0} MB/s");
            var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            var h = CacheFile.Write(trainText, cachePath, new LibFmReadOptions(), (int)a.Number("--chunk-rows", CacheFile.DefaultChunkRows));
            double seconds = sw.Elapsed.TotalSeconds, cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds;
            Console.WriteLine($"converted {trainText} ({textMb:F0} MB of text) into {cachePath} ({new FileInfo(cachePath).Length / 1e6:F0} MB, {h.ChunkCount} chunks): " +
                $"{h.Rows} rows in {seconds:F1} s = {textMb / seconds:F0} MB/s ({parseSeconds / seconds:P0} of parsing alone's rate); {cpu:F1} CPU-seconds = {textMb / cpu:F0} MB per CPU-second");
            Console.WriteLine($"  peak so far: managed heap {peak.Peaks}; resident set (VmHWM) {HeapSampler.Status("VmHWM") / 1024.0:F0} MiB");
            cache = CacheFile.Open(cachePath);
            train = new CacheRows(cache, a.Number("--shuffle-buffer", CacheRows.DefaultBufferRows));
            Console.WriteLine($"training from the cache: {((CacheRows)train).BufferChunks} chunks of {h.ChunkRows} rows per shuffle buffer");
        }
        try
        {
            var trainer = new Trainer(acc, options);
            trainer.EpochCompleted += r => Console.WriteLine($"  epoch {r.Epoch}: train loss {r.TrainLoss:F4}, valid {r.Validation?.Format(LossKind.Squared)}, {r.Seconds:F1} s, {r.SamplesPerSecond:N0} rows/s");
            var sw = Stopwatch.StartNew();
            var result = trainer.Train(train, null);
            Console.WriteLine($"trained an FM (k = 8, batch 1024, Adagrad lr 0.05, {epochs} epochs) {(inMemory ? "in memory" : "out of core")} on {train.Rows} rows, " +
                $"{options.ValidationFraction:P0} of them held out for validation, in {sw.Elapsed.TotalSeconds:F1} s");
            using var predictor = new Predictor(acc, result.Model, 64);
            var sum = new MetricsAccumulator(LossKind.Squared);
            foreach (var block in LibFmReader.ReadBlocks(test))
                sum.Add(predictor.Predict(block), block.Labels);
            var m = sum.Result();
            Console.WriteLine($"test {test}: {m.Rows} rows  rmse {m.Rmse:F4} mae {m.Mae:F4}");
        }
        finally
        {
            cache?.Dispose();
        }
        long hwm = HeapSampler.Status("VmHWM");
        Console.WriteLine($"peak memory: managed heap {peak.Peaks} (sampled every 50 ms); process resident set VmHWM {hwm / 1024.0:F0} MiB");
        if (limit is not null)
        {
            double cap = Convert.ToInt64(limit, 16) / (double)(1 << 20);
            Console.WriteLine($"the managed heap stayed under the {cap:F0} MiB cap (the runtime enforces it: an allocation past it throws OutOfMemoryException); " +
                $"the resident set, which adds the runtime's code and native memory, is {(hwm / 1024.0 <= cap ? "under" : "over")} it; the text file is {textMb / (cap * 1.048576):F1} x the cap");
        }
        return 0;
    }

    /// <summary>
    /// Samples the managed heap in the background and keeps the largest figures: its size after the last collection
    /// (live objects and fragmentation) and the bytes allocated including garbage not yet collected.
    /// </summary>
    private sealed class HeapSampler : IDisposable
    {
        private readonly Timer _timer;
        private long _afterGc, _allocated;

        public HeapSampler() => _timer = new Timer(_ => Sample(), null, 0, 50);

        /// <summary>"after GC a MiB, with garbage b MiB".</summary>
        public string Peaks
        {
            get
            {
                Sample();
                return $"after a collection {Interlocked.Read(ref _afterGc) / (double)(1 << 20):F0} MiB, with garbage not yet collected {Interlocked.Read(ref _allocated) / (double)(1 << 20):F0} MiB";
            }
        }

        private void Sample()
        {
            Raise(ref _afterGc, GC.GetGCMemoryInfo(GCKind.Any).HeapSizeBytes);
            Raise(ref _allocated, GC.GetTotalMemory(false));
        }

        private static void Raise(ref long peak, long now)
        {
            long seen;
            while (now > (seen = Interlocked.Read(ref peak)) && Interlocked.CompareExchange(ref peak, now, seen) != seen) { }
        }

        /// <summary>A kB figure of /proc/self/status (0 where there is none).</summary>
        public static long Status(string key)
        {
            if (!File.Exists("/proc/self/status")) return 0;
            foreach (string line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key + ":", StringComparison.Ordinal))
                    return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            return 0;
        }

        public void Dispose() => _timer.Dispose();
    }
}
