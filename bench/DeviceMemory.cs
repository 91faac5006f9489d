using Afm.Gpu.Accelerators;
using Afm.Gpu.Kernels;

namespace Afm.Bench;

/// <summary>Bytes held in accelerator buffers, summed from the buffers' lengths (every element is 4 bytes).</summary>
internal static class DeviceMemory
{
    /// <summary>Parameters and optimizer state.</summary>
    public static long Bytes(DeviceModel m) => Sum(m.Dense, m.V, m.Linear, m.DenseState1, m.DenseState2, m.VState1, m.VState2, m.LinearState1, m.LinearState2);

    /// <summary>One uploaded mini-batch with its distinct-id lists.</summary>
    public static long Bytes(DeviceBatch b) =>
        Sum(b.Values, b.Labels) + Sum(b.Ids, b.Counts, b.UniqueIds, b.UniqueOffsets, b.Occurrences);

    /// <summary>The training step's outputs and partial gradients.</summary>
    public static long Bytes(TrainWorkspace w) => Sum(w.Yhat, w.Gradient, w.Loss, w.EmbeddingGrad, w.Partials, w.DenseGrad, w.LossSum);

    /// <summary>Everything one training run allocates on the device.</summary>
    public static long Bytes(DeviceModel m, DeviceBatch b, TrainWorkspace w) => Bytes(m) + Bytes(b) + Bytes(w);

    /// <summary>The host-side batch arrays (their public part: the stamp tables add 8 bytes per feature).</summary>
    public static long Bytes(HostBatch h) =>
        4L * (h.Ids.Length + h.Values.Length + h.Counts.Length + h.Labels.Length + h.UniqueIds.Length + h.UniqueOffsets.Length + h.Occurrences.Length);

    private static long Sum<T>(params DeviceBuffer<T>?[] buffers) where T : unmanaged
    {
        long bytes = 0;
        foreach (var b in buffers) bytes += (b?.Length ?? 0) * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        return bytes;
    }
}
