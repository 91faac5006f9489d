using System.Runtime.InteropServices;
using Afm.Gpu.Data;
using Afm.Gpu.Distributed;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

// Data-parallel training: the parts of Trainer that differ when it is one rank of an MPI job.
public sealed partial class Trainer
{
    /// <summary>
    /// The MPI job this trainer is one rank of (null: one process). Every rank builds the same global batches from the
    /// same seed and trains on its shard of each (<see cref="MpiCluster.ShardOf"/>); the gradients are exchanged so
    /// that every rank applies the same update. Rank 0 alone evaluates and writes checkpoints, and sends the results
    /// to the others, so every rank takes the same decisions (best epoch, early stop, divergence). All ranks must be
    /// given the same options and data.
    /// </summary>
    public MpiCluster? Cluster { get; init; }

    private bool IsRoot => Cluster?.IsRoot ?? true;

    /// <summary>The exchange of a data-parallel run; null in one process.</summary>
    private GradientExchange? CreateExchange(AfmKernels kernels) => Cluster is null ? null : new GradientExchange(Cluster, kernels);

    /// <summary>
    /// <c>Evaluate</c> on rank 0, its result broadcast to the other ranks (which do not evaluate); in one
    /// process, <c>Evaluate</c>.
    /// </summary>
    private (Metrics Metrics, long BadRow, float BadValue) EvaluateOnRoot(AfmKernels kernels, DeviceModel device, DeviceBatch batch, HostBatch host, TrainWorkspace work,
        RowSource data, AfmModel model)
    {
        if (Cluster is null) return Evaluate(kernels, device, batch, host, work, data, model);
        Span<double> r = stackalloc double[7];
        if (Cluster.IsRoot)
        {
            var (m, bad, value) = Evaluate(kernels, device, batch, host, work, data, model);
            r[0] = m.Rmse; r[1] = m.Mae; r[2] = m.LogLoss; r[3] = m.Auc; r[4] = m.Rows; r[5] = bad; r[6] = value;
        }
        Cluster.Broadcast(r);
        return (new Metrics(r[0], r[1], r[2], r[3], (int)r[4]), (long)r[5], (float)r[6]);
    }

    /// <summary>Checks that every rank resumed at the same epoch and step (each reads the checkpoint itself).</summary>
    private void CheckSameStart(int firstEpoch, long step)
    {
        if (Cluster is null) return;
        Span<double> root = [firstEpoch, step];
        Cluster.Broadcast(root);
        if (root[0] != firstEpoch || root[1] != step)
            throw new InvalidOperationException($"rank {Cluster.Rank} found a checkpoint at step {step} but rank 0 one at step {root[1]}: every rank must see the same checkpoint folder (a shared file system)");
    }

    /// <summary>Checks that every rank ends with the same parameters, bit for bit: the best model and the device's.</summary>
    private void CheckReplicas(AfmModel best, DeviceModel device)
    {
        if (Cluster is null) return;
        Cluster.CheckIdentical(Checksum(best), "the kept model's parameters");
        var last = best.Clone();
        device.Download(last);
        Cluster.CheckIdentical(Checksum(last), "the last step's parameters");
    }

    private static uint Checksum(AfmModel m)
    {
        uint crc = 0;
        foreach (var a in new[] { m.V, m.Linear, m.AttnW, m.AttnB, m.AttnH, m.Proj, m.W0 })
            crc = Crc32.Append(crc, MemoryMarshal.AsBytes(a.AsSpan()));
        return crc;
    }
}
