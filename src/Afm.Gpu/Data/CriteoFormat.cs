using System.Buffers.Text;

namespace Afm.Gpu.Data;

/// <summary>
/// Criteo's display-advertising TSV (the Kaggle and Terabyte click logs): per line a 0/1 label, 13 integer columns
/// <c>I1..I13</c> and 26 categorical columns <c>C1..C26</c> (hex strings), separated by tabs; an empty column is
/// missing and gives no feature.
/// </summary>
/// <remarks>
/// Every present column becomes one feature of value 1, named after its column so that equal values in different
/// columns differ, and hashed (<see cref="FeatureHash"/>):
/// <list type="bullet">
/// <item>a categorical column <c>Cj</c> with text <c>s</c> is <c>Cj=s</c>, e.g. <c>C3=68fd1e64</c> (the bytes as
/// written);</item>
/// <item>an integer column <c>Ij</c> with value v is bucketed as in the winning Kaggle solution (the 3 Idiots'
/// libffm converter): <c>Ij=SPv</c> for v &lt;= 2 (e.g. <c>I2=SP-1</c>, <c>I1=SP0</c>), otherwise
/// <c>Ij=⌊(ln v)²⌋</c> (e.g. v = 100 gives <c>I5=21</c>); that converter writes <c>I5-21</c> and makes an empty column
/// a value of its own, where here a missing column gives no feature.</item>
/// </list>
/// </remarks>
public static class CriteoFormat
{
    /// <summary>Integer columns I1..I13.</summary>
    public const int IntegerColumns = 13;

    /// <summary>Categorical columns C1..C26.</summary>
    public const int CategoricalColumns = 26;

    /// <summary>Columns per line: the label, then the integer and categorical columns.</summary>
    public const int Columns = 1 + IntegerColumns + CategoricalColumns;

    /// <summary>The hash bits used when none are given: 2^20 embedding rows.</summary>
    public const int DefaultHashBits = 20;

    /// <summary>The feature name of integer column <c>I<paramref name="column"/></c> (1-based) holding <paramref name="value"/>.</summary>
    public static string IntegerFeature(int column, long value) => $"I{column}={IntegerBucket(value)}";

    /// <summary>The feature name of categorical column <c>C<paramref name="column"/></c> (1-based) holding <paramref name="text"/>.</summary>
    public static string CategoricalFeature(int column, string text) => $"C{column}={text}";

    /// <summary>The bucket of an integer value: <c>SPv</c> for v &lt;= 2, otherwise ⌊(ln v)²⌋ in decimal.</summary>
    public static string IntegerBucket(long value) => value <= 2 ? $"{SmallValuePrefix}{value}" : BucketOf(value).ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>What precedes an integer value of at most 2, kept as it is, so that it differs from a bucket.</summary>
    private const string SmallValuePrefix = "SP";

    /// <summary>⌊(ln v)²⌋ for v &gt; 2.</summary>
    private static int BucketOf(long value)
    {
        double log = Math.Log(value);
        return (int)(log * log);
    }

    /// <summary>Writes the UTF-8 name of integer column <paramref name="column"/> holding <paramref name="value"/> into <paramref name="dest"/>; returns its length.</summary>
    internal static int WriteIntegerFeature(Span<byte> dest, int column, long value)
    {
        int n = WritePrefix(dest, 'I', column);
        if (value <= 2)
        {
            foreach (char c in SmallValuePrefix) dest[n++] = (byte)c;
            Utf8Formatter.TryFormat(value, dest[n..], out int w);
            return n + w;
        }
        Utf8Formatter.TryFormat(BucketOf(value), dest[n..], out int written);
        return n + written;
    }

    /// <summary>Writes <c>Xj=</c> (<paramref name="letter"/>, the 1-based <paramref name="column"/>) into <paramref name="dest"/>; returns its length.</summary>
    internal static int WritePrefix(Span<byte> dest, char letter, int column)
    {
        dest[0] = (byte)letter;
        Utf8Formatter.TryFormat(column, dest[1..], out int written);
        dest[1 + written] = (byte)'=';
        return written + 2;
    }
}
