using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>
/// Runs a trained model's forward pass on an accelerator. Calls are serialised internally, so one
/// predictor may be shared by several threads.
/// </summary>
public sealed class Predictor : IDisposable
{
    private readonly object _gate = new();
    private readonly bool _ownsAccelerator;
    private AfmKernels _kernels;
    private DeviceModel _device;
    private DeviceBatch _batch;
    private DeviceBuffer<float> _yhat;
    private DeviceBuffer<float>? _attention;
    private HostBatch _host;

    /// <summary>Uploads <paramref name="model"/> to <paramref name="accelerator"/>.</summary>
    /// <param name="accelerator">Where to run.</param>
    /// <param name="model">The model (copied to the device; later changes to it are not seen).</param>
    /// <param name="maxNnz">Largest non-zero count of a row to be scored (grows on demand).</param>
    /// <param name="batchSize">Rows scored per kernel launch.</param>
    /// <param name="ownsAccelerator">Dispose the accelerator with the predictor.</param>
    public Predictor(Accelerator accelerator, AfmModel model, int maxNnz = 16, int batchSize = 4096, bool ownsAccelerator = false)
    {
        Accelerator = accelerator;
        Model = model;
        _ownsAccelerator = ownsAccelerator;
        Allocate(Math.Max(2, maxNnz), batchSize);
    }

    /// <summary>The accelerator in use.</summary>
    public Accelerator Accelerator { get; }
    /// <summary>The model served.</summary>
    public AfmModel Model { get; }

    [System.Diagnostics.CodeAnalysis.MemberNotNull(nameof(_kernels), nameof(_device), nameof(_batch), nameof(_yhat), nameof(_host))]
    private void Allocate(int maxNnz, int batchSize)
    {
        Limits.CheckRows("rows to predict", maxNnz, Model.K, Model.T);
        var shape = ModelShape.Of(Model, maxNnz, batchSize);
        _kernels = Accelerator.CreateKernels(shape);
        _device = _kernels.CreateModel();
        _device.Upload(Model);
        _batch = _kernels.CreateBatch();
        _yhat = Accelerator.Allocate<float>(shape.BatchCapacity);
        _attention = Model.Kind == ModelKind.Afm ? Accelerator.Allocate<float>((long)shape.BatchCapacity * shape.Pairs) : null;
        _host = new HostBatch(shape.BatchCapacity, shape.MaxNnz, Model.FeatureCount);
    }

    private void EnsureFits(SparseDataset data)
    {
        if (data.FeatureCount > Model.FeatureCount)
            throw new ArgumentException($"{data.Name}: feature id {data.FeatureCount - 1} is not below the model's feature count {Model.FeatureCount} (SparseDataset.KeepIdsBelow drops the ids a model has no row for)");
        if (data.MaxNnz > _kernels.Shape.MaxNnz)
        {
            Limits.CheckRows(data.Name, data.MaxNnz, Model.K, Model.T);
            int batch = _kernels.Shape.BatchCapacity;
            Release();
            Allocate(data.MaxNnz, batch);
        }
    }

    /// <summary>Final predictions (clipped value for regression, probability for logistic loss), one per row.</summary>
    public float[] Predict(SparseDataset data) => Run(data, null);

    /// <summary>A non-finite prediction is an error, not an output: the row's values overflow the model's arithmetic.</summary>
    /// <param name="predictions">Predictions of consecutive data rows.</param>
    /// <param name="name">The data's name, for the message.</param>
    /// <param name="firstRow">The 0-based index of the first of those rows in the data.</param>
    /// <exception cref="DataFormatException">A prediction is NaN or infinite; the message names its row.</exception>
    public static void CheckFinite(ReadOnlySpan<float> predictions, string name, long firstRow)
    {
        int r = FirstNonFinite(predictions);
        if (r >= 0)
            throw new DataFormatException(name, 0, $"data row {firstRow + r + 1}: the prediction is {predictions[r]}: the model's single-precision arithmetic overflows on this row (its values or the model's weights are too large)");
    }

    private static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    /// <summary>
    /// Final predictions as <see cref="Predict(SparseDataset)"/> gives them and, for a squared-loss model, the raw
    /// scores before clipping, which rank rows for an AUC (<see cref="Metrics.Compute"/>); null for logistic loss.
    /// </summary>
    public (float[] Predictions, float[]? Scores) PredictWithScores(SparseDataset data)
    {
        var raw = PredictRaw(data);
        if (Model.Loss != LossKind.Squared)
        {
            for (int i = 0; i < raw.Length; i++) raw[i] = Link(Model, raw[i]);
            return (raw, null);
        }
        var predictions = new float[raw.Length];
        for (int i = 0; i < raw.Length; i++) predictions[i] = Link(Model, raw[i]);
        return (predictions, raw);
    }

    /// <summary>Raw scores ŷ before the link function.</summary>
    public float[] PredictRaw(SparseDataset data)
    {
        lock (_gate)
        {
            EnsureFits(data);
            var output = new float[data.Rows];
            ForEachBatch(data, withAttention: false, (start, count) => _yhat.CopyTo(output.AsSpan(start, count)));
            return output;
        }
    }

    /// <summary>
    /// Predictions plus, per row, the attention weight of every pair (pair index as in
    /// <see cref="ModelShape.PairIndex"/>); for FM every pair weighs 1.
    /// </summary>
    public float[] Predict(SparseDataset data, out float[][] attention)
    {
        var att = new float[data.Rows][];
        var p = Run(data, att);
        attention = att;
        return p;
    }

    private float[] Run(SparseDataset data, float[][]? attention)
    {
        lock (_gate)
        {
            EnsureFits(data);
            var output = new float[data.Rows];
            int pairs = _kernels.Shape.Pairs;
            float[] attBuf = attention is null || _attention is null ? [] : new float[_kernels.Shape.BatchCapacity * pairs];
            ForEachBatch(data, attention is not null, (start, count) =>
            {
                _yhat.CopyTo(output.AsSpan(start, count));
                if (attention is null) return;
                if (_attention is not null) _attention.CopyTo(attBuf.AsSpan(0, count * pairs));
                for (int b = 0; b < count; b++)
                {
                    int np = ModelShape.PairCount(data.RowLength(start + b));
                    attention[start + b] = _attention is null ? Enumerable.Repeat(1f, np).ToArray() : attBuf.AsSpan(b * pairs, np).ToArray();
                }
            });
            for (int i = 0; i < output.Length; i++) output[i] = Link(Model, output[i]);
            return output;
        }
    }

    private void ForEachBatch(SparseDataset data, bool withAttention, Action<int, int> consume)
    {
        int cap = _kernels.Shape.BatchCapacity;
        var rows = new int[cap];
        for (int start = 0; start < data.Rows; start += cap)
        {
            int count = Math.Min(cap, data.Rows - start);
            for (int i = 0; i < count; i++) rows[i] = start + i;
            _host.Fill(data, rows.AsSpan(0, count), forTraining: false);
            _batch.Upload(_host);
            _kernels.Forward(_device, _batch, _yhat, withAttention ? _attention : null);
            consume(start, count);
        }
    }

    /// <summary>
    /// The link from raw score to prediction: sigmoid for logistic loss, clipping to the label range for regression.
    /// A score that is not finite (the row overflows single precision) stays as it is, so that callers see it.
    /// </summary>
    public static float Link(AfmModel model, float raw)
    {
        if (!float.IsFinite(raw)) return raw;
        if (model.Loss == LossKind.Logistic) return 1f / (1f + MathF.Exp(-raw));
        if (!float.IsNaN(model.LabelMin)) raw = MathF.Max(raw, model.LabelMin);
        if (!float.IsNaN(model.LabelMax)) raw = MathF.Min(raw, model.LabelMax);
        return raw;
    }

    private void Release()
    {
        _attention?.Dispose();
        _yhat.Dispose();
        _batch.Dispose();
        _device.Dispose();
        _kernels.Dispose();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Release();
        if (_ownsAccelerator) Accelerator.Dispose();
    }
}
