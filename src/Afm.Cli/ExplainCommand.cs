using Afm.Gpu;
using Afm.Gpu.Data;
using Afm.Gpu.Explain;
using Afm.Gpu.IO;
using Afm.Gpu.Model;
using Afm.Gpu.Training;

namespace Afm.Cli;

internal static class ExplainCommand
{
    public static int Run(ExplainOptions o, TextWriter stdout, TextWriter stderr)
    {
        if (o.FeatureMap is not null && o.Fields is not null) throw new ArgumentException("give --feature-map or --fields, not both");
        var heat = o.Heat.ToLowerInvariant() switch
        {
            "attention" => HeatMapValue.MeanAttention,
            "contribution" => HeatMapValue.MeanAbsContribution,
            _ => throw new ArgumentException($"--heat {o.Heat}: use attention or contribution"),
        };
        if (o.Rows < 0 || o.Top <= 0) throw new ArgumentException("--rows must be >= 0 and --top > 0");
        var outputs = new[] { ("--csv", o.Csv), ("--json", o.Json), ("--svg", o.Svg) }.Where(x => x.Item2 is not null).Select(x => (Option: x.Item1, Path: x.Item2!)).ToArray();
        for (int i = 0; i < outputs.Length; i++)
        {
            Cli.CheckOutput(outputs[i].Option, outputs[i].Path, o.Model, o.Data, o.FeatureMap);
            for (int j = 0; j < i; j++)
                if (Cli.SamePath(outputs[i].Path, outputs[j].Path))
                    throw new ArgumentException($"{outputs[i].Option} {outputs[i].Path}: is also the {outputs[j].Option} output");
        }
        // An output sent to standard output (--csv /dev/stdout) is all it holds: the tables go to standard error.
        if (outputs.Any(x => Cli.IsStandardOutput(x.Path))) stdout = stderr;
        var model = AfmEngine.LoadModel(o.Model);
        var map = o.FeatureMap is not null ? FeatureMap.Load(o.FeatureMap)
            : o.Fields is not null ? FeatureMap.FromRanges(o.Fields, model.FeatureCount)
            : null;
        SparseDataset data;
        using (var files = new DataFiles(o, stdout))
        {
            (data, map) = files.ReadAllNamed(o.Data, model, map);
            files.ReportUnknown(stderr, o.Data);
        }
        if (model.Input.HashBits > 0 && o.FeatureMap is null && o.Fields is null)
            stdout.WriteLine("(hashed model: features are named by the names hashed to each row, fields by the part before '=' or ':')");
        using var acc = Cli.OpenAccelerator(o, stderr);
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        var explainer = new Explainer(predictor);

        int shown = Math.Min(o.Rows, data.Rows);
        var rows = shown == 0 ? [] : explainer.Explain(data.Subset(Enumerable.Range(0, shown).ToArray()));
        for (int r = 0; r < rows.Count; r++)
        {
            stdout.WriteLine($"row {r + 1} (line {r + 1} of {o.Data}): label {data.Labels[r]}");
            stdout.WriteLine(rows[r].ToTable(map, o.Top));
        }

        if (map is null)
        {
            stdout.WriteLine("(no --feature-map or --fields: each feature is its own field in the summary)");
            map = FeatureMap.FromFields(Enumerable.Range(0, model.FeatureCount).ToArray());
        }
        var summary = explainer.Summarize(data, map);
        stdout.WriteLine($"field pairs over {summary.Rows} rows:");
        stdout.WriteLine(summary.ToTable());
        if (o.Csv is not null) Write(o.Csv, summary.ToCsv(), stderr);
        if (o.Svg is not null) Write(o.Svg, summary.ToSvg(heat), stderr);
        if (o.Json is not null)
        {
            string json = "{\"rows\":[" + string.Join(",", rows.Select(r => r.ToJson(map))) + "],\"fieldPairs\":" + summary.ToJson() + "}";
            Write(o.Json, json, stderr);
        }
        return 0;
    }

    private static void Write(string path, string text, TextWriter stderr)
    {
        AtomicFile.WriteLines(path, [text.TrimEnd('\n')]);
        stderr.WriteLine($"wrote {path}");
    }

    /// <summary>
    /// The format <c>export</c> writes: <c>--format</c> where given, else the output's extension (<c>.onnx</c>: ONNX,
    /// anything else: safetensors); an output named for one format that would receive another is refused, since a
    /// file's name is how the next program chooses its reader.
    /// </summary>
    internal static string ExportFormat(ExportOptions o)
    {
        string? named = FormatNamed(o.Output);
        string? given = o.Format?.ToLowerInvariant();
        if (given is not (null or "safetensors" or "onnx")) throw new ArgumentException($"--format {o.Format}: must be safetensors or onnx");
        if (o.Import)
        {
            if (given == "onnx") throw new ArgumentException("--import reads safetensors; --format onnx cannot be imported");
            if (named is "onnx" or "safetensors")
                throw new ArgumentException($"-o/--output {o.Output}: --import writes the native .afm format, but the name says {Name(named)}; name it .afm");
            return "safetensors";
        }
        string format = given ?? (named == "onnx" ? "onnx" : "safetensors");
        if (named is not null && named != format)
            throw new ArgumentException($"-o/--output {o.Output}: the name says {Name(named)}, but {(given is null ? "export" : $"--format {o.Format}")} writes {Name(format)}; "
                + (named == "afm" ? "a native model is written by train, or by export --import from safetensors" : $"name it {(format == "onnx" ? ".onnx" : ".safetensors")} or give --format {named}"));
        return format;
    }

    /// <summary>The model format a file's name says (<c>onnx</c>, <c>safetensors</c> or <c>afm</c>), or null where it says none.</summary>
    internal static string? FormatNamed(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".onnx" => "onnx",
        ".safetensors" => "safetensors",
        ".afm" => "afm",
        _ => null,
    };

    /// <summary>A format of <see cref="FormatNamed"/> as a message names it.</summary>
    internal static string Name(string format) => format switch { "onnx" => "ONNX", "safetensors" => "safetensors", _ => "a native .afm model" };

    public static int Export(ExportOptions o, TextWriter stderr)
    {
        Cli.CheckOutput("-o/--output", o.Output, o.Model);
        string format = ExportFormat(o);
        if (o.NoAttention && format != "onnx") throw new ArgumentException("--no-attention applies to --format onnx only");
        if (format == "onnx")
        {
            var model = Afm.Gpu.AfmEngine.LoadModel(o.Model);
            Afm.Gpu.Model.Onnx.OnnxExport.Export(model, o.Output, options: new() { IncludeAttention = !o.NoAttention });
        }
        else if (o.Import)
        {
            var model = Safetensors.Import(o.Model);
            ModelFile.Save(model, o.Output);
        }
        else
        {
            var model = ModelFile.Load(o.Model);
            Safetensors.Export(model, o.Output);
        }
        stderr.WriteLine($"wrote {o.Output}");
        return 0;
    }
}
