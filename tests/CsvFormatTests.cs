using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Model.Onnx;
using CliApp = Afm.Cli.Cli;

namespace Afm.Gpu.Tests;

/// <summary>CSV with a header (<see cref="CsvFormat"/>): the reader, the model's files that keep its columns, the cache and the commands.</summary>
public sealed class CsvFormatTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-csv-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const int Bits = 12;

    private static LibFmReadOptions Csv(string label = "click", string ignored = "id", bool optional = false) =>
        new() { Format = DataFormat.Csv, HashBits = Bits, LabelColumn = label, IgnoredColumns = ignored, LabelOptional = optional };

    private string Write(string content, string name = "data.csv")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, Encoding.UTF8.GetBytes(content));
        return path;
    }

    private static int Row(string name) => FeatureHash.Row(name, Bits);

    private static (int[] Ids, float[] Values, float Label) RowOf(SparseDataset d, int r)
    {
        long from = d.Offsets[r], to = d.Offsets[r + 1];
        return (d.FeatureIds[(int)from..(int)to], d.Values[(int)from..(int)to], d.Labels[r]);
    }

    [Fact]
    public void EachPresentFieldIsTheFeatureColumnEqualsTextAndTheLabelAndIgnoredColumnsAreNot()
    {
        // a BOM, CRLF and CR line ends, a quoted field with a comma, one with a doubled quote, an empty (missing) field, a blank line
        string path = Write("\uFEFFid,click,site, app \r\n7,1,s1,a2\r\n8,0,\"s,1\",\r\n\n9,1,\"say \"\"hi\"\"\",\"\"\r10,-1,s1,a 2\n");
        var d = LibFmReader.Read(path, Csv());
        Assert.Equal(4, d.Rows);
        Assert.Equal(1 << Bits, d.FeatureCount);
        Assert.Equal([1f, 0f, 1f, -1f], d.Labels);
        Assert.Equal([Row("site=s1"), Row("app=a2")], RowOf(d, 0).Ids);
        Assert.Equal([1f, 1f], RowOf(d, 0).Values);
        Assert.Equal([Row("site=s,1")], RowOf(d, 1).Ids); // the empty app is missing
        Assert.Equal([Row("site=say \"hi\"")], RowOf(d, 2).Ids); // "" quoted is empty, so missing
        Assert.Equal([Row("site=s1"), Row("app=a 2")], RowOf(d, 3).Ids); // the header's name is trimmed, a field's text is not
    }

    /// <summary>
    /// A feature's field is its column, also where the column's name holds <c>=</c> or <c>:</c> (which name-derived
    /// fields cut at, as in libFM's <c>user=3</c>): <c>explain</c> groups by the header's names.
    /// </summary>
    [Fact]
    public void FeaturesBelongToTheirColumnsWhateverTheColumnsNames()
    {
        string path = Write("id,click,a=b,c:d,e,n:1\n1,1,x,y,z=w,2.5\n2,0,x:1,y=2,,0\n");
        var (d, names) = LibFmReader.ReadWithNames(path, Csv() with { NumericColumns = "n:1" });
        Assert.Equal(2, d.Rows);
        string FieldOf(string feature) => names.FieldNames[names.FieldOf(Row(feature))];
        Assert.Equal("a=b", FieldOf("a=b=x"));
        Assert.Equal("c:d", FieldOf("c:d=y"));
        Assert.Equal("e", FieldOf("e=z=w"));
        Assert.Equal("n:1", FieldOf("n:1"));
        Assert.Equal("a=b", FieldOf("a=b=x:1"));
        Assert.Equal("c:d", FieldOf("c:d=y=2"));
        Assert.Equal(["a=b", "c:d", "e", "n:1"], names.FieldNames.Where(f => f != FeatureMap.OtherField).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void TsvIsTheSameWithTabsAndItsFieldsAsWritten()
    {
        string path = Write("id\tclick\tsite\tapp\n7\t1\t\"s,1\"\ta2\n8\t0\t\tx y\n");
        var d = LibFmReader.Read(path, Csv() with { Format = DataFormat.Tsv });
        Assert.Equal([1f, 0f], d.Labels);
        Assert.Equal([Row("site=\"s,1\""), Row("app=a2")], RowOf(d, 0).Ids); // no quoting in TSV
        Assert.Equal([Row("app=x y")], RowOf(d, 1).Ids);
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(Write("id\tclick\n1\t1\t2\n", "bad.tsv"), Csv() with { Format = DataFormat.Tsv }));
        Assert.Equal(2, e.Line);
        Assert.Contains("3 tab-separated fields; the header has 2", e.Problem);

        var model = RandomModel(InputEncoding.Csv("click", 8, ["id"], [], DataFormat.Tsv));
        string file = Path.Combine(_dir, "tsv.afm");
        ModelFile.Save(model, file);
        Assert.Equal(model.Input, ModelFile.Load(file).Input);
        string st = Path.Combine(_dir, "tsv.safetensors");
        Safetensors.Export(model, st);
        Assert.Equal(model.Input, Safetensors.Import(st).Input);
        Assert.Equal(DataFormat.Tsv, LibFmReadOptions.For(model, labelsMatter: false).Format);
    }

    [Fact]
    public void ANumericColumnIsOneFeatureValuedByItsField()
    {
        string path = Write("id,click,age,site,price\n1,1,31,s1,2.5e1\n2,0,,s2,-0.25\n3,1,7,,0.0\n");
        var d = LibFmReader.Read(path, Csv() with { NumericColumns = "age,price" });
        Assert.Equal([Row("age"), Row("site=s1"), Row("price")], RowOf(d, 0).Ids);
        Assert.Equal([31f, 1f, 25f], RowOf(d, 0).Values);
        Assert.Equal([Row("site=s2"), Row("price")], RowOf(d, 1).Ids); // an empty numeric field is missing
        Assert.Equal([1f, -0.25f], RowOf(d, 1).Values);
        Assert.Equal([Row("age")], RowOf(d, 2).Ids); // a 0 is absent, as in a sparse row
        Assert.Equal([7f], RowOf(d, 2).Values);

        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(Write("id,click,age\n1,1,old\n", "bad.csv"), Csv() with { NumericColumns = "age" }));
        Assert.Equal(2, e.Line);
        Assert.Contains("column 'age': 'old' is not a number (it is a numeric column)", e.Problem);
        e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(Write("id,click,age\n1,1,1e39\n", "big.csv"), Csv() with { NumericColumns = "age" }));
        Assert.Contains("value in '1e39' is too large (the limit is 1E+18 in magnitude", e.Problem);
        e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(Write("id,click,age\n1,1,-inf\n", "inf.csv"), Csv() with { NumericColumns = "age" }));
        Assert.Contains("value in '-inf' is not finite", e.Problem);
        e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(Write("id,click\n1,1\n", "none.csv"), Csv() with { NumericColumns = "age" }));
        Assert.Equal((1L, true), (e.Line, e.Problem.Contains("no column 'age' of numbers")));
        // data read for a trained model may lack them: the model's columns were checked when it was trained
        var scored = LibFmReader.Read(Write("click,site\n1,a\n", "lacking.csv"), Csv() with { NumericColumns = "age", RequireAllColumns = false });
        Assert.Equal([Row("site=a")], RowOf(scored, 0).Ids);
    }

    [Theory]
    [InlineData(0.0, "SP0")]
    [InlineData(2.0, "SP2")]
    [InlineData(-2.0, "SP-2")]
    [InlineData(-0.5, "SP-1")]
    [InlineData(1.99, "SP1")]
    [InlineData(0.25, "SP0")]
    [InlineData(2.5, "0")]
    [InlineData(100.0, "21")]
    [InlineData(-100.0, "N21")]
    [InlineData(1e6, "190")]
    [InlineData(double.MaxValue, "503791")]
    [InlineData(double.MinValue, "N503791")]
    public void ABucketIsSmallValuesKeptAndLargerOnesOnALogScale(double value, string bucket)
    {
        Assert.Equal(bucket, CsvFormat.Bucket(value));
        Assert.Equal("price=" + bucket, CsvFormat.BucketFeature("price", value));
    }

    [Fact]
    public void AnIntegersBucketIsCriteosAndANonFiniteValueHasNone()
    {
        var rng = new Random(5);
        var values = Enumerable.Range(-2, 2000).Select(v => (long)v).Concat(Enumerable.Range(0, 2000).Select(_ => rng.NextInt64(1L << 40)));
        foreach (long v in values) Assert.Equal(CriteoFormat.IntegerBucket(v), CsvFormat.Bucket(v));
        foreach (double bad in new[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity })
            Assert.Throws<ArgumentOutOfRangeException>(() => CsvFormat.Bucket(bad));
    }

    [Fact]
    public void ABucketedColumnIsOneFeaturePerBucketOfItsColumn()
    {
        string wide = new('w', 300); // a name too long for the reader's stack buffer
        string path = Write($"id,click,price,site,{wide}\n1,1,100,a,3\n2,0,,b,\n3,1,-0.5,a,1e6\n4,0, 2.5 ,,-100\n5,1,1.5e2,c,0\n");
        var options = Csv() with { BucketColumns = $"price,{wide}" };
        var (d, names) = LibFmReader.ReadWithNames(path, options);
        Assert.Equal(5, d.Rows);
        Assert.Equal([Row("price=21"), Row("site=a"), Row($"{wide}=1")], RowOf(d, 0).Ids);
        Assert.Equal([1f, 1f, 1f], RowOf(d, 0).Values);
        Assert.Equal([Row("site=b")], RowOf(d, 1).Ids); // empty fields are missing
        Assert.Equal([Row("price=SP-1"), Row("site=a"), Row($"{wide}=190")], RowOf(d, 2).Ids);
        Assert.Equal([Row("price=0"), Row($"{wide}=N21")], RowOf(d, 3).Ids); // spaces around a number are allowed, as in numeric columns
        Assert.Equal([Row("price=25"), Row("site=c"), Row($"{wide}=SP0")], RowOf(d, 4).Ids); // a zero is a bucket, not missing
        string FieldOf(string feature) => names.FieldNames[names.FieldOf(Row(feature))];
        Assert.Equal("price", FieldOf("price=21"));
        Assert.Equal(wide, FieldOf($"{wide}=N21"));
        // the same rows read in many small chunks
        var chunked = LibFmReader.Read(path, options with { ChunkBytes = 64, Threads = 3 });
        Assert.Equal(d.FeatureIds, chunked.FeatureIds);
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("inf")]
    [InlineData("NaN")]
    [InlineData("1e400")]
    [InlineData("12a")]
    public void ABucketedFieldThatIsNotAFiniteNumberNamesItsLine(string field)
    {
        string path = Write($"id,click,price\n1,1,3\n2,0,{field}\n");
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, Csv() with { BucketColumns = "price" }));
        Assert.Equal((path, 3L), (e.File, e.Line));
        Assert.Contains($"column 'price': '{field}' is not a finite number (it is a bucketed column)", e.Problem);

        path = Write("id,click,cost\n1,1,3\n");
        e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, Csv() with { BucketColumns = "price" }));
        Assert.Equal(1L, e.Line);
        Assert.Contains("no column 'price' to bucket", e.Problem);
    }

    [Fact]
    public void ColumnsAreFoundByNameSoTheirOrderDoesNotMatterAndScoringDataMayLackTheLabel()
    {
        var a = LibFmReader.Read(Write("id,click,site,app\n1,1,x,y\n2,0,z,y\n", "a.csv"), Csv());
        var b = LibFmReader.Read(Write("app,site,click,id\ny,x,1,1\ny,z,0,2\n", "b.csv"), Csv());
        for (int r = 0; r < 2; r++)
        {
            Assert.Equal(RowOf(a, r).Ids.Order(), RowOf(b, r).Ids.Order());
            Assert.Equal(RowOf(a, r).Label, RowOf(b, r).Label);
        }
        // data to score: no label and no id column; the features are those of the labelled rows, every label 0
        var s = LibFmReader.Read(Write("site,app\nx,y\nz,y\n", "s.csv"), Csv(optional: true) with { RequireAllColumns = false });
        Assert.Contains("no column 'id' to ignore", Assert.Throws<DataFormatException>(() => LibFmReader.Read(Path.Combine(_dir, "s.csv"), Csv(optional: true))).Problem);
        for (int r = 0; r < 2; r++) Assert.Equal(RowOf(a, r).Ids.Order(), RowOf(s, r).Ids.Order());
        Assert.Equal([0f, 0f], s.Labels);
    }

    [Fact]
    public void SmallChunksOnManyThreadsReadTheSameRowsAsOneChunk()
    {
        var text = new StringBuilder("id,click,user,item,ctx\n");
        var rng = new Random(5);
        for (int i = 0; i < 3000; i++)
            text.Append($"{i},{rng.Next(2)},u{rng.Next(90)},{(rng.Next(9) == 0 ? "\"i,q\"" : $"i{rng.Next(400)}")},{(rng.Next(4) == 0 ? "" : $"c{rng.Next(7)}")}\n");
        string path = Write(text.ToString());
        var one = LibFmReader.Read(path, Csv() with { ChunkBytes = 1 << 30, Threads = 1 });
        foreach (int chunk in new[] { 64, 333, 4096 })
        {
            var many = LibFmReader.Read(path, Csv() with { ChunkBytes = chunk, Threads = 4 });
            Assert.Equal(one.Offsets, many.Offsets);
            Assert.Equal(one.FeatureIds, many.FeatureIds);
            Assert.Equal(one.Labels, many.Labels);
        }
        Assert.Equal(3000, one.Rows);
        // with names: every id is the hash of its column=value
        var (_, names) = LibFmReader.ReadWithNames(path, Csv());
        Assert.Equal("item", names.FieldNames[names.FieldOf(Row("item=i,q"))]);
        Assert.Contains("item=i,q", names.NameOf(Row("item=i,q")));
    }

    [Theory]
    [InlineData("id,click,site\n1,1,a\n2,0\n", 3, "2 comma-separated fields; the header has 3")]
    [InlineData("id,click,site\n1,1,a,b\n", 2, "4 comma-separated fields; the header has 3")]
    [InlineData("id,label,site\n1,1,a\n", 1, "header: no column 'click' for the label (--label-column names it); the columns are id, label, site")]
    [InlineData("click,site\n1,a\n", 1, "header: no column 'id' to ignore")]
    [InlineData("7,1,0.5\n8,0,0.25\n", 1, "the first line looks like data: the file needs a header line naming its columns")]
    [InlineData("id;click;site\n1;1;a\n", 1, "the header is one column holding ';': afm-gpu reads fields separated by commas only")]
    [InlineData("id\tclick\tsite\n1\t1\ta\n", 1, "the header is one column holding tabs: a tab-separated file is read with --format tsv")]
    [InlineData("id,click,site,site\n1,1,a,b\n", 1, "header: column 'site' appears twice")]
    [InlineData("id,click,,x\n1,1,a,b\n", 1, "header: column 3 has no name")]
    [InlineData("", 1, "no header line")]
    [InlineData(" \nid,click\n", 1, "the header line is blank")]
    [InlineData("id,click,site\n1,,a\n", 2, "the label (column 2) is empty")]
    [InlineData("id,click,site\n1,yes,a\n", 2, "malformed label 'yes'")]
    [InlineData("id,click,site\n1,1,\"a\n", 2, "a quoted field has no closing quote")]
    [InlineData("id,click,site\n1,1,\"a\"b\n", 2, "text after the closing quote")]
    [InlineData("id,click,site\n", 0, "no data rows")]
    public void BadCsvNamesTheFileLineAndProblem(string content, long line, string problem)
    {
        string path = Write(content);
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, Csv()));
        Assert.Equal(path, e.File);
        Assert.Equal(line, e.Line);
        Assert.Contains(problem, e.Problem);
    }

    [Fact]
    public void CommaSeparatedTextReadAsTsvSaysToUseTheCsvFormat()
    {
        string path = Write("id,click,site\n1,1,a\n");
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, Csv() with { Format = DataFormat.Tsv }));
        Assert.Equal(1, e.Line);
        Assert.Contains("the header is one column holding commas: a comma-separated file is read with --format csv", e.Problem);
    }

    [Fact]
    public void CsvReadAsLibFmOrCriteoSaysToUseTheCsvFormat()
    {
        string path = Write("id,click,site\n1,1,a\n");
        foreach (var options in new[] { new LibFmReadOptions(), new LibFmReadOptions { HashBits = 8 }, new LibFmReadOptions { Format = DataFormat.Criteo, HashBits = 8 } })
        {
            var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, options));
            Assert.Equal(1, e.Line);
            Assert.Contains("use the csv format: --format csv", e.Problem);
        }
    }

    [Fact]
    public void LogisticLossRefusesANonBinaryLabelOnItsLine()
    {
        string path = Write("id,click,site\n1,1,a\n2,3,b\n");
        var e = Assert.Throws<DataFormatException>(() => LibFmReader.Read(path, Csv() with { BinaryLabels = true }));
        Assert.Equal(3, e.Line);
        Assert.Contains("not binary", e.Problem);
    }

    private static AfmModel RandomModel(InputEncoding input)
    {
        var m = new AfmModel(ModelKind.Afm, 1 << input.HashBits, 4, 3, LossKind.Logistic) { Input = input };
        var rng = new Random(3);
        foreach (var (_, data, _) in m.Tensors())
            for (int i = 0; i < data.Length; i++) data[i] = (float)rng.NextDouble() - 0.5f;
        return m;
    }

    /// <summary>Saves <paramref name="model"/> as <paramref name="name"/>, checks the file's version and that loading it gives the same input encoding and tensors.</summary>
    private (AfmModel Loaded, string Path) SavedAndLoaded(AfmModel model, string name, uint version)
    {
        string path = Path.Combine(_dir, name);
        ModelFile.Save(model, path);
        Assert.Equal(version, BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(path).AsSpan(8)));
        var loaded = ModelFile.Load(path);
        Assert.Equal(model.Input, loaded.Input);
        foreach (var (x, y) in model.Tensors().Zip(loaded.Tensors())) Assert.Equal(x.Data, y.Data);
        return (loaded, path);
    }

    [Fact]
    public void TheModelFileKeepsTheColumnsAsVersion3AndSafetensorsAndOnnxCarryThem()
    {
        var input = InputEncoding.Csv("click", 8, ["id", "hour"], ["age"]);
        Assert.Equal(("id,hour", "age"), (input.IgnoredColumns, input.NumericColumns));
        var model = RandomModel(input);
        var (loaded, path) = SavedAndLoaded(model, "m.afm", version: 3);
        Assert.Equal(["id", "hour"], loaded.Input.IgnoredColumnList);
        var read = LibFmReadOptions.For(loaded, labelsMatter: false);
        Assert.Equal((DataFormat.Csv, 8, "click", "id,hour", "age", true, false), (read.Format, read.HashBits, read.LabelColumn, read.IgnoredColumns, read.NumericColumns, read.LabelOptional, read.RequireAllColumns));

        string st = Path.Combine(_dir, "m.safetensors");
        Safetensors.Export(model, st);
        Assert.Equal(input, Safetensors.Import(st).Input);
        var props = OnnxExport.Build(model, null, new OnnxExportOptions()).MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(("csv", "click", "id,hour", "age"), (props["data_format"], props["csv_label_column"], props["csv_ignored_columns"], props["csv_numeric_columns"]));

        // a version 3 header whose format is not CSV, and a CSV model's file relabelled version 2, are refused
        byte[] bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 12), Afm.Gpu.Model.Crc32.Compute(bytes.AsSpan(0, bytes.Length - 12)));
        File.WriteAllBytes(path, bytes);
        Assert.Contains("cannot hold a model of CSV data", Assert.Throws<ModelFormatException>(() => ModelFile.Load(path)).Message);
    }

    [Fact]
    public void TheModelFileKeepsBucketedColumnsAsVersion4AndSafetensorsAndOnnxCarryThem()
    {
        var input = InputEncoding.Csv("click", 8, ["id"], ["age"], bucketColumns: ["price", "visits"]);
        Assert.Equal("price,visits", input.BucketColumns);
        Assert.Equal(["price", "visits"], input.BucketColumnList);
        Assert.Null(InputEncoding.Csv("click", 8, bucketColumns: []).BucketColumns);
        Assert.Equal(InputEncoding.Csv("click", 8), new InputEncoding(DataFormat.Csv, 8, "click", "", "", ""));
        var model = RandomModel(input);
        var (loaded, path) = SavedAndLoaded(model, "b.afm", version: 4);
        Assert.Equal("price,visits", LibFmReadOptions.For(loaded, labelsMatter: false).BucketColumns);

        string st = Path.Combine(_dir, "b.safetensors");
        Safetensors.Export(model, st);
        Assert.Equal(input, Safetensors.Import(st).Input);
        var props = OnnxExport.Build(model, null, new OnnxExportOptions()).MetadataProps.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal("price,visits", props["csv_bucket_columns"]);
        var plain = OnnxExport.Build(RandomModel(InputEncoding.Csv("click", 8)), null, new OnnxExportOptions()).MetadataProps;
        Assert.DoesNotContain(plain, p => p.Key == "csv_bucket_columns");

        // a CSV model without bucketed columns stays version 3, and a bucketed one relabelled 3 is refused
        ModelFile.Save(RandomModel(InputEncoding.Csv("click", 8)), Path.Combine(_dir, "c.afm"));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(File.ReadAllBytes(Path.Combine(_dir, "c.afm")).AsSpan(8)));
        byte[] bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), 3);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 12), Afm.Gpu.Model.Crc32.Compute(bytes.AsSpan(0, bytes.Length - 12)));
        File.WriteAllBytes(path, bytes);
        Assert.Throws<ModelFormatException>(() => ModelFile.Load(path));
    }

    [Theory]
    [InlineData("price", "price", "'price' is a numeric column and cannot be bucketed too")]
    [InlineData("id", "", "'id' is ignored and cannot be a bucketed feature too")]
    [InlineData("click", "", "'click' is the label column and cannot be a bucketed feature too")]
    [InlineData("a,a", "", "bucketed columns 'a,a' name a column twice")]
    [InlineData("a,", "", "bucketed column: a column name is empty")]
    public void InvalidBucketedColumnsAreRefused(string bucketed, string numeric, string problem)
    {
        var e = Assert.Throws<ArgumentException>(() => new InputEncoding(DataFormat.Csv, 8, "click", "id", numeric, bucketed).Validate());
        Assert.Contains(problem, e.Message);
        Assert.Equal(nameof(InputEncoding.BucketColumns), e.ParamName);
        e = Assert.Throws<ArgumentException>(() => new InputEncoding(DataFormat.LibFm, 8, null, null, null, "price").Validate());
        Assert.Contains("for the csv and tsv formats", e.Message);
    }

    [Theory]
    [InlineData("", "", "label column: a column name is empty")]
    [InlineData("click", "id,click", "'click' is the label column and cannot be ignored too")]
    [InlineData("click", "id,id", "name a column twice")]
    [InlineData("cl,ick", "", "holds a comma, tab, quote or line break")]
    [InlineData("click", "id", "'id' is ignored and cannot be a numeric feature too", "id")]
    [InlineData("click", "", "'click' is the label column and cannot be a numeric feature too", "click")]
    [InlineData("click", "", "numeric columns 'a,a' name a column twice", "a,a")]
    public void InvalidColumnsAreRefused(string label, string ignored, string problem, string numeric = "")
    {
        var e = Assert.Throws<ArgumentException>(() => new InputEncoding(DataFormat.Csv, 8, label, ignored, numeric).Validate());
        Assert.Contains(problem, e.Message);
        Assert.Throws<ArgumentException>(() => new InputEncoding(DataFormat.Criteo, 8, "click", "").Validate());
        Assert.Throws<ArgumentException>(() => new InputEncoding(DataFormat.Csv, 0, "click", "", "").Validate());
        Assert.Throws<ArgumentException>(() => new InputEncoding(DataFormat.Csv, 8, "click", "").Validate()); // numeric columns not given
    }

    [Fact]
    public void TheCacheFingerprintOfOtherFormatsIsAsBeforeAndACsvOneHoldsItsColumns()
    {
        static ulong Old(int format, int bits) => XxHash64.HashToUInt64(Encoding.UTF8.GetBytes($"format={format};hash_bits={bits};max_rows=0"));
        Assert.Equal(Old(0, 0), CacheFile.Fingerprint(new LibFmReadOptions()));
        Assert.Equal(Old(1, 20), CacheFile.Fingerprint(new LibFmReadOptions { Format = DataFormat.Criteo, HashBits = 20 }));
        var csv = Csv();
        Assert.NotEqual(CacheFile.Fingerprint(csv), CacheFile.Fingerprint(csv with { LabelColumn = "y" }));
        Assert.NotEqual(CacheFile.Fingerprint(csv), CacheFile.Fingerprint(csv with { IgnoredColumns = "" }));
        Assert.NotEqual(CacheFile.Fingerprint(csv), CacheFile.Fingerprint(csv with { LabelOptional = true }));
        Assert.NotEqual(CacheFile.Fingerprint(csv), CacheFile.Fingerprint(csv with { NumericColumns = "site" }));
        Assert.Equal(CacheFile.Fingerprint(csv), CacheFile.Fingerprint(csv with { NumericColumns = "" }));
        Assert.NotEqual(CacheFile.Fingerprint(csv), CacheFile.Fingerprint(csv with { BucketColumns = "site" }));
        Assert.Equal(CacheFile.Fingerprint(csv), CacheFile.Fingerprint(csv with { BucketColumns = "" }));

        string text = Write("id,click,site\n1,1,a\n2,0,b\n");
        string cache = Path.Combine(_dir, "d.afmbin");
        CacheFile.Write(text, cache, csv);
        using var file = CacheFile.Open(cache);
        file.CheckAgainst(csv);
        file.CheckAgainst(csv with { LabelOptional = true }); // labelled rows serve scoring too
        var e = Assert.Throws<DataFormatException>(() => file.CheckAgainst(csv with { IgnoredColumns = "" }));
        Assert.Contains("other label, ignored, numeric or bucketed columns", e.Problem);
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public void TrainPredictEvaluateAndExplainReadCsvByTheModelsColumns()
    {
        var rng = new Random(9);
        string Line(bool label)
        {
            int site = rng.Next(12), app = rng.Next(10);
            int y = rng.NextDouble() < (site % 3 == app % 3 ? 0.8 : 0.2) ? 1 : 0;
            return label ? $"{rng.Next()},{y},{site},a{app},{rng.Next(3)},{rng.NextDouble():F3}" : $"{rng.Next(3)},a{app},{site}";
        }
        string train = Write("id,click,site,app,banner,score\n" + string.Concat(Enumerable.Range(0, 1500).Select(_ => Line(true) + "\n")), "train.csv");
        string score = Write("banner,app,site\n" + string.Concat(Enumerable.Range(0, 40).Select(_ => Line(false) + "\n")), "score.csv");
        string model = Path.Combine(_dir, "m.afm");
        var (code, output, err) = Run("train", "--train", train, "--format", "csv", "--label-column", "click", "--ignore-columns", "id",
            "--numeric-columns", "score", "--hash-bits", "10", "--loss", "logistic", "-k", "4", "-t", "4", "--epochs", "3", "--keep1", "1", "--pretrain-keep1", "1", "--lambda", "0",
            "--accelerator", "cpu", "-o", model);
        Assert.True(code == 0, err + output);
        Assert.Equal(InputEncoding.Csv("click", 10, ["id"], ["score"]), ModelFile.Load(model).Input);

        string predictions = Path.Combine(_dir, "p.txt");
        (code, output, err) = Run("predict", "-m", model, "-d", score, "-o", predictions, "--accelerator", "cpu");
        Assert.True(code == 0, err + output);
        var p = File.ReadAllLines(predictions).Select(float.Parse).ToArray();
        Assert.Equal(40, p.Length);
        Assert.All(p, x => Assert.InRange(x, 0f, 1f));

        (code, output, err) = Run("evaluate", "-m", model, "-d", train, "--accelerator", "cpu");
        Assert.True(code == 0, err + output);
        Assert.Contains("auc", output);
        (code, _, err) = Run("evaluate", "-m", model, "-d", score, "--accelerator", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("score.csv:1: header: no column 'click' for the label", err);
        Assert.DoesNotContain("   at ", err);

        (code, output, err) = Run("explain", "-m", model, "-d", train, "--accelerator", "cpu");
        Assert.True(code == 0, err + output);
        Assert.Contains("site x app", output);

        // the same rows tab-separated train the same model
        string tsv = Write(File.ReadAllText(train).Replace(',', '\t'), "train.tsv"), tsvModel = Path.Combine(_dir, "t.afm");
        (code, output, err) = Run("train", "--train", tsv, "--format", "tsv", "--label-column", "click", "--ignore-columns", "id",
            "--numeric-columns", "score", "--hash-bits", "10", "--loss", "logistic", "-k", "4", "-t", "4", "--epochs", "3", "--keep1", "1", "--pretrain-keep1", "1", "--lambda", "0",
            "--accelerator", "cpu", "-o", tsvModel);
        Assert.True(code == 0, err + output);
        var fromCsv = ModelFile.Load(model);
        var fromTsv = ModelFile.Load(tsvModel);
        Assert.Equal(InputEncoding.Csv("click", 10, ["id"], ["score"], DataFormat.Tsv), fromTsv.Input);
        foreach (var (x, y) in fromCsv.Tensors().Zip(fromTsv.Tensors())) Assert.Equal(x.Data, y.Data);

        (code, _, err) = Run("train", "--train", train, "--format", "libfm", "--label-column", "click");
        Assert.Equal(1, code);
        Assert.Contains("--label-column, --ignore-columns, --numeric-columns and --bucket-columns name columns of --format csv or tsv, not of libfm", err);
    }

    [Fact]
    public void TrainKeepsBucketedColumnsInTheModelAndPredictAndExplainReadThem()
    {
        var rng = new Random(4);
        string Line(bool label)
        {
            int site = rng.Next(8);
            double price = Math.Round(Math.Exp(rng.NextDouble() * 8), 2);
            int y = rng.NextDouble() < (site % 2 == (price > 50 ? 1 : 0) ? 0.8 : 0.2) ? 1 : 0;
            return label ? $"{y},s{site},{price}" : $"{price},s{site}";
        }
        string train = Write("click,site,price\n" + string.Concat(Enumerable.Range(0, 800).Select(_ => Line(true) + "\n")), "train.csv");
        string score = Write("price,site\n" + string.Concat(Enumerable.Range(0, 30).Select(_ => Line(false) + "\n")), "score.csv");
        string model = Path.Combine(_dir, "m.afm");
        var (code, output, err) = Run("train", "--train", train, "--format", "csv", "--label-column", "click", "--bucket-columns", "price",
            "--hash-bits", "10", "--loss", "logistic", "-k", "4", "-t", "4", "--epochs", "2", "--accelerator", "cpu", "-o", model);
        Assert.True(code == 0, err + output);
        Assert.Equal(InputEncoding.Csv("click", 10, bucketColumns: ["price"]), ModelFile.Load(model).Input);

        string predictions = Path.Combine(_dir, "p.txt");
        (code, output, err) = Run("predict", "-m", model, "-d", score, "-o", predictions, "--accelerator", "cpu");
        Assert.True(code == 0, err + output);
        Assert.Equal(30, File.ReadAllLines(predictions).Length);
        (code, output, err) = Run("explain", "-m", model, "-d", train, "--accelerator", "cpu");
        Assert.True(code == 0, err + output);
        Assert.Contains("site x price", output);

        (code, _, err) = Run("train", "--train", train, "--format", "csv", "--label-column", "click", "--bucket-columns", "price", "--numeric-columns", "price");
        Assert.Equal(1, code);
        Assert.Contains("--bucket-columns price: column 'price' is a numeric column and cannot be bucketed too", err);
        Assert.DoesNotContain("   at ", err);
        string bad = Write("click,site,price\n1,a,cheap\n", "bad.csv");
        (code, _, err) = Run("train", "--train", bad, "--format", "csv", "--label-column", "click", "--bucket-columns", "price", "--accelerator", "cpu", "-o", Path.Combine(_dir, "x.afm"));
        Assert.Equal(1, code);
        Assert.Contains("bad.csv:2: column 'price': 'cheap' is not a finite number (it is a bucketed column)", err);
        Assert.DoesNotContain("   at ", err);
    }
}
