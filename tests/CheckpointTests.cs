using System.Diagnostics;
using System.Globalization;
using System.Text;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Training;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>A run stopped at any point and resumed from its checkpoint ends with the model of an uninterrupted run, bit for bit.</summary>
public sealed class CheckpointTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-checkpoint-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static SparseDataset Data(int rows, int seed)
    {
        var rng = new Random(seed);
        var b = new SparseDatasetBuilder();
        for (int r = 0; r < rows; r++)
        {
            int u = rng.Next(60), i = 60 + rng.Next(80), x = 140 + rng.Next(10);
            b.Add([u, i, x], [1f, 1f, 0.5f], 1 + (u * 7 + i) % 5);
        }
        return b.Build(name: "ratings");
    }

    private static int[] Bits(AfmModel m) => m.Tensors().SelectMany(t => t.Data).Select(BitConverter.SingleToInt32Bits).ToArray();

    [Theory]
    [InlineData(OptimizerKind.Adam, 5)]
    [InlineData(OptimizerKind.Adagrad, 0)]
    [InlineData(OptimizerKind.Sgd, 2)]
    [InlineData(OptimizerKind.Adagrad, 4, 3)] // validations within epochs: patience counts them
    public void StoppedAnywhereAndResumed_EndsBitIdentical(OptimizerKind optimizer, int patience, int evaluationsPerEpoch = 1)
    {
        var data = Data(1500, 3);
        var o = new TrainerOptions { K = 8, T = 6, Epochs = 7, BatchSize = 128, Optimizer = optimizer, Keep0 = 0.8f, Keep1 = 0.9f, Patience = patience, LearningRate = 0.05f, EvaluationsPerEpoch = evaluationsPerEpoch };
        using var acc = new CpuAccelerator(2);
        var reference = new Trainer(acc, o).Train(data);
        long stepsPerEpoch = (data.Rows - (int)Math.Round(data.Rows * 0.1) + o.BatchSize - 1) / o.BatchSize;
        long totalSteps = stepsPerEpoch * reference.History.Max(h => h.Epoch);
        if (evaluationsPerEpoch > 1) Assert.Contains(reference.History, h => h.Fraction < 1);

        var rng = new Random(11 + (int)optimizer + evaluationsPerEpoch);
        var checkpoint = new CheckpointOptions { Directory = Path.Combine(_dir, $"ck-{optimizer}-{evaluationsPerEpoch}"), Resume = true };
        int stops = 0, resumes = 0;
        TrainResult? result = null;
        while (result is null)
        {
            using var cancel = new CancellationTokenSource();
            // four stops at random steps within the next two epochs (a stop before the first epoch end redoes it), then to the end
            long stopAt = stops < 4 ? rng.NextInt64(1, 2 * stepsPerEpoch + 1) : long.MaxValue, seen = 0;
            var trainer = new Trainer(acc, o) { Checkpoint = checkpoint };
            trainer.Progress += _ => { if (++seen == stopAt) cancel.Cancel(); };
            resumes += CheckpointOptions.LastEpoch(checkpoint.Directory) is null ? 0 : 1;
            try { result = trainer.Train(data, cancel: cancel.Token); }
            catch (OperationCanceledException) { stops++; }
            Assert.True(stops < 50, "never finished");
        }
        output.WriteLine($"{optimizer}: {stops} stops, {resumes} resumes from a checkpoint, {reference.History.Count} epochs");
        Assert.Equal(4, stops);
        Assert.True(totalSteps > 2 * stepsPerEpoch);
        Assert.Equal(reference.BestEpoch, result.BestEpoch);
        Assert.Equal(reference.BestEpochs, result.BestEpochs);
        Assert.Equal(reference.History.Select(h => h.Epochs), result.History.Select(h => h.Epochs));
        Assert.Equal(reference.History.Select(h => h.TrainLoss), result.History.Select(h => h.TrainLoss));
        Assert.Equal(reference.History.Select(h => h.Validation!.Rmse), result.History.Select(h => h.Validation!.Rmse));
        Assert.Equal(Bits(reference.Model), Bits(result.Model));
    }

    [Fact]
    public void AVersion1CheckpointResumesToTheSameModel()
    {
        // Version 2 added each report's share of its epoch; a checkpoint written before (version 1) still resumes.
        var data = Data(800, 6);
        var o = new TrainerOptions { K = 6, T = 4, Epochs = 4, BatchSize = 100, Patience = 0, Keep1 = 0.8f };
        using var acc = new CpuAccelerator(2);
        var reference = new Trainer(acc, o).Train(data);
        var checkpoint = new CheckpointOptions { Directory = Path.Combine(_dir, "v1"), Resume = true };
        var two = o.Clone();
        two.Epochs = 2;
        new Trainer(acc, two) { Checkpoint = checkpoint }.Train(data);
        File.WriteAllBytes(checkpoint.FilePath, AsVersion1(File.ReadAllBytes(checkpoint.FilePath)));
        Assert.Equal(2, CheckpointOptions.LastEpoch(checkpoint.Directory));
        var resumed = new Trainer(acc, o) { Checkpoint = checkpoint }.Train(data);
        Assert.Equal(reference.History.Select(h => h.Validation!.Rmse), resumed.History.Select(h => h.Validation!.Rmse));
        Assert.All(resumed.History, h => Assert.Equal(1, h.Fraction));
        Assert.Equal(Bits(reference.Model), Bits(resumed.Model));
    }

    /// <summary>A version 2 checkpoint of whole epochs rewritten as version 1: no share of an epoch per report.</summary>
    private static byte[] AsVersion1(byte[] v2)
    {
        var r = new MemoryStream(v2);
        var w = new MemoryStream();
        byte[] Take(int n) { var b = new byte[n]; r.ReadExactly(b); return b; }
        w.Write(Take(8)); // magic
        Assert.Equal(2u, BitConverter.ToUInt32(Take(4)));
        w.Write(BitConverter.GetBytes(1u));
        w.Write(Take(8 + 4 + 8 + 4 + 8 + 4)); // fingerprint, epoch, step, best epoch, best score, epochs since
        byte[] count = Take(4);
        w.Write(count);
        for (int i = 0; i < BitConverter.ToInt32(count); i++)
        {
            w.Write(Take(4 + 8)); // epoch, loss
            byte[] has = Take(4);
            w.Write(has);
            if (BitConverter.ToInt32(has) == 1) w.Write(Take(4 * 8 + 4)); // metrics
            w.Write(Take(8 + 8 + 4)); // seconds, rate, best
            Assert.Equal(1.0, BitConverter.ToDouble(Take(8))); // the share of the epoch, which version 1 lacks
        }
        w.Write(Take((int)(r.Length - r.Position - 12))); // model and optimizer state, up to the CRC and end marker
        byte[] body = w.ToArray();
        w.Write(BitConverter.GetBytes(Crc32.Append(0, body)));
        w.Write(CheckpointFile.End);
        return w.ToArray();
    }

    [Fact]
    public void ACheckpointOfAnotherRunOrDamagedIsRefused()
    {
        var data = Data(300, 4);
        var o = new TrainerOptions { K = 4, T = 4, Epochs = 2, BatchSize = 64 };
        using var acc = new CpuAccelerator(1);
        var checkpoint = new CheckpointOptions { Directory = Path.Combine(_dir, "ck"), Resume = true };
        new Trainer(acc, o) { Checkpoint = checkpoint }.Train(data);
        Assert.Equal(2, CheckpointOptions.LastEpoch(checkpoint.Directory));

        var other = new TrainerOptions { K = 4, T = 4, Epochs = 2, BatchSize = 64, Seed = 2 };
        var e = Assert.Throws<ArgumentException>(() => new Trainer(acc, other) { Checkpoint = checkpoint }.Train(data));
        Assert.Contains("the checkpoint is of another run", e.Message);
        Assert.Throws<ArgumentException>(() => new Trainer(acc, o) { Checkpoint = checkpoint }.Train(Data(300, 5)));

        byte[] bytes = File.ReadAllBytes(checkpoint.FilePath);
        bytes[bytes.Length / 2] ^= 0x10;
        File.WriteAllBytes(checkpoint.FilePath, bytes);
        var f = Assert.Throws<ModelFormatException>(() => new Trainer(acc, o) { Checkpoint = checkpoint }.Train(data));
        Assert.Contains("checksum mismatch", f.Message);
    }

    [Fact]
    public void KilledProcessesResumeToTheSameModelFile()
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "afm-gpu.dll");
        Assert.True(File.Exists(cli), cli);
        var rng = new Random(7);
        var sb = new StringBuilder();
        for (int r = 0; r < 30000; r++)
        {
            int u = rng.Next(300), i = 300 + rng.Next(500), x = 800 + rng.Next(30);
            sb.Append(CultureInfo.InvariantCulture, $"{1 + (u * 7 + i) % 5} {u}:1 {i}:1 {x}:0.5\n");
        }
        string data = Path.Combine(_dir, "train.libfm");
        File.WriteAllText(data, sb.ToString());
        string[] common = ["train", "--train", data, "-k", "16", "-t", "16", "--epochs", "8", "--batch", "512", "--keep0", "0.8", "--optimizer", "adam", "-a", "cpu", "--threads", "2", "--no-progress"];
        string full = Path.Combine(_dir, "full.afm"), resumed = Path.Combine(_dir, "resumed.afm");

        (int Code, double Seconds) Start(string[] args, double killAfter)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(cli);
            foreach (string a in args) psi.ArgumentList.Add(a);
            var clock = Stopwatch.StartNew();
            using var p = Process.Start(psi)!;
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            if (!p.WaitForExit(TimeSpan.FromSeconds(killAfter)))
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit();
                return (-1, clock.Elapsed.TotalSeconds);
            }
            p.WaitForExit();
            return (p.ExitCode, clock.Elapsed.TotalSeconds);
        }

        var (code, seconds) = Start([.. common, "-o", full], 300);
        Assert.Equal(0, code);
        int kills = 0, runs = 0;
        double scale = 1;
        string checkpoint = Path.Combine(_dir, "ck");
        var killedAt = new List<string>();
        while (true)
        {
            runs++;
            // a random moment of the first 60% of an uninterrupted run's time: start-up, reading, an epoch, a checkpoint or the final save
            double after = rng.NextDouble() * 0.6 * seconds * scale;
            var (c, _) = Start([.. common, "-o", resumed, "--checkpoint", checkpoint, "--resume"], kills < 5 ? after : 300);
            if (c == -1)
            {
                kills++;
                killedAt.Add($"{after:F2} s (checkpoint after epoch {CheckpointOptions.LastEpoch(checkpoint)?.ToString(CultureInfo.InvariantCulture) ?? "none"})");
                continue;
            }
            Assert.Equal(0, c);
            if (kills == 0 && runs < 10)
            {
                // it finished before its kill (the machine runs faster than during the uninterrupted run): again from
                // nothing, with the kills drawn from a shorter time
                File.Delete(resumed);
                if (Directory.Exists(checkpoint)) Directory.Delete(checkpoint, recursive: true);
                scale /= 2;
                continue;
            }
            break;
        }
        output.WriteLine($"uninterrupted run {seconds:F1} s; {kills} kills at random times, {runs} runs; killed at {string.Join(", ", killedAt)}");
        Assert.True(kills >= 1, "no run was killed");
        Assert.Equal(File.ReadAllBytes(full), File.ReadAllBytes(resumed));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*", SearchOption.AllDirectories));
    }
}
