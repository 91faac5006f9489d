using Afm.Gpu.Accelerators;
using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels;

/// <summary>
/// A model's parameters and optimizer state on an accelerator. Dense parameters are packed as
/// described by <see cref="ModelShape.DenseSize"/>; embeddings V (n x k) and linear weights w (n)
/// stay in buffers of their own so that only the rows a batch touches are read and updated.
/// </summary>
public sealed class DeviceModel : IDisposable
{
    internal DeviceModel(Accelerator accelerator, ModelShape shape, OptimizerKind optimizer)
    {
        Shape = shape;
        long n = shape.FeatureCount, k = shape.K;
        Dense = accelerator.Allocate<float>(shape.DenseSize);
        V = accelerator.Allocate<float>(n * k);
        Linear = accelerator.Allocate<float>(n);
        int moments = optimizer switch { OptimizerKind.Adam => 2, OptimizerKind.Adagrad => 1, _ => 0 };
        if (moments >= 1)
        {
            DenseState1 = accelerator.Allocate<float>(shape.DenseSize);
            VState1 = accelerator.Allocate<float>(n * k);
            LinearState1 = accelerator.Allocate<float>(n);
        }
        if (moments >= 2)
        {
            DenseState2 = accelerator.Allocate<float>(shape.DenseSize);
            VState2 = accelerator.Allocate<float>(n * k);
            LinearState2 = accelerator.Allocate<float>(n);
        }
    }

    /// <summary>The shape the buffers were sized for.</summary>
    public ModelShape Shape { get; }
    /// <summary>Packed [W | b | h | p | w0].</summary>
    public DeviceBuffer<float> Dense { get; }
    /// <summary>Embeddings, n x k.</summary>
    public DeviceBuffer<float> V { get; }
    /// <summary>Linear weights, n.</summary>
    public DeviceBuffer<float> Linear { get; }
    /// <summary>First optimizer moment (Adagrad's accumulator, Adam's m) of the dense vector, or null.</summary>
    public DeviceBuffer<float>? DenseState1 { get; }
    /// <summary>Second moment (Adam's v) of the dense vector, or null.</summary>
    public DeviceBuffer<float>? DenseState2 { get; }
    /// <summary>First moment of V, or null.</summary>
    public DeviceBuffer<float>? VState1 { get; }
    /// <summary>Second moment of V, or null.</summary>
    public DeviceBuffer<float>? VState2 { get; }
    /// <summary>First moment of w, or null.</summary>
    public DeviceBuffer<float>? LinearState1 { get; }
    /// <summary>Second moment of w, or null.</summary>
    public DeviceBuffer<float>? LinearState2 { get; }

    /// <summary>Copies a host model's parameters to the device.</summary>
    public void Upload(AfmModel model)
    {
        CheckShape(model);
        Dense.CopyFrom(Pack(model));
        V.CopyFrom(model.V);
        Linear.CopyFrom(model.Linear);
    }

    /// <summary>Copies the device parameters into a host model of the same shape.</summary>
    public void Download(AfmModel model)
    {
        CheckShape(model);
        var dense = Dense.ToArray();
        Unpack(dense, model);
        V.CopyTo(model.V);
        Linear.CopyTo(model.Linear);
    }

    /// <summary>Packs a model's dense parameters as [W | b | h | p | w0].</summary>
    public float[] Pack(AfmModel model)
    {
        var d = new float[Shape.DenseSize];
        model.AttnW.CopyTo(d, 0);
        model.AttnB.CopyTo(d, Shape.OffsetB);
        model.AttnH.CopyTo(d, Shape.OffsetH);
        model.Proj.CopyTo(d, Shape.OffsetP);
        d[Shape.OffsetW0] = model.W0[0];
        return d;
    }

    /// <summary>Unpacks a dense vector into a model.</summary>
    public void Unpack(ReadOnlySpan<float> d, AfmModel model)
    {
        d[..Shape.OffsetB].CopyTo(model.AttnW);
        d.Slice(Shape.OffsetB, Shape.T).CopyTo(model.AttnB);
        d.Slice(Shape.OffsetH, Shape.T).CopyTo(model.AttnH);
        d.Slice(Shape.OffsetP, Shape.K).CopyTo(model.Proj);
        model.W0[0] = d[Shape.OffsetW0];
    }

    private void CheckShape(AfmModel model)
    {
        if (model.Kind != Shape.Kind || model.FeatureCount != Shape.FeatureCount || model.K != Shape.K || model.T != Shape.T)
            throw new ArgumentException($"model ({model.Kind}, n={model.FeatureCount}, k={model.K}, t={model.T}) does not match the device shape {Shape}", nameof(model));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var b in new[] { Dense, V, Linear, DenseState1, DenseState2, VState1, VState2, LinearState1, LinearState2 })
            b?.Dispose();
    }
}

/// <summary>
/// One mini-batch on the device: rows padded to <see cref="ModelShape.MaxNnz"/> slots, plus, for
/// training, the batch's distinct feature ids with the slots that hold each (a CSR list built on the
/// host), which lets the embedding-gradient scatter run one row per worker with no atomics.
/// </summary>
public sealed class DeviceBatch : IDisposable
{
    internal DeviceBatch(Accelerator accelerator, ModelShape shape)
    {
        Shape = shape;
        long slots = (long)shape.BatchCapacity * shape.MaxNnz;
        Ids = accelerator.Allocate<int>(slots);
        Values = accelerator.Allocate<float>(slots);
        Counts = accelerator.Allocate<int>(shape.BatchCapacity);
        Labels = accelerator.Allocate<float>(shape.BatchCapacity);
        UniqueIds = accelerator.Allocate<int>(slots);
        UniqueOffsets = accelerator.Allocate<int>(slots + 1);
        Occurrences = accelerator.Allocate<int>(slots);
    }

    /// <summary>The shape the buffers were sized for.</summary>
    public ModelShape Shape { get; }
    /// <summary>Feature id per slot, [rows x MaxNnz] (padding: 0).</summary>
    public DeviceBuffer<int> Ids { get; }
    /// <summary>Feature value per slot (padding: 0).</summary>
    public DeviceBuffer<float> Values { get; }
    /// <summary>Non-zeros per row.</summary>
    public DeviceBuffer<int> Counts { get; }
    /// <summary>Label per row.</summary>
    public DeviceBuffer<float> Labels { get; }
    /// <summary>Distinct feature ids of the batch.</summary>
    public DeviceBuffer<int> UniqueIds { get; }
    /// <summary>Offsets into <see cref="Occurrences"/> per distinct id (length unique + 1).</summary>
    public DeviceBuffer<int> UniqueOffsets { get; }
    /// <summary>Slot indices (row * MaxNnz + s) grouped by distinct id.</summary>
    public DeviceBuffer<int> Occurrences { get; }
    /// <summary>Rows in the batch now.</summary>
    public int Rows { get; private set; }
    /// <summary>Distinct ids in the batch now (0 when uploaded for inference only).</summary>
    public int UniqueCount { get; private set; }

    /// <summary>Copies a host batch to the device.</summary>
    public void Upload(HostBatch batch)
    {
        if (batch.MaxNnz != Shape.MaxNnz || batch.Rows > Shape.BatchCapacity)
            throw new ArgumentException("host batch does not fit the device batch", nameof(batch));
        int slots = batch.Rows * Shape.MaxNnz;
        Ids.CopyFrom(batch.Ids.AsSpan(0, slots));
        Values.CopyFrom(batch.Values.AsSpan(0, slots));
        Counts.CopyFrom(batch.Counts.AsSpan(0, batch.Rows));
        Labels.CopyFrom(batch.Labels.AsSpan(0, batch.Rows));
        if (batch.UniqueCount > 0)
        {
            UniqueIds.CopyFrom(batch.UniqueIds.AsSpan(0, batch.UniqueCount));
            UniqueOffsets.CopyFrom(batch.UniqueOffsets.AsSpan(0, batch.UniqueCount + 1));
            Occurrences.CopyFrom(batch.Occurrences.AsSpan(0, batch.UniqueOffsets[batch.UniqueCount]));
        }
        Rows = batch.Rows;
        UniqueCount = batch.UniqueCount;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Ids.Dispose(); Values.Dispose(); Counts.Dispose(); Labels.Dispose();
        UniqueIds.Dispose(); UniqueOffsets.Dispose(); Occurrences.Dispose();
    }
}

/// <summary>Buffers the training step writes; each can be read back (the selftest compares them).</summary>
public sealed class TrainWorkspace : IDisposable
{
    internal TrainWorkspace(Accelerator accelerator, ModelShape shape, int partialCount)
    {
        int b = shape.BatchCapacity;
        Yhat = accelerator.Allocate<float>(b);
        Gradient = accelerator.Allocate<float>(b);
        Loss = accelerator.Allocate<float>(b);
        EmbeddingGrad = accelerator.Allocate<float>((long)b * shape.MaxNnz * shape.K);
        PartialCount = partialCount;
        Partials = accelerator.Allocate<float>((long)partialCount * (shape.DenseSize + 1));
        DenseGrad = accelerator.Allocate<float>(shape.DenseSize);
        LossSum = accelerator.Allocate<float>(1);
    }

    /// <summary>ŷ per row (raw score, before the link function).</summary>
    public DeviceBuffer<float> Yhat { get; }
    /// <summary>dL/dŷ per row, including the 1/rows scale.</summary>
    public DeviceBuffer<float> Gradient { get; }
    /// <summary>Unscaled loss per row.</summary>
    public DeviceBuffer<float> Loss { get; }
    /// <summary>dL/de per slot, [rows x MaxNnz x k] (de = gradient w.r.t. the scaled embedding v x).</summary>
    public DeviceBuffer<float> EmbeddingGrad { get; }
    /// <summary>Number of partial dense-gradient blocks the forward/backward kernel writes.</summary>
    public int PartialCount { get; }
    /// <summary>Per-block partial dense gradients, each DenseSize + 1 long (the last entry: the block's loss sum).</summary>
    public DeviceBuffer<float> Partials { get; }
    /// <summary>Reduced dense gradient, packed like the dense parameters (without the λ term).</summary>
    public DeviceBuffer<float> DenseGrad { get; }
    /// <summary>Running sum of per-row losses since the last <see cref="LossSum"/> clear.</summary>
    public DeviceBuffer<float> LossSum { get; }

    /// <inheritdoc />
    public void Dispose()
    {
        Yhat.Dispose(); Gradient.Dispose(); Loss.Dispose(); EmbeddingGrad.Dispose();
        Partials.Dispose(); DenseGrad.Dispose(); LossSum.Dispose();
    }
}
