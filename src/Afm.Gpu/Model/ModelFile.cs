using Afm.Gpu.IO;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Afm.Gpu.Model;

/// <summary>Free-form properties saved with a model: training options, accelerator, best epoch, metrics, ...</summary>
public sealed class ModelMetadata
{
    /// <summary>The properties, compared ordinally; saved as UTF-8 and sorted by key.</summary>
    public Dictionary<string, string> Properties { get; } = new(StringComparer.Ordinal);
}

/// <summary>
/// Reads and writes the versioned binary model file (<c>docs/model-format.md</c>). Saves are atomic:
/// a reader sees either the old file or the complete new one.
/// </summary>
public static class ModelFile
{
    // Layout, version 1; all little-endian, strings are an int32 byte count then UTF-8 bytes:
    //   "AFMGPU\0\0" | version u32 = 1
    //   kind u32 | loss u32 | featureCount i32 | k i32 | t i32 | labelMin f32 | labelMax f32
    //   (versions 2 to 4: data format u32 | hash bits u32)
    //   (versions 3 and 4: label column string | ignored columns string | numeric columns string, the CSV columns)
    //   (version 4 only: bucketed columns string, non-empty)
    //   metadata count i32 | (key string, value string) x count, sorted by key
    //   per tensor, in AfmModel.Tensors() order: name string | rank i32 | dims i32 x rank | count i64 | f32 x count
    //   CRC-32 (IEEE) u32 of every byte above | "AFMGPEND"

    /// <summary>
    /// The newest format version, which this build writes for a model of CSV or TSV data with bucketed columns
    /// (<see cref="Data.InputEncoding.BucketColumns"/>). A model of CSV or TSV data without them is written as version 3
    /// (<see cref="CsvFormatVersion"/>: its label, ignored and numeric columns), another non-default
    /// <see cref="AfmModel.Input"/> (format and feature hashing) as version 2 (<see cref="HashedFormatVersion"/>) and a
    /// model without one as version 1, each byte for byte as before, so that a file needing no later version stays
    /// readable by older builds. All four versions are read.
    /// </summary>
    public const uint FormatVersion = 4;

    /// <summary>The version that added the CSV columns (label, ignored, numeric).</summary>
    public const uint CsvFormatVersion = 3;

    /// <summary>The version that added the data format and hashing.</summary>
    public const uint HashedFormatVersion = 2;

    /// <summary>The first format version: no data format or hashing (libFM, ids index the table directly).</summary>
    public const uint FirstFormatVersion = 1;

    /// <summary>The largest embedding size k and attention factor t a model file may declare.</summary>
    public const int MaxDimension = 65536;

    private const int TrailerBytes = 12;
    private const int ChunkFloats = 1 << 18; // 1 MiB per write, read and CRC step
    internal static ReadOnlySpan<byte> Magic => "AFMGPU\0\0"u8;
    private static ReadOnlySpan<byte> EndMarker => "AFMGPEND"u8;
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Writes <paramref name="model"/> and optional <paramref name="metadata"/> to <paramref name="path"/>
    /// atomically: the file is written to <c>path.tmp-*</c> in the same directory, flushed to disk and
    /// renamed over <paramref name="path"/>. On failure the temporary file is removed and an existing
    /// file at <paramref name="path"/> is left as it was.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The directory of <paramref name="path"/> does not exist.</exception>
    /// <exception cref="ArgumentException">The model's shape is out of the format's bounds, or metadata is not valid text.</exception>
    public static void Save(AfmModel model, string path, ModelMetadata? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (ShapeError(model.Kind, model.Loss, model.FeatureCount, model.K, model.T) is { } error)
            throw new ArgumentException($"model cannot be saved: {error}", nameof(model));
        model.Input.Validate();
        if (model.Input.HashBits > 0 && model.Input.HashedFeatureCount != model.FeatureCount)
            throw new ArgumentException($"model cannot be saved: hash bits {model.Input.HashBits} give {model.Input.HashedFeatureCount} rows, but the model has {model.FeatureCount} features", nameof(model));
        var layout = Layout(model.Kind, model.FeatureCount, model.K, model.T);
        float[][] data = TensorData(model, layout);
        var entries = metadata?.Properties.OrderBy(p => p.Key, StringComparer.Ordinal).ToArray() ?? [];
        foreach (var (key, value) in entries)
            if (value is null) throw new ArgumentException($"metadata value for '{key}' is null", nameof(metadata));

        AtomicFile.Write(path, stream =>
        {
            var w = new Writer(stream);
            w.Bytes(Magic);
            w.UInt32(VersionFor(model.Input));
            w.UInt32((uint)model.Kind);
            w.UInt32((uint)model.Loss);
            w.Int32(model.FeatureCount);
            w.Int32(model.K);
            w.Int32(model.T);
            w.Single(model.LabelMin);
            w.Single(model.LabelMax);
            if (!model.Input.IsDefault)
            {
                w.UInt32((uint)model.Input.Format);
                w.Int32(model.Input.HashBits);
            }
            if (Data.CsvFormat.HasHeader(model.Input.Format))
            {
                w.String(model.Input.LabelColumn!, "label column");
                w.String(model.Input.IgnoredColumns!, "ignored columns");
                w.String(model.Input.NumericColumns!, "numeric columns");
                if (model.Input.BucketColumns is { } bucketed) w.String(bucketed, "bucketed columns");
            }
            w.Int32(entries.Length);
            foreach (var (key, value) in entries)
            {
                w.String(key, "metadata key");
                w.String(value, $"metadata value for '{key}'");
            }
            for (int i = 0; i < layout.Length; i++)
            {
                var (name, shape) = layout[i];
                w.String(name, "tensor name");
                w.Int32(shape.Length);
                foreach (int d in shape) w.Int32(d);
                w.Int64(data[i].LongLength);
                w.Floats(data[i]);
            }
            w.Trailer();
        });
    }

    /// <summary>Reads a model saved by <see cref="Save"/>; see <see cref="LoadWithMetadata"/>.</summary>
    /// <exception cref="ModelFormatException">The file is not a valid model file of a supported version.</exception>
    public static AfmModel Load(string path) => LoadWithMetadata(path).Model;

    /// <summary>
    /// Reads a model and its metadata saved by <see cref="Save"/>, checking every field: magic, version,
    /// shape bounds, tensor names and dimensions, length, CRC-32 and end marker.
    /// </summary>
    /// <exception cref="ModelFormatException">
    /// The file is not a model file, has an unsupported version, is truncated, corrupt or inconsistent.
    /// </exception>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    public static (AfmModel Model, ModelMetadata Metadata) LoadWithMetadata(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path)) throw new ModelFormatException(path, "is a directory, not a model file");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var r = new Reader(stream, path);

        int n = (int)Math.Min(Magic.Length, r.Length);
        Span<byte> magic = stackalloc byte[Magic.Length];
        r.Read(magic[..n], "magic");
        if (!magic[..n].SequenceEqual(Magic[..n])) throw r.Error("not an afm-gpu model file");
        r.Read(magic[n..], "magic");
        uint version = r.UInt32("format version");
        if (version is not (FirstFormatVersion or HashedFormatVersion or CsvFormatVersion or FormatVersion))
            throw r.Error($"unsupported format version {version}; this build reads versions {FirstFormatVersion} to {FormatVersion}");

        AfmModel model;
        ModelMetadata metadata;
        uint computed, stored;
        try
        {
            (model, metadata, computed, stored) = ReadBody(r, version);
        }
        catch (ModelFormatException e)
        {
            // A complete file (end marker in place) whose checksum fails is damaged; report that
            // rather than whatever inconsistency the damage happened to produce.
            if (IsCorrupt(stream)) throw r.Error("checksum mismatch: file is corrupt", e);
            throw;
        }
        if (computed != stored) throw r.Error("checksum mismatch: file is corrupt");
        if (r.Remaining != 0)
            throw r.Error($"trailing garbage: {r.Remaining} bytes after the end marker at offset {r.Position}");
        return (model, metadata);
    }

    private static (AfmModel, ModelMetadata, uint Computed, uint Stored) ReadBody(Reader r, uint version)
    {
        var kind = (ModelKind)r.UInt32("model kind");
        var loss = (LossKind)r.UInt32("loss kind");
        int n = r.Int32("feature count"), k = r.Int32("k"), t = r.Int32("t");
        float labelMin = r.Single("label min"), labelMax = r.Single("label max");
        if (ShapeError(kind, loss, n, k, t) is { } error) throw r.Error(error);
        var input = version == FirstFormatVersion ? Data.InputEncoding.Default : ReadInput(r, n, version);

        var metadata = new ModelMetadata();
        int count = r.Int32("metadata count");
        if (count < 0) throw r.Error($"negative metadata count {count}");
        for (int i = 0; i < count; i++)
        {
            string key = r.String($"metadata key {i}");
            if (!metadata.Properties.TryAdd(key, r.String($"metadata value '{key}'")))
                throw r.Error($"duplicate metadata key '{key}'");
        }

        // Allocate only if the file is as long as the header promises, so a damaged header cannot ask for
        // gigabytes; otherwise walk the tensors without storing them, to report where the file ends.
        var layout = Layout(kind, n, k, t);
        long expected = r.Position + layout.Sum(e => 4 + Utf8.GetByteCount(e.Name) + 4 + 4L * e.Shape.Length + 8 + 4 * Elements(e.Shape)) + TrailerBytes;
        AfmModel? model = r.Length >= expected ? new AfmModel(kind, n, k, t, loss) { LabelMin = labelMin, LabelMax = labelMax, Input = input } : null;
        float[]?[] data = model is null ? new float[layout.Length][] : TensorData(model, layout);
        for (int i = 0; i < layout.Length; i++)
        {
            var (name, shape) = layout[i];
            string found = r.String($"name of tensor {i}");
            if (found != name) throw r.Error($"expected tensor '{name}' at position {i}, found '{found}'");
            string what = $"tensor '{name}'";
            int rank = r.Int32($"{what} rank");
            if (rank != shape.Length) throw r.Error($"{what} has rank {rank}, expected {shape.Length}");
            for (int d = 0; d < rank; d++)
            {
                int dim = r.Int32($"{what} dimension {d}");
                if (dim != shape[d]) throw r.Error($"{what} dimension {d} is {dim}, expected {shape[d]}");
            }
            long elements = r.Int64($"{what} element count");
            if (elements != Elements(shape)) throw r.Error($"{what} has {elements} elements, its dimensions give {Elements(shape)}");
            r.Floats(data[i], elements, what);
        }

        uint computed = r.Crc;
        uint stored = r.UInt32("checksum");
        Span<byte> end = stackalloc byte[EndMarker.Length];
        r.Read(end, "end marker");
        if (!end.SequenceEqual(EndMarker)) throw r.Error($"missing end marker at offset {r.Position - end.Length}");
        return (model ?? throw new UnreachableException("a file shorter than its header says must end early"), metadata, computed, stored);
    }

    /// <summary>The version a model with <paramref name="input"/> is written as: the oldest that holds it.</summary>
    private static uint VersionFor(Data.InputEncoding input) =>
        input.IsDefault ? FirstFormatVersion
        : !Data.CsvFormat.HasHeader(input.Format) ? HashedFormatVersion
        : input.BucketColumns is null ? CsvFormatVersion : FormatVersion;

    /// <summary>
    /// Reads the data format and hash bits (versions 2 to 4), the CSV columns (versions 3 and 4) and the bucketed ones
    /// (version 4), which must agree with the feature count and with the version.
    /// </summary>
    private static Data.InputEncoding ReadInput(Reader r, int featureCount, uint version)
    {
        var format = (Data.DataFormat)r.UInt32("data format");
        int bits = r.Int32("hash bits");
        bool csvVersion = version is CsvFormatVersion or FormatVersion;
        if (csvVersion != Data.CsvFormat.HasHeader(format))
            throw r.Error(Data.CsvFormat.HasHeader(format) ? $"format version {version} has no CSV columns, so it cannot hold a model of CSV data (version {CsvFormatVersion} or {FormatVersion})"
                : $"format version {version} is for models of CSV data, but the data format is {(uint)format}");
        var input = csvVersion
            ? new Data.InputEncoding(format, bits, r.String("label column"), r.String("ignored columns"), r.String("numeric columns"))
            : new Data.InputEncoding(format, bits);
        if (version == FormatVersion)
        {
            string bucketed = r.String("bucketed columns");
            if (bucketed.Length == 0) throw r.Error($"format version {version} is for models with bucketed CSV columns, but none are named (such a model is version {CsvFormatVersion})");
            input = input with { BucketColumns = bucketed };
        }
        try { input.Validate(); }
        catch (ArgumentException e) { throw r.Error(e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal), e); }
        if (input.HashBits > 0 && input.HashedFeatureCount != featureCount)
            throw r.Error($"hash bits {input.HashBits} give {input.HashedFeatureCount} rows, but the feature count is {featureCount}");
        return input;
    }

    private static bool IsCorrupt(Stream stream)
    {
        long length = stream.Length;
        if (length < Magic.Length + TrailerBytes) return false;
        Span<byte> trailer = stackalloc byte[TrailerBytes];
        stream.Position = length - TrailerBytes;
        stream.ReadExactly(trailer);
        if (!trailer[4..].SequenceEqual(EndMarker)) return false;
        stream.Position = 0;
        var buffer = new byte[ChunkFloats * sizeof(float)];
        uint crc = 0;
        for (long left = length - TrailerBytes; left > 0;)
        {
            int chunk = (int)Math.Min(buffer.Length, left);
            stream.ReadExactly(buffer, 0, chunk);
            crc = Crc32.Append(crc, buffer.AsSpan(0, chunk));
            left -= chunk;
        }
        return crc != BinaryPrimitives.ReadUInt32LittleEndian(trailer);
    }

    private static string? ShapeError(ModelKind kind, LossKind loss, int n, int k, int t)
    {
        if (!Enum.IsDefined(kind)) return $"unknown model kind {(uint)kind}";
        if (!Enum.IsDefined(loss)) return $"unknown loss kind {(uint)loss}";
        if (n <= 0) return $"feature count {n} is not positive";
        if (k <= 0 || k > MaxDimension) return $"k = {k} is outside [1, {MaxDimension}]";
        if (kind == ModelKind.Fm && t != 0) return $"t = {t} for an FM model, which has no attention (t must be 0)";
        if (kind == ModelKind.Afm && (t <= 0 || t > MaxDimension)) return $"t = {t} is outside [1, {MaxDimension}]";
        if ((long)n * k > Array.MaxLength) return $"V would have {(long)n * k} elements, more than an array holds";
        if ((long)t * k > Array.MaxLength) return $"W would have {(long)t * k} elements, more than an array holds";
        return null;
    }

    // The tensors a model of this shape has, as AfmModel.Tensors() lists them; known without allocating one.
    private static (string Name, int[] Shape)[] Layout(ModelKind kind, int n, int k, int t) => kind == ModelKind.Afm
        ? [("w0", [1]), ("w", [n]), ("V", [n, k]), ("W", [t, k]), ("b", [t]), ("h", [t]), ("p", [k])]
        : [("w0", [1]), ("w", [n]), ("V", [n, k])];

    private static long Elements(int[] shape) => shape.Aggregate(1L, (product, d) => product * d);

    private static float[][] TensorData(AfmModel model, (string Name, int[] Shape)[] layout)
    {
        var tensors = model.Tensors().ToArray();
        bool same = tensors.Length == layout.Length && tensors.Zip(layout).All(p =>
            p.First.Name == p.Second.Name && p.First.Shape.AsSpan().SequenceEqual(p.Second.Shape)
            && p.First.Data.LongLength == Elements(p.Second.Shape));
        return same ? [.. tensors.Select(x => x.Data)]
            : throw new InvalidOperationException("ModelFile's tensor layout is out of step with AfmModel.Tensors()");
    }

    private sealed class Writer(Stream stream)
    {
        private byte[]? _swap;

        public uint Crc { get; private set; }

        public void Bytes(ReadOnlySpan<byte> bytes)
        {
            stream.Write(bytes);
            Crc = Crc32.Append(Crc, bytes);
        }

        public void UInt32(uint value)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, value);
            Bytes(b);
        }

        public void Int32(int value) => UInt32((uint)value);

        public void Single(float value) => UInt32((uint)BitConverter.SingleToInt32Bits(value));

        public void Int64(long value)
        {
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(b, value);
            Bytes(b);
        }

        public void String(string value, string what)
        {
            byte[] bytes;
            try { bytes = Utf8.GetBytes(value); }
            catch (EncoderFallbackException e) { throw new ArgumentException($"{what} is not valid UTF-16 text", e); }
            Int32(bytes.Length);
            Bytes(bytes);
        }

        public void Floats(ReadOnlySpan<float> data)
        {
            for (int i = 0; i < data.Length; i += ChunkFloats)
            {
                var chunk = data.Slice(i, Math.Min(ChunkFloats, data.Length - i));
                if (BitConverter.IsLittleEndian)
                {
                    Bytes(MemoryMarshal.AsBytes(chunk));
                    continue;
                }
                _swap ??= new byte[ChunkFloats * sizeof(float)];
                var swapped = MemoryMarshal.Cast<byte, int>(_swap.AsSpan())[..chunk.Length];
                BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<float, int>(chunk), swapped);
                Bytes(MemoryMarshal.AsBytes(swapped));
            }
        }

        public void Trailer()
        {
            Span<byte> crc = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(crc, Crc);
            stream.Write(crc);
            stream.Write(EndMarker);
        }
    }

    private sealed class Reader(Stream stream, string path)
    {
        public long Length { get; } = stream.Length;
        public long Position { get; private set; }
        public long Remaining => Length - Position;
        public uint Crc { get; private set; }

        public ModelFormatException Error(string message, Exception? inner = null) => new(path, message, inner);

        private ModelFormatException Truncated(long bytes, string what) =>
            Error($"truncated: expected {bytes} bytes of {what} at offset {Position}, file has {Length}");

        public void Read(Span<byte> buffer, string what)
        {
            if (buffer.Length > Remaining) throw Truncated(buffer.Length, what);
            try { stream.ReadExactly(buffer); }
            catch (EndOfStreamException e) { throw Error($"truncated: file ended while reading {what} at offset {Position}", e); }
            Crc = Crc32.Append(Crc, buffer);
            Position += buffer.Length;
        }

        public uint UInt32(string what)
        {
            Span<byte> b = stackalloc byte[4];
            Read(b, what);
            return BinaryPrimitives.ReadUInt32LittleEndian(b);
        }

        public int Int32(string what) => (int)UInt32(what);

        public float Single(string what) => BitConverter.Int32BitsToSingle(Int32(what));

        public long Int64(string what)
        {
            Span<byte> b = stackalloc byte[8];
            Read(b, what);
            return BinaryPrimitives.ReadInt64LittleEndian(b);
        }

        public string String(string what)
        {
            int length = Int32($"{what} length");
            if (length < 0) throw Error($"{what} has negative length {length}");
            if (length > Remaining) throw Truncated(length, what);
            var bytes = new byte[length];
            Read(bytes, what);
            try { return Utf8.GetString(bytes); }
            catch (DecoderFallbackException e) { throw Error($"{what} is not valid UTF-8", e); }
        }

        // Reads count floats into dest, or skips them when dest is null.
        public void Floats(float[]? dest, long count, string what)
        {
            long bytes = count * sizeof(float);
            if (bytes > Remaining) throw Truncated(bytes, what);
            if (dest is null)
            {
                stream.Seek(bytes, SeekOrigin.Current);
                Position += bytes;
                return;
            }
            for (int i = 0; i < dest.Length; i += ChunkFloats)
            {
                var chunk = dest.AsSpan(i, Math.Min(ChunkFloats, dest.Length - i));
                Read(MemoryMarshal.AsBytes(chunk), what);
                if (!BitConverter.IsLittleEndian)
                {
                    var ints = MemoryMarshal.Cast<float, int>(chunk);
                    BinaryPrimitives.ReverseEndianness(ints, ints);
                }
            }
        }
    }
}
