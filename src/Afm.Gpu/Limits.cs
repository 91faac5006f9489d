using Afm.Gpu.Model;
using Afm.Gpu.Kernels;

namespace Afm.Gpu;

/// <summary>
/// What a model and its data may ask for, checked before anything is allocated so that an oversized input
/// fails with its figures (<see cref="LimitExceededException"/>) rather than running out of memory.
/// </summary>
public static class Limits
{
    /// <summary>
    /// The most pair values one row may need: pairs × (k + t). The kernels hold every pair of a row (its
    /// k-vector and its t attention activations) in memory at once, per worker.
    /// </summary>
    public const long MaxPairValuesPerRow = 1L << 28;

    /// <summary>The most slots (rows × non-zeros per row) one mini-batch may hold.</summary>
    public const long MaxBatchSlots = int.MaxValue;

    /// <summary>The longest row a model with embedding size <paramref name="k"/> and attention factor <paramref name="t"/> (0 for FM) takes.</summary>
    public static int MaxRowNonZeros(int k, int t)
    {
        long perPair = Math.Max(1, k) + Math.Max(0, t);
        long maxPairs = MaxPairValuesPerRow / perPair;
        long n = (long)((1 + Math.Sqrt(1 + 8.0 * maxPairs)) / 2);
        while (n > 1 && n * (n - 1) / 2 > maxPairs) n--;
        while ((n + 1) * n / 2 <= maxPairs) n++;
        return (int)Math.Min(n, int.MaxValue);
    }

    /// <summary>The most features (largest id + 1) a model with embedding size <paramref name="k"/> can hold: V (n × k) must fit in one array.</summary>
    public static int MaxFeatureCount(int k) => (int)Math.Min(Data.LibFmReader.MaxFeatureId + 1L, Array.MaxLength / Math.Max(1, k));

    /// <summary>
    /// Bytes of the per-feature tables (w and V, n × (k + 1) floats) training keeps: on the host the model and the
    /// best epoch's copy (and a table of n ints for batching); on the device a copy and the optimizer's state (one more
    /// for Adagrad, two for Adam). On the CPU accelerator both are host memory.
    /// </summary>
    public static (long Host, long Device) TrainingTableBytes(int featureCount, int k, OptimizerKind optimizer)
    {
        long table = (long)featureCount * (k + 1) * sizeof(float);
        int deviceCopies = 1 + optimizer switch { OptimizerKind.Adam => 2, OptimizerKind.Adagrad => 1, _ => 0 };
        return (2 * table + (long)featureCount * sizeof(int), deviceCopies * table);
    }

    /// <summary>The memory the process may still use, as the runtime sees it (physical memory or a container limit).</summary>
    public static long AvailableMemoryBytes()
    {
        var info = GC.GetGCMemoryInfo();
        long total = info.TotalAvailableMemoryBytes;
        return Math.Max(0, total - GC.GetTotalMemory(forceFullCollection: false));
    }

    /// <summary>
    /// Throws <see cref="LimitExceededException"/> when training a <paramref name="kind"/> model with these sizes on
    /// <paramref name="data"/> would exceed a limit: the feature table (array size and memory), the row length, the batch.
    /// </summary>
    /// <param name="data">The training data's name, for the message.</param>
    /// <param name="kind">AFM or FM.</param>
    /// <param name="featureCount">Features of the model (largest id + 1).</param>
    /// <param name="k">Embedding size.</param>
    /// <param name="t">Attention factor (ignored for FM).</param>
    /// <param name="maxNnz">Longest row.</param>
    /// <param name="batchRows">Rows per batch.</param>
    /// <param name="optimizer">The optimizer, whose state is kept per feature.</param>
    /// <param name="device">The accelerator (null: the CPU): for a device with its own memory, its share is checked against that memory.</param>
    public static void CheckTraining(string data, ModelKind kind, int featureCount, int k, int t, int maxNnz, int batchRows, OptimizerKind optimizer,
        Accelerators.AcceleratorDescriptor? device = null)
    {
        int tt = kind == ModelKind.Afm ? t : 0;
        int maxFeatures = MaxFeatureCount(k);
        if (featureCount > maxFeatures)
            throw new LimitExceededException($"{data}: feature ids up to {featureCount - 1} need an embedding table of {featureCount} x k = {k} values ({(long)featureCount * k}), more than one array holds ({Array.MaxLength}); ids index the table directly, so renumber them densely from 0 or hash them into fewer rows (--hash-bits B) (at k = {k} ids must stay below {maxFeatures})");
        var (host, onDevice) = TrainingTableBytes(featureCount, k, optimizer);
        bool separate = device is { Kind: not Accelerators.AcceleratorKind.Cpu, MemoryBytes: > 0 };
        long need = separate ? host : host + onDevice, have = AvailableMemoryBytes();
        if (need > have)
            throw new LimitExceededException($"{data}: feature ids up to {featureCount - 1} at k = {k} with {optimizer} need about {Gib(need)} of memory for the embedding tables{(separate ? "" : " and their optimizer state")}, more than the {Gib(have)} available; renumber the ids densely from 0, hash them into fewer rows (--hash-bits B) or lower k");
        if (separate && onDevice > device!.MemoryBytes)
            throw new LimitExceededException($"{data}: feature ids up to {featureCount - 1} at k = {k} with {optimizer} need about {Gib(onDevice)} on {device.Name} for the embedding tables and their optimizer state, more than its {Gib(device.MemoryBytes)}; renumber the ids densely from 0, lower k, or train on the CPU");
        CheckRows(data, maxNnz, k, tt);
        if ((long)batchRows * Math.Max(maxNnz, 2) > MaxBatchSlots)
            throw new LimitExceededException($"{data}: a batch of {batchRows} rows x {maxNnz} non-zeros is {(long)batchRows * maxNnz} slots, more than {MaxBatchSlots}; use a smaller batch");
    }

    /// <summary>Throws <see cref="LimitExceededException"/> when a row of <paramref name="maxNnz"/> non-zeros is longer than a model of this k and t takes.</summary>
    public static void CheckRows(string data, int maxNnz, int k, int t)
    {
        int limit = MaxRowNonZeros(k, t);
        if (maxNnz > limit)
        {
            long pairs = (long)maxNnz * (maxNnz - 1) / 2;
            throw new LimitExceededException($"{data}: a row has {maxNnz} non-zeros ({pairs} feature pairs, {pairs * (Math.Max(1, k) + Math.Max(0, t))} pair values at k = {k}, t = {t}); at most {limit} non-zeros per row are allowed at this k and t, as all pairs of a row are held in memory at once (prune or split long rows)");
        }
    }

    private static string Gib(long bytes) => $"{bytes / (1024.0 * 1024 * 1024):F1} GiB";
}
