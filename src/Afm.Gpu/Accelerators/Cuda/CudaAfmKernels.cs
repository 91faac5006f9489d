using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Model;
using Afm.Gpu.Native.Cuda;
using NativeBuffer = Afm.Gpu.Native.Cuda.CudaBuffer;

namespace Afm.Gpu.Accelerators.Cuda;

/// <summary>
/// The GPU kernels (Kernels/Gpu/afm_kernels.cu.cl) on a CUDA device, specialised for one shape, with the grid and
/// block sizes of the OpenCL accelerator: one block of <see cref="GpuKernelConfig.WorkGroupSize"/> threads per
/// work-group. Launches are asynchronous on the device's stream; buffer reads wait for them. The kernels use only
/// static shared memory (at most 48 KiB, as <see cref="GpuKernelSource.Configure"/> plans it), so no dynamic
/// shared memory is requested.
/// </summary>
internal sealed class CudaAfmKernels : AfmKernels
{
    private readonly CudaKernel _forward, _forwardBackward, _reduce, _sparse, _dense;
    private readonly NativeBuffer _unused;

    public CudaAfmKernels(CudaAccelerator accelerator, ModelShape shape) : base(accelerator, shape)
    {
        var module = accelerator.Module(shape, out var config);
        Config = config;
        _forward = module.GetKernel(GpuKernelSource.Forward);
        _forwardBackward = module.GetKernel(GpuKernelSource.ForwardBackward);
        _reduce = module.GetKernel(GpuKernelSource.ReduceDense);
        _sparse = module.GetKernel(GpuKernelSource.UpdateSparse);
        _dense = module.GetKernel(GpuKernelSource.UpdateDense);
        _unused = accelerator.Device.Allocate<float>(1);
    }

    /// <summary>The specialisation in use (block size, tile).</summary>
    internal GpuKernelConfig Config { get; }

    protected override int PartialCount => Config.Groups;

    private static NativeBuffer B<T>(DeviceBuffer<T> b) where T : unmanaged =>
        b is CudaBuffer<T> cuda ? cuda.Native : throw new ArgumentException("the buffer belongs to another accelerator");

    private NativeBuffer B(DeviceBuffer<float>? b) => b is null ? _unused : B<float>(b);

    /// <summary>
    /// Queues <paramref name="kernel"/> on enough blocks to cover <paramref name="workItems"/> threads. A refused launch
    /// names the kernel; faults while it runs surface at the next call that waits (CUDA_LAUNCH_BLOCKING=1 makes every
    /// launch wait, so that they are reported here).
    /// </summary>
    private void Launch(CudaKernel kernel, long workItems, params ReadOnlySpan<KernelArg> args)
    {
        long wg = Config.WorkGroupSize, blocks = (workItems + wg - 1) / wg;
        if (blocks > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(workItems), workItems, "too many blocks for one launch");
        try
        {
            kernel.Launch((uint)blocks, 1, (uint)wg, 1, 0, args);
        }
        catch (CudaException e)
        {
            throw new InvalidOperationException($"{kernel.Name} ({blocks} blocks of {wg} threads; {Shape.Kind} k={Shape.K} t={Shape.T} m={Shape.MaxNnz}): {e.Message}", e);
        }
    }

    public override void Forward(DeviceModel model, DeviceBatch batch, DeviceBuffer<float> yhat, DeviceBuffer<float>? attention)
    {
        int rows = batch.Rows;
        if (rows == 0) return;
        if (yhat.Length < rows) throw new ArgumentException($"yhat holds {yhat.Length} rows, the batch has {rows}", nameof(yhat));
        bool wantAttention = attention is not null && Shape.Kind == ModelKind.Afm;
        if (wantAttention && attention!.Length < (long)rows * Shape.Pairs)
            throw new ArgumentException($"attention holds {attention.Length} values, the batch needs {(long)rows * Shape.Pairs}", nameof(attention));
        Launch(_forward, (long)rows * Config.WorkGroupSize,
            B(model.Dense), B(model.V), B(model.Linear), B(batch.Ids), B(batch.Values), B(batch.Counts),
            rows, B(yhat), wantAttention ? B(attention) : _unused, wantAttention ? 1 : 0);
    }

    public override void ForwardBackward(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in StepParams step)
    {
        Launch(_forwardBackward, (long)Config.Groups * Config.WorkGroupSize,
            B(model.Dense), B(model.V), B(model.Linear), B(batch.Ids), B(batch.Values), B(batch.Counts), B(batch.Labels),
            batch.Rows, B(work.Yhat), B(work.Gradient), B(work.Loss), B(work.EmbeddingGrad), B(work.Partials),
            (int)step.Loss, step.Keep0, step.Keep1, step.Seed, step.Scale);
    }

    public override void ReduceDense(TrainWorkspace work)
    {
        Launch(_reduce, Shape.DenseSize + 1, B(work.Partials), work.PartialCount, B(work.DenseGrad), B(work.LossSum));
    }

    public override void UpdateSparse(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in OptimizerParams opt)
    {
        if (batch.UniqueCount == 0) return;
        CheckOptimizer(opt);
        Launch(_sparse, (long)batch.UniqueCount * Shape.K,
            B(model.V), B(model.Linear), B(model.VState1), B(model.VState2), B(model.LinearState1), B(model.LinearState2),
            B(work.EmbeddingGrad), B(work.Gradient), B(batch.Values), B(batch.UniqueIds), B(batch.UniqueOffsets), B(batch.Occurrences),
            batch.UniqueCount, (int)opt.Kind, opt.LearningRate, opt.Epsilon, opt.Beta1, opt.Beta2, opt.AdamC1, opt.AdamC2);
    }

    public override void UpdateDense(DeviceModel model, TrainWorkspace work, in OptimizerParams opt)
    {
        CheckOptimizer(opt);
        Launch(_dense, Shape.DenseSize,
            B(model.Dense), B(work.DenseGrad), B(model.DenseState1), B(model.DenseState2), opt.Lambda,
            (int)opt.Kind, opt.LearningRate, opt.Epsilon, opt.Beta1, opt.Beta2, opt.AdamC1, opt.AdamC2);
    }

    private static void CheckOptimizer(in OptimizerParams opt)
    {
        if (opt.Kind is not (OptimizerKind.Adagrad or OptimizerKind.Adam or OptimizerKind.Sgd))
            throw new ArgumentOutOfRangeException(nameof(opt), opt.Kind, "unknown optimizer");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _unused.Dispose();
    }
}
