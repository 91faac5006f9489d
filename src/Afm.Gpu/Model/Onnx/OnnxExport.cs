using System.Globalization;
using System.Runtime.InteropServices;
using Afm.Gpu.IO;
using Afm.Gpu.Model.Onnx.Proto;
using Google.Protobuf;

namespace Afm.Gpu.Model.Onnx;

/// <summary>What <see cref="OnnxExport.Export"/> writes besides the score and the prediction.</summary>
public sealed class OnnxExportOptions
{
    /// <summary>Add the <c>attention</c> output ([batch, pairs]); true by default.</summary>
    public bool IncludeAttention { get; init; } = true;
}

/// <summary>
/// Writes a model as an ONNX graph (<c>docs/onnx.md</c>): inputs <c>ids</c> (int64 [batch, nnz]) and <c>values</c>
/// (float [batch, nnz], 0 marks a padding slot), outputs <c>score</c> (float [batch], the raw ŷ), <c>prediction</c>
/// (float [batch]: ŷ clipped to the training label range for squared loss, σ(ŷ) for logistic loss) and optionally
/// <c>attention</c> (float [batch, nnz (nnz - 1) / 2]: pair (i, j), i &lt; j, at index j (j - 1) / 2 + i; 0 on pairs
/// with a padding slot). Batch size and nnz are both dynamic. The file is written atomically.
/// </summary>
public static class OnnxExport
{
    /// <summary>The ONNX IR version of the file (7: ONNX 1.7 and later read it).</summary>
    public const long IrVersion = 7;

    /// <summary>The version of the default operator set (ai.onnx) the graph uses.</summary>
    public const long Opset = 13;

    /// <summary>The score given to a pair with a padding slot before the softmax, so that its weight is exactly 0.</summary>
    public const float MaskedScore = -1e30f;

    private const long MaxBytes = int.MaxValue - (1 << 20);

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> as ONNX, atomically.</summary>
    /// <exception cref="ArgumentException">The weights exceed the 2 GiB a protobuf message may hold.</exception>
    public static void Export(AfmModel model, string path, ModelMetadata? metadata = null, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ModelProto proto;
        try
        {
            proto = Build(model, metadata, options ?? new OnnxExportOptions());
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{path}: cannot export as ONNX: {e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal)}", e);
        }
        AtomicFile.Write(path, stream =>
        {
            using var coded = new CodedOutputStream(stream, leaveOpen: true);
            proto.WriteTo(coded);
            coded.Flush();
        });
    }

    /// <summary>The ONNX model as a protobuf message.</summary>
    internal static ModelProto Build(AfmModel model, ModelMetadata? metadata, OnnxExportOptions options)
    {
        long weightBytes = model.Tensors().Sum(x => (long)x.Data.Length * sizeof(float));
        if (weightBytes > MaxBytes)
            throw new ArgumentException($"the model's weights take {weightBytes} bytes, and an ONNX file holds at most 2 GiB (a protobuf limit): use safetensors");
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX export writes little-endian raw tensor data and needs a little-endian machine");

        var g = new GraphBuilder();
        bool afm = model.Kind == ModelKind.Afm;
        int k = model.K, t = model.T;

        g.Input("ids", TensorProto.Types.DataType.Int64, "batch", "nnz");
        g.Input("values", TensorProto.Types.DataType.Float, "batch", "nnz");

        g.Floats("w0", model.W0, []);
        g.Floats("w", model.Linear, model.FeatureCount);
        g.Floats("V", model.V, model.FeatureCount, k);
        g.Floats("zero", [0f], []);
        g.Ints("axis_1", [1], 1);
        g.Ints("axis_last", [-1], 1);

        // Slot mask: 1 where the value is non-zero, 0 on padding.
        g.Node("Equal", ["values", "zero"], ["is_padding"]);
        g.Node("Not", ["is_padding"], ["is_slot"]);
        g.Node("Cast", ["is_slot"], ["slot_mask"], Attr("to", (long)TensorProto.Types.DataType.Float));

        // Linear part: Σ w_id x.
        g.Node("Gather", ["w", "ids"], ["w_g"]);
        g.Node("Mul", ["w_g", "values"], ["w_x"]);
        // As in the native predictor, the score's terms are summed in double and rounded once (see below).
        g.Node("Cast", ["w_x"], ["w_x_d"], ToDouble);
        g.Node("ReduceSum", ["w_x_d", "axis_1"], ["linear"], Attr("keepdims", 0));

        // Embeddings: e_s = v_id x_s, [batch, nnz, k].
        g.Node("Gather", ["V", "ids"], ["V_g"]);
        g.Node("Unsqueeze", ["values", "axis_last"], ["values_3"]);
        g.Node("Mul", ["V_g", "values_3"], ["e"]);

        // Pair indices I, J over the nnz slots, pair (i, j), i < j, in the engine's order (index j (j - 1) / 2 + i):
        // the [j, i] grid flattened row-major, keeping i < j.
        g.Ints("i64_0", [0], []);
        g.Ints("i64_1", [1], []);
        g.Ints("axis_0", [0], 1);
        g.Ints("flat", [-1], 1);
        g.Node("Shape", ["ids"], ["ids_shape"]);
        g.Node("Gather", ["ids_shape", "i64_1"], ["nnz"], Attr("axis", 0));
        g.Node("Range", ["i64_0", "nnz", "i64_1"], ["slots"]);
        g.Node("Unsqueeze", ["slots", "axis_0"], ["slots_row"]);
        g.Node("Unsqueeze", ["slots", "axis_1"], ["slots_col"]);
        g.Node("Unsqueeze", ["nnz", "axis_0"], ["nnz_1"]);
        g.Node("Concat", ["nnz_1", "nnz_1"], ["grid_shape"], Attr("axis", 0));
        g.Node("Expand", ["slots_row", "grid_shape"], ["grid_i"]);
        g.Node("Expand", ["slots_col", "grid_shape"], ["grid_j"]);
        g.Node("Less", ["slots_row", "slots_col"], ["grid_upper"]);
        g.Node("Reshape", ["grid_i", "flat"], ["grid_i_flat"]);
        g.Node("Reshape", ["grid_j", "flat"], ["grid_j_flat"]);
        g.Node("Reshape", ["grid_upper", "flat"], ["grid_upper_flat"]);
        g.Node("Compress", ["grid_i_flat", "grid_upper_flat"], ["pair_i"], Attr("axis", 0));
        g.Node("Compress", ["grid_j_flat", "grid_upper_flat"], ["pair_j"], Attr("axis", 0));
        g.Node("Gather", ["slot_mask", "pair_i"], ["pair_mask_i"], Attr("axis", 1));
        g.Node("Gather", ["slot_mask", "pair_j"], ["pair_mask_j"], Attr("axis", 1));
        g.Node("Mul", ["pair_mask_i", "pair_mask_j"], ["pair_mask"]);

        if (afm)
        {
            var wt = new float[k * t];
            for (int r = 0; r < t; r++)
                for (int d = 0; d < k; d++) wt[d * t + r] = model.AttnW[r * k + d];
            g.Floats("W_t", wt, k, t);
            g.Floats("b", model.AttnB, t);
            g.Floats("h", model.AttnH, t, 1);
            g.Floats("p", model.Proj, k);
            g.Floats("masked_score", [MaskedScore], []);

            // q_ij = e_i ⊙ e_j, [batch, pairs, k]; s_ij = h · relu(W q_ij + b).
            g.Node("Gather", ["e", "pair_i"], ["e_i"], Attr("axis", 1));
            g.Node("Gather", ["e", "pair_j"], ["e_j"], Attr("axis", 1));
            g.Node("Mul", ["e_i", "e_j"], ["q"]);
            g.Node("MatMul", ["q", "W_t"], ["z_w"]);
            g.Node("Add", ["z_w", "b"], ["z"]);
            g.Node("Relu", ["z"], ["z_relu"]);
            // h as a [t, 1] matrix: ONNX Runtime's MatMul with a vector operand refuses an empty pair axis (nnz = 1).
            g.Node("MatMul", ["z_relu", "h"], ["pair_score_3"]);
            g.Node("Squeeze", ["pair_score_3", "axis_last"], ["pair_score"]);
            // Pairs with a padding slot get a large negative score, so that their softmax weight is 0; a row without
            // any real pair gets equal weights from the softmax, zeroed by the mask.
            g.Node("Greater", ["pair_mask", "zero"], ["is_pair"]);
            g.Node("Where", ["is_pair", "pair_score", "masked_score"], ["pair_score_masked"]);
            g.Node("Softmax", ["pair_score_masked"], ["softmax"], Attr("axis", -1));
            g.Node("Mul", ["softmax", "pair_mask"], ["attention_weights"]);
            // Σ a_ij q_ij, then p ·.
            g.Node("Unsqueeze", ["attention_weights", "axis_last"], ["a_3"]);
            g.Node("Mul", ["q", "a_3"], ["a_q"]);
            g.Node("ReduceSum", ["a_q", "axis_1"], ["pooled"], Attr("keepdims", 0));
            g.Node("Mul", ["pooled", "p"], ["p_pooled"]);
            g.Node("Cast", ["p_pooled"], ["p_pooled_d"], ToDouble);
            g.Node("ReduceSum", ["p_pooled_d", "axis_last"], ["interaction"], Attr("keepdims", 0));
        }
        else
        {
            // FM: ½ ((Σ e)² − Σ e²), summed over the k dimensions (p is all ones); every real pair weighs 1. In double, as
            // in the native predictor: the difference cancels most of the terms' magnitude.
            g.Floats("half", [0.5f], []);
            g.Node("Cast", ["half"], ["half_d"], ToDouble);
            g.Node("Cast", ["e"], ["e_d"], ToDouble);
            g.Node("ReduceSum", ["e_d", "axis_1"], ["e_sum"], Attr("keepdims", 0));
            g.Node("Mul", ["e_sum", "e_sum"], ["e_sum_sq"]);
            g.Node("Mul", ["e_d", "e_d"], ["e_sq"]);
            g.Node("ReduceSum", ["e_sq", "axis_1"], ["e_sq_sum"], Attr("keepdims", 0));
            g.Node("Sub", ["e_sum_sq", "e_sq_sum"], ["fm_diff"]);
            g.Node("Mul", ["fm_diff", "half_d"], ["pooled"]);
            g.Node("ReduceSum", ["pooled", "axis_last"], ["interaction"], Attr("keepdims", 0));
            g.Node("Identity", ["pair_mask"], ["attention_weights"]);
        }

        // ŷ = w0 + linear + interaction.
        g.Node("Cast", ["w0"], ["w0_d"], ToDouble);
        g.Node("Add", ["w0_d", "linear"], ["w0_linear"]);
        g.Node("Add", ["w0_linear", "interaction"], ["score_d"]);
        g.Node("Cast", ["score_d"], ["score"], Attr("to", (long)TensorProto.Types.DataType.Float));
        if (model.Loss == LossKind.Logistic)
        {
            // 1 / (1 + exp(−ŷ)), the native predictor's formula; ONNX Runtime's Sigmoid approximates, which costs a small
            // probability most of its relative precision.
            g.Floats("one", [1f], []);
            g.Node("Neg", ["score"], ["minus_score"]);
            g.Node("Exp", ["minus_score"], ["exp_minus_score"]);
            g.Node("Add", ["one", "exp_minus_score"], ["one_plus_exp"]);
            g.Node("Reciprocal", ["one_plus_exp"], ["prediction"]);
        }
        else if (float.IsNaN(model.LabelMin) && float.IsNaN(model.LabelMax)) g.Node("Identity", ["score"], ["prediction"]);
        else
        {
            string min = "", max = "";
            if (!float.IsNaN(model.LabelMin)) g.Floats(min = "label_min", [model.LabelMin], []);
            if (!float.IsNaN(model.LabelMax)) g.Floats(max = "label_max", [model.LabelMax], []);
            g.Node("Clip", max.Length == 0 ? ["score", min] : ["score", min, max], ["prediction"]);
        }

        g.Output("score", "the raw score ŷ = w0 + linear + interaction", "batch");
        g.Output("prediction", model.Loss == LossKind.Logistic ? "σ(ŷ), the probability of label 1"
            : "ŷ clipped to the training labels' range, as afm-gpu predict gives", "batch");
        if (options.IncludeAttention)
        {
            g.Node("Identity", ["attention_weights"], ["attention"]);
            g.Output("attention", afm ? "each pair's attention weight, pair (i, j), i < j, at index j (j - 1) / 2 + i; 0 on pairs with a padding slot"
                : "1 on each real pair (FM weighs every pair equally), 0 on pairs with a padding slot", "batch", "pairs");
        }

        g.Graph.Name = afm ? "afm" : "fm";
        g.Graph.DocString = "Padded rows: ids (int64 [batch, nnz]) and values (float [batch, nnz]); a value of 0 marks a padding slot. "
            + $"Feature ids must be in [0, {model.FeatureCount}) (padding slots too)."
            + (model.Input.HashBits > 0 ? $" Features are hashed by the caller: id = {Data.FeatureHash.Spec}, B = {model.Input.HashBits}." : "");

        var proto = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "afm-gpu",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
            Domain = "afm-gpu",
            ModelVersion = 1,
            DocString = $"{model.Kind} model ({model.Loss} loss), {model.FeatureCount} features, k = {k}" + (afm ? $", t = {t}" : ""),
            Graph = g.Graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        var props = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["kind"] = model.Kind.ToString().ToLowerInvariant(),
            ["loss"] = model.Loss.ToString().ToLowerInvariant(),
            ["feature_count"] = model.FeatureCount.ToString(CultureInfo.InvariantCulture),
            ["k"] = k.ToString(CultureInfo.InvariantCulture),
            ["t"] = t.ToString(CultureInfo.InvariantCulture),
            ["label_min"] = model.LabelMin.ToString("R", CultureInfo.InvariantCulture),
            ["label_max"] = model.LabelMax.ToString("R", CultureInfo.InvariantCulture),
            ["data_format"] = Data.InputEncoding.FormatName(model.Input.Format),
            ["hash_bits"] = model.Input.HashBits.ToString(CultureInfo.InvariantCulture),
        };
        if (model.Input.HashBits > 0) props["feature_hash"] = Data.FeatureHash.Spec;
        if (Data.CsvFormat.HasHeader(model.Input.Format))
        {
            props["csv_label_column"] = model.Input.LabelColumn!;
            props["csv_ignored_columns"] = model.Input.IgnoredColumns!;
            props["csv_numeric_columns"] = model.Input.NumericColumns!;
            if (model.Input.BucketColumns is { } bucketed) props["csv_bucket_columns"] = bucketed;
        }
        foreach (var (key, value) in metadata?.Properties ?? [])
        {
            if (props.ContainsKey(key)) throw new ArgumentException($"metadata key '{key}' is reserved", nameof(metadata));
            props[key] = value;
        }
        foreach (var (key, value) in props) proto.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return proto;
    }

    private static AttributeProto ToDouble => Attr("to", (long)TensorProto.Types.DataType.Double);

    private static AttributeProto Attr(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private sealed class GraphBuilder
    {
        public GraphProto Graph { get; } = new();
        private int _nodes;

        public void Input(string name, TensorProto.Types.DataType type, params string[] dims) =>
            Graph.Input.Add(Value(name, type, "", dims));

        public void Output(string name, string doc, params string[] dims) =>
            Graph.Output.Add(Value(name, TensorProto.Types.DataType.Float, doc, dims));

        private static ValueInfoProto Value(string name, TensorProto.Types.DataType type, string doc, string[] dims)
        {
            var shape = new TensorShapeProto();
            foreach (string d in dims) shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = d });
            return new ValueInfoProto
            {
                Name = name,
                DocString = doc,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
            };
        }

        public void Floats(string name, float[] data, params long[] dims)
        {
            var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
            tensor.Dims.AddRange(dims);
            tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));
            Graph.Initializer.Add(tensor);
        }

        public void Ints(string name, long[] data, params long[] dims)
        {
            var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
            tensor.Dims.AddRange(dims);
            tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));
            Graph.Initializer.Add(tensor);
        }

        public void Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
        {
            var node = new NodeProto { OpType = op, Name = $"{op}_{_nodes++}" };
            node.Input.AddRange(inputs);
            node.Output.AddRange(outputs);
            node.Attribute.AddRange(attributes);
            Graph.Node.Add(node);
        }
    }
}
