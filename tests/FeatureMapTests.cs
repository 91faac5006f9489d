using Afm.Gpu.Data;

namespace Afm.Gpu.Tests;

public sealed class FeatureMapTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-featuremap-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string text)
    {
        string path = Path.Combine(_dir, "features.txt");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void LoadsNamesAndFields()
    {
        var map = FeatureMap.Load(Write("""
            # id name [field]
            0 user=42
            1	item:7
            2 gender=F	demo

              3   plain
            5 age=25 demo
            """));
        Assert.Equal("user=42", map.NameOf(0));
        Assert.Equal("item:7", map.NameOf(1));
        Assert.Equal("f4", map.NameOf(4));
        Assert.Equal(["user", "item", "demo", "plain", "other"], map.FieldNames);
        Assert.Equal([0, 1, 2, 3, 4, 2, 4], Enumerable.Range(0, 7).Select(map.FieldOf));
        Assert.Equal([0, 1, 2, 3, 4, 2], map.FieldArray(6));
    }

    [Theory]
    [InlineData("user=42", "user")]
    [InlineData("item:7", "item")]
    [InlineData("a=b:c", "a")]
    [InlineData("a:b=c", "a")]
    [InlineData("=x", "=x")]
    [InlineData("plain", "plain")]
    public void DefaultFieldIsThePrefix(string name, string field) => Assert.Equal(field, FeatureMap.DefaultField(name));

    [Theory]
    [InlineData("0 a\n7\n", 2, "found 1 column")]
    [InlineData("0 a b c\n", 1, "found 4 column")]
    [InlineData("x a\n", 1, "'x' is not a non-negative integer")]
    [InlineData("-1 a\n", 1, "'-1' is not a non-negative integer")]
    [InlineData("99999999999 a\n", 1, "is not a non-negative integer")]
    [InlineData("# c\n1 a\n\n1 b\n", 4, "feature id 1 is listed twice")]
    public void ErrorsNameFileAndLine(string text, int line, string problem)
    {
        string path = Write(text);
        var e = Assert.Throws<DataFormatException>(() => FeatureMap.Load(path));
        Assert.Equal(path, e.File);
        Assert.Equal(line, e.Line);
        Assert.StartsWith($"{path}:{line}: ", e.Message);
        Assert.Contains(problem, e.Problem);
    }

    [Fact]
    public void MissingFileIsADataFormatError()
    {
        var e = Assert.Throws<DataFormatException>(() => FeatureMap.Load(Path.Combine(_dir, "nope.txt")));
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void RangesGiveFields()
    {
        var map = FeatureMap.FromRanges("user:0-942, item:943-2624,genre:2630-2640,user:2641", 2700);
        Assert.Equal(["user", "item", "genre", "other"], map.FieldNames);
        Assert.Equal(0, map.FieldOf(0));
        Assert.Equal(0, map.FieldOf(942));
        Assert.Equal(1, map.FieldOf(943));
        Assert.Equal(1, map.FieldOf(2624));
        Assert.Equal(3, map.FieldOf(2625));
        Assert.Equal(2, map.FieldOf(2635));
        Assert.Equal(0, map.FieldOf(2641));
        Assert.Equal(3, map.FieldOf(2699));
        Assert.Equal(3, map.FieldOf(5000));
        Assert.Equal("f17", map.NameOf(17));
    }

    [Theory]
    [InlineData("user:0-9,item:9-12", "overlap")]
    [InlineData("user:5-2", "5 is above 2")]
    [InlineData("user:0-100", "not below the feature count")]
    [InlineData("user0-9", "expected field:first-last")]
    [InlineData(":0-9", "expected field:first-last")]
    [InlineData("user:a-9", "expected field:first-last")]
    [InlineData("user:1-2-3", "expected field:first-last")]
    [InlineData(" , ", "no field ranges")]
    public void BadRangesAreRejected(string spec, string problem)
    {
        var e = Assert.Throws<ArgumentException>(() => FeatureMap.FromRanges(spec, 100));
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void FromFieldsKeepsFieldIndices()
    {
        var map = FeatureMap.FromFields([1, 1, 0, 2, 2, 0]);
        Assert.Equal(["field0", "field1", "field2", "other"], map.FieldNames);
        Assert.Equal([1, 1, 0, 2, 2, 0, 3], Enumerable.Range(0, 7).Select(map.FieldOf));
        var named = FeatureMap.FromFields([0, 1], ["user", "item"]);
        Assert.Equal(["user", "item", "other"], named.FieldNames);
        Assert.Throws<ArgumentException>(() => FeatureMap.FromFields([0, 2], ["user", "item"]));
    }
}
