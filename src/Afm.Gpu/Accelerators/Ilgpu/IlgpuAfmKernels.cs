using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Ilgpu;
using Afm.Gpu.Model;
using ILGPU;
using ILGPU.Runtime;

namespace Afm.Gpu.Accelerators.Ilgpu;

/// <summary>
/// The ILGPU kernels (Kernels/Ilgpu) on one accelerator, specialised for one shape: k, t, the slots per row, the
/// backward tile, the work-group size and where the dense accumulator lives are compile-time constants of the
/// kernels (<see cref="IKernelShape"/>). Sizes and tiles come from <see cref="KernelPlan.Configure"/>.
/// </summary>
internal sealed class IlgpuAfmKernels : AfmKernels
{
    private readonly IlgpuAccelerator _acc;
    private readonly Action<KernelConfig, ModelViews, BatchViews, ArrayView<float>, ArrayView<float>, int> _forward;
    private readonly Action<KernelConfig, ModelViews, BatchViews, TrainViews, StepArgs> _train;
    private readonly Action<Index1D, ArrayView<float>, int, int, ArrayView<float>, ArrayView<float>> _reduce;
    private readonly Action<Index1D, SparseViews, OptimizerArgs> _sparse, _applySparse;
    private readonly Action<Index1D, SparseViews> _gatherSparse;
    private readonly Action<Index1D, DenseViews, OptimizerArgs> _dense;
    private readonly IlgpuBuffer<float> _unused;
    private readonly int _sharedFloats;

    public IlgpuAfmKernels(IlgpuAccelerator accelerator, ModelShape shape) : base(accelerator, shape)
    {
        _acc = accelerator;
        Config = Plan(shape, accelerator.WorkGroupSize, accelerator.Native.MaxSharedMemoryPerGroup, accelerator.TrainingGroups, accelerator.MaxTilePairs);
        _sharedFloats = Layout(Config).Total;
        var shapeType = ShapeType(Config);
        lock (accelerator.Gate)
        {
            var native = accelerator.Native;
            // the group size is fixed: a CUDA compiler may then give each work-item up to 65536 / size registers
            var fixedGroup = Specialization(Config);
            _forward = native.LoadStreamKernel(Bind<Action<ModelViews, BatchViews, ArrayView<float>, ArrayView<float>, int>>(ForwardName(shape), shapeType), fixedGroup);
            _train = native.LoadStreamKernel(Bind<Action<ModelViews, BatchViews, TrainViews, StepArgs>>(nameof(GpuKernels.Train), shapeType), fixedGroup);
            _reduce = native.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, ArrayView<float>, ArrayView<float>>(GpuKernels.ReduceDense);
            _sparse = native.LoadAutoGroupedStreamKernel<Index1D, SparseViews, OptimizerArgs>(GpuKernels.UpdateSparse);
            _gatherSparse = native.LoadAutoGroupedStreamKernel<Index1D, SparseViews>(GpuKernels.GatherSparse);
            _applySparse = native.LoadAutoGroupedStreamKernel<Index1D, SparseViews, OptimizerArgs>(GpuKernels.ApplySparse);
            _dense = native.LoadAutoGroupedStreamKernel<Index1D, DenseViews, OptimizerArgs>(GpuKernels.UpdateDense);
            _unused = new IlgpuBuffer<float>(native, 1);
        }
    }

    /// <summary>The sizes in use (work-group, rows per group, tile).</summary>
    internal GpuKernelConfig Config { get; }

    protected override int PartialCount => Config.Groups;

    /// <inheritdoc />
    public override string LaunchPlan =>
        $"ILGPU train: {Config.Groups} groups of {Config.WorkGroupSize} x {Config.RowsPerGroup} rows" +
        (Shape.Kind == ModelKind.Afm ? $", tile {Config.TilePairs} pairs" : "") +
        $", {_sharedFloats * 4L:N0} B shared" + (Config.GlobalAccumulator ? ", dense accumulator in global memory" : "");

    /// <summary>Sizes for <paramref name="shape"/> (<see cref="KernelPlan.Configure"/>), checked against the shared memory.</summary>
    internal static GpuKernelConfig Plan(ModelShape shape, int workGroupSize, long sharedBytes, int groups, int maxTilePairs = 0)
    {
        long cap = Math.Min(sharedBytes, KernelPlan.LocalMemoryCap);
        var config = KernelPlan.Configure(shape, workGroupSize, cap, groups, maxTilePairs);
        long need = 4L * Layout(config).Total;
        if (need > cap)
            throw new NotSupportedException($"{KernelPlan.Describe(shape)} needs {need} bytes of shared memory per work-group; the device offers {cap}");
        return config;
    }

    /// <summary>The name of the inference kernel of a shape's model kind.</summary>
    internal static string ForwardName(ModelShape shape) => shape.Kind == ModelKind.Fm ? nameof(GpuKernels.ForwardFm) : nameof(GpuKernels.ForwardAfm);

    /// <summary>The launch bound the kernels are compiled for: exactly the configuration's group size.</summary>
    internal static KernelSpecialization Specialization(GpuKernelConfig c) => new(c.WorkGroupSize, null);

    /// <summary>The shared-memory layout of a configuration.</summary>
    internal static SharedLayout Layout(GpuKernelConfig c) =>
        new(c.Shape.K, c.Shape.Kind == ModelKind.Fm ? 0 : c.Shape.T, c.Shape.MaxNnz, c.TilePairs, c.WorkGroupSize, c.GlobalAccumulator);

    /// <summary>The <see cref="IKernelShape"/> type of a configuration.</summary>
    internal static Type ShapeType(GpuKernelConfig c) =>
        Constants.Shape(c.Shape.K, c.Shape.Kind == ModelKind.Fm ? 0 : c.Shape.T, c.Shape.MaxNnz, c.TilePairs, c.WorkGroupSize, c.GlobalAccumulator);

    /// <summary>The generic kernel <paramref name="name"/> closed over <paramref name="shapeType"/>.</summary>
    [UnconditionalSuppressMessage("Trimming", "IL2060", Justification = "The kernels' generic parameter is a struct built from kept constant types.")]
    [UnconditionalSuppressMessage("AOT", "IL3050", Justification = "ILGPU needs Reflection.Emit: no native AOT.")]
    internal static MethodInfo KernelMethod(string name, Type shapeType) =>
        typeof(GpuKernels).GetMethod(name, BindingFlags.Public | BindingFlags.Static)!.MakeGenericMethod(shapeType);

    private static TDelegate Bind<TDelegate>(string name, Type shapeType) where TDelegate : Delegate =>
        (TDelegate)Delegate.CreateDelegate(typeof(TDelegate), KernelMethod(name, shapeType));

    /// <summary>A buffer as a kernel argument; an absent one (the optimizer state SGD has none of) is a one-float placeholder.</summary>
    private ArrayView<float> V(DeviceBuffer<float>? b) => b switch
    {
        null => _unused.View,
        IlgpuBuffer<float> f => f.View,
        _ => throw new ArgumentException("the buffer belongs to another accelerator"),
    };

    private static ArrayView<int> V(DeviceBuffer<int> b) => b is IlgpuBuffer<int> i ? i.View : throw new ArgumentException("the buffer belongs to another accelerator");

    private ModelViews Views(DeviceModel m) => new() { Dense = V(m.Dense), V = V(m.V), Linear = V(m.Linear) };

    private BatchViews Views(DeviceBatch b) => new()
    {
        Ids = V(b.Ids), Values = V(b.Values), Counts = V(b.Counts), Labels = V(b.Labels), Rows = b.Rows,
    };

    private KernelConfig GroupConfig(int groups) =>
        new(groups, Config.WorkGroupSize, SharedMemoryConfig.RequestDynamic<float>(_sharedFloats));

    public override void Forward(DeviceModel model, DeviceBatch batch, DeviceBuffer<float> yhat, DeviceBuffer<float>? attention)
    {
        int rows = batch.Rows;
        if (rows == 0) return;
        if (yhat.Length < rows) throw new ArgumentException($"yhat holds {yhat.Length} rows, the batch has {rows}", nameof(yhat));
        bool wantAttention = attention is not null && Shape.Kind == ModelKind.Afm;
        if (wantAttention && attention!.Length < (long)rows * Shape.Pairs)
            throw new ArgumentException($"attention holds {attention.Length} values, the batch needs {(long)rows * Shape.Pairs}", nameof(attention));
        lock (_acc.Gate)
            _forward(GroupConfig(rows), Views(model), Views(batch), V(yhat), V(wantAttention ? attention : null), wantAttention ? 1 : 0);
    }

    public override void ForwardBackward(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in StepParams step)
    {
        var w = new TrainViews
        {
            Yhat = V(work.Yhat), Gradient = V(work.Gradient), Loss = V(work.Loss), EmbeddingGrad = V(work.EmbeddingGrad), Partials = V(work.Partials),
        };
        var s = new StepArgs
        {
            Loss = (int)step.Loss, Keep0 = step.Keep0, Keep1 = step.Keep1, Seed = step.Seed, Scale = step.Scale, RowsPerGroup = Config.RowsPerGroup, RowOffset = step.RowOffset,
        };
        lock (_acc.Gate)
        {
            // groups past the batch write empty partials
            _train(GroupConfig(Config.Groups), Views(model), Views(batch), w, s);
        }
    }

    public override void ReduceDense(TrainWorkspace work)
    {
        lock (_acc.Gate)
            _reduce(Shape.DenseSize + 1, V(work.Partials), work.PartialCount, Shape.DenseSize, V(work.DenseGrad), V(work.LossSum));
    }

    public override void UpdateSparse(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in OptimizerParams opt)
    {
        if (batch.UniqueCount == 0) return;
        CheckOptimizer(opt);
        var s = Sparse(Gather(batch, work), model);
        lock (_acc.Gate)
            _sparse(batch.UniqueCount * Shape.K, s, OptimizerArgs.From(opt));
    }

    public override bool SupportsGradientExchange => true;

    public override void GatherSparse(DeviceBatch batch, TrainWorkspace work, DeviceBuffer<float> grads)
    {
        if (batch.UniqueCount == 0) return;
        var s = Gather(batch, work);
        s.Grads = V(grads);
        lock (_acc.Gate)
            _gatherSparse(batch.UniqueCount * (Shape.K + 1), s);
    }

    public override void ApplySparse(DeviceModel model, DeviceBuffer<int> ids, DeviceBuffer<float> grads, int count, in OptimizerParams opt)
    {
        if (count == 0) return;
        CheckOptimizer(opt);
        var s = Sparse(new SparseViews { UniqueIds = V(ids), Grads = V(grads), Unique = count, K = Shape.K, M = Shape.MaxNnz }, model);
        lock (_acc.Gate)
            _applySparse(count * (Shape.K + 1), s, OptimizerArgs.From(opt));
    }

    /// <summary>The views the sparse gather reads (the other views unset).</summary>
    private SparseViews Gather(DeviceBatch batch, TrainWorkspace work) => new()
    {
        EmbeddingGrad = V(work.EmbeddingGrad), Gradient = V(work.Gradient), Values = V(batch.Values), UniqueIds = V(batch.UniqueIds),
        UniqueOffsets = V(batch.UniqueOffsets), Occurrences = V(batch.Occurrences), Unique = batch.UniqueCount, K = Shape.K, M = Shape.MaxNnz,
    };

    /// <summary><paramref name="s"/> with the parameters and optimizer state the sparse update writes.</summary>
    private SparseViews Sparse(SparseViews s, DeviceModel model)
    {
        s.V = V(model.V);
        s.Linear = V(model.Linear);
        s.VState1 = V(model.VState1);
        s.VState2 = V(model.VState2);
        s.LinearState1 = V(model.LinearState1);
        s.LinearState2 = V(model.LinearState2);
        return s;
    }

    public override void UpdateDense(DeviceModel model, TrainWorkspace work, in OptimizerParams opt)
    {
        CheckOptimizer(opt);
        bool fm = Shape.Kind == ModelKind.Fm;
        var d = new DenseViews
        {
            Dense = V(model.Dense), Gradient = V(work.DenseGrad), State1 = V(model.DenseState1), State2 = V(model.DenseState2),
            Size = Shape.DenseSize, OffsetB = Shape.OffsetB, FixedFrom = fm ? Shape.OffsetP : 0, FixedTo = fm ? Shape.OffsetW0 : 0,
        };
        lock (_acc.Gate)
            _dense(Shape.DenseSize, d, OptimizerArgs.From(opt));
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
