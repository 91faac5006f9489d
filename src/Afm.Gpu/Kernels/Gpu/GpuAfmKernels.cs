using Afm.Gpu.Accelerators;
using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels.Gpu;

/// <summary>One argument of a GPU kernel launch: a device buffer (null = an unused placeholder) or a 32-bit scalar.</summary>
internal readonly struct GpuArg
{
    public enum ArgKind : byte { Buffer, Int, UInt, Float }

    public ArgKind Kind { get; private init; }
    /// <summary>The <see cref="DeviceBuffer{T}"/> (or null) of a buffer argument.</summary>
    public object? Buffer { get; private init; }
    public int Int { get; private init; }
    public uint UInt { get; private init; }
    public float Float { get; private init; }

    public static GpuArg Buf<T>(DeviceBuffer<T>? buffer) where T : unmanaged => new() { Kind = ArgKind.Buffer, Buffer = buffer };
    public static implicit operator GpuArg(int value) => new() { Kind = ArgKind.Int, Int = value };
    public static implicit operator GpuArg(uint value) => new() { Kind = ArgKind.UInt, UInt = value };
    public static implicit operator GpuArg(float value) => new() { Kind = ArgKind.Float, Float = value };
}

/// <summary>
/// The launches of the single-source GPU kernels (Kernels/Gpu/afm_kernels.cu.cl), written once: argument
/// order, checks and launch sizes. OpenCL and CUDA only bind the arguments and queue the launch.
/// </summary>
internal abstract class GpuAfmKernels : AfmKernels
{
    protected GpuAfmKernels(Accelerator accelerator, ModelShape shape, GpuKernelConfig config) : base(accelerator, shape) => Config = config;

    /// <summary>The specialisation in use (work-group size, tile).</summary>
    internal GpuKernelConfig Config { get; }

    protected override int PartialCount => Config.Groups;

    /// <inheritdoc />
    public override string LaunchPlan =>
        $"{GpuKernelSource.ForwardBackward}: {Config.Groups} groups of {Config.WorkGroupSize} x {Config.RowsPerGroup} rows" +
        (Shape.Kind == Model.ModelKind.Afm ? $", tile {Config.TilePairs} pairs" : "") +
        $", {Config.LocalBytes:N0} B local" + (Config.GlobalAccumulator ? ", dense accumulator in global memory" : "");

    /// <summary>Binds <paramref name="args"/> to kernel <paramref name="kernel"/> and queues enough work-groups to cover <paramref name="workItems"/>.</summary>
    protected abstract void Launch(string kernel, long workItems, ReadOnlySpan<GpuArg> args);

    private static GpuArg B<T>(DeviceBuffer<T>? b) where T : unmanaged => GpuArg.Buf(b);

    public override void Forward(DeviceModel model, DeviceBatch batch, DeviceBuffer<float> yhat, DeviceBuffer<float>? attention)
    {
        int rows = batch.Rows;
        if (rows == 0) return;
        if (yhat.Length < rows) throw new ArgumentException($"yhat holds {yhat.Length} rows, the batch has {rows}", nameof(yhat));
        bool wantAttention = attention is not null && Shape.Kind == ModelKind.Afm;
        if (wantAttention && attention!.Length < (long)rows * Shape.Pairs)
            throw new ArgumentException($"attention holds {attention.Length} values, the batch needs {(long)rows * Shape.Pairs}", nameof(attention));
        Launch(GpuKernelSource.Forward, (long)rows * Config.WorkGroupSize,
        [
            B(model.Dense), B(model.V), B(model.Linear), B(batch.Ids), B(batch.Values), B(batch.Counts),
            rows, B(yhat), B(wantAttention ? attention : null), wantAttention ? 1 : 0,
        ]);
    }

    public override void ForwardBackward(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in StepParams step) =>
        Launch(GpuKernelSource.ForwardBackward, (long)Config.Groups * Config.WorkGroupSize,
        [
            B(model.Dense), B(model.V), B(model.Linear), B(batch.Ids), B(batch.Values), B(batch.Counts), B(batch.Labels),
            batch.Rows, B(work.Yhat), B(work.Gradient), B(work.Loss), B(work.EmbeddingGrad), B(work.Partials),
            (int)step.Loss, step.Keep0, step.Keep1, step.Seed, step.Scale,
        ]);

    public override void ReduceDense(TrainWorkspace work) =>
        Launch(GpuKernelSource.ReduceDense, Shape.DenseSize + 1, [B(work.Partials), work.PartialCount, B(work.DenseGrad), B(work.LossSum)]);

    public override void UpdateSparse(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in OptimizerParams opt)
    {
        if (batch.UniqueCount == 0) return;
        CheckOptimizer(opt);
        Launch(GpuKernelSource.UpdateSparse, (long)batch.UniqueCount * Shape.K,
        [
            B(model.V), B(model.Linear), B(model.VState1), B(model.VState2), B(model.LinearState1), B(model.LinearState2),
            B(work.EmbeddingGrad), B(work.Gradient), B(batch.Values), B(batch.UniqueIds), B(batch.UniqueOffsets), B(batch.Occurrences),
            batch.UniqueCount, (int)opt.Kind, opt.LearningRate, opt.Epsilon, opt.Beta1, opt.Beta2, opt.AdamC1, opt.AdamC2,
        ]);
    }

    public override void UpdateDense(DeviceModel model, TrainWorkspace work, in OptimizerParams opt)
    {
        CheckOptimizer(opt);
        Launch(GpuKernelSource.UpdateDense, Shape.DenseSize,
        [
            B(model.Dense), B(work.DenseGrad), B(model.DenseState1), B(model.DenseState2), opt.Lambda,
            (int)opt.Kind, opt.LearningRate, opt.Epsilon, opt.Beta1, opt.Beta2, opt.AdamC1, opt.AdamC2,
        ]);
    }

    private static void CheckOptimizer(in OptimizerParams opt)
    {
        if (opt.Kind is not (OptimizerKind.Adagrad or OptimizerKind.Adam or OptimizerKind.Sgd))
            throw new ArgumentOutOfRangeException(nameof(opt), opt.Kind, "unknown optimizer");
    }
}
