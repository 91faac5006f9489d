using Afm.Gpu.Accelerators;

namespace Afm.Gpu.Kernels;

/// <summary>
/// The AFM/FM kernel set of one accelerator, specialised for one <see cref="ModelShape"/>.
/// A training step is <see cref="ForwardBackward"/>, <see cref="ReduceDense"/>,
/// <see cref="UpdateSparse"/>, <see cref="UpdateDense"/>; inference is <see cref="Forward"/>.
/// </summary>
public abstract class AfmKernels : IDisposable
{
    /// <summary>Creates the kernel set.</summary>
    protected AfmKernels(Accelerator accelerator, ModelShape shape)
    {
        Accelerator = accelerator;
        Shape = shape;
    }

    /// <summary>The accelerator the kernels run on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The shape the kernels are specialised for.</summary>
    public ModelShape Shape { get; }

    /// <summary>
    /// How the training kernel is laid out on the device, in one line (for example the grid, rows per block and the
    /// compiled kernel's registers on a GPU); empty when there is nothing to tell.
    /// </summary>
    public virtual string LaunchPlan => "";

    /// <summary>How many partial dense-gradient blocks <see cref="ForwardBackward"/> writes.</summary>
    protected abstract int PartialCount { get; }

    /// <summary>Allocates parameters and the state of <paramref name="optimizer"/>.</summary>
    public DeviceModel CreateModel(OptimizerKind optimizer = OptimizerKind.Sgd) => new(Accelerator, Shape, optimizer);

    /// <summary>Allocates a batch.</summary>
    public DeviceBatch CreateBatch() => new(Accelerator, Shape);

    /// <summary>Allocates the training step's buffers.</summary>
    public TrainWorkspace CreateWorkspace() => new(Accelerator, Shape, PartialCount);

    /// <summary>
    /// Inference: raw scores ŷ per row into <paramref name="yhat"/>; when <paramref name="attention"/>
    /// is given (rows x Pairs), each row's attention weights over its real pairs (0 elsewhere).
    /// </summary>
    public abstract void Forward(DeviceModel model, DeviceBatch batch, DeviceBuffer<float> yhat, DeviceBuffer<float>? attention);

    /// <summary>
    /// Fused forward and backward with dropout: writes ŷ, dL/dŷ, loss per row, dL/de per slot and
    /// per-block partial dense gradients. Nothing of size rows x pairs x (k or t) is stored.
    /// </summary>
    public abstract void ForwardBackward(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in StepParams step);

    /// <summary>Sums the partial blocks into <see cref="TrainWorkspace.DenseGrad"/> and adds the loss to <see cref="TrainWorkspace.LossSum"/>.</summary>
    public abstract void ReduceDense(TrainWorkspace work);

    /// <summary>
    /// For every distinct id of the batch: gathers dV = Σ de x and dw = Σ g x over its slots and
    /// applies the optimizer to that embedding row and linear weight. Deterministic, no atomics.
    /// </summary>
    public abstract void UpdateSparse(DeviceModel model, DeviceBatch batch, TrainWorkspace work, in OptimizerParams opt);

    /// <summary>
    /// Whether <see cref="GatherSparse"/> and <see cref="ApplySparse"/> are available: the sparse update in two
    /// halves, so that the per-id gradients of several processes can be exchanged and merged between them.
    /// </summary>
    public virtual bool SupportsGradientExchange => false;

    /// <summary>
    /// The first half of <see cref="UpdateSparse"/>: for the batch's distinct id u (in the order of
    /// <see cref="DeviceBatch.UniqueIds"/>), writes dV = Σ de x at <c>grads[u (k + 1) ..]</c> and dw = Σ g x after it.
    /// </summary>
    public virtual void GatherSparse(DeviceBatch batch, TrainWorkspace work, DeviceBuffer<float> grads) =>
        throw new NotSupportedException($"{Accelerator.Descriptor.Name}: these kernels do not split the sparse update (data-parallel training needs it)");

    /// <summary>
    /// The second half of <see cref="UpdateSparse"/>: applies the optimizer to the embedding row and linear weight of
    /// each of the <paramref name="count"/> distinct <paramref name="ids"/>, with the gradients laid out as
    /// <see cref="GatherSparse"/> writes them. Gathering and applying one batch gives what <see cref="UpdateSparse"/> does, bit for bit.
    /// </summary>
    public virtual void ApplySparse(DeviceModel model, DeviceBuffer<int> ids, DeviceBuffer<float> grads, int count, in OptimizerParams opt) =>
        throw new NotSupportedException($"{Accelerator.Descriptor.Name}: these kernels do not split the sparse update (data-parallel training needs it)");

    /// <summary>Applies the optimizer to the dense parameters, adding 2 λ W to W's gradient. For FM, p stays fixed.</summary>
    public abstract void UpdateDense(DeviceModel model, TrainWorkspace work, in OptimizerParams opt);

    /// <inheritdoc />
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases kernel objects.</summary>
    protected virtual void Dispose(bool disposing) { }
}
