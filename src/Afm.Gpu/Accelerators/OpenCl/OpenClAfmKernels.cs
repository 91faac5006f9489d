using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Model;
using Afm.Gpu.Native.OpenCL;
using NativeBuffer = Afm.Gpu.Native.OpenCL.OpenClBuffer;

namespace Afm.Gpu.Accelerators.OpenCl;

/// <summary>
/// The GPU kernels (Kernels/Gpu/afm_kernels.cu.cl) on an OpenCL device, specialised for one shape.
/// Launches are asynchronous on the device's in-order queue; buffer reads wait for them.
/// </summary>
internal sealed class OpenClAfmKernels : AfmKernels
{
    private readonly object _gate = new();
    private readonly OpenClKernel _forward, _forwardBackward, _reduce, _sparse, _dense;
    private readonly NativeBuffer _unused;

    public OpenClAfmKernels(OpenClAccelerator accelerator, ModelShape shape) : base(accelerator, shape)
    {
        var program = accelerator.Program(shape, out var config);
        Config = config;
        _forward = program.CreateKernel(GpuKernelSource.Forward);
        _forwardBackward = program.CreateKernel(GpuKernelSource.ForwardBackward);
        _reduce = program.CreateKernel(GpuKernelSource.ReduceDense);
        _sparse = program.CreateKernel(GpuKernelSource.UpdateSparse);
        _dense = program.CreateKernel(GpuKernelSource.UpdateDense);
        _unused = accelerator.Device.Allocate<float>(1);
    }

    /// <summary>The specialisation in use (work-group size, tile).</summary>
    internal GpuKernelConfig Config { get; }

    protected override int PartialCount => Config.Groups;

    private static NativeBuffer B<T>(DeviceBuffer<T> b) where T : unmanaged =>
        b is OpenClBuffer<T> cl ? cl.Native : throw new ArgumentException("the buffer belongs to another accelerator");

    private NativeBuffer B(DeviceBuffer<float>? b) => b is null ? _unused : B<float>(b);

    private void Launch(OpenClKernel kernel, long workItems)
    {
        nuint wg = (nuint)Config.WorkGroupSize;
        nuint global = ((nuint)workItems + wg - 1) / wg * wg;
        kernel.Launch([global], [wg]);
    }

    public override void Forward(DeviceModel model, DeviceBatch batch, DeviceBuffer<float> yhat, DeviceBuffer<float>? attention)
    {
        int rows = batch.Rows;
        if (rows == 0) return;
        if (yhat.Length < rows) throw new ArgumentException($"yhat holds {yhat.Length} rows, the batch has {rows}", nameof(yhat));
        bool wantAttention = attention is not null && Shape.Kind == ModelKind.Afm;
        if (wantAttention && attention!.Length < (long)rows * Shape.Pairs)
            throw new ArgumentException($"attention holds {attention.Length} values, the batch needs {(long)rows * Shape.Pairs}", nameof(attention));
        lock (_gate)
        {
            var k = _forward;
            k.SetArg(0, B(model.Dense));
            k.SetArg(1, B(model.V));
            k.SetArg(2, B(model.Linear));
            k.SetArg(3, B(batch.Ids));
            k.SetArg(4, B(batch.Values));
            k.SetArg(5, B(batch.Counts));
            k.SetArg(6, rows);
            k.SetArg(7, B(yhat));
            k.SetArg(8, wantAttention ? B(attention) : _unused);
            k.SetArg(9, wantAttention ? 1 : 0);
            Launch(k, (long)rows * Config.WorkGroupSize);
        }
    }

    public override void ForwardBackward(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in StepParams step)
    {
        lock (_gate)
        {
            var k = _forwardBackward;
            k.SetArg(0, B(model.Dense));
            k.SetArg(1, B(model.V));
            k.SetArg(2, B(model.Linear));
            k.SetArg(3, B(batch.Ids));
            k.SetArg(4, B(batch.Values));
            k.SetArg(5, B(batch.Counts));
            k.SetArg(6, B(batch.Labels));
            k.SetArg(7, batch.Rows);
            k.SetArg(8, B(work.Yhat));
            k.SetArg(9, B(work.Gradient));
            k.SetArg(10, B(work.Loss));
            k.SetArg(11, B(work.EmbeddingGrad));
            k.SetArg(12, B(work.Partials));
            k.SetArg(13, (int)step.Loss);
            k.SetArg(14, step.Keep0);
            k.SetArg(15, step.Keep1);
            k.SetArg(16, step.Seed);
            k.SetArg(17, step.Scale);
            Launch(k, (long)Config.Groups * Config.WorkGroupSize);
        }
    }

    public override void ReduceDense(TrainWorkspace work)
    {
        lock (_gate)
        {
            var k = _reduce;
            k.SetArg(0, B(work.Partials));
            k.SetArg(1, work.PartialCount);
            k.SetArg(2, B(work.DenseGrad));
            k.SetArg(3, B(work.LossSum));
            Launch(k, Shape.DenseSize + 1);
        }
    }

    public override void UpdateSparse(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in OptimizerParams opt)
    {
        if (batch.UniqueCount == 0) return;
        lock (_gate)
        {
            var k = _sparse;
            k.SetArg(0, B(model.V));
            k.SetArg(1, B(model.Linear));
            k.SetArg(2, B(model.VState1));
            k.SetArg(3, B(model.VState2));
            k.SetArg(4, B(model.LinearState1));
            k.SetArg(5, B(model.LinearState2));
            k.SetArg(6, B(work.EmbeddingGrad));
            k.SetArg(7, B(work.Gradient));
            k.SetArg(8, B(batch.Values));
            k.SetArg(9, B(batch.UniqueIds));
            k.SetArg(10, B(batch.UniqueOffsets));
            k.SetArg(11, B(batch.Occurrences));
            k.SetArg(12, batch.UniqueCount);
            SetOptimizer(k, 13, opt);
            Launch(k, (long)batch.UniqueCount * Shape.K);
        }
    }

    public override void UpdateDense(DeviceModel model, TrainWorkspace work, in OptimizerParams opt)
    {
        lock (_gate)
        {
            var k = _dense;
            k.SetArg(0, B(model.Dense));
            k.SetArg(1, B(work.DenseGrad));
            k.SetArg(2, B(model.DenseState1));
            k.SetArg(3, B(model.DenseState2));
            k.SetArg(4, opt.Lambda);
            SetOptimizer(k, 5, opt);
            Launch(k, Shape.DenseSize);
        }
    }

    /// <summary>Arguments kind, lr, eps, β1, β2, Adam's c1 and c2, from position <paramref name="at"/>.</summary>
    private static void SetOptimizer(OpenClKernel k, int at, in OptimizerParams opt)
    {
        if (opt.Kind is not (OptimizerKind.Adagrad or OptimizerKind.Adam or OptimizerKind.Sgd))
            throw new ArgumentOutOfRangeException(nameof(opt), opt.Kind, "unknown optimizer");
        k.SetArg(at, (int)opt.Kind);
        k.SetArg(at + 1, opt.LearningRate);
        k.SetArg(at + 2, opt.Epsilon);
        k.SetArg(at + 3, opt.Beta1);
        k.SetArg(at + 4, opt.Beta2);
        k.SetArg(at + 5, opt.AdamC1);
        k.SetArg(at + 6, opt.AdamC2);
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        foreach (var k in new[] { _forward, _forwardBackward, _reduce, _sparse, _dense }) k.Dispose();
        _unused.Dispose();
    }
}
