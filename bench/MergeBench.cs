using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Afm.Gpu.Distributed;

namespace Afm.Bench;

/// <summary>
/// <c>afm-bench merge</c>: the host-side merge of an MPI step's gathered gradient lists, timed alone (no MPI) on 1 to
/// all cores. The lists are those of <c>bench/distributed.sh</c>'s rows at N ranks: each rank's shard of a global batch
/// of one-hot rows of m fields of 1000 features gives its distinct ids, each with k + 1 gradient floats. Every thread
/// count must give the one-thread result bit for bit; the run says so or fails.
/// </summary>
internal static class MergeBench
{
    public const string Usage = "afm-bench merge [--ranks N (8)] [--batch B (8192)] [--m M (10)] [--k K (64)] [--repeat R (200)]";

    public static int Run(string[] args)
    {
        int ranks = 8, batch = 8192, m = 10, k = 64, repeat = 200;
        for (int i = 0; i < args.Length; i++)
        {
            if (i + 1 >= args.Length || !int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int v) || v <= 0)
            {
                Console.Error.WriteLine($"afm-bench: merge: {args[i]} needs a positive integer\n{Usage}");
                return 2;
            }
            switch (args[i++])
            {
                case "--ranks": ranks = v; break;
                case "--batch": batch = v; break;
                case "--m": m = v; break;
                case "--k": k = v; break;
                case "--repeat": repeat = v; break;
                default: Console.Error.WriteLine($"afm-bench: merge: unknown option {args[i - 1]}\n{Usage}"); return 2;
            }
        }

        int row = k + 1, rowBytes = sizeof(int) + row * sizeof(float), features = m * 1000;
        var rng = new Random(1);
        var counts = new int[ranks];
        var offsets = new int[ranks];
        var parts = new List<byte[]>();
        for (int r = 0; r < ranks; r++)
        {
            int rows = (int)((long)(r + 1) * batch / ranks - (long)r * batch / ranks);
            var ids = new HashSet<int>();
            for (int i = 0; i < rows; i++)
                for (int f = 0; f < m; f++) ids.Add(f * 1000 + rng.Next(1000));
            var part = new byte[ids.Count * rowBytes];
            MemoryMarshal.AsBytes(ids.ToArray().AsSpan()).CopyTo(part);
            var grads = MemoryMarshal.Cast<byte, float>(part.AsSpan(ids.Count * sizeof(int)));
            for (int i = 0; i < grads.Length; i++) grads[i] = (float)(rng.NextDouble() - 0.5) * 1e-3f;
            counts[r] = part.Length;
            offsets[r] = r == 0 ? 0 : offsets[r - 1] + counts[r - 1];
            parts.Add(part);
        }
        var all = parts.SelectMany(p => p).ToArray();
        int entries = all.Length / rowBytes;
        var place = new int[features];
        var mergedIds = new int[entries];
        var mergedGrads = new float[entries * row];
        int[] slots = [];

        Console.WriteLine($"{Environment.ProcessorCount} cores, {CpuPeak.Detect(Environment.ProcessorCount, 2, null, null).Model} ({Afm.Gpu.Accelerators.Cpu.CpuSimd.Name(Afm.Gpu.Accelerators.Cpu.CpuSimd.Path)}); {ranks} ranks' lists of a global batch of {batch} rows, m = {m} fields of 1000 features, k = {k}:");
        Console.WriteLine($"  {entries:N0} entries ({all.Length / 1e6:F1} MB received per rank and step), {repeat} merges per thread count, median and best");
        float[]? reference = null;
        double single = 0;
        var threadCounts = new SortedSet<int> { 1, 2, 4, 8, 16, Environment.ProcessorCount }.Where(t => t <= Environment.ProcessorCount).ToList();
        foreach (int threads in threadCounts)
        {
            var times = new double[repeat];
            int merged = 0;
            for (int i = -5; i < repeat; i++) // 5 untimed: the JIT and the thread pool
            {
                long start = Stopwatch.GetTimestamp();
                merged = SparseMerge.Run(all, counts, offsets, row, place, ref slots, mergedIds, mergedGrads, threads);
                if (i >= 0) times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
            var result = mergedGrads.AsSpan(0, merged * row);
            if (reference is null) reference = result.ToArray();
            else if (!result.SequenceEqual(reference))
            {
                Console.Error.WriteLine($"afm-bench: merge: {threads} threads do not give the one-thread result bit for bit");
                return 1;
            }
            Array.Sort(times);
            double median = times[repeat / 2];
            if (threads == 1) single = median;
            Console.WriteLine($"  {threads,2} thread{(threads == 1 ? " " : "s")}: {merged:N0} ids merged, median {median:F2} ms, best {times[0]:F2} ms, {single / median:F2}x one thread");
        }
        Console.WriteLine("  every thread count gave the one-thread merge bit for bit");
        return 0;
    }
}
