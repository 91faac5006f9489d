using System.Diagnostics;
using System.Globalization;
using System.Text;
using Afm.Gpu.Data;

namespace Afm.Bench;

/// <summary>
/// <c>--parse</c>: MB/s of text that <see cref="LibFmReader.ReadBlocks"/> turns into blocks (the conversion a cache or
/// training run does), on generated files held in the page cache, with one parse thread and with one per core.
/// </summary>
internal static class ParseBench
{
    private const int Columns = 39;

    public static int Run(BenchOptions o)
    {
        int all = o.Threads > 0 ? o.Threads : Environment.ProcessorCount;
        double minSeconds = o.Quick ? 0.5 : o.MinSeconds;
        string dir = Directory.CreateTempSubdirectory("afm-bench-parse-").FullName;
        try
        {
            Console.WriteLine($"text parse to blocks of 65536 rows, {o.ParseMegabytes} MB per file (in the page cache), {Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}");
            Console.WriteLine("MB/s: text per second of wall time; MB/cpu-s: per second of the process's CPU time (all its threads: parse");
            Console.WriteLine("workers, the reading and block-building thread, GC), the figure per core");
            Console.WriteLine($"{"file",-26} {"threads",7} {"MB/s",9} {"MB/cpu-s",9} {"rows/s",12}");
            var files = new (string Name, Action<StringBuilder, Random> Line, LibFmReadOptions Options, string? Header)[]
            {
                ("libfm ids", NumericLine, new LibFmReadOptions(), null),
                ("libfm ids, hashed", NumericLine, new LibFmReadOptions { HashBits = 20 }, null),
                ("libfm names, hashed", NamedLine, new LibFmReadOptions { HashBits = 20 }, null),
                ("criteo tsv", CriteoLine, new LibFmReadOptions { Format = DataFormat.Criteo, HashBits = 20 }, null),
                ("csv (avazu-like)", CsvLine, new LibFmReadOptions { Format = DataFormat.Csv, HashBits = 20, LabelColumn = "click", IgnoredColumns = "id" }, CsvHeader),
            };
            foreach (var (name, line, options, header) in files)
            {
                string path = Path.Combine(dir, "data.txt");
                long bytes = Generate(path, o.ParseMegabytes << 20, line, header);
                foreach (int threads in all > 1 ? new[] { 1, all } : [1])
                {
                    var (seconds, cpuSeconds, rows) = Time(path, options with { Threads = threads }, minSeconds);
                    Console.WriteLine($"{name,-26} {threads,7} {bytes / 1e6 / seconds,9:F1} {bytes / 1e6 / cpuSeconds,9:F1} {rows / seconds,12:N0}");
                }
            }
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Wall and CPU seconds per pass (means over the timed passes, after one warm-up pass) and rows per pass.</summary>
    private static (double Seconds, double CpuSeconds, long Rows) Time(string path, LibFmReadOptions options, double minSeconds)
    {
        long rows = Pass(path, options);
        using var process = Process.GetCurrentProcess();
        var cpu = process.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        int passes = 0;
        while (passes < 2 || sw.Elapsed.TotalSeconds < minSeconds)
        {
            Pass(path, options);
            passes++;
        }
        double wall = sw.Elapsed.TotalSeconds;
        process.Refresh();
        return (wall / passes, (process.TotalProcessorTime - cpu).TotalSeconds / passes, rows);
    }

    private static long Pass(string path, LibFmReadOptions options)
    {
        long rows = 0;
        foreach (var block in LibFmReader.ReadBlocks(path, options)) rows += block.Rows;
        return rows;
    }

    private static long Generate(string path, long bytes, Action<StringBuilder, Random> line, string? header = null)
    {
        var rng = new Random(2017);
        var sb = new StringBuilder();
        using var w = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 20);
        long written = 0;
        if (header is not null)
        {
            w.Write(header + "\n");
            written += header.Length + 1;
        }
        while (written < bytes)
        {
            sb.Clear();
            line(sb, rng);
            sb.Append('\n');
            w.Write(sb);
            written += sb.Length;
        }
        return written;
    }

    /// <summary>A Criteo-like libFM row: 39 fields of a million ids each, values 1 or a short decimal.</summary>
    private static void NumericLine(StringBuilder sb, Random rng)
    {
        sb.Append(rng.Next(2));
        for (int j = 0; j < Columns; j++)
            sb.Append(' ').Append(j * 1_000_000 + rng.Next(1_000_000)).Append(':').Append(j < 13 ? (rng.Next(1000) / 100.0).ToString(CultureInfo.InvariantCulture) : "1");
    }

    /// <summary>The same with named categorical tokens <c>Cj=hex</c>.</summary>
    private static void NamedLine(StringBuilder sb, Random rng)
    {
        sb.Append(rng.Next(2));
        for (int j = 0; j < Columns; j++)
            sb.Append(" C").Append(j + 1).Append('=').Append(rng.Next().ToString("x8", CultureInfo.InvariantCulture));
    }

    /// <summary>The header of <see cref="CsvLine"/>: Avazu's columns (an id, the click, the hour, 21 categorical columns).</summary>
    private static readonly string CsvHeader = "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category,"
        + "device_id,device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21";

    /// <summary>An Avazu-like CSV line: a 20-digit id, a 0/1 click, the hour, 8-hex ids and small integers.</summary>
    private static void CsvLine(StringBuilder sb, Random rng)
    {
        sb.Append(rng.NextInt64(long.MaxValue)).Append(',').Append(rng.Next(2)).Append(",141021").Append(rng.Next(10, 31)).Append(rng.Next(10, 24));
        for (int j = 0; j < 21; j++)
        {
            sb.Append(',');
            if (j is 0 or 1 or >= 11) sb.Append(rng.Next(j == 0 ? 10 : 3000));
            else sb.Append(rng.Next().ToString("x8", CultureInfo.InvariantCulture));
        }
    }

    /// <summary>A Criteo TSV line: label, 13 integers, 26 hex categories, about one in ten missing.</summary>
    private static void CriteoLine(StringBuilder sb, Random rng)
    {
        sb.Append(rng.Next(2));
        for (int j = 0; j < 13; j++)
        {
            sb.Append('\t');
            if (rng.Next(10) > 0) sb.Append(rng.Next(-2, 5000));
        }
        for (int j = 0; j < 26; j++)
        {
            sb.Append('\t');
            if (rng.Next(10) > 0) sb.Append(rng.Next().ToString("x8", CultureInfo.InvariantCulture));
        }
    }
}
