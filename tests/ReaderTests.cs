using System.Diagnostics;
using Afm.Gpu.Data;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

public sealed class ReaderTests(ITestOutputHelper output)
{
    /// <summary>A uniquely named file under the temp directory, deleted on dispose.</summary>
    private sealed class TempFile : IDisposable
    {
        public TempFile(string content)
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"afm-reader-{Guid.NewGuid():N}.libfm");
            File.WriteAllText(Path, content);
        }

        public string Path { get; }

        public void Dispose() => File.Delete(Path);
    }

    private static SparseDataset ReadText(string content, LibFmReadOptions? options = null)
    {
        using var file = new TempFile(content);
        return LibFmReader.Read(file.Path, options);
    }

    private static DataFormatException ReadFails(string content, long expectedLine, string expectedProblem, LibFmReadOptions? options = null)
    {
        using var file = new TempFile(content);
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(file.Path, options));
        Assert.Equal(file.Path, e.File);
        Assert.Equal(expectedLine, e.Line);
        Assert.Contains(expectedProblem, e.Problem);
        Assert.Contains(System.IO.Path.GetFileName(file.Path), e.Message);
        Assert.StartsWith(expectedLine > 0 ? $"{file.Path}:{expectedLine}: " : $"{file.Path}: ", e.Message);
        return e;
    }

    [Fact]
    public void ReadBlocksStreamsTheSameRowsInOrderWithTheFilesLineNumbers()
    {
        var text = new System.Text.StringBuilder("# header\n");
        for (int r = 0; r < 23; r++)
        {
            text.Append(r % 3).Append(' ');
            for (int j = 0; j < r % 5; j++) text.Append(r + j).Append(':').Append(0.5 * j).Append(' ');
            text.Append('\n');
            if (r == 7) text.Append('\n');
        }
        using var file = new TempFile(text.ToString());
        var whole = LibFmReader.Read(file.Path);
        var blocks = LibFmReader.ReadBlocks(file.Path, blockRows: 5).ToList();
        Assert.Equal([5, 5, 5, 5, 3], blocks.Select(b => b.Rows));
        int row = 0;
        foreach (var b in blocks)
            for (int r = 0; r < b.Rows; r++, row++)
            {
                Assert.Equal(whole.Labels[row], b.Labels[r]);
                Assert.Equal(whole.RowIds(row).ToArray(), b.RowIds(r).ToArray());
                Assert.Equal(whole.RowValues(row).ToArray(), b.RowValues(r).ToArray());
            }
        Assert.Equal(whole.Rows, row);
        Assert.Equal(2, LibFmReader.ReadBlocks(file.Path, new LibFmReadOptions { MaxRows = 7 }, blockRows: 5).Count());

        // line 1 is the comment and line 10 the blank one, so row 19 (0-based) is on line 22
        using var bad = new TempFile(text.ToString().Replace("19:0 20:0.5 21:1 22:1.5", "19:0 20:x"));
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.ReadBlocks(bad.Path, blockRows: 4).ToList());
        Assert.Equal(22, e.Line);
        Assert.Throws<DataFormatException>(() => LibFmReader.ReadBlocks(file.Path + ".missing").ToList());
    }

    [Fact]
    public void ValuesAreHonoured()
    {
        var d = ReadText("4 1:0.5 7:2\n-1.5 0:1e-3\t3:-2.25\n");
        Assert.Equal(2, d.Rows);
        Assert.Equal([4f, -1.5f], d.Labels);
        Assert.Equal([1, 7], d.RowIds(0).ToArray());
        Assert.Equal([0.5f, 2f], d.RowValues(0).ToArray());
        Assert.Equal([0, 3], d.RowIds(1).ToArray());
        Assert.Equal([1e-3f, -2.25f], d.RowValues(1).ToArray());
        Assert.Equal(8, d.FeatureCount);
    }

    [Fact]
    public void RaggedAndEmptyRows()
    {
        var d = ReadText("1 0:1\n2\n3 1:1 2:1 3:1 4:1\n4   \n5 9:1 9:2\n");
        Assert.Equal(5, d.Rows);
        Assert.Equal([0L, 1, 1, 5, 5, 7], d.Offsets);
        Assert.Equal(0, d.RowLength(1));
        Assert.Equal(0, d.RowLength(3));
        Assert.Equal(4, d.MaxNnz);
        Assert.Equal(7, d.NonZeros);
        Assert.Equal(10, d.FeatureCount);
        // duplicate ids are kept as given
        Assert.Equal([9, 9], d.RowIds(4).ToArray());
        Assert.Equal([1f, 2f], d.RowValues(4).ToArray());
    }

    [Fact]
    public void SkipsBlankAndCommentLines()
    {
        var d = ReadText("# header\n\n   \n\t\n1 0:1\n  # indented comment\n2 1:1\n\n");
        Assert.Equal([1f, 2f], d.Labels);
        Assert.Equal([0, 1], d.FeatureIds);
    }

    [Fact]
    public void AcceptsCrlf()
    {
        var d = ReadText("1 0:1 2:0.5\r\n\r\n2\r\n3 1:2\r\n");
        Assert.Equal([1f, 2f, 3f], d.Labels);
        Assert.Equal([0L, 2, 2, 3], d.Offsets);
        Assert.Equal([1f, 0.5f, 2f], d.Values);
    }

    [Fact]
    public void AcceptsMissingFinalNewlineAndSpacing()
    {
        var d = ReadText("  1 \t 0:1  \t 3:2 \n+2 1:.5");
        Assert.Equal([1f, 2f], d.Labels);
        Assert.Equal([0, 3, 1], d.FeatureIds);
        Assert.Equal([1f, 2f, 0.5f], d.Values);
    }

    [Fact]
    public void ReadsFromTextReader()
    {
        using var reader = new StringReader("1 0:1\n0 2:3\n");
        var d = LibFmReader.Read(reader, "inline");
        Assert.Equal("inline", d.Name);
        Assert.Equal(2, d.Rows);
        Assert.Equal(3, d.FeatureCount);
    }

    [Fact]
    public void NameIsThePath()
    {
        using var file = new TempFile("1 0:1\n");
        Assert.Equal(file.Path, LibFmReader.Read(file.Path).Name);
    }

    [Fact]
    public void FeatureCountFromOptions()
    {
        var d = ReadText("1 0:1 4:1\n", new LibFmReadOptions { FeatureCount = 100 });
        Assert.Equal(100, d.FeatureCount);
    }

    [Fact]
    public void FeatureCountLimitIsEnforced()
    {
        var e = ReadFails("1 0:1\n2 1:1 5:1\n", 2, "feature id 5 is not below the model's feature count 5",
            new LibFmReadOptions { FeatureCount = 5 });
        Assert.StartsWith("feature id 5 is not below the model's feature count 5 (a feature new since training; afm-gpu's --unknown-ids ignore", e.Problem);
    }

    [Fact]
    public void KeepIdsBelowDropsOnlyTheIdsBeyondTheModelAndKeepsEveryRow()
    {
        var d = new SparseDataset([0, 3, 4, 4, 6], [0, 7, 2, 9, 1, 3], [1f, 2f, 3f, 4f, 5f, 6f], [1f, 2f, 3f, 4f], name: "d");
        var kept = d.KeepIdsBelow(5, out long dropped, out int rows);
        Assert.Equal(2, dropped);
        Assert.Equal(2, rows);
        Assert.Equal([0L, 2, 2, 2, 4], kept.Offsets);
        Assert.Equal([0, 2, 1, 3], kept.FeatureIds);
        Assert.Equal([1f, 3f, 5f, 6f], kept.Values);
        Assert.Equal(d.Labels, kept.Labels);
        Assert.Equal(5, kept.FeatureCount);
        Assert.Equal("d", kept.Name);
        Assert.Same(d, d.KeepIdsBelow(10, out dropped, out rows));
        Assert.Equal(0, dropped + rows);
    }

    [Fact]
    public void MaxRowsStopsEarly()
    {
        var d = ReadText("# c\n1 0:1\n\n2 1:1\n3 2:1\nnot even parsed\n", new LibFmReadOptions { MaxRows = 3 });
        Assert.Equal([1f, 2f, 3f], d.Labels);
        Assert.Equal(3, d.FeatureCount);
    }

    [Fact]
    public void ExceptionMessageFormat()
    {
        var e = new DataFormatException("train.libfm", 12, "malformed token 'abc' (expected id:value)");
        Assert.Equal("train.libfm:12: malformed token 'abc' (expected id:value)", e.Message);
        Assert.Equal("train.libfm: no data rows", new DataFormatException("train.libfm", 0, "no data rows").Message);
    }

    [Fact]
    public void NegativeOptionsAreRejected()
    {
        using var reader = new StringReader("1 0:1\n");
        Assert.Throws<ArgumentOutOfRangeException>(() => LibFmReader.Read(reader, "x", new LibFmReadOptions { FeatureCount = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => LibFmReader.Read(reader, "x", new LibFmReadOptions { MaxRows = -1 }));
    }

    [Fact]
    public void FileNotFound()
    {
        string path = Path.Combine(Path.GetTempPath(), $"afm-reader-missing-{Guid.NewGuid():N}.libfm");
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path));
        Assert.Equal(0, e.Line);
        Assert.Equal("file not found", e.Problem);
        Assert.Equal($"{path}: file not found", e.Message);
    }

    [Fact]
    public void MissingDirectoryIsFileNotFound()
    {
        string path = Path.Combine(Path.GetTempPath(), $"afm-reader-nodir-{Guid.NewGuid():N}", "x.libfm");
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path));
        Assert.Equal("file not found", e.Problem);
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n\n  \n")]
    [InlineData("# only\r\n# comments\r\n")]
    public void NoDataRows(string content) => ReadFails(content, 0, "no data rows");

    [Theory]
    [InlineData("3", "malformed token '3' (expected id:value)")]
    [InlineData("a:1", "feature 'a:1' is named, not a numeric id:value; hash named features with --hash-bits B")]
    [InlineData("3:", "malformed token '3:' (expected id:value)")]
    [InlineData("3:x", "malformed token '3:x' (expected id:value)")]
    [InlineData(":1", "malformed token ':1' (expected id:value)")]
    [InlineData("3:1:2", "feature '3:1:2' is named, not a numeric id:value; hash named features with --hash-bits B")]
    [InlineData("qid:3", "feature 'qid:3' is named, not a numeric id:value; hash named features with --hash-bits B")]
    [InlineData("-3:1", "negative feature id in '-3:1'")]
    [InlineData("2147483648:1", "feature id in '2147483648:1' is too large")]
    [InlineData("99999999999999999999:1", "is too large")]
    [InlineData("3:NaN", "value in '3:NaN' is not finite")]
    [InlineData("3:Infinity", "value in '3:Infinity' is not finite")]
    [InlineData("3:inf", "value in '3:inf' is not finite")]
    [InlineData("3:-INF", "value in '3:-INF' is not finite")]
    [InlineData("3:nan", "value in '3:nan' is not finite")]
    [InlineData("3:-1e39", "value in '3:-1e39' is too large (the limit is 1E+18 in magnitude")]
    [InlineData("3:1e19", "value in '3:1e19' is too large (the limit is 1E+18 in magnitude")]
    [InlineData("3:infx", "malformed token '3:infx' (expected id:value)")]
    public void BadFeatureTokens(string token, string problem) =>
        ReadFails($"# comment\n1 0:1\n\n2 1:1 {token} 4:1\n3 0:1\n", 4, problem);

    [Theory]
    [InlineData("1:1 2:1", "missing label")]
    [InlineData("abc 2:1", "malformed label 'abc' (expected a number)")]
    [InlineData("NaN 2:1", "label 'NaN' is not finite")]
    [InlineData("-Infinity 2:1", "label '-Infinity' is not finite")]
    [InlineData("inf 2:1", "label 'inf' is not finite")]
    [InlineData("+Inf 2:1", "label '+Inf' is not finite")]
    [InlineData("1e39", "label '1e39' is too large (the limit is 1E+18 in magnitude")]
    public void BadLabels(string line, string problem) => ReadFails($"1 0:1\r\n2 1:1\r\n{line}\r\n", 3, problem);

    [Fact]
    public void ErrorOnFirstLine() => ReadFails("x 0:1\n", 1, "malformed label 'x'");

    [Fact]
    public void ReadsALargeFileExactly()
    {
        // Read speed is a benchmark figure (bench/), not a unit-test assertion; this checks content.
        var rng = new Random(7);
        var sb = new System.Text.StringBuilder();
        long nnzTotal = 0;
        for (int r = 0; r < 100_000; r++)
        {
            sb.Append(rng.Next(1, 6));
            int nnz = rng.Next(0, 12);
            nnzTotal += nnz;
            for (int k = 0; k < nnz; k++)
                sb.Append(' ').Append(rng.Next(0, 5000)).Append(':').Append(k % 2 == 0 ? "1" : "0.25");
            sb.Append('\n');
        }
        using var file = new TempFile(sb.ToString());
        var d = LibFmReader.Read(file.Path);
        Assert.Equal(100_000, d.Rows);
        Assert.Equal(nnzTotal, d.NonZeros);
        Assert.All(d.Values, v => Assert.True(v == 1f || v == 0.25f));
    }

    /// <summary>Ragged rows over several 1 MiB parse chunks, some with values, as text.</summary>
    private static string RaggedText(int rows, int seed)
    {
        var rng = new Random(seed);
        var sb = new System.Text.StringBuilder();
        for (int r = 0; r < rows; r++)
        {
            sb.Append(rng.Next(1, 6));
            for (int k = rng.Next(0, 12); k > 0; k--) sb.Append(' ').Append(rng.Next(0, 5000)).Append(':').Append(k % 3 == 0 ? "0.5" : "1");
            sb.Append('\n');
        }
        return sb.ToString();
    }

    private static byte[] Gzip(string text)
    {
        var packed = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(packed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(System.Text.Encoding.UTF8.GetBytes(text));
        return packed.ToArray();
    }

    [Fact]
    public void AGzipFileReadsAsItsTextWhateverItsName()
    {
        string text = RaggedText(200_000, 3);
        using var plain = new TempFile(text);
        using var packed = new TempFile(""); // a .libfm name: gzip is known by its first bytes
        File.WriteAllBytes(packed.Path, Gzip(text));
        Assert.True(new FileInfo(packed.Path).Length < text.Length);
        var a = LibFmReader.Read(plain.Path);
        var b = LibFmReader.Read(packed.Path);
        Assert.Equal(packed.Path, b.Name);
        Assert.Equal(a.Offsets, b.Offsets);
        Assert.Equal(a.FeatureIds, b.FeatureIds);
        Assert.Equal(a.Values, b.Values);
        Assert.Equal(a.Labels, b.Labels);
        Assert.Equal(LibFmReader.ReadBlocks(plain.Path, blockRows: 7000).Select(x => x.Rows), LibFmReader.ReadBlocks(packed.Path, blockRows: 7000).Select(x => x.Rows));

        // A malformed line is named by its line in the text.
        using var bad = new TempFile("");
        File.WriteAllBytes(bad.Path, Gzip(text + "1 2:x\n"));
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(bad.Path));
        Assert.Equal(200_001, e.Line);
    }

    /// <summary>
    /// A pipe (as <c>--train &lt;(zcat day.gz)</c> gives: /dev/fd/N) reads as the file does, text or gzip: looking
    /// for a cache's or gzip's magic must not take its first bytes.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void APipeReadsAsTheFileDoes(bool gzip)
    {
        if (!OperatingSystem.IsLinux()) return; // /dev/fd
        string text = RaggedText(30_000, 5);
        byte[] bytes = gzip ? Gzip(text) : System.Text.Encoding.UTF8.GetBytes(text);
        using var plain = new TempFile(text);
        var expected = LibFmReader.Read(plain.Path);
        SparseDataset ThroughAPipe(Func<string, SparseDataset> read)
        {
            using var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out, HandleInheritability.None);
            string path = $"/dev/fd/{pipe.ClientSafePipeHandle.DangerousGetHandle()}";
            var writer = Task.Run(() =>
            {
                pipe.Write(bytes);
                pipe.Dispose(); // the end of the data
            });
            var data = read(path);
            writer.Wait();
            return data;
        }
        var got = ThroughAPipe(path =>
        {
            Assert.False(Afm.Gpu.Data.CacheFile.IsCache(path));
            Assert.False(Afm.Gpu.Data.DataCache.IsSeekable(path)); // so no implicit cache is made of it
            Assert.False(LibFmReader.IsGzip(path));
            return LibFmReader.Read(path);
        });
        Assert.Equal(expected.Offsets, got.Offsets);
        Assert.Equal(expected.FeatureIds, got.FeatureIds);
        Assert.Equal(expected.Values, got.Values);
        Assert.Equal(expected.Labels, got.Labels);
    }

    [Fact]
    public void JoinedGzipMembersReadAsTheirTextsOneAfterTheOther()
    {
        // cat a.gz b.gz, members of very different sizes, an empty one, and BGZF's many small ones ending in an empty one
        string text = RaggedText(60_000, 6);
        int cut1 = text.IndexOf('\n', text.Length / 3) + 1, cut2 = text.IndexOf('\n', cut1 + 10) + 1;
        string[] parts = [text[..cut1], text[cut1..cut2], "", text[cut2..]];
        using var plain = new TempFile(text);
        var expected = LibFmReader.Read(plain.Path);
        void ReadsAsTheText(byte[] bytes)
        {
            using var file = new TempFile("");
            File.WriteAllBytes(file.Path, bytes);
            var got = LibFmReader.Read(file.Path);
            Assert.Equal(expected.Offsets, got.Offsets);
            Assert.Equal(expected.FeatureIds, got.FeatureIds);
            Assert.Equal(expected.Values, got.Values);
            Assert.Equal(expected.Labels, got.Labels);
            Assert.Equal(LibFmReader.ReadBlocks(plain.Path, blockRows: 5000).Select(x => x.Rows), LibFmReader.ReadBlocks(file.Path, blockRows: 5000).Select(x => x.Rows));
        }
        ReadsAsTheText([.. parts.SelectMany(Gzip)]);
        var lines = text.Split('\n');
        var small = Enumerable.Range(0, (lines.Length + 999) / 1000).Select(i => string.Concat(lines.Skip(i * 1000).Take(1000).Select(l => l + "\n"))).ToList();
        small[^1] = small[^1][..^1]; // the text's own last newline, not one more
        ReadsAsTheText([.. small.Append("").SelectMany(Gzip)]);
    }

    [Fact]
    public void TheCrcOfASuffixFollowsFromTheRunningCrcs()
    {
        var rng = new Random(3);
        foreach (int length in new[] { 0, 1, 7, 8, 1000, 65_537 })
        {
            var data = new byte[length];
            rng.NextBytes(data);
            uint whole = System.IO.Hashing.Crc32.HashToUInt32(data);
            foreach (int at in new[] { 0, length / 3, length })
                Assert.Equal(System.IO.Hashing.Crc32.HashToUInt32(data.AsSpan(at)),
                    GzipInput.SuffixCrc(whole, System.IO.Hashing.Crc32.HashToUInt32(data.AsSpan(0, at)), length - at));
        }
    }

    [Fact]
    public void AGzipFileThatIsTruncatedOrDamagedIsAnErrorNotFewerRows()
    {
        string text = RaggedText(100_000, 4);
        byte[] packed = Gzip(text);
        void Fails(byte[] bytes, string problem)
        {
            using var file = new TempFile("");
            File.WriteAllBytes(file.Path, bytes);
            var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(file.Path));
            Assert.Equal(0, e.Line);
            Assert.StartsWith($"{file.Path}: the gzip data ", e.Message);
            Assert.Contains(problem, e.Problem);
            Assert.DoesNotContain('\n', e.Message);
        }
        Fails(packed[..(packed.Length * 3 / 4)], "damaged");                              // cut in the middle
        Fails(packed[..^4], "damaged");                                                   // the trailer cut
        var flipped = (byte[])packed.Clone();
        flipped[packed.Length / 2] ^= 0x40;                                               // one bit in the middle
        Assert.Throws<DataFormatException>(() => { using var f = new TempFile(""); File.WriteAllBytes(f.Path, flipped); LibFmReader.Read(f.Path); });
        var crc = (byte[])packed.Clone();
        crc[^8] ^= 1;                                                                    // the trailer's CRC-32
        Fails(crc, "damaged");

        // joined members cut short: in the last member's data, in its trailer, in its header
        byte[] second = Gzip(RaggedText(20_000, 7));
        byte[] joined = [.. packed, .. second];
        Fails(joined[..(packed.Length + second.Length / 2)], "truncated");
        Fails(joined[..^3], "truncated");
        Fails(joined[..(packed.Length + 5)], "truncated");
        var lastCrc = (byte[])joined.Clone();
        lastCrc[^7] ^= 4;
        Fails(lastCrc, "damaged");
        var firstCrc = (byte[])joined.Clone();
        firstCrc[packed.Length - 8] ^= 4;                                                // the first member's trailer
        Fails(firstCrc, "damaged");
    }

    [Fact]
    public void ReadsMovieLensTrainWhenPresent()
    {
        string? dir = null;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null && dir is null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "data", "ml-100k-libfm");
            if (Directory.Exists(candidate)) dir = candidate;
        }
        string? path = dir is null ? null : Path.Combine(dir, "train.libfm");
        if (path is null || !File.Exists(path))
        {
            output.WriteLine("skipped: shared/data/ml-100k-libfm/train.libfm not found above " + AppContext.BaseDirectory);
            return;
        }

        var sw = Stopwatch.StartNew();
        var data = LibFmReader.Read(path);
        output.WriteLine($"{path}: {data.Rows} rows, {data.NonZeros} nnz, {data.FeatureCount} features, max nnz {data.MaxNnz}, {sw.ElapsedMilliseconds} ms");
        Assert.Equal(80_000, data.Rows);
        Assert.All(data.Labels, l => Assert.InRange(l, 1f, 5f));
        Assert.InRange(data.MaxNnz, 7, 12);
        Assert.True(data.FeatureCount <= 2693, $"FeatureCount {data.FeatureCount}");
    }
}
