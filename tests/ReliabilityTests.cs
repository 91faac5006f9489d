using System.Buffers.Binary;
using System.Text;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.IO;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;

namespace Afm.Gpu.Tests;

/// <summary>Hostile inputs to the library: each gives its typed exception with a clear message, never a crash or a useless model.</summary>
public sealed class ReliabilityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-reliability-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private DataFormatException ReadFails(string content, LibFmReadOptions? options = null)
    {
        string path = PathOf("data.libfm");
        File.WriteAllText(path, content);
        return Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, options));
    }

    private static SparseDataset Data(int rows, float value, int seed = 1)
    {
        var rng = new Random(seed);
        var b = new SparseDatasetBuilder();
        for (int r = 0; r < rows; r++)
        {
            int u = rng.Next(20), i = 20 + rng.Next(20);
            b.Add([u, i], [value, value], 1 + (u + i) % 5);
        }
        return b.Build(name: "rows");
    }

    [Fact]
    public void Reader_LargestIdIsOneBelowIntMax()
    {
        var e = ReadFails("3 1:1\n3 2147483647:1\n");
        Assert.Equal(2, e.Line);
        Assert.Contains("too large (the limit is 2147483646)", e.Problem);
        string path = PathOf("ok.libfm");
        File.WriteAllText(path, "3 2147483646:1\n");
        Assert.Equal(int.MaxValue, LibFmReader.Read(path).FeatureCount);
    }

    [Fact]
    public void Reader_LimitsNameTheLine()
    {
        var e = ReadFails("3 1:1\n# comment\n4 0:1 5000:1\n", new LibFmReadOptions { MaxFeatureCount = 1000 });
        Assert.Equal(3, e.Line);
        Assert.Contains("feature id 5000 is too large", e.Problem);
        Assert.Contains("ids up to 999", e.Problem);

        string longRow = "2 " + string.Join(' ', Enumerable.Range(0, 17000).Select(i => $"{i}:1"));
        e = ReadFails("1 1:1\n" + longRow + "\n", new LibFmReadOptions { MaxRowNonZeros = Limits.MaxRowNonZeros(16, 16) });
        Assert.Equal(2, e.Line);
        Assert.Contains("the row has 17000 non-zeros (144491500 feature pairs)", e.Problem);
        Assert.Contains($"at most {Limits.MaxRowNonZeros(16, 16)}", e.Problem);
    }

    [Theory]
    [InlineData("5")]
    [InlineData("7")]
    [InlineData("-3")]
    [InlineData("0.5")]
    public void Reader_BinaryLabelsRejectOthers(string label)
    {
        var e = ReadFails($"1 1:1\n0 2:1\n-1 3:1\n{label} 4:1\n", new LibFmReadOptions { BinaryLabels = true });
        Assert.Equal(4, e.Line);
        Assert.Contains($"label '{label}' is not binary", e.Problem);
    }

    [Theory]
    [InlineData("3 1:3.4e38\n", "value in '1:3.4e38' is too large")]
    [InlineData("3 1:1e30 2:1e30\n", "value in '1:1e30' is too large")]
    [InlineData("1e19 1:1\n", "label '1e19' is too large")]
    public void Reader_HugeMagnitudesAreRejectedWithTheLine(string content, string expected)
    {
        var e = ReadFails("1 1:1\n" + content);
        Assert.Equal(2, e.Line);
        Assert.Contains(expected, e.Problem);
        Assert.Contains("scale the", e.Problem);
    }

    [Fact]
    public void Reader_EscapesControlCharactersInMessages()
    {
        var e = ReadFails("3 1:1\n4 2:\u001b[31mred\u0007\r\n");
        Assert.Equal(2, e.Line);
        Assert.DoesNotContain('\u001b', e.Message);
        Assert.DoesNotContain('\u0007', e.Message);
        Assert.Contains("\\x1B[31mred\\x07", e.Message);
        Assert.Equal("a\\x0Ab\\x1B\\u2028", Printable.Escape("a\nb\u001b\u2028"));
        Assert.Equal("plain text", Printable.Escape("plain text"));
    }

    [Fact]
    public void Limits_RowLengthAndPairCountDoNotOverflow()
    {
        foreach (var (k, t) in new[] { (16, 16), (1, 0), (64, 64), (4096, 4096), (8, 0) })
        {
            int n = Limits.MaxRowNonZeros(k, t);
            long pairs = (long)n * (n - 1) / 2, next = (long)(n + 1) * n / 2;
            Assert.True(pairs * (k + t) <= Limits.MaxPairValuesPerRow, $"k {k} t {t}: {n}");
            Assert.True(next * (k + t) > Limits.MaxPairValuesPerRow, $"k {k} t {t}: {n} is not the largest");
        }
        Assert.Equal(4096, Limits.MaxRowNonZeros(16, 16));
        Assert.Equal(Array.MaxLength / 16, Limits.MaxFeatureCount(16));
    }

    [Fact]
    public void Trainer_LongRowIsALimitNotAnOverflow()
    {
        var b = new SparseDatasetBuilder();
        b.Add(Enumerable.Range(0, 17000).ToArray(), Enumerable.Repeat(1f, 17000).ToArray(), 3f);
        for (int i = 0; i < 20; i++) b.Add([i, i + 1], [1f, 1f], 2f);
        using var acc = new CpuAccelerator(1);
        var e = Assert.Throws<LimitExceededException>(() => new Trainer(acc, new TrainerOptions { Epochs = 1 }).Train(b.Build(name: "long rows")));
        Assert.StartsWith("long rows: a row has 17000 non-zeros (144491500 feature pairs, 4623728000 pair values at k = 16, t = 16); at most 4096", e.Message);
    }

    [Fact]
    public void Predictor_LongRowIsALimit()
    {
        var model = Fixtures.RandomModel(ModelKind.Afm, 6000, 16, 16, LossKind.Squared, seed: 2);
        var b = new SparseDatasetBuilder();
        b.Add([0, 1], [1f, 1f], 3f);
        b.Add(Enumerable.Range(0, 5000).ToArray(), Enumerable.Repeat(1f, 5000).ToArray(), 3f);
        using var acc = new CpuAccelerator(1);
        using var predictor = new Predictor(acc, model, 2);
        var e = Assert.Throws<LimitExceededException>(() => predictor.Predict(b.Build(name: "to score")));
        Assert.StartsWith("to score: a row has 5000 non-zeros (12497500 feature pairs", e.Message);
        Assert.Throws<LimitExceededException>(() => new Predictor(acc, model, 5000));
    }

    [Fact]
    public void Trainer_HugeFeatureTableIsRefusedBeforeAllocating()
    {
        var b = new SparseDatasetBuilder();
        for (int i = 0; i < 12; i++) b.Add([i, 2147483000], [1f, 1f], 2f);
        using var acc = new CpuAccelerator(1);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<LimitExceededException>(() => new Trainer(acc, new TrainerOptions { Epochs = 1 }).Train(b.Build(name: "wide")));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 100_000_000, "allocated the table before refusing");
        Assert.Contains("wide: feature ids up to 2147483000 need an embedding table of 2147483001 x k = 16 values (34359728016)", e.Message);
        Assert.Contains("renumber them densely from 0", e.Message);
    }

    [Fact]
    public void Limits_TableMemoryIsCheckedWhereItLives()
    {
        // 100M features at k = 16: 6.8 GB per table; Adam keeps two more on the device.
        var (host, device) = Limits.TrainingTableBytes(100_000_000, 16, OptimizerKind.Adam);
        Assert.Equal(2 * 6_800_000_000L + 400_000_000L, host);
        Assert.Equal(3 * 6_800_000_000L, device);
        var gpu = new Accelerators.AcceleratorDescriptor(Accelerators.AcceleratorKind.Cuda, 0, "a small GPU", "", 8L << 30, 10, true);
        if (Limits.AvailableMemoryBytes() > host)
        {
            var e = Assert.Throws<LimitExceededException>(() => Limits.CheckTraining("big", ModelKind.Afm, 100_000_000, 16, 16, 3, 4096, OptimizerKind.Adam, gpu));
            Assert.Equal("big: feature ids up to 99999999 at k = 16 with Adam need about 19.0 GiB on a small GPU for the embedding tables and their optimizer state, more than its 8.0 GiB; renumber the ids densely from 0, lower k, or train on the CPU", e.Message);
        }
        if (Limits.AvailableMemoryBytes() < host + device)
        {
            var e = Assert.Throws<LimitExceededException>(() => Limits.CheckTraining("big", ModelKind.Afm, 100_000_000, 16, 16, 3, 4096, OptimizerKind.Adam));
            Assert.StartsWith("big: feature ids up to 99999999 at k = 16 with Adam need about 32.0 GiB of memory for the embedding tables and their optimizer state, more than the ", e.Message);
        }
        Limits.CheckTraining("small", ModelKind.Afm, 1000, 16, 16, 3, 4096, OptimizerKind.Adam, gpu);
    }

    [Fact]
    public void Trainer_DivergenceNamesEpochStepAndTheLearningRate()
    {
        using var acc = new CpuAccelerator(1);
        var e = Assert.Throws<TrainingDivergedException>(() =>
            new Trainer(acc, new TrainerOptions { K = 8, T = 4, Epochs = 3, BatchSize = 32, LearningRate = 1e6f }).Train(Data(200, 1f)));
        Assert.InRange(e.Epoch, 1, 3);
        Assert.InRange(e.Step, 1, 3 * 6);
        Assert.Contains($"training diverged in epoch {e.Epoch} by step {e.Step}: ", e.Message);
        Assert.EndsWith("lower the learning rate (now 1000000)", e.Message);
    }

    [Theory]
    [InlineData(LossKind.Squared, 5f)]
    [InlineData(LossKind.Logistic, 1f)]
    [InlineData(LossKind.Logistic, 0f)]
    public void Trainer_LabelsThatAreAllEqualAreNotTakenForDivergence(LossKind loss, float label)
    {
        // Predicting the mean label costs nothing here, so the divergence check needs the labels' scale, not that loss.
        var data = Data(60, 1f);
        Array.Fill(data.Labels, label);
        using var acc = new CpuAccelerator(1);
        var result = new Trainer(acc, new TrainerOptions { K = 4, T = 4, Epochs = 2, BatchSize = 16, Loss = loss }).Train(data);
        Assert.Equal(2, result.History.Count);
        // A runaway is still one.
        Assert.Throws<TrainingDivergedException>(() =>
            new Trainer(acc, new TrainerOptions { K = 4, T = 4, Epochs = 3, BatchSize = 16, Loss = loss, LearningRate = 1e6f }).Train(data));
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0f)]
    public void Trainer_AFirstEpochFarAboveItsStartIsADivergenceNotAModel(float validation)
    {
        // 60 non-zeros a row: 1770 pairs, whose FM sum Adagrad's first steps (about ±lr each) move far beyond the labels'
        // scale. Before this check the run went on from there and kept its starting model ("best epoch 0").
        var data = Fixtures.ManyNonZeros(2000, 400, 60, seed: 1);
        using var acc = new CpuAccelerator(1);
        var o = new TrainerOptions { Model = ModelKind.Fm, K = 16, Epochs = 3, BatchSize = 256, ValidationFraction = validation };
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer(acc, o).Train(data));
        Assert.Equal(1, e.Epoch);
        Assert.StartsWith("the mean training loss of the first epoch, ", e.Reason);
        Assert.Contains(" is over 10 times that of the starting model (", e.Reason);
        Assert.Equal($"training diverged in epoch 1 by step {e.Step}: {e.Reason}; lower the learning rate (now 0.05)", e.Message);

        // a tenth of that rate trains, each epoch below where it started
        o.LearningRate = 0.005f;
        var r = new Trainer(acc, o).Train(data);
        Assert.Equal(3, r.History.Count);
        Assert.True(r.History[0].TrainLoss < data.Labels.Average(y => (double)y * y), $"first epoch's loss {r.History[0].TrainLoss}");
        if (validation > 0) Assert.True(r.BestEpoch > 0);
    }

    [Fact]
    public void Trainer_DivergenceOnHugeInputNamesTheInput()
    {
        using var acc = new CpuAccelerator(1);
        var e = Assert.Throws<TrainingDivergedException>(() =>
            new Trainer(acc, new TrainerOptions { K = 8, T = 4, Epochs = 2, BatchSize = 32 }).Train(Data(200, 1e15f)));
        Assert.Contains("the input rows has feature values as large as 1E+15 in magnitude: scale the features and labels", e.Message);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.2f)]
    public void Trainer_NeverReturnsANonFiniteModel(float validation)
    {
        // A learning rate this large leaves weights huge after one step: the model predicts NaN even where the loss was finite.
        using var acc = new CpuAccelerator(1);
        var trainer = new Trainer(acc, new TrainerOptions { K = 8, T = 4, Epochs = 1, LearningRate = 1e30f, ValidationFraction = validation });
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Train(Data(200, 1f)));
        Assert.Equal(1, e.Epoch);
        Assert.Contains("lower the learning rate (now 1E+30)", e.Message);
    }

    [Fact]
    public void Trainer_SgdBlowUpStopsWithAnErrorNotAnEarlyEpoch()
    {
        using var acc = new CpuAccelerator(1);
        var trainer = new Trainer(acc, new TrainerOptions { K = 8, T = 4, Epochs = 20, Optimizer = OptimizerKind.Sgd, LearningRate = 100f });
        var reports = new List<EpochReport>();
        trainer.EpochCompleted += reports.Add;
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Train(Data(200, 1f)));
        Assert.All(reports, r => Assert.True(double.IsFinite(r.Validation!.Rmse), $"epoch {r.Epoch} reported {r.Validation.Rmse}"));
        Assert.Equal(reports.Count + 1, e.Epoch);
    }

    [Fact]
    public void Trainer_ValidationSplitOfNoRowsIsAnError()
    {
        using var acc = new CpuAccelerator(1);
        var e = Assert.Throws<ArgumentException>(() => new Trainer(acc, new TrainerOptions { Epochs = 1, ValidationFraction = 0.01f }).Train(Data(20, 1f)));
        Assert.Contains("rows: a validation fraction of 0.01 of 20 rows holds out no row", e.Message);
        e = Assert.Throws<ArgumentException>(() => Trainer.Split(Data(20, 1f), 0.99f, 1));
        Assert.Contains("leaves no training row", e.Message);
    }

    [Fact]
    public void Trainer_LogisticLossRejectsOtherLabels()
    {
        using var acc = new CpuAccelerator(1);
        var e = Assert.Throws<ArgumentException>(() => new Trainer(acc, new TrainerOptions { Epochs = 1, Loss = LossKind.Logistic }).Train(Data(30, 1f)));
        Assert.Contains("rows: row ", e.Message);
        Assert.Contains("logistic loss takes labels 0/1 or -1/1", e.Message);
    }

    [Fact]
    public void AtomicFile_RemovesStaleTemporariesButNotOnesInUse()
    {
        string target = PathOf("m.afm");
        string stale = target + ".tmp-0123456789ab", held = target + ".tmp-abcdefabcdef", other = target + ".tmp-notmine", unrelated = PathOf("n.afm.tmp-0123456789ab");
        foreach (string f in new[] { stale, held, other, unrelated }) File.WriteAllBytes(f, new byte[100]);
        using (new FileStream(held, FileMode.Open, FileAccess.Write, FileShare.None))
        {
            AtomicFile.WriteLines(target, ["x"]);
            Assert.True(File.Exists(held), "a temporary file in use was removed");
        }
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(other));
        Assert.True(File.Exists(unrelated));
        Assert.Equal(1, AtomicFile.RemoveStaleTemporaries(target));
        Assert.False(File.Exists(held));
        Assert.Equal("x\n", File.ReadAllText(target));
    }

    [Fact]
    public void AtomicFile_UnwritableTargetsNameTheTargetNotTheTemporary()
    {
        var e = Assert.Throws<IOException>(() => AtomicFile.EnsureWritable(_dir));
        Assert.Equal($"cannot write '{_dir}': it is a directory", e.Message);
        e = Assert.Throws<IOException>(() => AtomicFile.EnsureWritable(_dir + "/"));
        Assert.Contains("it is a directory", e.Message);
        Assert.Throws<DirectoryNotFoundException>(() => AtomicFile.EnsureWritable(PathOf("no/such/m.afm")));
        if (OperatingSystem.IsLinux())
        {
            e = Assert.Throws<IOException>(() => AtomicFile.EnsureWritable("/proc/x.afm"));
            Assert.StartsWith("cannot write '/proc/x.afm': ", e.Message);
            Assert.DoesNotContain(".tmp-", e.Message);
        }
        AtomicFile.EnsureWritable(PathOf("fine.afm"));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void AtomicFile_WritesAFifoInPlaceAndALinksTarget()
    {
        if (!OperatingSystem.IsLinux()) return;
        // A FIFO stands for /dev/stdout and /dev/null here: renaming a file over it would replace it with a regular file.
        string fifo = PathOf("out.fifo");
        Assert.Equal(0, MkFifo(fifo, 0b110_000_000));
        Assert.Equal(FileKindValue.Special, FileKind.Of(fifo));
        AtomicFile.EnsureWritable(fifo); // returns: opening a FIFO to probe it would wait for a reader
        string? read = null;
        var reader = new Thread(() => read = File.ReadAllText(fifo)) { IsBackground = true };
        reader.Start();
        AtomicFile.WriteLines(fifo, ["a", "b"]);
        Assert.True(reader.Join(TimeSpan.FromSeconds(30)), "the FIFO's reader got no end of file");
        Assert.Equal("a\nb\n", read);
        Assert.Equal(FileKindValue.Special, FileKind.Of(fifo));
        Assert.DoesNotContain(Directory.GetFiles(_dir), f => f.Contains(".tmp-", StringComparison.Ordinal));

        // A link to a model keeps pointing to it; the model it points to is replaced, atomically.
        Directory.CreateDirectory(PathOf("models"));
        string model = PathOf("models/v1.afm"), link = PathOf("current.afm");
        File.WriteAllText(model, "old");
        File.CreateSymbolicLink(link, "models/v1.afm");
        AtomicFile.WriteLines(link, ["new"]);
        Assert.NotNull(new FileInfo(link).LinkTarget);
        Assert.Equal("new\n", File.ReadAllText(model));
        Assert.Single(Directory.GetFiles(PathOf("models")));

        Assert.Equal(FileKindValue.Special, FileKind.Of("/dev/null"));
        Assert.Equal(FileKindValue.Regular, FileKind.Of(model));
        Assert.Equal(FileKindValue.Regular, FileKind.Of(link));
        Assert.Equal(FileKindValue.Directory, FileKind.Of(_dir));
        Assert.Equal(FileKindValue.Missing, FileKind.Of(PathOf("none")));
        File.CreateSymbolicLink(PathOf("dangling"), "none");
        Assert.Equal(FileKindValue.Missing, FileKind.Of(PathOf("dangling")));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MkFifo(string path, uint mode);

    private string Export(ModelKind kind = ModelKind.Afm)
    {
        string path = PathOf("m.safetensors");
        var model = Fixtures.RandomModel(kind, 6, 2, 2, LossKind.Squared, seed: 3);
        model.LabelMin = 1;
        model.LabelMax = 5;
        Safetensors.Export(model, path);
        return path;
    }

    [Fact]
    public void Safetensors_ChecksumCatchesEveryFlippedDataByte()
    {
        string path = Export();
        byte[] file = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        Assert.Contains("\"crc32\":\"", Encoding.UTF8.GetString(file, 8, n));
        int caught = 0;
        for (int at = 8 + n; at < file.Length; at++)
        {
            byte[] bad = (byte[])file.Clone();
            bad[at] ^= (byte)(1 << (at % 8));
            File.WriteAllBytes(path, bad);
            var e = Assert.Throws<ModelFormatException>(() => Safetensors.Import(path));
            Assert.Contains("checksum mismatch: file is corrupt", e.Message);
            caught++;
        }
        Assert.Equal(file.Length - 8 - n, caught);
        // The model's metadata values are covered too: a changed clipping range is caught, not served.
        string header = Encoding.UTF8.GetString(file, 8, n);
        int digit = header.IndexOf("\"label_max\":\"", StringComparison.Ordinal) + 13;
        byte[] relabelled = (byte[])file.Clone();
        relabelled[8 + digit] = (byte)(header[digit] == '9' ? '8' : '9');
        File.WriteAllBytes(path, relabelled);
        Assert.Contains("checksum mismatch: file is corrupt", Assert.Throws<ModelFormatException>(() => Safetensors.Import(path)).Message);
        // Files without the entry (older exports, other writers) still import.
        File.WriteAllBytes(path, file);
        var model = Safetensors.Import(path);
        Assert.Equal(6, model.FeatureCount);
    }

    [Fact]
    public void Safetensors_ChecksumIsTheDocumentedOne()
    {
        // docs/safetensors.md: zlib's crc32 of the tensor bytes, then each checked metadata value and '\n'; computed here by Python.
        const string python = "/usr/bin/python3";
        if (!File.Exists(python)) return;
        string path = Export(), script = PathOf("crc.py");
        File.WriteAllText(script, """
            import json, struct, sys, zlib
            data = open(sys.argv[1], "rb").read()
            n = struct.unpack("<Q", data[:8])[0]
            meta = json.loads(data[8:8 + n])["__metadata__"]
            text = "".join(meta[k] + "\n" for k in ["model", "loss", "k", "t", "label_min", "label_max"]).encode()
            print(meta["crc32"], "%08x" % zlib.crc32(data[8 + n:] + text))
            """);
        var psi = new System.Diagnostics.ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(path);
        using var p = System.Diagnostics.Process.Start(psi)!;
        string[] result = p.StandardOutput.ReadToEnd().Split(' ', StringSplitOptions.TrimEntries);
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        Assert.Equal(8, result[0].Length);
        Assert.Equal(result[0], result[1]);
    }

    [Fact]
    public void Safetensors_InvalidUtf8HeaderIsAFormatError()
    {
        string path = Export();
        byte[] file = File.ReadAllBytes(path);
        int at = Encoding.UTF8.GetString(file, 8, 200).IndexOf("afm-gpu", StringComparison.Ordinal);
        file[8 + at] = 0xFF;
        File.WriteAllBytes(path, file);
        var e = Assert.Throws<ModelFormatException>(() => Safetensors.Import(path));
        Assert.Equal($"{path}: header is not valid UTF-8 text", e.Message);
    }

    [Fact]
    public void Safetensors_HeaderFuzzGivesOnlyFormatErrors()
    {
        string path = Export();
        byte[] file = File.ReadAllBytes(path);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var rng = new Random(13);
        byte[] alphabet = "{}[]\":,0123456789-.eE \\u00ffafmkt"u8.ToArray();
        int failed = 0, imported = 0;
        for (int i = 0; i < 400; i++)
        {
            byte[] bad = (byte[])file.Clone();
            int edits = 1 + rng.Next(4);
            for (int j = 0; j < edits; j++)
            {
                int at = 8 + rng.Next(n);
                bad[at] = rng.Next(3) == 0 ? (byte)rng.Next(256) : alphabet[rng.Next(alphabet.Length)];
            }
            File.WriteAllBytes(path, bad);
            try
            {
                AfmEngine.LoadModel(path);
                imported++;
            }
            catch (ModelFormatException e)
            {
                Assert.StartsWith(path + ": ", e.Message);
                failed++;
            }
        }
        Assert.Equal(400, failed + imported);
        Assert.True(failed > 300, $"only {failed} of 400 damaged headers were rejected");
    }

    [Fact]
    public void LoadModel_ADataFileIsNotAModelFile()
    {
        string path = PathOf("data.libfm");
        File.WriteAllText(path, "3 1:1 2:1\n4 2:1 3:1\n");
        var e = Assert.Throws<ModelFormatException>(() => AfmEngine.LoadModel(path));
        Assert.StartsWith($"{path}: not an afm-gpu model file", e.Message);
        File.WriteAllText(path, "3 1:1");
        e = Assert.Throws<ModelFormatException>(() => AfmEngine.LoadModel(path));
        Assert.StartsWith($"{path}: not an afm-gpu model file", e.Message);
    }
}
