using System.Runtime.InteropServices;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Cpu;

namespace Afm.Gpu.Distributed;

/// <summary>
/// The update half of a data-parallel training step. Each rank has run the forward and backward pass on its shard of
/// the global batch (gradients scaled by 1 / global batch rows); this exchanges and merges the gradients and applies
/// the same update on every rank:
/// <list type="bullet">
/// <item>dense: each rank's reduced dense gradient, loss sum and distinct-id count are all-gathered and summed in rank
/// order, on every rank alike (not by MPI_Allreduce, whose order of summation is its own), so the sums agree bit for bit;</item>
/// <item>sparse: each rank's (distinct id, dV, dw) list is all-gathered, and the lists are merged by id, summing in
/// rank order; the merged list is applied with <see cref="AfmKernels.ApplySparse"/>.</item>
/// </list>
/// Every rank so applies the same sparse and dense updates to the same parameters: the replicas stay identical.
/// With one rank, the result is that of <see cref="AfmKernels.UpdateSparse"/> and <see cref="AfmKernels.UpdateDense"/>, bit for bit.
/// </summary>
internal sealed class GradientExchange : IDisposable
{
    private readonly MpiCluster _cluster;
    private readonly AfmKernels _kernels;
    private readonly int _k, _dense, _row;
    private readonly DeviceBuffer<float> _shardGrads, _mergedGrads;
    private readonly DeviceBuffer<int> _mergedIds;
    // per rank: [dense gradient | loss sum | distinct ids (as int bits)]
    private readonly float[] _denseSend, _denseAll, _denseSum, _loss = new float[1];
    private readonly int[] _counts, _offsets;
    private byte[] _sparseSend = [], _sparseAll = [];
    private readonly int[] _mergedIdsHost;
    private readonly float[] _mergedGradsHost;
    // id -> 1 + its place in the merged list; 0 for ids not in it (all 0 between steps)
    private readonly int[] _place;
    private int[] _slots = [];

    /// <summary>Allocates the buffers for batches of <paramref name="kernels"/>' shape.</summary>
    /// <exception cref="NotSupportedException">The accelerator's kernels cannot split the sparse update.</exception>
    public GradientExchange(MpiCluster cluster, AfmKernels kernels)
    {
        if (!kernels.SupportsGradientExchange)
            throw new NotSupportedException($"{kernels.Accelerator.Descriptor.Name}: its kernels cannot exchange gradients, so it cannot train under mpirun; use --accelerator cpu");
        _cluster = cluster;
        _kernels = kernels;
        var shape = kernels.Shape;
        _k = shape.K;
        _dense = shape.DenseSize;
        _row = _k + 1;
        long slots = (long)shape.BatchCapacity * shape.MaxNnz;
        var acc = kernels.Accelerator;
        _shardGrads = acc.Allocate<float>(slots * _row);
        _mergedGrads = acc.Allocate<float>(slots * _row);
        _mergedIds = acc.Allocate<int>(slots);
        _mergedIdsHost = new int[slots];
        _mergedGradsHost = new float[slots * _row];
        _denseSend = new float[_dense + 2];
        _denseAll = new float[(_dense + 2) * cluster.Size];
        _denseSum = new float[_dense];
        _counts = new int[cluster.Size];
        _offsets = new int[cluster.Size];
        _place = new int[shape.FeatureCount];
    }

    /// <summary>
    /// After <see cref="AfmKernels.ForwardBackward"/> on this rank's shard: reduces, exchanges and merges the
    /// gradients, applies the sparse and dense updates, and adds the global batch's loss to
    /// <see cref="TrainWorkspace.LossSum"/> (as <see cref="AfmKernels.ReduceDense"/> adds a batch's loss).
    /// </summary>
    public void Step(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in OptimizerParams opt)
    {
        work.LossSum.CopyTo(_loss);
        float running = _loss[0];
        work.LossSum.Clear();
        _kernels.ReduceDense(work);
        int unique = batch.UniqueCount;
        _kernels.GatherSparse(batch, work, _shardGrads);

        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        work.DenseGrad.CopyTo(_denseSend.AsSpan(0, _dense));
        work.LossSum.CopyTo(_denseSend.AsSpan(_dense, 1));
        _denseSend[_dense + 1] = BitConverter.Int32BitsToSingle(unique);
        _cluster.AllGather<float>(_denseSend, _denseAll);
        float loss = SumDense();

        int merged = ExchangeSparse(batch, unique);
        _mergedIds.CopyFrom(_mergedIdsHost.AsSpan(0, merged));
        _mergedGrads.CopyFrom(_mergedGradsHost.AsSpan(0, merged * _row));
        var exchanged = System.Diagnostics.Stopwatch.GetElapsedTime(started);
        _kernels.ApplySparse(model, _mergedIds, _mergedGrads, merged, opt);
        work.DenseGrad.CopyFrom(_denseSum);
        _kernels.UpdateDense(model, work, opt);

        _loss[0] = running + loss;
        work.LossSum.CopyFrom(_loss);
        _cluster.CountStep(_denseSend.Length * sizeof(float), (long)unique * (sizeof(int) + _row * sizeof(float)), merged, exchanged);
    }

    /// <summary>Sums the ranks' dense gradients into <see cref="_denseSum"/> in rank order; returns the summed loss.</summary>
    private float SumDense()
    {
        int stride = _dense + 2;
        _denseAll.AsSpan(0, _dense).CopyTo(_denseSum);
        float loss = _denseAll[_dense];
        for (int r = 1; r < _cluster.Size; r++)
        {
            var part = _denseAll.AsSpan(r * stride, _dense);
            Simd.Axpy(1f, part, _denseSum); // 1·x + y rounds once, as x + y does
            loss += _denseAll[r * stride + _dense];
        }
        return loss;
    }

    /// <summary>All-gathers every rank's (id, dV, dw) list and merges them by id into the host merge buffers; returns the merged count.</summary>
    private int ExchangeSparse(DeviceBatch batch, int unique)
    {
        int stride = _dense + 2, rowBytes = sizeof(int) + _row * sizeof(float), total = 0;
        for (int r = 0; r < _cluster.Size; r++)
        {
            int n = BitConverter.SingleToInt32Bits(_denseAll[r * stride + _dense + 1]);
            _offsets[r] = total;
            _counts[r] = checked(n * rowBytes);
            total = checked(total + _counts[r]);
        }
        if (_sparseSend.Length < _counts[_cluster.Rank]) _sparseSend = new byte[_counts[_cluster.Rank]];
        if (_sparseAll.Length < total) _sparseAll = new byte[total];
        PackShard(batch, unique);
        _cluster.AllGatherV(_sparseSend.AsSpan(0, _counts[_cluster.Rank]), _sparseAll.AsSpan(0, total), _counts, _offsets);
        return Merge();
    }

    /// <summary>This rank's list as [ids (unique ints) | gradients (unique x (k + 1) floats)].</summary>
    private void PackShard(DeviceBatch batch, int unique)
    {
        batch.UniqueIds.CopyTo(MemoryMarshal.Cast<byte, int>(_sparseSend.AsSpan(0, unique * sizeof(int))));
        _shardGrads.CopyTo(MemoryMarshal.Cast<byte, float>(_sparseSend.AsSpan(unique * sizeof(int), unique * _row * sizeof(float))));
    }

    /// <summary>Merges the gathered lists by id, summing in rank order (<see cref="SparseMerge"/>); returns the merged count.</summary>
    private int Merge() => SparseMerge.Run(_sparseAll, _counts, _offsets, _row, _place, ref _slots, _mergedIdsHost, _mergedGradsHost, _cluster.MergeThreads);

    /// <inheritdoc />
    public void Dispose()
    {
        _shardGrads.Dispose();
        _mergedGrads.Dispose();
        _mergedIds.Dispose();
    }
}
