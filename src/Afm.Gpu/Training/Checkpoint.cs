using System.Buffers.Binary;
using System.Text;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.IO;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;

namespace Afm.Gpu.Training;

/// <summary>
/// Where a <see cref="Trainer"/> keeps its checkpoint, and whether it resumes from it. At each epoch end
/// the trainer writes, atomically, everything the rest of the run depends on: the device model and the
/// optimizer's state, the step count (which seeds dropout and Adam's bias correction), the epoch (the
/// shuffles are replayed from the seed), the best model so far with its epoch and score, and the history.
/// A resumed run therefore ends with the same model, bit for bit, as one never interrupted (on the same
/// accelerator).
/// </summary>
public sealed class CheckpointOptions
{
    /// <summary>The directory of the checkpoint (created if missing); it holds one file, <see cref="FileName"/>.</summary>
    public required string Directory { get; init; }

    /// <summary>Continue from the checkpoint in <see cref="Directory"/> when there is one (otherwise start afresh).</summary>
    public bool Resume { get; init; }

    /// <summary>The checkpoint's file name inside <see cref="Directory"/>.</summary>
    public const string FileName = "checkpoint.afmck";

    /// <summary>The checkpoint file's path.</summary>
    public string FilePath => Path.Combine(Directory, FileName);

    /// <summary>The last epoch saved in the checkpoint of <paramref name="directory"/>, or null when there is none.</summary>
    /// <exception cref="ModelFormatException">The file there is not a checkpoint.</exception>
    public static int? LastEpoch(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var r = new CheckpointReader(stream, path);
        r.Header();
        r.UInt64();
        return r.Int32();
    }
}

/// <summary>What a checkpoint restores.</summary>
internal sealed record CheckpointState(int Epoch, long Step, int BestEpoch, double BestScore, int SinceBest, List<EpochReport> History);

/// <summary>The checkpoint file: "AFMGPUCK", version, run fingerprint, counters, history, best model, device buffers, CRC-32, "AFMGPEND".</summary>
internal static class CheckpointFile
{
    /// <summary>The version written: 2 adds each report's share of its epoch (validations within epochs); 1 is read too.</summary>
    public const uint Version = 2;
    public static ReadOnlySpan<byte> Magic => "AFMGPUCK"u8;
    public static ReadOnlySpan<byte> End => "AFMGPEND"u8;

    /// <summary>
    /// Identifies a run: the options that shape its arithmetic (not the epoch budget or the patience, which may
    /// change between a run and its resumption) and the training and validation data.
    /// </summary>
    public static ulong Fingerprint(TrainerOptions o, RowSource train, RowSource? validation)
    {
        string text = $"{o.Model}|{o.K}|{o.T}|{o.BatchSize}|{BitConverter.SingleToInt32Bits(o.LearningRate)}|{o.Optimizer}|{BitConverter.SingleToInt32Bits(o.Lambda)}|" +
            $"{BitConverter.SingleToInt32Bits(o.Keep0)}|{BitConverter.SingleToInt32Bits(o.Keep1)}|{o.Loss}|{o.Seed}|{BitConverter.SingleToInt32Bits(o.ValidationFraction)}|{BitConverter.SingleToInt32Bits(o.InitStd)}" +
            // (L2 only when set, so that checkpoints written before it existed still match)
            (o.L2Embedding != 0 || o.L2Linear != 0 ? $"|l2={BitConverter.SingleToInt32Bits(o.L2Embedding)},{BitConverter.SingleToInt32Bits(o.L2Linear)}" : "");
        uint a = Crc32.Compute(Encoding.UTF8.GetBytes(text)), b = 0;
        foreach (var d in validation is null ? [train] : new[] { train, validation })
            b = d.AppendFingerprint(b);
        return (ulong)a << 32 | b;
    }

    private static DeviceBuffer<float>?[] Buffers(DeviceModel d) =>
        [d.Dense, d.V, d.Linear, d.DenseState1, d.DenseState2, d.VState1, d.VState2, d.LinearState1, d.LinearState2];

    public static void Save(CheckpointOptions options, ulong fingerprint, CheckpointState state, AfmModel best, DeviceModel device)
    {
        System.IO.Directory.CreateDirectory(options.Directory);
        AtomicFile.Write(options.FilePath, stream =>
        {
            var w = new CheckpointWriter(stream);
            w.Bytes(Magic);
            w.UInt32(Version);
            w.UInt64(fingerprint);
            w.Int32(state.Epoch);
            w.Int64(state.Step);
            w.Int32(state.BestEpoch);
            w.Double(state.BestScore);
            w.Int32(state.SinceBest);
            w.Int32(state.History.Count);
            foreach (var h in state.History)
            {
                w.Int32(h.Epoch);
                w.Double(h.TrainLoss);
                w.Int32(h.Validation is null ? 0 : 1);
                if (h.Validation is { } m)
                {
                    w.Double(m.Rmse); w.Double(m.Mae); w.Double(m.LogLoss); w.Double(m.Auc); w.Int32(m.Rows);
                }
                w.Double(h.Seconds);
                w.Double(h.SamplesPerSecond);
                w.Int32(h.IsBest ? 1 : 0);
                w.Double(h.Fraction);
            }
            w.Single(best.LabelMin);
            w.Single(best.LabelMax);
            foreach (var (_, data, _) in best.Tensors()) w.Floats(data);
            foreach (var buffer in Buffers(device))
            {
                if (buffer is null) { w.Int64(-1); continue; }
                var data = buffer.ToArray();
                w.Floats(data);
            }
            w.Trailer();
        });
    }

    /// <summary>Restores <paramref name="best"/> and <paramref name="device"/> from the checkpoint; null when there is no checkpoint file.</summary>
    public static CheckpointState? Load(CheckpointOptions options, ulong fingerprint, AfmModel best, DeviceModel device)
    {
        string path = options.FilePath;
        if (!File.Exists(path)) return null;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var r = new CheckpointReader(stream, path);
        uint version = r.Header();
        if (r.UInt64() != fingerprint)
            throw new ArgumentException($"{path}: the checkpoint is of another run (other data or options); remove it or use another checkpoint directory");
        int epoch = r.Int32();
        long step = r.Int64();
        int bestEpoch = r.Int32();
        double bestScore = r.Double();
        int sinceBest = r.Int32();
        int count = r.Int32();
        // one report per epoch, or (version 2) one per validation, several an epoch
        if (epoch < 0 || step < 0 || (version == 1 ? count != epoch : count < epoch || count > epoch * (long)TrainerOptions.MaxEvaluationsPerEpoch) || bestEpoch < 0 || bestEpoch > epoch || sinceBest < 0)
            throw r.Error("inconsistent counters");
        var history = new List<EpochReport>(count);
        for (int i = 0; i < count; i++)
        {
            int e = r.Int32();
            double loss = r.Double();
            Metrics? m = r.Int32() == 1 ? new Metrics(r.Double(), r.Double(), r.Double(), r.Double(), r.Int32()) : null;
            double seconds = r.Double(), rate = r.Double();
            bool isBest = r.Int32() == 1;
            double fraction = version == 1 ? 1 : r.Double();
            if (!(fraction is > 0 and <= 1)) throw r.Error("inconsistent counters");
            history.Add(new EpochReport(e, loss, m, seconds, rate, isBest, fraction));
        }
        best.LabelMin = r.Single();
        best.LabelMax = r.Single();
        foreach (var (name, data, _) in best.Tensors()) r.Floats(data, name);
        foreach (var buffer in Buffers(device))
        {
            if (buffer is null) { if (r.Int64() != -1) throw r.Error("optimizer state of another optimizer"); continue; }
            var data = new float[buffer.Length];
            r.Floats(data, "device state");
            buffer.CopyFrom(data);
        }
        r.Trailer();
        return new CheckpointState(epoch, step, bestEpoch, bestScore, sinceBest, history);
    }
}

internal sealed class CheckpointWriter(Stream stream)
{
    private readonly byte[] _buffer = new byte[1 << 16];
    private uint _crc;

    public void Bytes(ReadOnlySpan<byte> b)
    {
        stream.Write(b);
        _crc = Crc32.Append(_crc, b);
    }

    public void UInt32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); Bytes(b); }
    public void Int32(int v) => UInt32((uint)v);
    public void UInt64(ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); Bytes(b); }
    public void Int64(long v) => UInt64((ulong)v);
    public void Double(double v) => UInt64((ulong)BitConverter.DoubleToInt64Bits(v));
    public void Single(float v) => UInt32((uint)BitConverter.SingleToInt32Bits(v));

    public void Floats(ReadOnlySpan<float> data)
    {
        Int64(data.Length);
        for (int i = 0; i < data.Length;)
        {
            int n = Math.Min(_buffer.Length / 4, data.Length - i);
            for (int j = 0; j < n; j++) BinaryPrimitives.WriteSingleLittleEndian(_buffer.AsSpan(4 * j), data[i + j]);
            Bytes(_buffer.AsSpan(0, 4 * n));
            i += n;
        }
    }

    public void Trailer()
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, _crc);
        stream.Write(b);
        stream.Write(CheckpointFile.End);
    }
}

internal sealed class CheckpointReader(Stream stream, string path)
{
    private readonly byte[] _buffer = new byte[1 << 16];
    private uint _crc;

    public ModelFormatException Error(string what) => new(path, $"not a usable checkpoint: {what}");

    private void Read(Span<byte> b)
    {
        if (stream.ReadAtLeast(b, b.Length, throwOnEndOfStream: false) != b.Length) throw Error("truncated");
        _crc = Crc32.Append(_crc, b);
    }

    /// <summary>Reads the magic and the version (1 or <see cref="CheckpointFile.Version"/>), which it returns.</summary>
    public uint Header()
    {
        Span<byte> magic = stackalloc byte[8];
        Read(magic);
        if (!magic.SequenceEqual(CheckpointFile.Magic)) throw Error("not an afm-gpu checkpoint file");
        uint version = UInt32();
        if (version is < 1 or > CheckpointFile.Version) throw Error($"version {version}; this build reads versions 1 to {CheckpointFile.Version}");
        return version;
    }

    public uint UInt32() { Span<byte> b = stackalloc byte[4]; Read(b); return BinaryPrimitives.ReadUInt32LittleEndian(b); }
    public int Int32() => (int)UInt32();
    public ulong UInt64() { Span<byte> b = stackalloc byte[8]; Read(b); return BinaryPrimitives.ReadUInt64LittleEndian(b); }
    public long Int64() => (long)UInt64();
    public double Double() => BitConverter.Int64BitsToDouble(Int64());
    public float Single() => BitConverter.Int32BitsToSingle(Int32());

    public void Floats(float[] data, string what)
    {
        long n = Int64();
        if (n != data.Length) throw Error($"{what} has {n} values, the run needs {data.Length}");
        for (int i = 0; i < data.Length;)
        {
            int m = Math.Min(_buffer.Length / 4, data.Length - i);
            Read(_buffer.AsSpan(0, 4 * m));
            for (int j = 0; j < m; j++) data[i + j] = BinaryPrimitives.ReadSingleLittleEndian(_buffer.AsSpan(4 * j));
            i += m;
        }
    }

    public void Trailer()
    {
        uint computed = _crc;
        if (UInt32() != computed) throw Error("checksum mismatch: file is corrupt");
        Span<byte> end = stackalloc byte[8];
        Read(end);
        if (!end.SequenceEqual(CheckpointFile.End) || stream.Position != stream.Length) throw Error("no end marker where expected");
    }
}
