using System.Buffers.Binary;
using System.Globalization;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Model.Onnx;
using Afm.Gpu.Training;
using CliApp = Afm.Cli.Cli;

namespace Afm.Gpu.Tests;

/// <summary>A model's input encoding (format and hashing) in its files, and the command reading data by it.</summary>
public sealed class HashedModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-hashed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static AfmModel RandomModel(int bits, InputEncoding input)
    {
        var m = new AfmModel(ModelKind.Afm, 1 << bits, 4, 3, LossKind.Logistic) { Input = input };
        var rng = new Random(bits);
        foreach (var (_, data, _) in m.Tensors())
            for (int i = 0; i < data.Length; i++) data[i] = (float)rng.NextDouble() - 0.5f;
        return m;
    }

    private static void AssertSameParameters(AfmModel a, AfmModel b)
    {
        foreach (var (x, y) in a.Tensors().Zip(b.Tensors()))
            Assert.Equal(x.Data, y.Data); // bit for bit: the files store float32 exactly
    }

    [Fact]
    public void TheLibraryRecordsTheInputOfItsOptionsInTheTrainedModel()
    {
        string text = Path.Combine(_dir, "named.libfm");
        File.WriteAllLines(text, Enumerable.Range(0, 80).Select(r => $"{r % 2} user={r % 7} item:{r % 5}x age:{r % 3 + 1}"));
        var read = new LibFmReadOptions { HashBits = 6 };
        var data = LibFmReader.Read(text, read);
        var options = new TrainerOptions { Model = ModelKind.Fm, K = 4, Epochs = 2, BatchSize = 16, Loss = LossKind.Logistic, Input = read.Encoding };
        var trained = AfmEngine.Train(data, options, accelerator: "cpu");
        Assert.Equal(new InputEncoding(DataFormat.LibFm, 6), trained.Model.Input);
        string path = Path.Combine(_dir, "named.afm");
        trained.Save(path);
        var loaded = AfmEngine.LoadModel(path);
        Assert.Equal(6, loaded.Input.HashBits);
        Assert.Equal(6, LibFmReadOptions.For(loaded, labelsMatter: false).HashBits);
    }

    [Fact]
    public void ModelFileKeepsTheInputAsVersion2AndWritesOthersAsVersion1()
    {
        string path = Path.Combine(_dir, "h.afm");
        var hashed = RandomModel(10, new InputEncoding(DataFormat.Criteo, 10));
        ModelFile.Save(hashed, path);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(path).AsSpan(8)));
        var loaded = ModelFile.Load(path);
        Assert.Equal(new InputEncoding(DataFormat.Criteo, 10), loaded.Input);
        AssertSameParameters(hashed, loaded);

        var plain = RandomModel(4, InputEncoding.Default);
        ModelFile.Save(plain, path);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(path).AsSpan(8)));
        Assert.Equal(InputEncoding.Default, ModelFile.Load(path).Input);
    }

    [Fact]
    public void HashBitsThatDisagreeWithTheFeatureCountAreRefused()
    {
        var model = RandomModel(6, new InputEncoding(DataFormat.LibFm, 6));
        Assert.Throws<ArgumentException>(() => ModelFile.Save(new AfmModel(ModelKind.Fm, 100, 2, 0, LossKind.Squared) { Input = model.Input }, Path.Combine(_dir, "x.afm")));
        string path = Path.Combine(_dir, "h.afm");
        ModelFile.Save(model, path);
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(6, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(44))); // format at 40, hash bits at 44
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(44), 7);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 12), Crc32.Compute(bytes.AsSpan(0, bytes.Length - 12)));
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => ModelFile.Load(path));
        Assert.Contains("hash bits 7 give 128 rows, but the feature count is 64", e.Message);
    }

    [Fact]
    public void SafetensorsAndOnnxCarryTheHashing()
    {
        var model = RandomModel(8, new InputEncoding(DataFormat.LibFm, 8));
        string st = Path.Combine(_dir, "m.safetensors");
        Safetensors.Export(model, st);
        var back = Safetensors.Import(st);
        Assert.Equal(model.Input, back.Input);
        AssertSameParameters(model, back);
        Assert.Equal(model.Input, AfmEngine.LoadModel(st).Input);

        var props = OnnxExport.Build(model, null, new OnnxExportOptions()).MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("8", props["hash_bits"]);
        Assert.Equal("libfm", props["data_format"]);
        Assert.Equal(FeatureHash.Spec, props["feature_hash"]);
    }

    [Fact]
    public void OnnxOfAHashedModelScoresRowsTheCallerHashed()
    {
        const int bits = 10;
        var model = RandomModel(bits, new InputEncoding(DataFormat.LibFm, bits));
        var (path, rows) = NamedData("onnx.txt", 40, 7);
        string onnx = Path.Combine(_dir, "h.onnx");
        OnnxExport.Export(model, onnx);

        // the caller's step: hash each row's names as docs/onnx.md says, then score the ids
        var builder = new SparseDatasetBuilder();
        foreach (var (names, label) in rows)
            builder.Add(names.Select(n => FeatureHash.Row(n, bits)).ToArray(), names.Select(_ => 1f).ToArray(), label);
        var hashedByCaller = builder.Build(1 << bits);
        var (_, prediction, _) = OnnxExportTests.RunOnnx(onnx, hashedByCaller, 3);

        using var acc = new CpuAccelerator();
        var read = LibFmReader.Read(path, LibFmReadOptions.For(model, labelsMatter: false));
        using var predictor = new Predictor(acc, model, read.MaxNnz);
        var native = predictor.Predict(read);
        Assert.Equal(native.Length, prediction.Length);
        for (int i = 0; i < native.Length; i++) Assert.Equal(native[i], prediction[i], 1e-5f);
    }

    [Fact]
    public void ReadOptionsForAModelReadItsWay()
    {
        var model = RandomModel(9, new InputEncoding(DataFormat.Criteo, 9));
        var o = LibFmReadOptions.For(model, labelsMatter: true);
        Assert.Equal((DataFormat.Criteo, 9, 512, true), (o.Format, o.HashBits, o.FeatureCount, o.BinaryLabels));

        var named = RandomModel(10, new InputEncoding(DataFormat.LibFm, 10));
        string modelPath = Path.Combine(_dir, "named.afm"), data = Path.Combine(_dir, "named.txt");
        ModelFile.Save(named, modelPath);
        File.WriteAllLines(data, ["1 user=3 item:x 12:0.5"]);
        using var trained = TrainedModel.Load(modelPath, "cpu");
        var rows = trained.Read(data);
        Assert.Equal([FeatureHash.Row("user=3", 10), FeatureHash.Row("item:x", 10), FeatureHash.Row("12", 10)], rows.RowIds(0).ToArray());
        Assert.Equal(trained.Predict(rows.RowIds(0), rows.RowValues(0)), trained.Predict(rows)[0], 1e-6f);
    }

    /// <summary>Rows of named features: user, item and a tag, with a rating that depends on user and item.</summary>
    private (string Path, List<(string[] Names, float Label)> Rows) NamedData(string name, int rows, int seed)
    {
        var rng = new Random(seed);
        var list = new List<(string[], float)>();
        var lines = new List<string>();
        for (int r = 0; r < rows; r++)
        {
            int user = rng.Next(20), item = rng.Next(30);
            string[] names = [$"user={user}", $"item:i{item}", $"tag{rng.Next(4)}"];
            float label = 1 + (user + item) % 5;
            list.Add((names, label));
            lines.Add($"{label.ToString(CultureInfo.InvariantCulture)} {string.Join(' ', names)}");
        }
        string path = Path.Combine(_dir, name);
        File.WriteAllLines(path, lines);
        return (path, list);
    }

    [Fact]
    public void PredictOnAHashedModelHashesAsTrained()
    {
        const int bits = 12;
        var (train, _) = NamedData("train.txt", 500, 1);
        var (test, rows) = NamedData("test.txt", 80, 2);
        string model = Path.Combine(_dir, "m.afm"), predictions = Path.Combine(_dir, "p.txt");
        var t = Run("train", "--train", train, "--hash-bits", bits.ToString(CultureInfo.InvariantCulture), "-k", "4", "-t", "4", "--epochs", "2", "--lambda", "0", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(t.Code == 0, t.Err + t.Out);
        Assert.Contains("4096 hashed feature rows (2^12)", t.Out);
        var loaded = ModelFile.Load(model);
        Assert.Equal(new InputEncoding(DataFormat.LibFm, bits), loaded.Input);

        var p = Run("predict", "-m", model, "-d", test, "-o", predictions, "--accelerator", "cpu");
        Assert.True(p.Code == 0, p.Err);
        var printed = File.ReadAllLines(predictions).Select(l => float.Parse(l, CultureInfo.InvariantCulture)).ToArray();

        // the same rows hashed here from their names, by the documented hash
        var builder = new SparseDatasetBuilder();
        foreach (var (names, label) in rows)
            builder.Add(names.Select(n => FeatureHash.Row(n, bits)).ToArray(), names.Select(_ => 1f).ToArray(), label);
        var data = builder.Build(1 << bits);
        using var acc = new CpuAccelerator();
        using var predictor = new Predictor(acc, loaded, data.MaxNnz);
        var expected = predictor.Predict(data);
        Assert.Equal(expected.Length, printed.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], printed[i], 1e-6f);

        var ev = Run("evaluate", "-m", model, "-d", test, "--accelerator", "cpu");
        Assert.True(ev.Code == 0, ev.Err);
        Assert.Contains("80 rows", ev.Out);

        var ex = Run("explain", "-m", model, "-d", test, "--rows", "1", "--accelerator", "cpu");
        Assert.True(ex.Code == 0, ex.Err);
        Assert.Contains("field pairs over 80 rows", ex.Out);
        Assert.Contains("features are named by the names hashed to each row", ex.Out);
        Assert.Contains(rows[0].Names[0], ex.Out); // the first row's features by name
        Assert.Matches(@"\buser\b", ex.Out); // and their fields

        var top = Run("predict", "-m", model, "-d", test, "--top-pairs", "1", "--accelerator", "cpu");
        Assert.True(top.Code == 0, top.Err);
        var first = top.Out.Split('\n')[0];
        Assert.Matches(@"\t(user=\d+|item:i\d+|tag\d)(\|[^*]+)?\*(user=\d+|item:i\d+|tag\d)", first);
    }

    [Fact]
    public void AHugeIdWithHashingTrainsASmallModel()
    {
        string train = Path.Combine(_dir, "big-id.libfm"), model = Path.Combine(_dir, "small.afm");
        File.WriteAllLines(train, ["1 20000000:1 3:1", "0 19999999:1 4:1"]);
        var t = Run("train", "--train", train, "--hash-bits", "10", "--model", "fm", "-k", "4", "--epochs", "1", "--validation-fraction", "0", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(t.Code == 0, t.Err + t.Out);
        var loaded = ModelFile.Load(model);
        Assert.Equal(1024, loaded.FeatureCount);
        Assert.True(new FileInfo(model).Length < 64 * 1024, $"{new FileInfo(model).Length} bytes");
    }

    [Fact]
    public void CriteoTrainsWithTheDefaultHashBitsAndSaysSo()
    {
        var rng = new Random(3);
        var lines = Enumerable.Range(0, 60).Select(r =>
            $"{r % 2}\t" + string.Join('\t', Enumerable.Range(0, 13).Select(j => rng.Next(3) == 0 ? "" : rng.Next(0, 50).ToString(CultureInfo.InvariantCulture)))
            + "\t" + string.Join('\t', Enumerable.Range(0, 26).Select(j => rng.Next(4) == 0 ? "" : rng.Next(8).ToString("x8", CultureInfo.InvariantCulture))));
        string train = Path.Combine(_dir, "day.tsv"), model = Path.Combine(_dir, "c.afm");
        File.WriteAllLines(train, lines);
        var t = Run("train", "--train", train, "--format", "criteo", "--model", "fm", "-k", "2", "--epochs", "1", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(t.Code == 0, t.Err + t.Out);
        Assert.Contains($"criteo: hashing features into 2^{CriteoFormat.DefaultHashBits} embedding rows (the default", t.Out);
        Assert.Contains("criteo: logistic loss on the click labels (the default; --loss squared to change)", t.Out);
        var trained = ModelFile.Load(model);
        Assert.Equal(new InputEncoding(DataFormat.Criteo, CriteoFormat.DefaultHashBits), trained.Input);
        Assert.Equal(LossKind.Logistic, trained.Loss);
        Assert.Contains("logloss", t.Out);

        // --loss still decides when given, and then nothing is said about it.
        string squared = Path.Combine(_dir, "s.afm");
        var s = Run("train", "--train", train, "--format", "criteo", "--loss", "squared", "--model", "fm", "-k", "2", "--epochs", "1", "--accelerator", "cpu", "-o", squared, "--no-progress");
        Assert.True(s.Code == 0, s.Err + s.Out);
        Assert.DoesNotContain("logistic loss", s.Out);
        Assert.Equal(LossKind.Squared, ModelFile.Load(squared).Loss);
        var ev = Run("evaluate", "-m", model, "-d", train, "--accelerator", "cpu");
        Assert.True(ev.Code == 0, ev.Err);
        Assert.Contains("60 rows", ev.Out);
    }

    [Theory]
    [InlineData(new[] { "--hash-bits", "31" }, "--hash-bits 31: must be in 1..30")]
    [InlineData(new[] { "--format", "psv" }, "--format psv: use libfm, criteo, csv or tsv")]
    [InlineData(new[] { "--format", "csv", "--hash-bits", "0" }, "the csv format is always hashed")]
    [InlineData(new[] { "--format", "csv", "--ignore-columns", "label" }, "--ignore-columns label: column 'label' is the label column and cannot be ignored too")]
    [InlineData(new[] { "--format", "criteo", "--hash-bits", "0" }, "the criteo format is always hashed")]
    [InlineData(new string[0], ":2: feature 'user=3' is named, not a numeric id:value; hash named features with --hash-bits B")]
    public void BadHashingInputIsOneLine(string[] extra, string message)
    {
        string train = Path.Combine(_dir, "named.libfm");
        File.WriteAllLines(train, ["1 0:1", "2 user=3"]);
        var t = Run(["train", "--train", train, "--accelerator", "cpu", "-o", Path.Combine(_dir, "x.afm"), "--no-progress", .. extra]);
        Assert.Equal(CliApp.UserError, t.Code);
        Assert.Contains(message, t.Err);
        Assert.Single(t.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("afm-gpu: error:", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", t.Err);
    }
}
