using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

public sealed class SafetensorsTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-safetensors-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static AfmModel RandomBits(ModelKind kind, int n, int k, int t, LossKind loss, int seed)
    {
        var rng = new Random(seed);
        var model = new AfmModel(kind, n, k, t, loss) { LabelMin = -0f, LabelMax = 5.25f };
        // Random bit patterns: NaN payloads, infinities, -0 and subnormals must all survive.
        foreach (var (_, data, _) in model.Tensors()) rng.NextBytes(MemoryMarshal.AsBytes(data.AsSpan()));
        return model;
    }

    private static void AssertBitEqual(AfmModel expected, AfmModel actual)
    {
        Assert.Equal((expected.Kind, expected.Loss, expected.FeatureCount, expected.K, expected.T),
            (actual.Kind, actual.Loss, actual.FeatureCount, actual.K, actual.T));
        Assert.Equal(BitConverter.SingleToInt32Bits(expected.LabelMin), BitConverter.SingleToInt32Bits(actual.LabelMin));
        Assert.Equal(BitConverter.SingleToInt32Bits(expected.LabelMax), BitConverter.SingleToInt32Bits(actual.LabelMax));
        float[][] e = [expected.W0, expected.Linear, expected.V, expected.AttnW, expected.AttnB, expected.AttnH, expected.Proj];
        float[][] a = [actual.W0, actual.Linear, actual.V, actual.AttnW, actual.AttnB, actual.AttnH, actual.Proj];
        for (int i = 0; i < e.Length; i++)
            Assert.True(MemoryMarshal.AsBytes(e[i].AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(a[i].AsSpan())), $"array {i} differs");
    }

    [Theory]
    [InlineData(ModelKind.Afm, LossKind.Squared, 37, 8, 5)]
    [InlineData(ModelKind.Afm, LossKind.Logistic, 1, 1, 1)]
    [InlineData(ModelKind.Fm, LossKind.Squared, 50, 16, 0)]
    [InlineData(ModelKind.Fm, LossKind.Logistic, 3, 3, 0)]
    public void RoundTripIsBitExact(ModelKind kind, LossKind loss, int n, int k, int t)
    {
        var model = RandomBits(kind, n, k, t, loss, seed: n * 31 + k);
        var meta = new ModelMetadata();
        meta.Properties["note"] = "héllo \"world\"";
        string path = PathOf("m.safetensors");
        Safetensors.Export(model, path, meta);
        var (back, backMeta) = Safetensors.ImportWithMetadata(path);
        AssertBitEqual(model, back);
        Assert.Equal("héllo \"world\"", Assert.Single(backMeta.Properties).Value);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void NaNLabelRangeRoundTrips()
    {
        var model = Fixtures.RandomModel(ModelKind.Afm, 5, 2, 2, LossKind.Logistic, seed: 1);
        string path = PathOf("nan.safetensors");
        Safetensors.Export(model, path);
        var back = Safetensors.Import(path);
        Assert.True(float.IsNaN(back.LabelMin) && float.IsNaN(back.LabelMax));
    }

    [Theory]
    [InlineData(ModelKind.Afm)]
    [InlineData(ModelKind.Fm)]
    public void LayoutFollowsTheSpec(ModelKind kind)
    {
        var model = Fixtures.RandomModel(kind, 11, 4, 3, LossKind.Squared, seed: 2);
        model.LabelMin = 1;
        model.LabelMax = 5;
        string path = PathOf("layout.safetensors");
        Safetensors.Export(model, path);
        byte[] bytes = File.ReadAllBytes(path);

        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        Assert.True(8 + (long)n <= bytes.Length);
        byte[] header = bytes[8..(8 + (int)n)];
        Assert.Equal((byte)'{', header[0]);
        string text = Encoding.UTF8.GetString(header);
        Assert.Equal(text.TrimEnd(' ').Length, text.TrimEnd().Length); // padding is spaces only
        using var doc = JsonDocument.Parse(header);

        var meta = doc.RootElement.GetProperty("__metadata__");
        Assert.Equal("afm-gpu", meta.GetProperty("format").GetString());
        Assert.Equal(kind == ModelKind.Afm ? "afm" : "fm", meta.GetProperty("model").GetString());
        Assert.Equal("squared", meta.GetProperty("loss").GetString());
        Assert.Equal("4", meta.GetProperty("k").GetString());
        Assert.Equal(kind == ModelKind.Afm ? "3" : "0", meta.GetProperty("t").GetString());
        Assert.Equal("1", meta.GetProperty("label_min").GetString());
        Assert.Equal("5", meta.GetProperty("label_max").GetString());

        byte[] buffer = bytes[(8 + (int)n)..];
        long end = 0;
        var expected = model.Tensors().ToList();
        Assert.Equal(expected.Count + 1, doc.RootElement.EnumerateObject().Count());
        foreach (var (name, data, shape) in expected)
        {
            var t = doc.RootElement.GetProperty(name);
            Assert.Equal("F32", t.GetProperty("dtype").GetString());
            Assert.Equal(shape, t.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()));
            long[] offsets = [.. t.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64())];
            Assert.Equal(end, offsets[0]);
            Assert.Equal(end + 4L * data.Length, offsets[1]);
            for (int i = 0; i < data.Length; i++)
                Assert.Equal(data[i], BinaryPrimitives.ReadSingleLittleEndian(buffer.AsSpan((int)end + 4 * i)));
            end = offsets[1];
        }
        Assert.Equal(end, buffer.Length);
    }

    private byte[] Valid(ModelKind kind = ModelKind.Afm)
    {
        string path = PathOf("valid.safetensors");
        Safetensors.Export(Fixtures.RandomModel(kind, 6, 2, 2, LossKind.Squared, seed: 3), path);
        return File.ReadAllBytes(path);
    }

    // Replaces the header with new JSON (padded), keeping the buffer.
    private static byte[] WithHeader(byte[] file, Func<string, string> edit)
    {
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        byte[] header = Encoding.UTF8.GetBytes(edit(Encoding.UTF8.GetString(file, 8, n).TrimEnd()));
        var result = new byte[8 + header.Length + file.Length - 8 - n];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)header.Length);
        header.CopyTo(result, 8);
        file.AsSpan(8 + n).CopyTo(result.AsSpan(8 + header.Length));
        return result;
    }

    private void Fails(byte[] bytes, string expectedFragment)
    {
        string path = PathOf("bad.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => Safetensors.Import(path));
        Assert.Equal(path, e.File);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expectedFragment, e.Message);
    }

    [Fact]
    public void ValidFileImports()
    {
        File.WriteAllBytes(PathOf("ok.safetensors"), WithHeader(Valid(), h => h)); // unpadded header is fine too
        Assert.Equal(6, Safetensors.Import(PathOf("ok.safetensors")).FeatureCount);
    }

    [Fact]
    public void TruncatedFilesAreRejected()
    {
        byte[] file = Valid();
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        Fails([], "too short");
        Fails(file[..5], "too short");
        Fails(file[..(8 + n / 2)], "truncated");
        Fails(file[..^1], "buffer");
        Fails(file[..(8 + n)], "buffer");
        Fails([.. file, 0, 0, 0, 0], "trailing or missing");
    }

    [Fact]
    public void MalformedHeadersAreRejected()
    {
        byte[] file = Valid();
        var huge = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue);
        Fails(huge, "exceeds the limit");
        Fails(WithHeader(file, h => h[..^1]), "not valid JSON");
        Fails(WithHeader(file, h => "[" + h + "]"), "not a JSON object");
        Fails(WithHeader(file, h => h.Replace("\"F32\"", "\"F16\"")), "only F32");
        Fails(WithHeader(file, h => h.Replace("\"afm-gpu\"", "\"other\"")), "format");
        Fails(WithHeader(file, h => h.Replace("\"model\":\"afm\"", "\"model\":\"xyz\"")), "model is 'xyz'");
        Fails(WithHeader(file, h => h.Replace("\"loss\":\"squared\"", "\"lost\":\"squared\"")), "no 'loss'");
        Fails(WithHeader(file, h => h.Replace("\"k\":\"2\"", "\"k\":\"3\"")), "expected [6,3]");
        Fails(WithHeader(file, h => h.Replace("\"t\":\"2\"", "\"t\":\"-1\"")), "not a non-negative integer");
        Fails(WithHeader(file, h => h.Replace("\"w0\"", "\"bias\"")), "missing tensor 'w0'");
        Fails(WithHeader(file, h => h.Replace("\"shape\":[1]", "\"shape\":[2]")), "needs 8");
        Fails(WithHeader(file, h => h.Replace("\"data_offsets\":[0,4]", "\"data_offsets\":[4,8]")), "contiguous");
        Fails(WithHeader(file, h => h.Replace("\"data_offsets\":[0,4]", "\"data_offsets\":[0,4,8]")), "expected 2");
        Fails(WithHeader(file, h => h.Replace("\"shape\":[1]", "\"shape\":[1.5]")), "not a non-negative integer");
        Fails(WithHeader(file, h => h.Replace("{\"format\"", "{\"format\":\"afm-gpu\",\"format\"")), "duplicate");
        Fails(WithHeader(file, h => h.Replace("\"__metadata__\":{", "\"__metadata__\":{\"x\":1,")), "not a string");
        Fails(WithHeader(Valid(ModelKind.Fm), h => h.Replace("\"t\":\"0\"", "\"t\":\"2\"")), "t = 2");
    }

    [Fact]
    public void ExportIsAtomicAndRejectsReservedMetadata()
    {
        string path = PathOf("keep.safetensors");
        var model = Fixtures.RandomModel(ModelKind.Afm, 4, 2, 2, LossKind.Squared, seed: 4);
        Safetensors.Export(model, path);
        byte[] before = File.ReadAllBytes(path);
        var meta = new ModelMetadata();
        meta.Properties["k"] = "7";
        Assert.Throws<ArgumentException>(() => Safetensors.Export(model, path, meta));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Throws<DirectoryNotFoundException>(() => Safetensors.Export(model, Path.Combine(_dir, "missing", "x.safetensors")));
        Assert.Single(Directory.GetFiles(_dir));
    }

    // An independent reader written from the published format, standing in for safetensors.numpy.load_file.
    private const string SpecReader = """
        import json, struct
        import numpy as np
        def load_file(path):
            with open(path, "rb") as f:
                data = f.read()
            n = struct.unpack("<Q", data[:8])[0]
            header = json.loads(data[8:8 + n])
            header.pop("__metadata__", None)
            assert all(v["dtype"] == "F32" for v in header.values())
            buf = data[8 + n:]
            return {k: np.frombuffer(buf[v["data_offsets"][0]:v["data_offsets"][1]], dtype="<f4").reshape(v["shape"])
                    for k, v in header.items()}

        """;

    private const string RealReader = "from safetensors.numpy import load_file\n";

    private bool TryPython(out string python, out string reader)
    {
        reader = PythonHas("safetensors", out python) ? RealReader : SpecReader;
        output.WriteLine($"python reads safetensors with {(reader == RealReader ? "the safetensors package" : "a spec reader (no safetensors package)")}");
        if (PythonHas("numpy", out _)) return true;
        output.WriteLine("SKIPPED: /usr/bin/python3 with numpy is not available");
        return false;
    }

    [Fact]
    public void PythonReadsTheExport()
    {
        if (!TryPython(out string python, out string reader)) return;
        var model = Fixtures.RandomModel(ModelKind.Afm, 50, 8, 4, LossKind.Squared, seed: 5);
        string path = PathOf("py.safetensors"), dump = PathOf("dump.bin"), script = PathOf("check.py");
        Safetensors.Export(model, path);
        File.WriteAllText(script, reader + """
            import sys
            import numpy as np
            m = load_file(sys.argv[1])
            with open(sys.argv[2], "wb") as f:
                for name in ["w0", "w", "V", "W", "b", "h", "p"]:
                    f.write(np.ascontiguousarray(m[name], dtype="<f4").tobytes())
            """);
        RunPython(python, script, path, dump);
        byte[] expected = [.. model.Tensors().SelectMany(t => MemoryMarshal.AsBytes(t.Data.AsSpan()).ToArray())];
        Assert.Equal(expected, File.ReadAllBytes(dump));
    }

    [Fact]
    public void DocumentedPythonSnippetMatchesThePredictor()
    {
        if (!TryPython(out string python, out string reader)) return;
        var model = Fixtures.RandomModel(ModelKind.Afm, 50, 8, 4, LossKind.Squared, seed: 6);
        string path = PathOf("model.safetensors"), script = PathOf("snippet.py");
        Safetensors.Export(model, path);
        string snippet = DocSnippet().Replace(RealReader, reader).Replace("\"model.safetensors\"", $"r\"{path}\"");
        File.WriteAllText(script, snippet + "print(repr(float(y)))\n");
        double y = double.Parse(RunPython(python, script).Trim(), System.Globalization.CultureInfo.InvariantCulture);

        var row = new SparseDataset([0, 3], [3, 17, 42], [1f, 1f, 1f], [0f], model.FeatureCount);
        using var predictor = new Predictor(new CpuAccelerator(), model, ownsAccelerator: true);
        float raw = predictor.PredictRaw(row)[0];
        output.WriteLine($"python {y}, predictor {raw}");
        Assert.True(Math.Abs(raw - y) < 1e-4 * (1 + Math.Abs(y)), $"python {y}, predictor {raw}");
    }

    private static string DocSnippet()
    {
        string doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "safetensors.md"));
        int start = doc.IndexOf("```python\n", StringComparison.Ordinal) + "```python\n".Length;
        return doc[start..doc.IndexOf("```", start, StringComparison.Ordinal)];
    }

    internal static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Afm.Gpu.sln"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository root (Afm.Gpu.sln) above " + AppContext.BaseDirectory);
    }

    private static bool PythonHas(string module, out string python)
    {
        python = "/usr/bin/python3";
        if (!File.Exists(python)) return false;
        try
        {
            RunPython(python, "-c", $"import {module}");
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static string RunPython(string python, params string[] args)
    {
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"python failed ({p.ExitCode}): {stderr.Result}");
        return stdout;
    }
}
