using System.Globalization;
using System.Text;
using Afm.Gpu.Data;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>Feature hashing, named tokens, the Criteo reader and the parallel chunked parse.</summary>
public sealed class HashingReaderTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-hash-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string content, string name = "data.txt")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, Encoding.UTF8.GetBytes(content));
        return path;
    }

    private DataFormatException Fails(string content, long line, string problem, LibFmReadOptions options)
    {
        string path = Write(content);
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, options));
        Assert.Equal(path, e.File);
        Assert.Equal(line, e.Line);
        Assert.Contains(problem, e.Problem);
        Assert.StartsWith($"{path}:{line}: ", e.Message);
        return e;
    }

    // XXH64 with seed 0 of the UTF-8 names, computed independently with Python's xxhash 3.2.0
    // (xxhash.xxh64_intdigest(name.encode())); the first two are the published reference values.
    [Theory]
    [InlineData("", 0xef46db3751d8e999UL)]
    [InlineData("abc", 0x44bc2cf5ad770999UL)]
    [InlineData("7", 0x184a52b6a00d7ab7UL)]
    [InlineData("user=42", 0x53e62977a4667075UL)]
    [InlineData("user:alice", 0x84918a738eb5ffd6UL)]
    [InlineData("C3=68fd1e64", 0xd2e95a2c9dc6d7e6UL)]
    [InlineData("I1=SP1", 0x79dabfabb58e39e5UL)]
    [InlineData("I5=12", 0xcd1fd8e9efb363dbUL)]
    public void HashIsXxh64Seed0LowBits(string name, ulong xxh64)
    {
        foreach (int bits in new[] { 1, 10, 20, 30 })
            Assert.Equal((int)(xxh64 & ((1UL << bits) - 1)), FeatureHash.Row(name, bits));
    }

    [Fact]
    public void HashAgreesWithPythonsXxhashOnManyNames()
    {
        string? py = PythonProcess.WithModule("xxhash");
        if (py is null)
        {
            Assert.True(Environment.GetEnvironmentVariable("AFM_REQUIRE_XXHASH") != "1", "AFM_REQUIRE_XXHASH=1 but no python3 imports xxhash (apt-get install python3-xxhash)");
            return; // the fixed vectors above still check the hash
        }
        // names of every length from 0 to 80 bytes (XXH64 takes 32-byte stripes, then 8, 4 and 1 byte steps), non-ASCII ones too
        var rng = new Random(11);
        var names = Enumerable.Range(0, 300).Select(i => i % 7 == 0 ? $"ünï-{i}-€" : new string(Enumerable.Range(0, i % 81).Select(_ => (char)rng.Next('!', '~' + 1)).ToArray()))
            .Where(n => !n.Contains('\n')).ToArray();
        string input = string.Concat(names.Select(n => Convert.ToHexString(Encoding.UTF8.GetBytes(n)) + "\n"));
        const string script = "import sys, xxhash\nfor line in sys.stdin.read().split(chr(10))[:-1]: print(xxhash.xxh64_intdigest(bytes.fromhex(line), 0) & ((1 << 30) - 1))";
        var (rc, text) = PythonProcess.Run(py, $"-c \"{script}\"", input);
        Assert.True(rc == 0, text);
        var rows = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => int.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(names.Length, rows.Length);
        for (int i = 0; i < names.Length; i++)
            if (!FeatureHash.IsDigits(Encoding.UTF8.GetBytes(names[i]))) // digits-only names are canonicalised first
                Assert.Equal(rows[i], FeatureHash.Row(names[i], 30));
    }

    [Fact]
    public void NumericIdsHashAsTheirDecimalText()
    {
        Assert.Equal(FeatureHash.Row("7", 20), FeatureHash.Row("007", 20));
        Assert.Equal(FeatureHash.Row("0", 20), FeatureHash.Row("000", 20));
        Assert.Equal((int)(0x184a52b6a00d7ab7UL & 0xFFFFF), FeatureHash.Row("0007", 20));
        Assert.Throws<ArgumentOutOfRangeException>(() => FeatureHash.Row("a", 31));
        Assert.Throws<ArgumentOutOfRangeException>(() => FeatureHash.Row("a", 0));
    }

    [Fact]
    public void TokenGrammarWithHashing()
    {
        const int b = 16;
        string path = Write("# named and numeric\n2.5 7:0.5 user=42 user:alice name:with:colons:2.5 007:1 x:1e-3\n0\n");
        var d = LibFmReader.Read(path, new LibFmReadOptions { HashBits = b });
        Assert.Equal(1 << b, d.FeatureCount);
        Assert.Equal([2.5f, 0f], d.Labels);
        string[] names = ["7", "user=42", "user:alice", "name:with:colons", "7", "x"];
        Assert.Equal(names.Select(n => FeatureHash.Row(n, b)).ToArray(), d.RowIds(0).ToArray());
        Assert.Equal([0.5f, 1f, 1f, 2.5f, 1f, 1e-3f], d.RowValues(0).ToArray());
        Assert.Equal(0, d.RowLength(1));
    }

    [Fact]
    public void AnUnhashedFileMeansWhatItMeant()
    {
        string path = Write("1 3:0.5 10:2\n0 0:1\n");
        var d = LibFmReader.Read(path);
        Assert.Equal(11, d.FeatureCount);
        Assert.Equal([3, 10, 0], d.FeatureIds);
        Assert.Equal([0.5f, 2f, 1f], d.Values);
    }

    [Theory]
    [InlineData("user:alice")]
    [InlineData("user=42")]
    [InlineData("age:x1")]
    public void NamedTokenWithoutHashingAsksForHashBits(string token)
    {
        var e = Fails($"1 0:1\n\n1 2:1 {token}\n", 3, $"feature '{token}' is named", new LibFmReadOptions());
        Assert.Contains("--hash-bits", e.Problem);
    }

    [Theory]
    [InlineData(":1", "malformed token ':1' (expected name:value)")]
    [InlineData("user:", "malformed token 'user:' (expected name:value)")]
    [InlineData("user:NaN", "value in 'user:NaN' is not finite")]
    [InlineData("user:-inf", "value in 'user:-inf' is not finite")]
    [InlineData("user:1e39", "value in 'user:1e39' is too large (the limit is 1E+18 in magnitude")]
    [InlineData("3:1e30", "is too large")]
    public void MalformedTokensWithHashing(string token, string problem) =>
        Fails($"1 a:1\n1 {token}\n", 2, problem, new LibFmReadOptions { HashBits = 8 });

    [Fact]
    public void HashingOptionsAreChecked()
    {
        string path = Write("1 a:1\n");
        Assert.Throws<ArgumentException>(() => LibFmReader.Read(path, new LibFmReadOptions { HashBits = 31 }));
        Assert.Throws<ArgumentException>(() => LibFmReader.Read(path, new LibFmReadOptions { HashBits = -1 }));
        Assert.Throws<ArgumentException>(() => LibFmReader.Read(path, new LibFmReadOptions { HashBits = 8, FeatureCount = 100 }));
        Assert.Throws<ArgumentException>(() => LibFmReader.Read(path, new LibFmReadOptions { HashBits = 12, MaxFeatureCount = 1000 }));
        Assert.Throws<ArgumentException>(() => LibFmReader.Read(path, new LibFmReadOptions { Format = DataFormat.Criteo }));
        Assert.Equal(256, LibFmReader.Read(path, new LibFmReadOptions { HashBits = 8, FeatureCount = 256 }).FeatureCount);
    }

    [Fact]
    public void CollidingNamesShareARowAndKeepTheirValues()
    {
        const int b = 4;
        var byRow = Enumerable.Range(0, 100).Select(i => $"n{i}").GroupBy(n => FeatureHash.Row(n, b)).First(g => g.Count() >= 2).ToArray();
        string path = Write($"1 {byRow[0]}:0.25 {byRow[1]}:0.75\n");
        var d = LibFmReader.Read(path, new LibFmReadOptions { HashBits = b });
        Assert.Equal(16, d.FeatureCount);
        int row = FeatureHash.Row(byRow[0], b);
        Assert.Equal([row, row], d.RowIds(0).ToArray());
        Assert.Equal([0.25f, 0.75f], d.RowValues(0).ToArray());
    }

    /// <summary>A Criteo line from its label and the 39 columns (null: missing).</summary>
    private static string CriteoLine(string label, string?[] columns) => label + "\t" + string.Join('\t', columns.Select(c => c ?? ""));

    private static string?[] CriteoColumns(int seed)
    {
        var rng = new Random(seed);
        var c = new string?[39];
        for (int j = 0; j < 13; j++) c[j] = rng.Next(4) == 0 ? null : (rng.Next(-3, 3000)).ToString(CultureInfo.InvariantCulture);
        for (int j = 13; j < 39; j++) c[j] = rng.Next(5) == 0 ? null : rng.Next().ToString("x8", CultureInfo.InvariantCulture);
        return c;
    }

    private static (int[] Ids, int Count) CriteoExpected(string?[] c, int bits)
    {
        var ids = new List<int>();
        for (int j = 0; j < 13; j++)
            if (c[j] is { } v) ids.Add(FeatureHash.Row(CriteoFormat.IntegerFeature(j + 1, long.Parse(v, CultureInfo.InvariantCulture)), bits));
        for (int j = 13; j < 39; j++)
            if (c[j] is { } v) ids.Add(FeatureHash.Row(CriteoFormat.CategoricalFeature(j - 12, v), bits));
        return (ids.ToArray(), ids.Count);
    }

    [Fact]
    public void CriteoIntegerBuckets()
    {
        Assert.Equal("SP-2", CriteoFormat.IntegerBucket(-2));
        Assert.Equal("SP0", CriteoFormat.IntegerBucket(0));
        Assert.Equal("SP2", CriteoFormat.IntegerBucket(2));
        Assert.Equal("1", CriteoFormat.IntegerBucket(3)); // (ln 3)^2 = 1.207
        Assert.Equal("21", CriteoFormat.IntegerBucket(100)); // (ln 100)^2 = 21.21
        Assert.Equal("47", CriteoFormat.IntegerBucket(1000)); // (ln 1000)^2 = 47.72
        Assert.Equal("I5=21", CriteoFormat.IntegerFeature(5, 100));
        Assert.Equal("C3=68fd1e64", CriteoFormat.CategoricalFeature(3, "68fd1e64"));
    }

    [Fact]
    public void CriteoLinesParseToTheDocumentedTokens()
    {
        const int b = 20;
        var cols = new string?[39];
        cols[0] = "0"; cols[1] = "-1"; cols[2] = "100"; cols[12] = "3";
        cols[13] = "68fd1e64"; cols[15] = "68fd1e64"; cols[38] = "ffffffff";
        string text = CriteoLine("1", cols) + "\r\n" + CriteoLine("0", new string?[39]) + "\n";
        var d = LibFmReader.Read(Write(text), new LibFmReadOptions { Format = DataFormat.Criteo, HashBits = b });
        Assert.Equal([1f, 0f], d.Labels);
        string[] names = ["I1=SP0", "I2=SP-1", "I3=21", "I13=1", "C1=68fd1e64", "C3=68fd1e64", "C26=ffffffff"];
        Assert.Equal(names.Select(n => FeatureHash.Row(n, b)).ToArray(), d.RowIds(0).ToArray());
        Assert.Equal(0x2c9dc6d7e6UL & 0xFFFFF, (ulong)FeatureHash.Row("C3=68fd1e64", b)); // low 20 bits of XXH64 d2e95a2c9dc6d7e6
        Assert.All(d.RowValues(0).ToArray(), v => Assert.Equal(1f, v));
        Assert.NotEqual(d.RowIds(0)[4], d.RowIds(0)[5]); // the same value in two columns is two features
        Assert.Equal(0, d.RowLength(1));
        Assert.Equal(1 << b, d.FeatureCount);
    }

    [Theory]
    [InlineData(38, null, "39 tab-separated columns; a Criteo line has 40")]
    [InlineData(40, null, "41 tab-separated columns")]
    [InlineData(39, "1.5", "column I4: malformed integer '1.5'")]
    [InlineData(39, "abc", "column I4: malformed integer 'abc'")]
    public void CriteoErrorsNameFileAndLine(int columns, string? i4, string problem)
    {
        var good = CriteoLine("1", CriteoColumns(1));
        var bad = CriteoColumns(2).ToList();
        if (i4 is not null) bad[3] = i4;
        while (bad.Count > columns) bad.RemoveAt(bad.Count - 1);
        while (bad.Count < columns) bad.Add("");
        Fails($"{good}\r\n{good}\r\n{CriteoLine("0", [.. bad])}\r\n", 3, problem, new LibFmReadOptions { Format = DataFormat.Criteo, HashBits = 12 });
    }

    [Fact]
    public void CriteoLabelIsCheckedLikeAnyLabel() =>
        Fails(CriteoLine("x", CriteoColumns(3)) + "\n", 1, "malformed label 'x'", new LibFmReadOptions { Format = DataFormat.Criteo, HashBits = 12 });

    /// <summary>
    /// A libFM text of many rows with comments, blank lines, mixed line ends (LF, CRLF, CR) and one line longer
    /// than the chunk, with the rows it holds, written independently of the reader.
    /// </summary>
    private static (string Text, List<(float Label, int[] Ids, float[] Values, long Line)> Rows) ManyRows(int rows, int seed)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder("\uFEFF# header\n");
        long line = 1;
        var expected = new List<(float, int[], float[], long)>();
        string[] ends = ["\n", "\r\n", "\r"];
        for (int r = 0; r < rows; r++)
        {
            if (rng.Next(10) == 0) { sb.Append(rng.Next(2) == 0 ? "  # comment" : "\t ").Append(ends[rng.Next(3)]); line++; }
            int nnz = r == rows / 2 ? 400 : rng.Next(0, 9);
            var ids = new int[nnz];
            var values = new float[nnz];
            float label = rng.Next(1, 6);
            sb.Append(label.ToString(CultureInfo.InvariantCulture));
            for (int j = 0; j < nnz; j++)
            {
                ids[j] = rng.Next(0, 100_000);
                values[j] = rng.Next(1, 1000) / 8f;
                sb.Append(rng.Next(2) == 0 ? ' ' : '\t').Append(ids[j]).Append(':').Append(values[j].ToString("R", CultureInfo.InvariantCulture));
            }
            sb.Append(ends[rng.Next(3)]);
            expected.Add((label, ids, values, ++line));
        }
        return (sb.ToString(), expected);
    }

    [Fact]
    public void ParallelBlocksEqualTheRowsWrittenAcrossManyChunks()
    {
        var (text, rows) = ManyRows(3000, 5);
        string path = Write(text);
        foreach (int chunk in new[] { 64, 1000, 1 << 20 })
        {
            var options = new LibFmReadOptions { ChunkBytes = chunk, Threads = 3 };
            var blocks = LibFmReader.ReadBlocks(path, options, blockRows: 700).ToList();
            Assert.Equal([700, 700, 700, 700, 200], blocks.Select(b => b.Rows));
            int row = 0;
            foreach (var b in blocks)
                for (int r = 0; r < b.Rows; r++, row++)
                {
                    Assert.Equal(rows[row].Label, b.Labels[r]);
                    Assert.Equal(rows[row].Ids, b.RowIds(r).ToArray());
                    Assert.Equal(rows[row].Values, b.RowValues(r).ToArray()); // exact: each value is written with round-trip formatting
                }
            var whole = LibFmReader.Read(path, options);
            Assert.Equal(rows.SelectMany(x => x.Ids).ToArray(), whole.FeatureIds);
            Assert.Equal(rows.Select(x => x.Label).ToArray(), whole.Labels);
        }
    }

    [Fact]
    public void AnErrorInALaterChunkNamesItsLineAndTheFirstErrorWins()
    {
        var (text, rows) = ManyRows(3000, 6);
        var lines = text.ReplaceLineEndings("\n").Split('\n');
        // the error rows' lines (1-based), the later one in a later chunk too
        long first = rows[2100].Line, second = rows[2900].Line;
        lines[first - 1] = "1 5:1 oops 6:1";
        lines[second - 1] = "x 1:1";
        string path = Write(string.Join("\r\n", lines));
        var options = new LibFmReadOptions { ChunkBytes = 256, Threads = 4 };
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.ReadBlocks(path, options, blockRows: 100).ToList());
        Assert.Equal(first, e.Line);
        Assert.Contains("'oops'", e.Problem);
        // blocks before the error are delivered first
        Assert.Equal(21, LibFmReader.ReadBlocks(path, options, blockRows: 100).Take(21).Count());
        // rows after MaxRows are never an error
        Assert.Equal(2100, LibFmReader.Read(path, options with { MaxRows = 2100 }).Rows);
        Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, options with { MaxRows = 2101 }));
    }

    [Fact]
    public void ParallelCriteoEqualsTheRowsWritten()
    {
        const int b = 18;
        var sb = new StringBuilder();
        var expected = new List<(int[] Ids, float Label)>();
        for (int r = 0; r < 2000; r++)
        {
            var c = CriteoColumns(100 + r);
            string label = (r % 3 == 0 ? 1 : 0).ToString(CultureInfo.InvariantCulture);
            sb.Append(CriteoLine(label, c)).Append(r % 2 == 0 ? "\n" : "\r\n");
            expected.Add((CriteoExpected(c, b).Ids, r % 3 == 0 ? 1 : 0));
        }
        string path = Write(sb.ToString());
        var d = LibFmReader.Read(path, new LibFmReadOptions { Format = DataFormat.Criteo, HashBits = b, ChunkBytes = 4096, Threads = 3 });
        Assert.Equal(2000, d.Rows);
        for (int r = 0; r < d.Rows; r++)
        {
            Assert.Equal(expected[r].Label, d.Labels[r]);
            Assert.Equal(expected[r].Ids, d.RowIds(r).ToArray());
        }
    }

    /// <summary>An endless libFM text made on demand (row r: label r % 5, features r:1 and r+1:0.5), counting the bytes read.</summary>
    private sealed class EndlessRows : Afm.Gpu.IO.ReadOnlyStream
    {
        private byte[] _line = [];
        private int _at;
        private long _row;

        public long BytesRead { get; private set; }

        public override int Read(Span<byte> buffer)
        {
            int n = 0, count = buffer.Length;
            while (n < count)
            {
                if (_at == _line.Length)
                {
                    _line = Encoding.ASCII.GetBytes($"{_row % 5} {_row}:1 {_row + 1}:0.5\n");
                    _at = 0;
                    _row++;
                }
                int take = Math.Min(count - n, _line.Length - _at);
                _line.AsSpan(_at, take).CopyTo(buffer[n..]);
                _at += take;
                n += take;
            }
            BytesRead += n;
            return n;
        }
    }

    [Fact]
    public void StreamingReadsAheadAFewChunksWhateverTheSize()
    {
        const int threads = 2, chunk = 1 << 16;
        using var endless = new EndlessRows();
        var options = new LibFmReadOptions { Threads = threads, ChunkBytes = chunk };
        long row = 0;
        foreach (var block in LibFmReader.ReadBlocks(endless, "endless", options, blockRows: 10_000).Take(30))
        {
            for (int r = 0; r < block.Rows; r++, row++)
            {
                Assert.Equal(row % 5, block.Labels[r]);
                Assert.Equal([(int)row, (int)row + 1], block.RowIds(r).ToArray());
            }
            // consumed text plus at most 2 x threads chunks in flight and the one being read
            long consumed = row * 22; // rows here are at most 22 bytes long
            Assert.True(endless.BytesRead <= consumed + (2 * threads + 1) * (long)chunk, $"{endless.BytesRead} bytes read for {row} rows");
        }
        Assert.Equal(300_000, row);
    }

    [Fact]
    public void MovieLensHashedIsMovieLensWithEachIdHashedWhenPresent()
    {
        string? path = null;
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null && path is null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "shared", "data", "ml-100k-libfm", "train.libfm");
            if (File.Exists(candidate)) path = candidate;
        }
        if (path is null)
        {
            output.WriteLine("skipped: shared/data/ml-100k-libfm/train.libfm not found above " + AppContext.BaseDirectory);
            return;
        }
        var plain = LibFmReader.Read(path, new LibFmReadOptions { Threads = 1, ChunkBytes = 1 << 30 });
        var hashed = LibFmReader.Read(path, new LibFmReadOptions { HashBits = 20, ChunkBytes = 1 << 14, Threads = 3 });
        Assert.Equal(plain.Offsets, hashed.Offsets);
        Assert.Equal(plain.Labels, hashed.Labels);
        Assert.Equal(plain.Values, hashed.Values);
        Assert.Equal(plain.FeatureIds.Select(id => FeatureHash.Row(id.ToString(CultureInfo.InvariantCulture), 20)).ToArray(), hashed.FeatureIds);
        int distinct = plain.FeatureIds.Distinct().Count(), rows = hashed.FeatureIds.Distinct().Count();
        output.WriteLine($"{path}: {plain.Rows} rows; {distinct} distinct ids share {rows} of 2^20 rows after hashing");
    }

    [Fact]
    public void ReadWithNamesNamesEachRowByItsFeatures()
    {
        const int b = 12;
        var collide = Enumerable.Range(0, 1000).Select(i => $"n{i}").GroupBy(n => FeatureHash.Row(n, b)).First(g => g.Count() >= 2).Take(2).ToArray();
        string path = Write($"1 user=42 item:abc 7:0.5\n0 {collide[0]}:1 {collide[1]}:1 user=42\n", "named.txt");
        var options = new LibFmReadOptions { HashBits = b, ChunkBytes = 16, Threads = 2 };
        var (data, names) = LibFmReader.ReadWithNames(path, options);
        Assert.Equal(LibFmReader.Read(path, options).FeatureIds, data.FeatureIds);
        Assert.Equal("user=42", names.NameOf(FeatureHash.Row("user=42", b)));
        Assert.Equal("user", names.FieldNames[names.FieldOf(FeatureHash.Row("user=42", b))]);
        Assert.Equal("item:abc", names.NameOf(FeatureHash.Row("item:abc", b)));
        Assert.Equal("item", names.FieldNames[names.FieldOf(FeatureHash.Row("item:abc", b))]);
        Assert.DoesNotContain(FeatureHash.Row(collide[0], b), new[] { "user=42", "item:abc", "7" }.Select(n => FeatureHash.Row(n, b)));
        Assert.Equal($"{collide[0]}|{collide[1]}", names.NameOf(FeatureHash.Row(collide[0], b)));
        Assert.Throws<ArgumentException>(() => LibFmReader.ReadWithNames(path, new LibFmReadOptions()));
    }

    [Theory]
    [InlineData(new byte[] { 0x28, 0xB5, 0x2F, 0xFD, 4, 0, 0x51, 0 }, "is zstd-compressed; only gzip is decompressed as it is read (zstd -d it, or recompress it with gzip)")]
    [InlineData(new byte[] { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0, 0, 4 }, "is xz-compressed; only gzip is decompressed as it is read (xz -d it, or recompress it with gzip)")]
    [InlineData(new byte[] { 0x42, 0x5A, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0x10, 0x20 }, "is bzip2-compressed; only gzip is decompressed as it is read (bzip2 -d it, or recompress it with gzip)")]
    [InlineData(new byte[] { 0x50, 0x4B, 3, 4, 20, 0, 0, 0 }, "is a zip archive; extract its data file first (only gzip is decompressed as it is read)")]
    [InlineData(new byte[] { 0x31, 0x20, 0x30, 0x3A, 0x31, 0x0A, 0x31, 0, 0x3A }, "is binary, not text (a NUL byte at offset 7)")]
    public void BinaryDataIsRefusedSayingWhatItIs(byte[] head, string problem)
    {
        // Every format reads its first bytes through the same check, gzip-wrapped or not; text without a NUL byte is
        // unaffected (the last case's first line alone is valid libFM).
        string path = Path.Combine(_dir, "binary.dat");
        File.WriteAllBytes(path, head);
        foreach (var format in new[] { DataFormat.LibFm, DataFormat.Criteo, DataFormat.Csv })
        {
            var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, new LibFmReadOptions { Format = format, HashBits = format == DataFormat.LibFm ? 0 : 16 }));
            Assert.Equal($"{path}: {problem}", e.Message);
        }
        string gz = path + ".gz";
        using (var f = File.Create(gz))
        using (var z = new System.IO.Compression.GZipStream(f, System.IO.Compression.CompressionLevel.Fastest))
            z.Write(head);
        Assert.Equal($"{gz}: {problem}", Assert.Throws<DataFormatException>(() => LibFmReader.Read(gz)).Message);
        File.WriteAllBytes(path, head[..6]);
        if (problem.StartsWith("is binary", StringComparison.Ordinal)) Assert.Equal(1, LibFmReader.Read(path).Rows);
    }

    [Fact]
    public void Utf16TextIsRefusedWithItsName()
    {
        string path = Path.Combine(_dir, "u16.libfm");
        File.WriteAllText(path, "1 0:1\n", Encoding.Unicode);
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path));
        Assert.Equal($"{path}: is UTF-16 text; save it as UTF-8", e.Message);
    }
}
