using System.Runtime.InteropServices;
using Afm.Gpu.Kernels.Cpu;

namespace Afm.Gpu.Distributed;

/// <summary>
/// Merges the ranks' all-gathered (distinct id, gradient) lists by id, summing each id's gradients in rank order,
/// on several threads. A list is [ids (n ints) | gradients (n x row floats)], rank r's at <c>offsets[r]</c>,
/// <c>counts[r]</c> bytes long. The merged ids come in order of first appearance (rank by rank, each list in its
/// order), and an id's first gradient is copied in and later ones added, rank after rank: the result is the same bit
/// for bit whatever the number of threads.
/// </summary>
internal static class SparseMerge
{
    /// <summary>Lists holding fewer floats than this in all are merged on one thread (more would cost more than they save).</summary>
    public const long ParallelFloats = 1 << 17;

    /// <summary>
    /// Merges the lists into <paramref name="mergedIds"/> and <paramref name="mergedGrads"/> and returns how many ids
    /// there are. <paramref name="place"/> (one int per feature) must be all 0, and is again on return.
    /// <paramref name="slots"/> is a work array, grown when too small.
    /// </summary>
    public static int Run(byte[] lists, int[] counts, int[] offsets, int row, int[] place, ref int[] slots,
        int[] mergedIds, float[] mergedGrads, int threads)
    {
        int rowBytes = sizeof(int) + row * sizeof(float), total = 0;
        foreach (int c in counts) total += c / rowBytes;
        if (slots.Length < total) slots = new int[total];

        // The ids, on one thread: each entry's place in the merged list, kept as ~place where the id first appears.
        int merged = 0, e = 0;
        try
        {
            for (int r = 0; r < counts.Length; r++)
            {
                int n = counts[r] / rowBytes;
                var ids = MemoryMarshal.Cast<byte, int>(lists.AsSpan(offsets[r], n * sizeof(int)));
                foreach (int id in ids)
                {
                    int p = place[id] - 1;
                    if (p < 0)
                    {
                        p = merged++;
                        place[id] = merged;
                        mergedIds[p] = id;
                        slots[e++] = ~p;
                    }
                    else slots[e++] = p;
                }
            }
        }
        finally
        {
            for (int i = 0; i < merged; i++) place[mergedIds[i]] = 0;
        }

        // The gradients: worker w owns an equal range of merged places and visits every entry in rank order, taking
        // only its own, so each id's sum has the one-thread order and no two workers write the same place.
        int workers = (long)total * row >= ParallelFloats ? Math.Clamp(threads, 1, Math.Max(1, merged / 64)) : 1;
        var slotsArray = slots;
        if (workers == 1) Accumulate(lists, counts, offsets, row, slotsArray, mergedGrads, 0, merged);
        else
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
                Accumulate(lists, counts, offsets, row, slotsArray, mergedGrads, (int)((long)w * merged / workers), (int)((long)(w + 1) * merged / workers)));
        return merged;
    }

    /// <summary>The gradients of the merged places [lo, hi), in rank order.</summary>
    private static void Accumulate(byte[] lists, int[] counts, int[] offsets, int row, int[] slots, float[] mergedGrads, int lo, int hi)
    {
        int rowBytes = sizeof(int) + row * sizeof(float), e = 0;
        for (int r = 0; r < counts.Length; r++)
        {
            int n = counts[r] / rowBytes;
            var grads = MemoryMarshal.Cast<byte, float>(lists.AsSpan(offsets[r] + n * sizeof(int), n * row * sizeof(float)));
            for (int j = 0; j < n; j++, e++)
            {
                int s = slots[e], p = s < 0 ? ~s : s;
                if (p < lo || p >= hi) continue;
                var g = grads.Slice(j * row, row);
                var sum = mergedGrads.AsSpan(p * row, row);
                if (s < 0) g.CopyTo(sum);
                else Simd.Axpy(1f, g, sum); // 1·g + sum rounds once, as g + sum does
            }
        }
    }
}
