using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.Explain;
using Afm.Gpu.Model;
using Afm.Gpu.Model.Onnx;
using Afm.Gpu.Training;

namespace Afm.Gpu;

/// <summary>
/// The entry point for applications: train a model on a <see cref="SparseDataset"/> (built in memory
/// with <see cref="SparseDatasetBuilder"/> or read with <see cref="LibFmReader"/>) and get a
/// <see cref="TrainedModel"/> that predicts, explains and saves.
/// </summary>
public static class AfmEngine
{
    /// <summary>Loads a model file in either format: the native <c>.afm</c> file or a safetensors export (told apart by content).</summary>
    /// <exception cref="ModelFormatException">The file is neither a valid model file nor a valid safetensors export.</exception>
    public static AfmModel LoadModel(string path)
    {
        bool native;
        if (Directory.Exists(path)) throw new ModelFormatException(path, "is a directory, not a model file");
        using (var stream = File.OpenRead(path))
        {
            Span<byte> magic = stackalloc byte[6];
            int got = stream.ReadAtLeast(magic, magic.Length, throwOnEndOfStream: false);
            native = got == magic.Length && magic.SequenceEqual("AFMGPU"u8);
            if (!native && stream.Length < 8)
                throw new ModelFormatException(path, $"not an afm-gpu model file: neither the native format nor safetensors ({stream.Length} bytes)");
        }
        return native ? ModelFile.Load(path) : Safetensors.Import(path);
    }

    /// <summary>Trains a model and readies it for prediction on the same accelerator.</summary>
    /// <param name="train">Training rows.</param>
    /// <param name="options">Model shape and training settings.</param>
    /// <param name="validation">Validation rows for early stopping; without them, <see cref="TrainerOptions.ValidationFraction"/>
    /// of the training rows are held out.</param>
    /// <param name="accelerator"><c>auto</c> (a GPU if there is one, else the CPU), <c>cpu</c>, <c>opencl[:N]</c> or <c>cuda[:N]</c>.</param>
    /// <param name="cancel">Stops training between mini-batches.</param>
    /// <param name="pretrainedFm">For an AFM: start from this trained FM. Without it an AFM pre-trains an FM of
    /// the same k first (<see cref="TrainerOptions.Pretrain"/>; <see cref="PretrainKind.None"/> starts from scratch).</param>
    /// <param name="log">Receives what the run does next: held-out rows, pre-training, refit (<see cref="Recipe.Message"/>).</param>
    /// <exception cref="AcceleratorUnavailableException">The accelerator cannot be used.</exception>
    /// <exception cref="ArgumentException">The options are invalid or the data is empty.</exception>
    /// <remarks>Runs the whole <see cref="Recipe"/>: validation split, FM pre-training, training, and refit when asked.</remarks>
    public static TrainedModel Train(SparseDataset train, TrainerOptions options, SparseDataset? validation = null,
        string accelerator = "auto", CancellationToken cancel = default, AfmModel? pretrainedFm = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(options);
        var acc = AcceleratorRegistry.Create(accelerator, out string note);
        try
        {
            var recipe = new Recipe(acc, options);
            if (log is not null) recipe.Message += log;
            var result = recipe.Run(train, validation, pretrainedFm, cancel);
            return new TrainedModel(result.Model, acc, note, result.Training) { Recipe = result };
        }
        catch
        {
            acc.Dispose();
            throw;
        }
    }
}

/// <summary>
/// A model ready to serve: the host parameters plus a <see cref="Predictor"/> on an accelerator.
/// Every method may be called from several threads at once (device calls are serialised).
/// Dispose it to release the accelerator.
/// </summary>
public sealed class TrainedModel : IDisposable
{
    private readonly Predictor _predictor;
    private readonly Explainer _explainer;

    internal TrainedModel(AfmModel model, Accelerator accelerator, string acceleratorNote, TrainResult? training)
    {
        _predictor = new Predictor(accelerator, model, ownsAccelerator: true);
        _explainer = new Explainer(_predictor);
        AcceleratorNote = acceleratorNote;
        Training = training;
    }

    /// <summary>The parameters (host copy). Changing them does not affect predictions already uploaded.</summary>
    public AfmModel Model => _predictor.Model;

    /// <summary>Which accelerator serves the model and why it was picked.</summary>
    public string AcceleratorNote { get; }

    /// <summary>The training history, or null for a loaded model.</summary>
    public TrainResult? Training { get; }

    /// <summary>The whole run (pre-training, held-out rows, refit), or null for a loaded model.</summary>
    public RecipeResult? Recipe { get; internal init; }

    /// <summary>Predicts one row: a clipped value for squared loss, a probability for logistic loss.</summary>
    /// <param name="ids">Feature ids of the row's non-zeros (each below <see cref="AfmModel.FeatureCount"/>).</param>
    /// <param name="values">Their values.</param>
    /// <exception cref="ArgumentException">The spans differ in length or an id is outside the model.</exception>
    public float Predict(ReadOnlySpan<int> ids, ReadOnlySpan<float> values) => _predictor.Predict(Explainer.SingleRow(ids, values, Model.FeatureCount))[0];

    /// <summary>
    /// Reads a data file the way the model was trained: in its format, with its feature hashing
    /// (<see cref="AfmModel.Input"/>), checking ids and row lengths against the model as it reads.
    /// </summary>
    /// <param name="path">The data file.</param>
    /// <param name="labelsMatter">Labels must suit the model's loss (0/1 or -1/1 for logistic), as for evaluation.</param>
    /// <exception cref="Data.DataFormatException">The file is missing or malformed; the message names the line.</exception>
    public SparseDataset Read(string path, bool labelsMatter = false) => LibFmReader.Read(path, LibFmReadOptions.For(Model, labelsMatter));

    /// <summary>Predicts every row of <paramref name="data"/> (the labels are ignored).</summary>
    public float[] Predict(SparseDataset data) => _predictor.Predict(data);

    /// <summary>
    /// Scores the model on labelled rows, as <c>afm-gpu evaluate</c> does: RMSE and MAE for squared loss (and the AUC
    /// when the labels take two values, such as -1/1), log loss and AUC for logistic (<see cref="Metrics.Format"/> writes them as the command line prints them).
    /// </summary>
    /// <exception cref="ArgumentException">A logistic model is given a label other than 0, 1 or -1.</exception>
    /// <exception cref="DataFormatException">A row's prediction is not finite (its values overflow the model's
    /// single-precision arithmetic), as <c>afm-gpu evaluate</c> reports it.</exception>
    public Metrics Evaluate(SparseDataset data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (Model.Loss == LossKind.Logistic && RowSource.Of(data).FirstNonBinaryLabel() is var (row, label))
            throw new ArgumentException($"{data.Name}: row {row + 1} has label {label}; a logistic model is scored on labels 0/1 or -1/1", nameof(data));
        var (predictions, scores) = _predictor.PredictWithScores(data);
        Predictor.CheckFinite(predictions, data.Name, 0);
        return Metrics.Compute(predictions, data.Labels, Model.Loss, scores);
    }

    /// <summary>Explains one row: bias, linear terms, and each pair's attention and contribution.</summary>
    public RowExplanation Explain(ReadOnlySpan<int> ids, ReadOnlySpan<float> values) => _explainer.Explain(ids, values);

    /// <summary>Mean attention and contribution by field pair over <paramref name="data"/>.</summary>
    public FieldPairSummary ExplainFields(SparseDataset data, FeatureMap map) => _explainer.Summarize(data, map);

    /// <summary>Saves the model in the afm-gpu model format (<see cref="ModelFile"/>), atomically.</summary>
    public void Save(string path, ModelMetadata? metadata = null) => ModelFile.Save(Model, path, metadata);

    /// <summary>Exports the model as safetensors for Python (<see cref="Safetensors"/>), atomically.</summary>
    public void ExportSafetensors(string path, ModelMetadata? metadata = null) => Safetensors.Export(Model, path, metadata);

    /// <summary>
    /// Exports the model as an ONNX graph for ONNX Runtime and ML.NET (<see cref="OnnxExport"/>, <c>docs/onnx.md</c>), atomically.
    /// </summary>
    public void ExportOnnx(string path, ModelMetadata? metadata = null, OnnxExportOptions? options = null) => OnnxExport.Export(Model, path, metadata, options);

    /// <summary>Loads a model saved by <see cref="Save"/> or <see cref="ExportSafetensors"/> (told apart by content).</summary>
    /// <param name="path">The model file.</param>
    /// <param name="accelerator">As for <see cref="AfmEngine.Train"/>.</param>
    /// <exception cref="ModelFormatException">The file is neither a valid model file nor a valid safetensors export.</exception>
    /// <exception cref="AcceleratorUnavailableException">The accelerator cannot be used.</exception>
    public static TrainedModel Load(string path, string accelerator = "auto")
    {
        var model = AfmEngine.LoadModel(path);
        var acc = AcceleratorRegistry.Create(accelerator, out string note);
        try
        {
            return new TrainedModel(model, acc, note, null);
        }
        catch
        {
            acc.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public void Dispose() => _predictor.Dispose();
}

/// <summary>Collects rows in memory and builds a <see cref="SparseDataset"/>.</summary>
public sealed class SparseDatasetBuilder
{
    private readonly List<long> _offsets = [0];
    private readonly List<int> _ids = [];
    private readonly List<float> _values = [];
    private readonly List<float> _labels = [];

    /// <summary>Rows added so far.</summary>
    public int Rows => _labels.Count;

    /// <summary>Adds a row: its non-zero features (ids and values) and its label.</summary>
    /// <exception cref="ArgumentException">The spans differ in length, an id is negative, or a value or the label is not finite.</exception>
    public SparseDatasetBuilder Add(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, float label)
    {
        if (ids.Length != values.Length) throw new ArgumentException($"{ids.Length} ids but {values.Length} values", nameof(values));
        if (!float.IsFinite(label)) throw new ArgumentException($"label {label} is not finite", nameof(label));
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] < 0) throw new ArgumentException($"negative feature id {ids[i]}", nameof(ids));
            if (!float.IsFinite(values[i])) throw new ArgumentException($"value {values[i]} of feature {ids[i]} is not finite", nameof(values));
        }
        _ids.AddRange(ids);
        _values.AddRange(values);
        _labels.Add(label);
        _offsets.Add(_ids.Count);
        return this;
    }

    /// <summary>Builds the dataset from the rows added so far (copied; the builder may go on).</summary>
    /// <param name="featureCount">Number of features; 0 means the largest id + 1.</param>
    /// <param name="name">A name for messages.</param>
    public SparseDataset Build(int featureCount = 0, string name = "<memory>") =>
        new([.. _offsets], [.. _ids], [.. _values], [.. _labels], featureCount, name);
}
