using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Afm.Gpu.Model;

namespace Afm.Gpu.Tests;

public sealed class ModelFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-modelfile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static AfmModel RandomModel(ModelKind kind, int n, int k, int t, int seed, LossKind loss = LossKind.Squared)
    {
        var rng = new Random(seed);
        var model = new AfmModel(kind, n, k, t, loss) { LabelMin = 1f, LabelMax = 5f };
        // Random bit patterns: every float class turns up (NaNs with payloads, infinities, -0, subnormals).
        foreach (var (_, data, _) in model.Tensors()) rng.NextBytes(MemoryMarshal.AsBytes(data.AsSpan()));
        return model;
    }

    private static void AssertBitEqual(AfmModel expected, AfmModel actual)
    {
        Assert.Equal(expected.Kind, actual.Kind);
        Assert.Equal(expected.Loss, actual.Loss);
        Assert.Equal(expected.FeatureCount, actual.FeatureCount);
        Assert.Equal(expected.K, actual.K);
        Assert.Equal(expected.T, actual.T);
        Assert.Equal(BitConverter.SingleToInt32Bits(expected.LabelMin), BitConverter.SingleToInt32Bits(actual.LabelMin));
        Assert.Equal(BitConverter.SingleToInt32Bits(expected.LabelMax), BitConverter.SingleToInt32Bits(actual.LabelMax));
        float[][] e = [expected.W0, expected.Linear, expected.V, expected.AttnW, expected.AttnB, expected.AttnH, expected.Proj];
        float[][] a = [actual.W0, actual.Linear, actual.V, actual.AttnW, actual.AttnB, actual.AttnH, actual.Proj];
        for (int i = 0; i < e.Length; i++)
        {
            Assert.Equal(e[i].Length, a[i].Length);
            for (int j = 0; j < e[i].Length; j++)
                if (BitConverter.SingleToInt32Bits(e[i][j]) != BitConverter.SingleToInt32Bits(a[i][j]))
                    Assert.Fail($"array {i} element {j}: expected bits {BitConverter.SingleToInt32Bits(e[i][j]):X8}, got {BitConverter.SingleToInt32Bits(a[i][j]):X8}");
        }
    }

    private byte[] SaveBytes(AfmModel model, ModelMetadata? metadata = null)
    {
        string path = PathOf("source.afm");
        ModelFile.Save(model, path, metadata);
        return File.ReadAllBytes(path);
    }

    private ModelFormatException LoadFails(byte[] bytes)
    {
        string path = PathOf("bad.afm");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => ModelFile.Load(path));
        Assert.Equal(path, e.File);
        Assert.StartsWith(path + ": ", e.Message);
        return e;
    }

    // Recomputes the CRC so that a deliberately inconsistent file passes the checksum.
    private static byte[] Reseal(byte[] bytes)
    {
        int body = bytes.Length - 12;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(body), Crc32.Compute(bytes.AsSpan(0, body)));
        return bytes;
    }

    private static uint BitwiseCrc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            c ^= b;
            for (int i = 0; i < 8; i++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }

    [Fact]
    public void Crc32_MatchesStandardCheckValue()
    {
        Assert.Equal(0xCBF43926u, Crc32.Compute("123456789"u8));
        Assert.Equal(0u, Crc32.Compute([]));
    }

    [Fact]
    public void Crc32_MatchesBitwiseReferenceAndAppendsInPieces()
    {
        var data = new byte[300];
        new Random(7).NextBytes(data);
        for (int length = 0; length <= data.Length; length++)
            Assert.Equal(BitwiseCrc32(data.AsSpan(0, length)), Crc32.Compute(data.AsSpan(0, length)));
        uint whole = Crc32.Compute(data);
        for (int split = 0; split <= data.Length; split++)
            Assert.Equal(whole, Crc32.Append(Crc32.Compute(data.AsSpan(0, split)), data.AsSpan(split)));
    }

    [Fact]
    public void RoundTrip_Afm_IsBitExact()
    {
        var model = RandomModel(ModelKind.Afm, 37, 8, 5, seed: 1, LossKind.Logistic);
        string path = PathOf("afm.afm");
        ModelFile.Save(model, path);
        AssertBitEqual(model, ModelFile.Load(path));
    }

    [Fact]
    public void RoundTrip_Fm_IsBitExact()
    {
        var model = RandomModel(ModelKind.Fm, 50, 16, 0, seed: 2);
        string path = PathOf("fm.afm");
        ModelFile.Save(model, path);
        var loaded = ModelFile.Load(path);
        AssertBitEqual(model, loaded);
        Assert.Equal(0, loaded.T);
        Assert.All(loaded.Proj, p => Assert.Equal(1f, p));
    }

    [Fact]
    public void RoundTrip_TensorLargerThanOneChunk_IsBitExact()
    {
        var model = RandomModel(ModelKind.Afm, 70_001, 8, 4, seed: 3); // V spans three 1 MiB chunks
        string path = PathOf("big.afm");
        ModelFile.Save(model, path);
        AssertBitEqual(model, ModelFile.Load(path));
    }

    [Fact]
    public void Metadata_RoundTrips()
    {
        var metadata = new ModelMetadata();
        metadata.Properties["epochs"] = "20";
        metadata.Properties["accelerator"] = "CUDA NVIDIA H100";
        metadata.Properties["best.rmse"] = "0.4321";
        metadata.Properties["note"] = "λ = 2·10⁻³ 🚀";
        metadata.Properties["empty"] = "";
        metadata.Properties[""] = "empty key";
        var model = RandomModel(ModelKind.Afm, 10, 4, 3, seed: 4);
        string path = PathOf("meta.afm");
        ModelFile.Save(model, path, metadata);

        var (loaded, loadedMetadata) = ModelFile.LoadWithMetadata(path);
        AssertBitEqual(model, loaded);
        Assert.Equal(metadata.Properties.OrderBy(p => p.Key, StringComparer.Ordinal),
                     loadedMetadata.Properties.OrderBy(p => p.Key, StringComparer.Ordinal));
        AssertBitEqual(model, ModelFile.Load(path));
    }

    [Fact]
    public void NoMetadata_LoadsAsEmpty()
    {
        string path = PathOf("plain.afm");
        ModelFile.Save(RandomModel(ModelKind.Fm, 3, 2, 0, seed: 5), path);
        Assert.Empty(ModelFile.LoadWithMetadata(path).Metadata.Properties);
    }

    [Theory]
    [InlineData(float.NaN, float.NaN)]
    [InlineData(1f, 5f)]
    [InlineData(float.NegativeInfinity, float.PositiveInfinity)]
    [InlineData(-0f, float.NaN)]
    public void LabelRange_RoundTrips(float min, float max)
    {
        var model = RandomModel(ModelKind.Afm, 5, 3, 2, seed: 6);
        model.LabelMin = min;
        model.LabelMax = max;
        string path = PathOf("range.afm");
        ModelFile.Save(model, path);
        AssertBitEqual(model, ModelFile.Load(path));
    }

    [Fact]
    public void Layout_MatchesDocumentedOffsets()
    {
        var model = new AfmModel(ModelKind.Afm, 10, 4, 3, LossKind.Logistic) { LabelMin = 0f, LabelMax = 1f };
        byte[] b = SaveBytes(model);
        Assert.Equal("AFMGPU\0\0"u8.ToArray(), b[..8]);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(12)));  // Afm
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(16)));  // Logistic
        Assert.Equal(10, BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(20)));
        Assert.Equal(4, BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(24)));
        Assert.Equal(3, BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(28)));
        Assert.Equal(1f, BinaryPrimitives.ReadSingleLittleEndian(b.AsSpan(36)));
        Assert.Equal(0, BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(40)));    // no metadata
        Assert.Equal(2, BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(44)));    // "w0"
        Assert.Equal("w0"u8.ToArray(), b[48..50]);
        Assert.Equal(1, BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(58)));    // its element count
        Assert.Equal("V"u8.ToArray(), b[135..136]);
        // 44 header + tensors w0 26, w 21+40, V 25+160, W 25+48, b 21+12, h 21+12, p 21+16 bytes + 12 trailer.
        Assert.Equal(504, b.Length); // the example in docs/model-format.md
        Assert.Equal(Crc32.Compute(b.AsSpan(0, b.Length - 12)), BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 12)));
        Assert.Equal("AFMGPEND"u8.ToArray(), b[^8..]);
    }

    [Theory]
    [InlineData(0x01)]
    [InlineData(0x80)]
    [InlineData(0xFF)]
    public void FlippedByte_AnywhereInBody_ReportsChecksumMismatch(int mask)
    {
        var metadata = new ModelMetadata();
        metadata.Properties["seed"] = "42";
        byte[] good = SaveBytes(RandomModel(ModelKind.Afm, 6, 3, 2, seed: 7), metadata);
        // Everything after magic and version, up to and including the stored CRC.
        for (int offset = 12; offset < good.Length - 8; offset++)
        {
            byte[] bad = (byte[])good.Clone();
            bad[offset] ^= (byte)mask;
            var e = LoadFails(bad);
            Assert.True(e.Message.EndsWith("checksum mismatch: file is corrupt"), $"offset {offset}: {e.Message}");
        }
    }

    [Fact]
    public void FlippedByte_InMagicOrEndMarker_IsReported()
    {
        byte[] good = SaveBytes(RandomModel(ModelKind.Fm, 4, 2, 0, seed: 8));
        for (int offset = 0; offset < 8; offset++)
        {
            byte[] bad = (byte[])good.Clone();
            bad[offset] ^= 0x20;
            Assert.Contains("not an afm-gpu model file", LoadFails(bad).Message);
        }
        for (int offset = good.Length - 8; offset < good.Length; offset++)
        {
            byte[] bad = (byte[])good.Clone();
            bad[offset] ^= 0x20;
            Assert.Contains("missing end marker", LoadFails(bad).Message);
        }
    }

    [Fact]
    public void Truncation_AtEveryOffset_IsAClearFormatError()
    {
        var metadata = new ModelMetadata();
        metadata.Properties["k"] = "v";
        byte[] good = SaveBytes(RandomModel(ModelKind.Afm, 6, 3, 2, seed: 9), metadata);
        for (int length = 0; length < good.Length; length++)
        {
            var e = LoadFails(good[..length]);
            Assert.True(e.Message.Contains("truncated: expected "), $"length {length}: {e.Message}");
        }
    }

    [Fact]
    public void Truncation_InsideTensor_NamesTensorOffsetAndFileSize()
    {
        byte[] good = SaveBytes(RandomModel(ModelKind.Afm, 10, 4, 3, seed: 10));
        var e = LoadFails(good[..200]);
        Assert.EndsWith("truncated: expected 160 bytes of tensor 'V' at offset 156, file has 200", e.Message);
    }

    [Fact]
    public void WrongMagic_IsNotAModelFile()
    {
        Assert.EndsWith("not an afm-gpu model file", LoadFails("user,item,rating\n1,2,5\n"u8.ToArray()).Message);
        Assert.EndsWith("not an afm-gpu model file", LoadFails([0x89, (byte)'P', (byte)'N', (byte)'G']).Message);
        Assert.Contains("truncated", LoadFails([]).Message);
    }

    [Fact]
    public void FutureVersion_IsRejectedNamingTheVersionsRead()
    {
        byte[] bytes = SaveBytes(RandomModel(ModelKind.Afm, 4, 2, 2, seed: 11));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 5);
        Assert.EndsWith("unsupported format version 5; this build reads versions 1 to 4", LoadFails(Reseal(bytes)).Message);
        // versions 3 and 4 are for CSV models: a libFM model's bytes labelled 3 or 4 are refused, not misread
        foreach (uint version in new uint[] { 3, 4 })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), version);
            Assert.Contains($"format version {version}", LoadFails(Reseal(bytes)).Message);
        }
    }

    [Fact]
    public void TrailingGarbage_IsRejected()
    {
        byte[] good = SaveBytes(RandomModel(ModelKind.Fm, 4, 2, 0, seed: 12));
        Assert.Contains("trailing garbage: 3 bytes", LoadFails([.. good, 1, 2, 3]).Message);
    }

    [Theory]
    [InlineData(12, 7, "unknown model kind 7")]
    [InlineData(16, 9, "unknown loss kind 9")]
    [InlineData(20, 0, "feature count 0 is not positive")]
    [InlineData(20, -5, "feature count -5 is not positive")]
    [InlineData(24, 65537, "k = 65537 is outside [1, 65536]")]
    [InlineData(28, 0, "t = 0 is outside [1, 65536]")]
    [InlineData(24, 5, "tensor 'V' dimension 1 is 4, expected 5")]
    public void InconsistentHeader_WithValidChecksum_IsRejected(int offset, int value, string message)
    {
        byte[] bytes = SaveBytes(RandomModel(ModelKind.Afm, 10, 4, 3, seed: 13));
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(offset), value);
        Assert.Contains(message, LoadFails(Reseal(bytes)).Message);
    }

    [Fact]
    public void HugeFeatureCount_WithValidChecksum_IsReportedWithoutAllocating()
    {
        byte[] bytes = SaveBytes(RandomModel(ModelKind.Afm, 10, 4, 3, seed: 22));
        const int n = 1 << 28; // V alone would take 4 GiB
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(20), n);  // header feature count
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(79), n);  // dimension of 'w'
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(83), n);  // element count of 'w'
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        var e = LoadFails(Reseal(bytes));
        Assert.EndsWith($"truncated: expected {4L * n} bytes of tensor 'w' at offset 91, file has {bytes.Length}", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - allocated < 1 << 24);
    }

    [Fact]
    public void FmWithAttention_WithValidChecksum_IsRejected()
    {
        byte[] bytes = SaveBytes(RandomModel(ModelKind.Fm, 10, 4, 0, seed: 14));
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(28), 3);
        Assert.Contains("t = 3 for an FM model", LoadFails(Reseal(bytes)).Message);
    }

    [Fact]
    public void WrongTensorName_WithValidChecksum_IsRejected()
    {
        byte[] bytes = SaveBytes(RandomModel(ModelKind.Afm, 10, 4, 3, seed: 15));
        Assert.Equal((byte)'V', bytes[135]);
        bytes[135] = (byte)'X';
        Assert.Contains("expected tensor 'V' at position 2, found 'X'", LoadFails(Reseal(bytes)).Message);
    }

    [Fact]
    public void Save_Overwrite_ReplacesFileAndLeavesNoTempFiles()
    {
        string path = PathOf("model.afm");
        ModelFile.Save(RandomModel(ModelKind.Afm, 8, 4, 2, seed: 16), path);
        var second = RandomModel(ModelKind.Fm, 9, 3, 0, seed: 17);
        ModelFile.Save(second, path);
        AssertBitEqual(second, ModelFile.Load(path));
        Assert.Equal([path], Directory.GetFiles(_dir));
    }

    [Fact]
    public void Save_IntoMissingDirectory_ThrowsAndCreatesNothing()
    {
        string missing = PathOf("no-such-dir");
        var e = Assert.Throws<DirectoryNotFoundException>(() =>
            ModelFile.Save(RandomModel(ModelKind.Fm, 3, 2, 0, seed: 18), Path.Combine(missing, "model.afm")));
        Assert.Contains(missing, e.Message);
        Assert.False(Directory.Exists(missing));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Save_FailingMidWrite_KeepsExistingFileAndRemovesTempFile()
    {
        string path = PathOf("model.afm");
        ModelFile.Save(RandomModel(ModelKind.Afm, 8, 4, 2, seed: 19), path);
        byte[] before = File.ReadAllBytes(path);

        var metadata = new ModelMetadata();
        metadata.Properties["a"] = "fine";
        metadata.Properties["b"] = "unpaired \uD800 surrogate"; // fails while the temp file is being written
        Assert.Throws<ArgumentException>(() => ModelFile.Save(RandomModel(ModelKind.Afm, 8, 4, 2, seed: 20), path, metadata));

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(_dir));
    }

    [Fact]
    public void Save_OntoADirectory_FailsAndRemovesTempFile()
    {
        string path = PathOf("taken");
        Directory.CreateDirectory(path);
        Assert.ThrowsAny<IOException>(() => ModelFile.Save(RandomModel(ModelKind.Fm, 3, 2, 0, seed: 21), path));
        Assert.Empty(Directory.GetFiles(_dir));
        Assert.Empty(Directory.GetFileSystemEntries(path));
    }
}
