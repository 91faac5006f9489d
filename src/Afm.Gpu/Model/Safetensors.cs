using Afm.Gpu.IO;
using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Afm.Gpu.Model;

/// <summary>
/// Exports and imports models in the safetensors format (<c>docs/safetensors.md</c>), so that
/// Python (numpy, PyTorch) can read them: an 8-byte little-endian header length N, N bytes of
/// UTF-8 JSON (padded with spaces to a multiple of 8), then the tensors' bytes back to back.
/// Tensors are F32, named and shaped as in <see cref="AfmModel.Tensors"/>; <c>__metadata__</c>
/// holds <c>format</c> = <c>afm-gpu</c>, <c>model</c>, <c>loss</c>, <c>k</c>, <c>t</c>,
/// <c>label_min</c>, <c>label_max</c> and <c>crc32</c> (the CRC-32 of the tensor bytes and of the model's
/// metadata values, checked on import when present), plus any caller-supplied properties.
/// </summary>
public static class Safetensors
{
    /// <summary>The value of the <c>format</c> metadata entry.</summary>
    public const string FormatName = "afm-gpu";

    /// <summary>The largest header accepted, as in the reference implementation (100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private static readonly string[] Reserved = ["format", "model", "loss", "k", "t", "label_min", "label_max", "crc32", "data_format", "hash_bits", "feature_hash", "csv_label_column", "csv_ignored_columns", "csv_numeric_columns", "csv_bucket_columns"];
    private const int ChunkFloats = 1 << 18;

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> atomically (a temporary file in the
    /// same directory, flushed, then renamed over <paramref name="path"/>).
    /// </summary>
    /// <param name="model">The model to export.</param>
    /// <param name="path">The file to write, conventionally <c>*.safetensors</c>.</param>
    /// <param name="metadata">Extra string properties for <c>__metadata__</c>; the reserved keys
    /// (format, model, loss, k, t, label_min, label_max, crc32) may not be among them.</param>
    /// <exception cref="ArgumentException">A metadata key is reserved.</exception>
    public static void Export(AfmModel model, string path, ModelMetadata? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(path);
        var extra = metadata?.Properties ?? [];
        foreach (string key in Reserved)
            if (extra.ContainsKey(key)) throw new ArgumentException($"metadata key '{key}' is reserved", nameof(metadata));
        var fields = Fields(model);
        foreach (var (key, value) in InputFields(model)) fields[key] = value;
        byte[] header = Header(model, fields, extra, Checksum(model.Tensors().Select(x => x.Data), fields));

        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var (_, data, _) in model.Tensors()) WriteFloats(stream, data);
        });
    }

    /// <summary>Reads a model exported by <see cref="Export"/>; see <see cref="ImportWithMetadata"/>.</summary>
    /// <exception cref="ModelFormatException">The file is not a valid afm-gpu safetensors file.</exception>
    public static AfmModel Import(string path) => ImportWithMetadata(path).Model;

    /// <summary>
    /// Reads a model and the non-reserved <c>__metadata__</c> entries, checking the header length,
    /// the JSON, every tensor's dtype, shape and byte range (contiguous from 0, covering the whole
    /// buffer), and the agreement of shapes with the metadata.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is truncated, malformed or inconsistent.</exception>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    public static (AfmModel Model, ModelMetadata Metadata) ImportWithMetadata(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path)) throw new ModelFormatException(path, "is a directory, not a model file");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long fileLength = stream.Length;
        if (fileLength < 8) throw Bad(path, $"truncated: {fileLength} bytes, too short for the 8-byte header length");
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > MaxHeaderBytes)
            throw Bad(path, $"not an afm-gpu model file: neither the native format nor safetensors (as safetensors, its header length {n} exceeds the limit of {MaxHeaderBytes} bytes)");
        if ((long)n > fileLength - 8) throw Bad(path, $"truncated: header length {n} but only {fileLength - 8} bytes follow");
        var headerBytes = new byte[n];
        stream.ReadExactly(headerBytes);
        long bufferLength = fileLength - 8 - (long)n;
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes)) throw Bad(path, "header is not valid UTF-8 text");

        JsonDocument doc;
        try { doc = JsonDocument.Parse(headerBytes); }
        catch (JsonException e) { throw Bad(path, $"header is not valid JSON: {e.Message}", e); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad(path, "header is not a JSON object");
            Dictionary<string, string> meta;
            List<TensorEntry> tensors;
            AfmModel model;
            try
            {
                (meta, tensors) = ParseHeader(doc.RootElement, path);
                model = BuildModel(meta, tensors, bufferLength, path);
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException or ArgumentException or KeyNotFoundException)
            {
                throw Bad(path, $"malformed header: {e.Message}", e);
            }
            var byName = model.Tensors().ToDictionary(x => x.Name, x => x.Data);
            var ordered = tensors.OrderBy(t => t.Begin).ToList();
            foreach (var t in ordered)
            {
                stream.Position = 8 + (long)n + t.Begin;
                ReadFloats(stream, byName[t.Name]);
            }
            if (meta.TryGetValue("crc32", out string? crcText))
            {
                if (crcText.Length != 8 || !uint.TryParse(crcText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint stored))
                    throw Bad(path, $"__metadata__ 'crc32' = '{crcText}' is not 8 hex digits");
                uint computed = Checksum(ordered.Select(t => byName[t.Name]), meta);
                if (computed != stored)
                    throw Bad(path, $"checksum mismatch: file is corrupt (the header's crc32 is {stored:x8}, the tensor bytes and metadata give {computed:x8})");
            }
            var metadata = new ModelMetadata();
            foreach (var (key, value) in meta)
                if (!Reserved.Contains(key)) metadata.Properties[key] = value;
            return (model, metadata);
        }
    }

    private sealed record TensorEntry(string Name, string Dtype, long[] Shape, long Begin, long End);

    /// <summary>The metadata entries the checksum covers, in this order, with how this build writes them.</summary>
    private static readonly string[] Checked = ["model", "loss", "k", "t", "label_min", "label_max"];

    /// <summary>
    /// The entries of a model's <see cref="AfmModel.Input"/>, written only when it is not the default (then also
    /// <c>feature_hash</c>, the hash in words); the checksum covers them after <see cref="Checked"/> when present.
    /// </summary>
    private static readonly string[] InputKeys = ["data_format", "hash_bits", "csv_label_column", "csv_ignored_columns", "csv_numeric_columns", "csv_bucket_columns"];

    private static Dictionary<string, string> Fields(AfmModel model) => new(StringComparer.Ordinal)
    {
        ["model"] = model.Kind == ModelKind.Afm ? "afm" : "fm",
        ["loss"] = model.Loss == LossKind.Squared ? "squared" : "logistic",
        ["k"] = model.K.ToString(CultureInfo.InvariantCulture),
        ["t"] = model.T.ToString(CultureInfo.InvariantCulture),
        ["label_min"] = model.LabelMin.ToString("R", CultureInfo.InvariantCulture),
        ["label_max"] = model.LabelMax.ToString("R", CultureInfo.InvariantCulture),
    };

    /// <summary>The <see cref="InputKeys"/> entries of <paramref name="model"/> (none for the default input) and <c>feature_hash</c>.</summary>
    private static Dictionary<string, string> InputFields(AfmModel model)
    {
        if (model.Input.IsDefault) return [];
        var fields = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["data_format"] = Data.InputEncoding.FormatName(model.Input.Format),
            ["hash_bits"] = model.Input.HashBits.ToString(CultureInfo.InvariantCulture),
            ["feature_hash"] = Data.FeatureHash.Spec,
        };
        if (Data.CsvFormat.HasHeader(model.Input.Format))
        {
            fields["csv_label_column"] = model.Input.LabelColumn!;
            fields["csv_ignored_columns"] = model.Input.IgnoredColumns!;
            fields["csv_numeric_columns"] = model.Input.NumericColumns!;
            if (model.Input.BucketColumns is { } bucketed) fields["csv_bucket_columns"] = bucketed;
        }
        return fields;
    }

    /// <summary>
    /// CRC-32 of the tensors' bytes as stored (little-endian float32, back to back), followed by the UTF-8
    /// values of <see cref="Checked"/>, each ended by '\n' (an absent entry counts as empty).
    /// </summary>
    private static uint Checksum(IEnumerable<float[]> tensors, IReadOnlyDictionary<string, string> meta)
    {
        uint crc = DataCrc(tensors);
        foreach (string key in Checked)
            crc = Crc32.Append(crc, System.Text.Encoding.UTF8.GetBytes((meta.TryGetValue(key, out var v) ? v : "") + "\n"));
        foreach (string key in InputKeys)
            if (meta.TryGetValue(key, out var v))
                crc = Crc32.Append(crc, System.Text.Encoding.UTF8.GetBytes(v + "\n"));
        return crc;
    }

    /// <summary>CRC-32 of the tensors' bytes as stored: little-endian float32, back to back.</summary>
    private static uint DataCrc(IEnumerable<float[]> tensors)
    {
        uint crc = 0;
        byte[]? swap = null;
        foreach (float[] data in tensors)
            for (int i = 0; i < data.Length; i += ChunkFloats)
            {
                var chunk = data.AsSpan(i, Math.Min(ChunkFloats, data.Length - i));
                if (BitConverter.IsLittleEndian)
                {
                    crc = Crc32.Append(crc, MemoryMarshal.AsBytes(chunk));
                    continue;
                }
                swap ??= new byte[ChunkFloats * sizeof(float)];
                var dest = MemoryMarshal.Cast<byte, int>(swap.AsSpan())[..chunk.Length];
                BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<float, int>(chunk), dest);
                crc = Crc32.Append(crc, MemoryMarshal.AsBytes(dest));
            }
        return crc;
    }

    private static byte[] Header(AfmModel model, IReadOnlyDictionary<string, string> fields, IReadOnlyDictionary<string, string> extra, uint crc)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            w.WriteString("format", FormatName);
            foreach (string key in Checked) w.WriteString(key, fields[key]);
            foreach (var (key, value) in fields.Where(f => !Checked.Contains(f.Key)).OrderBy(f => f.Key, StringComparer.Ordinal)) w.WriteString(key, value);
            w.WriteString("crc32", crc.ToString("x8", CultureInfo.InvariantCulture));
            foreach (var (key, value) in extra.OrderBy(p => p.Key, StringComparer.Ordinal))
                w.WriteString(key, value ?? throw new ArgumentException($"metadata value for '{key}' is null"));
            w.WriteEndObject();
            long offset = 0;
            foreach (var (name, data, shape) in model.Tensors())
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (int d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += data.LongLength * sizeof(float);
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static (Dictionary<string, string> Meta, List<TensorEntry> Tensors) ParseHeader(
        JsonElement root, string path)
    {
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        var tensors = new List<TensorEntry>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in root.EnumerateObject())
        {
            if (!seen.Add(entry.Name)) throw Bad(path, $"duplicate header key '{entry.Name}'");
            if (entry.Name == "__metadata__")
            {
                if (entry.Value.ValueKind != JsonValueKind.Object) throw Bad(path, "__metadata__ is not an object");
                foreach (var p in entry.Value.EnumerateObject())
                {
                    if (p.Value.ValueKind != JsonValueKind.String) throw Bad(path, $"__metadata__ entry '{p.Name}' is not a string");
                    if (!meta.TryAdd(p.Name, p.Value.GetString()!)) throw Bad(path, $"duplicate __metadata__ key '{p.Name}'");
                }
                continue;
            }
            string what = $"tensor '{entry.Name}'";
            var v = entry.Value;
            if (v.ValueKind != JsonValueKind.Object) throw Bad(path, $"{what} is not an object");
            string dtype = v.TryGetProperty("dtype", out var d) && d.ValueKind == JsonValueKind.String
                ? d.GetString()! : throw Bad(path, $"{what} has no string dtype");
            long[] shape = Integers(v, "shape", what, path);
            long[] offsets = Integers(v, "data_offsets", what, path);
            if (offsets.Length != 2) throw Bad(path, $"{what}: data_offsets has {offsets.Length} entries, expected 2");
            tensors.Add(new TensorEntry(entry.Name, dtype, shape, offsets[0], offsets[1]));
        }
        return (meta, tensors);
    }

    private static long[] Integers(JsonElement obj, string property, string what, string path)
    {
        if (!obj.TryGetProperty(property, out var array) || array.ValueKind != JsonValueKind.Array)
            throw Bad(path, $"{what} has no {property} array");
        var result = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long x) || x < 0)
                throw Bad(path, $"{what}: {property} holds '{item.GetRawText()}', not a non-negative integer");
            result[i++] = x;
        }
        return result;
    }

    /// <summary>
    /// The model's input from <c>data_format</c> and <c>hash_bits</c> (both absent: the default), and for CSV
    /// <c>csv_label_column</c>, <c>csv_ignored_columns</c>, <c>csv_numeric_columns</c> and <c>csv_bucket_columns</c> (absent: none).
    /// </summary>
    private static Data.InputEncoding ReadInput(Dictionary<string, string> meta, int featureCount, string path)
    {
        bool hasFormat = meta.TryGetValue("data_format", out var formatText), hasBits = meta.TryGetValue("hash_bits", out var bitsText);
        if (!hasFormat && !hasBits) return Data.InputEncoding.Default;
        var format = formatText switch
        {
            "libfm" or null => Data.DataFormat.LibFm,
            "criteo" => Data.DataFormat.Criteo,
            "csv" => Data.DataFormat.Csv,
            "tsv" => Data.DataFormat.Tsv,
            _ => throw Bad(path, $"__metadata__ data_format is '{formatText}', expected 'libfm', 'criteo', 'csv' or 'tsv'"),
        };
        int bits = 0;
        if (hasBits && !int.TryParse(bitsText, NumberStyles.None, CultureInfo.InvariantCulture, out bits))
            throw Bad(path, $"__metadata__ 'hash_bits' = '{bitsText}' is not a non-negative integer");
        meta.TryGetValue("csv_label_column", out var label);
        meta.TryGetValue("csv_ignored_columns", out var ignored);
        meta.TryGetValue("csv_numeric_columns", out var numeric);
        meta.TryGetValue("csv_bucket_columns", out var bucketed);
        var input = new Data.InputEncoding(format, bits, label, ignored, numeric, bucketed);
        try { input.Validate(); }
        catch (ArgumentException e) { throw Bad(path, $"__metadata__: {e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal)}", e); }
        if (bits > 0 && input.HashedFeatureCount != featureCount)
            throw Bad(path, $"__metadata__ hash_bits {bits} give {input.HashedFeatureCount} rows, but the feature count is {featureCount}");
        return input;
    }

    private static AfmModel BuildModel(Dictionary<string, string> meta, List<TensorEntry> tensors, long bufferLength,
        string path)
    {
        string Meta(string key) => meta.TryGetValue(key, out var v) ? v : throw Bad(path, $"__metadata__ has no '{key}' entry");
        int MetaInt(string key) => int.TryParse(Meta(key), NumberStyles.None, CultureInfo.InvariantCulture, out int x)
            ? x : throw Bad(path, $"__metadata__ '{key}' = '{Meta(key)}' is not a non-negative integer");
        float MetaFloat(string key) => !meta.ContainsKey(key) ? float.NaN
            : float.TryParse(Meta(key), NumberStyles.Float, CultureInfo.InvariantCulture, out float x)
            ? x : throw Bad(path, $"__metadata__ '{key}' = '{Meta(key)}' is not a number");

        if (meta.TryGetValue("format", out var format) && format != FormatName)
            throw Bad(path, $"__metadata__ format is '{format}', expected '{FormatName}'");
        var kind = Meta("model") switch
        {
            "afm" => ModelKind.Afm,
            "fm" => ModelKind.Fm,
            var other => throw Bad(path, $"__metadata__ model is '{other}', expected 'afm' or 'fm'"),
        };
        var loss = Meta("loss") switch
        {
            "squared" => LossKind.Squared,
            "logistic" => LossKind.Logistic,
            var other => throw Bad(path, $"__metadata__ loss is '{other}', expected 'squared' or 'logistic'"),
        };
        int k = MetaInt("k"), t = MetaInt("t");

        // Byte ranges: contiguous from 0, each as long as its shape says, together the whole buffer.
        long expected = 0;
        foreach (var e in tensors.OrderBy(e => e.Begin))
        {
            if (e.Dtype != "F32") throw Bad(path, $"tensor '{e.Name}' has dtype {e.Dtype}; only F32 is supported");
            if (e.Begin != expected)
                throw Bad(path, $"tensor '{e.Name}' starts at byte {e.Begin} of the buffer, expected {expected} (tensors must be contiguous)");
            if (e.End < e.Begin) throw Bad(path, $"tensor '{e.Name}' ends at {e.End}, before it starts at {e.Begin}");
            long elements = 1;
            foreach (long dim in e.Shape)
                if (dim > int.MaxValue || (elements *= dim) > Array.MaxLength)
                    throw Bad(path, $"tensor '{e.Name}' shape [{string.Join(",", e.Shape)}] is too large");
            if (e.End - e.Begin != elements * sizeof(float))
                throw Bad(path, $"tensor '{e.Name}' spans {e.End - e.Begin} bytes, its shape [{string.Join(",", e.Shape)}] needs {elements * sizeof(float)}");
            if (e.End > bufferLength)
                throw Bad(path, $"truncated: tensor '{e.Name}' ends at byte {e.End} of the buffer, which has {bufferLength}");
            expected = e.End;
        }
        if (expected != bufferLength)
            throw Bad(path, $"the tensors cover {expected} bytes but the buffer has {bufferLength} (trailing or missing data)");

        var byName = tensors.ToDictionary(e => e.Name);
        long[] ShapeOf(string name) => byName.TryGetValue(name, out var e) ? e.Shape : throw Bad(path, $"missing tensor '{name}'");
        long[] w = ShapeOf("w");
        if (w.Length != 1 || w[0] == 0) throw Bad(path, $"tensor 'w' has shape [{string.Join(",", w)}], expected [n] with n > 0");
        int n = (int)w[0];
        if (k == 0 || k > ModelFile.MaxDimension) throw Bad(path, $"k = {k} is outside [1, {ModelFile.MaxDimension}]");
        if (kind == ModelKind.Afm ? t == 0 || t > ModelFile.MaxDimension : t != 0)
            throw Bad(path, $"t = {t} is invalid for {kind} (AFM needs 1..{ModelFile.MaxDimension}, FM needs 0)");

        // Every shape is checked before the model is allocated, so a damaged header cannot ask for more memory than the file holds.
        (string Name, long[] Shape)[] layout = kind == ModelKind.Afm
            ? [("w0", [1]), ("w", [n]), ("V", [n, k]), ("W", [t, k]), ("b", [t]), ("h", [t]), ("p", [k])]
            : [("w0", [1]), ("w", [n]), ("V", [n, k])];
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in layout)
        {
            names.Add(name);
            long[] found = ShapeOf(name);
            if (!found.SequenceEqual(shape))
                throw Bad(path, $"tensor '{name}' has shape [{string.Join(",", found)}], expected [{string.Join(",", shape)}] (n = {n}, k = {k}, t = {t})");
        }
        foreach (var e in tensors)
            if (!names.Contains(e.Name)) throw Bad(path, $"unexpected tensor '{e.Name}' for {kind}");
        return new AfmModel(kind, n, k, Math.Max(t, 1), loss) { LabelMin = MetaFloat("label_min"), LabelMax = MetaFloat("label_max"), Input = ReadInput(meta, n, path) };
    }

    private static ModelFormatException Bad(string path, string message, Exception? inner = null) => new(path, message, inner);

    // Little-endian float32, in chunks so that no span exceeds int.MaxValue bytes.
    private static void WriteFloats(Stream stream, float[] data)
    {
        var bytes = new byte[ChunkFloats * sizeof(float)];
        for (int i = 0; i < data.Length; i += ChunkFloats)
        {
            var chunk = data.AsSpan(i, Math.Min(ChunkFloats, data.Length - i));
            var dest = MemoryMarshal.Cast<byte, int>(bytes.AsSpan())[..chunk.Length];
            MemoryMarshal.Cast<float, int>(chunk).CopyTo(dest);
            if (!BitConverter.IsLittleEndian) BinaryPrimitives.ReverseEndianness(dest, dest);
            stream.Write(MemoryMarshal.AsBytes(dest));
        }
    }

    private static void ReadFloats(Stream stream, float[] data)
    {
        for (int i = 0; i < data.Length; i += ChunkFloats)
        {
            var chunk = MemoryMarshal.Cast<float, int>(data.AsSpan(i, Math.Min(ChunkFloats, data.Length - i)));
            stream.ReadExactly(MemoryMarshal.AsBytes(chunk));
            if (!BitConverter.IsLittleEndian) BinaryPrimitives.ReverseEndianness(chunk, chunk);
        }
    }
}
