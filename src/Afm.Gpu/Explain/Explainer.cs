using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Training;

namespace Afm.Gpu.Explain;

/// <summary>One pairwise interaction of a row: its attention weight and its share of the raw score.</summary>
/// <param name="FeatureI">The pair's first feature id (earlier in the row).</param>
/// <param name="FeatureJ">The pair's second feature id.</param>
/// <param name="Attention">a_ij (1 for FM).</param>
/// <param name="Contribution">a_ij · (p · q_ij) with q_ij = (v_i x_i) ⊙ (v_j x_j).</param>
public sealed record PairContribution(int FeatureI, int FeatureJ, float Attention, float Contribution);

/// <summary>One linear term of a row.</summary>
/// <param name="Feature">Feature id.</param>
/// <param name="Value">The feature's value x_i in the row.</param>
/// <param name="Contribution">w_i x_i.</param>
public sealed record LinearTerm(int Feature, float Value, float Contribution);

/// <summary>
/// Why a row scored what it did: raw score = <see cref="Bias"/> + Σ <see cref="Linear"/> + Σ <see cref="Pairs"/>
/// contributions (up to float rounding).
/// </summary>
/// <param name="Prediction">The raw score ŷ before the link, as the accelerator computed it.</param>
/// <param name="Output">The prediction after the link (clipped value or probability).</param>
/// <param name="Bias">The global bias w0.</param>
/// <param name="Linear">The linear terms, in row order.</param>
/// <param name="Pairs">The pairs, by |attention| (then |contribution|) descending.</param>
public sealed record RowExplanation(float Prediction, float Output, float Bias, IReadOnlyList<LinearTerm> Linear, IReadOnlyList<PairContribution> Pairs)
{
    /// <summary>Σ of the pair contributions (the interaction part of the raw score).</summary>
    public double InteractionSum => Pairs.Sum(p => (double)p.Contribution);

    /// <summary>Σ of the linear contributions.</summary>
    public double LinearSum => Linear.Sum(t => (double)t.Contribution);

    /// <summary>A readable table: the score's parts, then the top <paramref name="maxPairs"/> pairs.</summary>
    public string ToTable(FeatureMap? map = null, int maxPairs = 20)
    {
        var sb = new StringBuilder();
        sb.AppendLine(Inv($"raw score     {Prediction,10:F4}   prediction {Output:F4}"));
        sb.AppendLine(Inv($"bias          {Bias,10:F4}"));
        sb.AppendLine(Inv($"linear        {LinearSum,10:F4}   ({Linear.Count} features)"));
        sb.AppendLine(Inv($"interactions  {InteractionSum,10:F4}   ({Pairs.Count} pairs)"));
        if (Pairs.Count == 0) return sb.ToString();
        var names = Pairs.Take(maxPairs).Select(p => $"{Name(map, p.FeatureI)} x {Name(map, p.FeatureJ)}").ToList();
        int width = Math.Max(4, names.Max(n => n.Length));
        sb.AppendLine(Inv($"{"pair".PadRight(width)}  {"attention",10}  {"contribution",12}"));
        for (int i = 0; i < names.Count; i++)
            sb.AppendLine(Inv($"{names[i].PadRight(width)}  {Pairs[i].Attention,10:F4}  {Pairs[i].Contribution,12:F4}"));
        if (Pairs.Count > maxPairs) sb.AppendLine(Inv($"... {Pairs.Count - maxPairs} more pairs"));
        return sb.ToString();
    }

    /// <summary>
    /// CSV with a header: one line for the bias, one per linear term, one per pair
    /// (<c>term,feature_i,name_i,feature_j,name_j,attention,contribution</c>); the contributions sum to the raw score.
    /// </summary>
    public string ToCsv(FeatureMap? map = null)
    {
        var sb = new StringBuilder("term,feature_i,name_i,feature_j,name_j,attention,contribution\n");
        sb.Append(Inv($"bias,,,,,,{Bias:R}\n"));
        foreach (var t in Linear)
            sb.Append(Inv($"linear,{t.Feature},{Csv(Name(map, t.Feature))},,,,{t.Contribution:R}\n"));
        foreach (var p in Pairs)
            sb.Append(Inv($"pair,{p.FeatureI},{Csv(Name(map, p.FeatureI))},{p.FeatureJ},{Csv(Name(map, p.FeatureJ))},{p.Attention:R},{p.Contribution:R}\n"));
        return sb.ToString();
    }

    /// <summary>The explanation as a JSON object (non-finite numbers are written as null).</summary>
    public string ToJson(FeatureMap? map = null) => Json.Write(w =>
    {
        w.WriteStartObject();
        Json.Number(w, "prediction", Prediction);
        Json.Number(w, "output", Output);
        Json.Number(w, "bias", Bias);
        w.WriteStartArray("linear");
        foreach (var t in Linear)
        {
            w.WriteStartObject();
            w.WriteNumber("feature", t.Feature);
            w.WriteString("name", Name(map, t.Feature));
            Json.Number(w, "value", t.Value);
            Json.Number(w, "contribution", t.Contribution);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("pairs");
        foreach (var p in Pairs)
        {
            w.WriteStartObject();
            w.WriteNumber("feature_i", p.FeatureI);
            w.WriteString("name_i", Name(map, p.FeatureI));
            w.WriteNumber("feature_j", p.FeatureJ);
            w.WriteString("name_j", Name(map, p.FeatureJ));
            Json.Number(w, "attention", p.Attention);
            Json.Number(w, "contribution", p.Contribution);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    private static string Name(FeatureMap? map, int id) => map?.NameOf(id) ?? $"f{id}";

    internal static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    internal static string Csv(string s) =>
        s.AsSpan().IndexOfAny(",\"\n\r") < 0 ? s : $"\"{s.Replace("\"", "\"\"")}\"";
}

/// <summary>What a field-pair heat map colours by.</summary>
public enum HeatMapValue
{
    /// <summary>
    /// Attention relative to uniform: the mean of a_ij x P (P = the row's pair count), on a scale
    /// centred on 1 (white; above 1 blue, below red, log scale), so that attention that learned
    /// nothing shows as a white map.
    /// </summary>
    MeanAttention,
    /// <summary>Mean |contribution| of the field pair to the raw score.</summary>
    MeanAbsContribution,
}

/// <summary>Statistics of one (unordered) field pair over a dataset.</summary>
/// <param name="FieldA">Lower field index (into <see cref="FieldPairSummary.FieldNames"/>).</param>
/// <param name="FieldB">Higher (or equal) field index.</param>
/// <param name="MeanAttention">Mean attention over the pair's occurrences.</param>
/// <param name="MeanAbsContribution">Mean |contribution| over the pair's occurrences.</param>
/// <param name="Count">Occurrences: (row, feature pair) instances whose features fall in these fields.</param>
public sealed record FieldPairStat(int FieldA, int FieldB, double MeanAttention, double MeanAbsContribution, long Count)
{
    /// <summary>
    /// Mean over the pair's occurrences of a_ij x P / Σ a (P: the row's pair count; Σ a = 1 for an
    /// AFM): the attention relative to a uniform share. 1 = uniform, 2 = twice a uniform share; an
    /// FM (every a_ij = 1) gives 1 everywhere.
    /// </summary>
    public double MeanRelativeAttention { get; init; } = double.NaN;
}

/// <summary>Global explanation of a dataset by field pair; see <see cref="Explainer.Summarize"/>.</summary>
public sealed class FieldPairSummary
{
    internal FieldPairSummary(IReadOnlyList<string> fieldNames, IReadOnlyList<FieldPairStat> pairs, int rows)
    {
        FieldNames = fieldNames;
        Pairs = pairs;
        Rows = rows;
    }

    /// <summary>Field names, indexed by the field indices of <see cref="Pairs"/>.</summary>
    public IReadOnlyList<string> FieldNames { get; }

    /// <summary>
    /// Field pairs that occur, by mean attention descending (then mean |contribution|): first those that occur at
    /// least <see cref="MinimumSupport"/> times, then the rarer ones, whose means rest on a few rows (with hashing,
    /// such as pairs of two features of one column that collided with another column's names).
    /// </summary>
    public IReadOnlyList<FieldPairStat> Pairs { get; }

    /// <summary>
    /// How often a field pair must occur to be ranked among the others: 10, or one in a thousand of the rows
    /// summarised when that is more.
    /// </summary>
    public static long MinimumSupport(long rows) => Math.Max(10, (rows + 999) / 1000);

    /// <summary>Rows summarised.</summary>
    public int Rows { get; }

    /// <summary>A readable table of the top <paramref name="max"/> field pairs.</summary>
    public string ToTable(int max = 20)
    {
        var top = Pairs.Take(max).ToList();
        var names = top.Select(p => $"{FieldNames[p.FieldA]} x {FieldNames[p.FieldB]}").ToList();
        int width = Math.Max(10, names.DefaultIfEmpty("").Max(n => n.Length));
        var sb = new StringBuilder();
        sb.AppendLine(RowExplanation.Inv($"{"field pair".PadRight(width)}  {"attention",10}  {"a x P",8}  {"|contrib|",10}  {"count",10}"));
        for (int i = 0; i < top.Count; i++)
            sb.AppendLine(RowExplanation.Inv($"{names[i].PadRight(width)}  {top[i].MeanAttention,10:F4}  {top[i].MeanRelativeAttention,8:F3}  {top[i].MeanAbsContribution,10:F4}  {top[i].Count,10}"));
        sb.AppendLine("(a x P: mean attention times the row's pair count; 1 = a uniform share)");
        if (Pairs.Count > max) sb.AppendLine(RowExplanation.Inv($"... {Pairs.Count - max} more field pairs"));
        long support = MinimumSupport(Rows);
        int rare = Pairs.Count(p => p.Count < support);
        if (rare > 0) sb.AppendLine(RowExplanation.Inv($"({rare} field pair{(rare == 1 ? "" : "s")} seen fewer than {support} times {(rare == 1 ? "comes" : "come")} last, whatever {(rare == 1 ? "its" : "their")} attention)"));
        return sb.ToString();
    }

    /// <summary>CSV with a header: <c>field_a,field_b,mean_attention,mean_abs_contribution,count,mean_attention_x_pairs</c>.</summary>
    public string ToCsv()
    {
        var sb = new StringBuilder("field_a,field_b,mean_attention,mean_abs_contribution,count,mean_attention_x_pairs\n");
        foreach (var p in Pairs)
            sb.Append(RowExplanation.Inv(
                $"{RowExplanation.Csv(FieldNames[p.FieldA])},{RowExplanation.Csv(FieldNames[p.FieldB])},{p.MeanAttention:R},{p.MeanAbsContribution:R},{p.Count},{p.MeanRelativeAttention:R}\n"));
        return sb.ToString();
    }

    /// <summary>The summary as a JSON object: <c>rows</c>, <c>fields</c> and <c>pairs</c>.</summary>
    public string ToJson() => Json.Write(w =>
    {
        w.WriteStartObject();
        w.WriteNumber("rows", Rows);
        w.WriteStartArray("fields");
        foreach (string f in FieldNames) w.WriteStringValue(f);
        w.WriteEndArray();
        w.WriteStartArray("pairs");
        foreach (var p in Pairs)
        {
            w.WriteStartObject();
            w.WriteString("field_a", FieldNames[p.FieldA]);
            w.WriteString("field_b", FieldNames[p.FieldB]);
            Json.Number(w, "mean_attention", p.MeanAttention);
            Json.Number(w, "mean_abs_contribution", p.MeanAbsContribution);
            Json.Number(w, "mean_attention_x_pairs", p.MeanRelativeAttention);
            w.WriteNumber("count", p.Count);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary>
    /// An SVG heat map, field by field (only fields that occur), symmetric; pairs that never occur are grey.
    /// For <see cref="HeatMapValue.MeanAttention"/> a cell's colour is the mean a_ij x P on a log scale
    /// centred on uniform (1, white): blue above, red below, saturated at the largest ratio either way
    /// (at least 2x, so that small deviations stay pale). For <see cref="HeatMapValue.MeanAbsContribution"/>
    /// it is white-to-blue from 0 to the largest value. Each cell carries a tooltip with its exact figures.
    /// </summary>
    public string ToSvg(HeatMapValue value = HeatMapValue.MeanAttention)
    {
        var fields = Pairs.SelectMany(p => new[] { p.FieldA, p.FieldB }).Distinct().Order().ToList();
        var slot = fields.Select((f, i) => (f, i)).ToDictionary(x => x.f, x => x.i);
        bool relative = value == HeatMapValue.MeanAttention;
        double Value(FieldPairStat p) => relative ? Math.Log2(p.MeanRelativeAttention) : p.MeanAbsContribution;
        double max = relative
            ? Math.Max(1, Pairs.Select(p => Math.Abs(Value(p))).Where(double.IsFinite).DefaultIfEmpty(0).Max())
            : Pairs.Select(Value).Where(double.IsFinite).DefaultIfEmpty(0).Max();
        const int cell = 32, legendWidth = 16, fontSize = 12;
        int label = 10 + (int)(0.62 * fontSize * fields.Select(f => FieldNames[f].Length).DefaultIfEmpty(1).Max());
        int top = 30 + label, left = label, size = cell * fields.Count;
        int width = left + size + 30 + legendWidth + 80, height = Math.Max(top + size, top + 160) + 20;
        string title = relative ? "mean attention x pairs by field pair (1 = uniform)" : "mean |contribution| by field pair";

        var svg = new SvgWriter(width, height);
        svg.Text(8, 20, $"{title} ({Rows} rows)", fontSize + 2, "start", bold: true);
        for (int i = 0; i < fields.Count; i++)
        {
            string name = FieldNames[fields[i]];
            svg.Text(left - 6, top + i * cell + cell / 2 + fontSize / 3, name, fontSize, "end");
            svg.Text(left + i * cell + cell / 2 + fontSize / 3, top - 6, name, fontSize, "start", rotate: -90);
        }
        var byCell = new Dictionary<(int, int), FieldPairStat>();
        foreach (var p in Pairs) byCell[(slot[p.FieldA], slot[p.FieldB])] = byCell[(slot[p.FieldB], slot[p.FieldA])] = p;
        for (int r = 0; r < fields.Count; r++)
            for (int c = 0; c < fields.Count; c++)
            {
                int x = left + c * cell, y = top + r * cell;
                if (!byCell.TryGetValue((r, c), out var p))
                {
                    svg.Rect(x, y, cell, cell, "#eeeeee", $"{FieldNames[fields[r]]} x {FieldNames[fields[c]]}: never occurs");
                    continue;
                }
                double t = max > 0 && double.IsFinite(Value(p)) ? Math.Clamp(Value(p) / max, relative ? -1 : 0, 1) : 0;
                svg.Rect(x, y, cell, cell, relative ? SvgWriter.Diverging(t) : SvgWriter.Blue(t), RowExplanation.Inv(
                    $"{FieldNames[p.FieldA]} x {FieldNames[p.FieldB]}: mean attention {p.MeanAttention:F4} (x pairs {p.MeanRelativeAttention:F3}; 1 = uniform), mean |contribution| {p.MeanAbsContribution:F4}, {p.Count} occurrences"));
            }
        int lx = left + size + 30;
        if (relative)
        {
            svg.Gradient("scale", SvgWriter.Diverging(1), SvgWriter.Diverging(-1), SvgWriter.Diverging(0));
            svg.Rect(lx, top, legendWidth, 150, "url(#scale)", null);
            svg.Text(lx + legendWidth + 4, top + fontSize - 2, RowExplanation.Inv($"{Math.Pow(2, max):G3}x"), fontSize, "start");
            svg.Text(lx + legendWidth + 4, top + 75 + fontSize / 3, "1 (uniform)", fontSize, "start");
            svg.Text(lx + legendWidth + 4, top + 150, RowExplanation.Inv($"{Math.Pow(2, -max):G3}x"), fontSize, "start");
        }
        else
        {
            svg.Gradient("scale", SvgWriter.Blue(1), SvgWriter.Blue(0));
            svg.Rect(lx, top, legendWidth, 150, "url(#scale)", null);
            svg.Text(lx + legendWidth + 4, top + fontSize - 2, RowExplanation.Inv($"{max:G4}"), fontSize, "start");
            svg.Text(lx + legendWidth + 4, top + 150, "0", fontSize, "start");
        }
        svg.Rect(lx, top + 160, legendWidth, legendWidth, "#eeeeee", null);
        svg.Text(lx + legendWidth + 4, top + 160 + fontSize, "none", fontSize, "start");
        return svg.ToString();
    }
}

/// <summary>
/// Explains predictions of a model: per row, the raw score split into bias, linear terms and one
/// contribution per feature pair (with its attention weight); per dataset, statistics by field pair.
/// Attention comes from the accelerator through <see cref="Predictor"/>; contributions are computed
/// on the host from <see cref="Predictor.Model"/>.
/// </summary>
/// <param name="predictor">The predictor of the model to explain; calls go through its lock.</param>
public sealed class Explainer(Predictor predictor)
{
    private const int ChunkRows = 8192;
    private readonly Predictor _predictor = predictor ?? throw new ArgumentNullException(nameof(predictor));

    /// <summary>Explains one row given as feature ids and values.</summary>
    /// <exception cref="ArgumentException">The spans differ in length, or an id is outside the model.</exception>
    public RowExplanation Explain(ReadOnlySpan<int> ids, ReadOnlySpan<float> values) =>
        Explain(SingleRow(ids, values, _predictor.Model.FeatureCount))[0];

    /// <summary>A one-row dataset for a model of <paramref name="featureCount"/> features, with the arguments checked.</summary>
    internal static SparseDataset SingleRow(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int featureCount)
    {
        if (ids.Length != values.Length) throw new ArgumentException($"{ids.Length} ids but {values.Length} values", nameof(values));
        foreach (int id in ids)
            if ((uint)id >= (uint)featureCount)
                throw new ArgumentException($"feature id {id} is outside the model's 0..{featureCount - 1}", nameof(ids));
        return new SparseDataset([0, ids.Length], ids.ToArray(), values.ToArray(), [0f], featureCount, "<row>");
    }

    /// <summary>Explains every row of <paramref name="data"/>.</summary>
    public IReadOnlyList<RowExplanation> Explain(SparseDataset data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var model = _predictor.Model;
        var result = new List<RowExplanation>(data.Rows);
        var e = new float[Math.Max(data.MaxNnz, 1) * model.K];
        Scan(data, withRaw: true, (rows, r, raw, output, attention) =>
        {
            var ids = rows.RowIds(r);
            var values = rows.RowValues(r);
            var linear = new LinearTerm[ids.Length];
            for (int i = 0; i < ids.Length; i++) linear[i] = new LinearTerm(ids[i], values[i], model.Linear[ids[i]] * values[i]);
            var pairs = new List<PairContribution>(attention.Length);
            ForEachPair(model, ids, values, attention, e, (fi, fj, a, c) => pairs.Add(new PairContribution(fi, fj, a, c)));
            pairs.Sort((x, y) =>
            {
                int byAttention = Math.Abs(y.Attention).CompareTo(Math.Abs(x.Attention));
                return byAttention != 0 ? byAttention : Math.Abs(y.Contribution).CompareTo(Math.Abs(x.Contribution));
            });
            result.Add(new RowExplanation(raw, output, model.W0[0], linear, pairs));
        });
        return result;
    }

    /// <summary>
    /// Mean attention and mean |contribution| of every field pair over <paramref name="data"/>, with
    /// fields from <paramref name="map"/>; pairs are unordered (user x item and item x user are one).
    /// </summary>
    public FieldPairSummary Summarize(SparseDataset data, FeatureMap map)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(map);
        var model = _predictor.Model;
        var fieldOf = map.FieldArray(model.FeatureCount);
        var sums = new Dictionary<(int, int), (double Attention, double Relative, double AbsContribution, long Count)>();
        var e = new float[Math.Max(data.MaxNnz, 1) * model.K];
        Scan(data, withRaw: false, (rows, r, _, _, attention) =>
        {
            int pairs = ModelShape.PairCount(rows.RowLength(r));
            double total = 0;
            for (int p = 0; p < pairs; p++) total += attention[p];
            double toRelative = total > 0 ? pairs / total : double.NaN;
            ForEachPair(model, rows.RowIds(r), rows.RowValues(r), attention, e, (idI, idJ, a, c) =>
            {
                int fi = fieldOf[idI], fj = fieldOf[idJ];
                var key = fi <= fj ? (fi, fj) : (fj, fi);
                sums.TryGetValue(key, out var acc);
                sums[key] = (acc.Attention + a, acc.Relative + a * toRelative, acc.AbsContribution + Math.Abs(c), acc.Count + 1);
            });
        });
        long support = FieldPairSummary.MinimumSupport(data.Rows);
        var stats = sums.Select(kv => new FieldPairStat(kv.Key.Item1, kv.Key.Item2,
                kv.Value.Attention / kv.Value.Count, kv.Value.AbsContribution / kv.Value.Count, kv.Value.Count)
            { MeanRelativeAttention = kv.Value.Relative / kv.Value.Count })
            .OrderBy(s => s.Count < support).ThenByDescending(s => s.MeanAttention).ThenByDescending(s => s.MeanAbsContribution)
            .ThenBy(s => s.FieldA).ThenBy(s => s.FieldB).ToList();
        return new FieldPairSummary(map.FieldNames, stats, data.Rows);
    }

    private delegate void RowVisitor(SparseDataset rows, int row, float raw, float output, float[] attention);
    private delegate void PairVisitor(int featureI, int featureJ, float attention, float contribution);

    // Runs the predictor over the data in chunks (bounding the attention arrays held at once).
    private void Scan(SparseDataset data, bool withRaw, RowVisitor visit)
    {
        for (int start = 0; start < data.Rows; start += ChunkRows)
        {
            int count = Math.Min(ChunkRows, data.Rows - start);
            var chunk = count == data.Rows ? data : data.Subset(Enumerable.Range(start, count).ToArray());
            var raw = withRaw ? _predictor.PredictRaw(chunk) : null;
            var output = _predictor.Predict(chunk, out var attention);
            for (int r = 0; r < count; r++) visit(chunk, r, raw?[r] ?? float.NaN, output[r], attention[r]);
        }
    }

    // Visits every pair i < j of a row (in pair-index order) with its feature ids, attention and contribution a_ij · (p · (e_i ⊙ e_j)).
    private static void ForEachPair(AfmModel model, ReadOnlySpan<int> ids, ReadOnlySpan<float> values, float[] attention, float[] e, PairVisitor visit)
    {
        int k = model.K;
        for (int i = 0; i < ids.Length; i++)
            for (int f = 0; f < k; f++) e[i * k + f] = model.V[(long)ids[i] * k + f] * values[i];
        for (int j = 1; j < ids.Length; j++)
            for (int i = 0; i < j; i++)
            {
                double dot = 0;
                for (int f = 0; f < k; f++) dot += (double)model.Proj[f] * e[i * k + f] * e[j * k + f];
                float a = attention[ModelShape.PairIndex(i, j)];
                visit(ids[i], ids[j], a, (float)(a * dot));
            }
    }
}

/// <summary>Writes JSON text with <see cref="Utf8JsonWriter"/> (no reflection).</summary>
internal static class Json
{
    public static string Write(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            body(w);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Writes a number, or null when it is not finite (JSON has no NaN or infinity).</summary>
    public static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteNull(name);
    }
}

/// <summary>A minimal SVG writer: rectangles, text, one linear gradient.</summary>
internal sealed class SvgWriter
{
    private readonly StringBuilder _sb = new();

    public SvgWriter(int width, int height) =>
        _sb.Append(RowExplanation.Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\">\n"))
           .Append(RowExplanation.Inv($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"));

    public void Rect(int x, int y, int w, int h, string fill, string? tooltip)
    {
        _sb.Append(RowExplanation.Inv($"<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{fill}\" stroke=\"white\""));
        _sb.Append(tooltip is null ? "/>\n" : $"><title>{Escape(tooltip)}</title></rect>\n");
    }

    public void Text(int x, int y, string text, int size, string anchor, bool bold = false, int rotate = 0)
    {
        _sb.Append(RowExplanation.Inv($"<text x=\"{x}\" y=\"{y}\" font-size=\"{size}\" text-anchor=\"{anchor}\""));
        if (bold) _sb.Append(" font-weight=\"bold\"");
        if (rotate != 0) _sb.Append(RowExplanation.Inv($" transform=\"rotate({rotate} {x} {y})\""));
        _sb.Append('>').Append(Escape(text)).Append("</text>\n");
    }

    /// <summary>A vertical gradient from <paramref name="topColour"/> to <paramref name="bottomColour"/> (through <paramref name="middleColour"/> when given), usable as <c>url(#id)</c>.</summary>
    public void Gradient(string id, string topColour, string bottomColour, string? middleColour = null) =>
        _sb.Append($"<defs><linearGradient id=\"{id}\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"1\"><stop offset=\"0\" stop-color=\"{topColour}\"/>"
            + (middleColour is null ? "" : $"<stop offset=\"0.5\" stop-color=\"{middleColour}\"/>")
            + $"<stop offset=\"1\" stop-color=\"{bottomColour}\"/></linearGradient></defs>\n");

    /// <summary>Red (t = -1) through white (t = 0) to dark blue (t = 1).</summary>
    public static string Diverging(double t)
    {
        if (t >= 0) return Blue(t);
        static int Mix(int from, int to, double t) => (int)Math.Round(from + (to - from) * t);
        return $"#{Mix(255, 165, -t):x2}{Mix(255, 15, -t):x2}{Mix(255, 21, -t):x2}";
    }

    /// <summary>White (t = 0) to dark blue (t = 1).</summary>
    public static string Blue(double t)
    {
        static int Mix(int from, int to, double t) => (int)Math.Round(from + (to - from) * t);
        return $"#{Mix(255, 8, t):x2}{Mix(255, 48, t):x2}{Mix(255, 107, t):x2}";
    }

    public static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&quot;");

    public override string ToString() => _sb + "</svg>\n";
}
