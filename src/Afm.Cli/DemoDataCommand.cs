using System.Globalization;
using System.Text;
using Afm.Gpu.Data;
using Afm.Gpu.IO;
using Afm.Gpu.Synthetic;

namespace Afm.Cli;

/// <summary>Writes the demo's planted data as libFM files, so that other tools can train on the same rows.</summary>
internal static class DemoDataCommand
{
    public static int Run(DemoDataOptions o, TextWriter stdout)
    {
        if (File.Exists(o.Output)) throw new IOException($"--output {o.Output}: is a file; demo-data writes train.libfm and test.libfm into a directory");
        if (!Directory.Exists(o.Output))
        {
            Directory.CreateDirectory(o.Output); // as mkdir -p
            stdout.WriteLine($"created directory {o.Output}");
        }
        var planted = PlantedData.Generate();
        // The binary variant: 1 above the training labels' median, -1 at or below it.
        float median = o.Binary ? Median(planted.Train.Labels) : float.NaN;
        foreach (var (data, name) in new[] { (planted.Train, "train.libfm"), (planted.Test, "test.libfm") })
        {
            string path = Path.Combine(o.Output, name);
            AtomicFile.WriteLines(path, Lines(data, median));
            stdout.WriteLine($"wrote {path}: {data.Rows} rows");
        }
        stdout.WriteLine($"planted interactions on field pairs {string.Join(", ", planted.PlantedPairs.Select(p => $"({p.F},{p.G})"))}; "
            + $"{planted.Fields} fields x {planted.ValuesPerField} values (field of feature id i: i / {planted.ValuesPerField})"
            + (o.Binary ? $"; labels 1 above the training median {median.ToString("G6", CultureInfo.InvariantCulture)}, else -1" : ""));
        return 0;
    }

    private static float Median(float[] labels)
    {
        var sorted = (float[])labels.Clone();
        Array.Sort(sorted);
        return sorted[sorted.Length / 2];
    }

    private static IEnumerable<string> Lines(SparseDataset data, float median)
    {
        var sb = new StringBuilder();
        for (int r = 0; r < data.Rows; r++)
        {
            sb.Clear();
            float y = data.Labels[r];
            sb.Append(float.IsNaN(median) ? y.ToString("R", CultureInfo.InvariantCulture) : y > median ? "1" : "-1");
            var ids = data.RowIds(r);
            var vals = data.RowValues(r);
            for (int i = 0; i < ids.Length; i++)
                sb.Append(' ').Append(ids[i].ToString(CultureInfo.InvariantCulture)).Append(':').Append(vals[i].ToString("R", CultureInfo.InvariantCulture));
            yield return sb.ToString();
        }
    }
}
