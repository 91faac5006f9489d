using Afm.Gpu.Data;
using Afm.Gpu.Model;

namespace Afm.Bench;

/// <summary>One benchmarked configuration: model kind and sizes, and where its rows come from.</summary>
/// <param name="Name">Short name used by --shapes and in the output.</param>
/// <param name="Kind">AFM or FM.</param>
/// <param name="Fields">Non-zeros per synthetic row (m); 0 for a dataset file.</param>
/// <param name="K">Embedding size.</param>
/// <param name="T">Attention factor (0 for FM).</param>
/// <param name="Batch">Rows per training step.</param>
/// <param name="DataPath">A libFM file to read instead of synthetic rows, or null.</param>
internal sealed record BenchShape(string Name, ModelKind Kind, int Fields, int K, int T, int Batch, string? DataPath = null)
{
    /// <summary>Features per synthetic field.</summary>
    public const int FieldSize = 1000;

    /// <summary>Whether the rows are synthetic (and the PyTorch reference can replay the shape).</summary>
    public bool IsSynthetic => DataPath is null;

    /// <summary>The fixed shapes, plus ml-100k-libfm when <paramref name="movieLensTrain"/> is given.</summary>
    public static List<BenchShape> All(string? movieLensTrain)
    {
        var list = new List<BenchShape>
        {
            new("afm-m10-k64", ModelKind.Afm, 10, 64, 64, 4096),
            new("afm-m10-k16", ModelKind.Afm, 10, 16, 16, 4096),
            new("afm-m39-k16", ModelKind.Afm, 39, 16, 16, 4096),
            new("afm-m3-k256", ModelKind.Afm, 3, 256, 256, 4096),
            new("afm-m10-k64-b8192", ModelKind.Afm, 10, 64, 64, 8192),
            new("afm-m10-k64-b512", ModelKind.Afm, 10, 64, 64, 512),
            new("fm-m10-k64", ModelKind.Fm, 10, 64, 0, 4096),
        };
        if (movieLensTrain is not null) list.Add(new("ml100k-afm-k64", ModelKind.Afm, 0, 64, 64, 4096, movieLensTrain));
        return list;
    }

    /// <summary>
    /// The rows to train on: the libFM file, or <paramref name="batches"/> batches of synthetic rows with exactly
    /// m non-zeros (one feature of each of m disjoint fields of <see cref="FieldSize"/> features, value 1) and
    /// labels drawn from 1..5.
    /// </summary>
    public SparseDataset Load(int batches = 4, int seed = 2017)
    {
        if (DataPath is not null) return LibFmReader.Read(DataPath);
        int rows = batches * Batch, m = Fields;
        var rng = new Random(seed);
        var offsets = new long[rows + 1];
        var ids = new int[rows * m];
        var values = new float[rows * m];
        var labels = new float[rows];
        Array.Fill(values, 1f);
        for (int r = 0; r < rows; r++)
        {
            for (int f = 0; f < m; f++) ids[r * m + f] = f * FieldSize + rng.Next(FieldSize);
            offsets[r + 1] = (r + 1L) * m;
            labels[r] = rng.Next(1, 6);
        }
        return new SparseDataset(offsets, ids, values, labels, m * FieldSize, $"synthetic m={m}");
    }

    /// <summary>A one-line description: model and sizes.</summary>
    public string Describe() => Kind == ModelKind.Fm
        ? $"FM k={K} batch {Batch}, {RowsText}"
        : $"AFM k={K} t={T} batch {Batch}, {RowsText}";

    private string RowsText => IsSynthetic ? $"m={Fields} fields x {FieldSize} features" : Path.GetFileName(Path.GetDirectoryName(DataPath)) ?? DataPath!;
}
