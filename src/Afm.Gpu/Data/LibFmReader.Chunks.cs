using System.Buffers;
using System.Text;

namespace Afm.Gpu.Data;

/// <summary>The text pipeline: chunks cut at line ends and the rows parsed from them.</summary>
public static partial class LibFmReader
{
    /// <summary>Reads a stream in chunks that end at a line end (or the end of the stream).</summary>
    private sealed class Chunker(Stream stream, string name, int chunkBytes)
    {
        private byte[] _carry = [];
        private int _carryLength;
        private bool _end, _started;

        /// <summary>The next chunk (a pooled buffer the parser returns), or null at the end.</summary>
        public TextChunk? Next()
        {
            if (_end && _carryLength == 0) return null;
            byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Max(chunkBytes, 2 * _carryLength));
            _carry.AsSpan(0, _carryLength).CopyTo(buffer);
            int length = _carryLength;
            while (true)
            {
                if (!_end)
                {
                    int n;
                    try
                    {
                        n = stream.ReadAtLeast(buffer.AsSpan(length), buffer.Length - length, throwOnEndOfStream: false);
                    }
                    catch (InvalidDataException e)
                    {
                        throw GzipDamaged(name, e);
                    }
                    length += n;
                    _end = length < buffer.Length;
                }
                if (!_started) length = SkipByteOrderMark(buffer, length);
                int cut = CutPoint(buffer.AsSpan(0, length), _end);
                if (cut >= 0)
                {
                    if (_carry.Length < length - cut) _carry = new byte[Math.Max(length - cut, chunkBytes)];
                    buffer.AsSpan(cut, length - cut).CopyTo(_carry);
                    _carryLength = length - cut;
                    if (cut > 0) return new TextChunk(buffer, cut);
                    ArrayPool<byte>.Shared.Return(buffer);
                    return null;
                }
                // one line fills the buffer: grow it
                byte[] larger = ArrayPool<byte>.Shared.Rent(2 * buffer.Length);
                buffer.AsSpan(0, length).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = larger;
            }
        }

        /// <summary>Drops a UTF-8 byte order mark at the start of the stream; fails on UTF-16 text and binary data (<see cref="TextStart"/>).</summary>
        private int SkipByteOrderMark(byte[] buffer, int length)
        {
            _started = true;
            int skip = TextStart(buffer.AsSpan(0, length), name);
            if (skip > 0) buffer.AsSpan(skip, length - skip).CopyTo(buffer);
            return length - skip;
        }

        /// <summary>
        /// Where the text of a file whose first bytes are <paramref name="head"/> starts: after a UTF-8 byte order mark
        /// (3) or at 0. Fails on UTF-16 text and on binary data (a NUL byte among the first 4 KiB), naming what it is where its first bytes tell: an
        /// afm-gpu model or data cache, or a compression other than gzip.
        /// </summary>
        public static int TextStart(ReadOnlySpan<byte> head, string name)
        {
            if (head.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE]) || head.StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF]))
                throw new DataFormatException(name, 0, "is UTF-16 text; save it as UTF-8");
            if (BinaryKind(head) is { } kind) throw new DataFormatException(name, 0, kind);
            return head.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? 3 : 0;
        }

        /// <summary>Why <paramref name="head"/>, the first bytes of a file, is not text, or null where it may be.</summary>
        internal static string? BinaryKind(ReadOnlySpan<byte> head)
        {
            if (head.StartsWith(Model.ModelFile.Magic))
                return "is an afm-gpu model file, not data (a model is read by --pretrain-fm, and by --model of evaluate, predict and explain)";
            if (head.StartsWith(CacheFile.Magic))
                return "is an afm-gpu data cache, not text (CacheFile.Open reads it; the command line takes it wherever a data file goes)";
            if (head.StartsWith((ReadOnlySpan<byte>)[0x28, 0xB5, 0x2F, 0xFD]))
                return "is zstd-compressed; only gzip is decompressed as it is read (zstd -d it, or recompress it with gzip)";
            if (head.StartsWith((ReadOnlySpan<byte>)[0xFD, (byte)'7', (byte)'z', (byte)'X', (byte)'Z', 0]))
                return "is xz-compressed; only gzip is decompressed as it is read (xz -d it, or recompress it with gzip)";
            if (head.Length >= 10 && head.StartsWith("BZh"u8) && head[3] is >= (byte)'1' and <= (byte)'9' && head[4..].StartsWith("1AY&SY"u8))
                return "is bzip2-compressed; only gzip is decompressed as it is read (bzip2 -d it, or recompress it with gzip)";
            if (head.StartsWith("PK\u0003\u0004"u8))
                return "is a zip archive; extract its data file first (only gzip is decompressed as it is read)";
            int nul = head[..Math.Min(head.Length, 4096)].IndexOf((byte)0);
            return nul >= 0 ? $"is binary, not text (a NUL byte at offset {nul})" : null;
        }

        /// <summary>
        /// The error for a decompressing stream's <see cref="InvalidDataException"/>: the compressed data is damaged (the
        /// runtime's own message for a bad block or checksum names an unsupported compression method).
        /// </summary>
        public static DataFormatException GzipDamaged(string name, InvalidDataException e) =>
            new(name, 0, e.Message.StartsWith("the gzip data", StringComparison.Ordinal) ? e.Message
                : "the gzip data is damaged: a block or its checksum is wrong, so the file cannot be read as written", e);

        /// <summary>
        /// Where a chunk of <paramref name="text"/> may end: after its last line end, but not between the CR and
        /// LF of a CRLF; -1 when there is none yet.
        /// </summary>
        private static int CutPoint(ReadOnlySpan<byte> text, bool end)
        {
            if (end) return text.Length;
            int i = text.LastIndexOfAny((byte)'\n', (byte)'\r');
            if (i == text.Length - 1 && text[i] == '\r')
                i = text[..i].LastIndexOfAny((byte)'\n', (byte)'\r');
            return i < 0 ? -1 : i + 1;
        }
    }

    /// <summary>A chunk of text: the first <see cref="Length"/> bytes of a pooled <see cref="Buffer"/>.</summary>
    private sealed record TextChunk(byte[] Buffer, int Length);

    /// <summary>The rows of one chunk, up to its first error.</summary>
    /// <param name="textBytes">The chunk's length, from which the lists' capacities are guessed (a feature takes at least 2 bytes, typically 6 or more).</param>
    private sealed class ParsedChunk(int textBytes)
    {
        public List<float> Labels { get; } = new(textBytes / 64);
        /// <summary>End of each row in <see cref="Ids"/>.</summary>
        public List<int> RowEnds { get; } = new(textBytes / 64);
        public List<int> Ids { get; } = new(textBytes / 6);
        public List<float> Values { get; } = new(textBytes / 6);
        /// <summary>With <see cref="ChunkParser.RecordNames"/>: the names hashed to each row, in order of appearance.</summary>
        public HashedNames? Names { get; init; }
        /// <summary>Lines in the chunk (counted to the error, if any).</summary>
        public long Lines { get; set; }
        /// <summary>The file's line number of the chunk's first line.</summary>
        public long FirstLine { get; set; }
        /// <summary>The first problem: its line within the chunk (1-based) and what it is.</summary>
        public (long Line, string Problem)? Error { get; set; }
        public int Rows => Labels.Count;
        public int RowStart(int row) => row == 0 ? 0 : RowEnds[row - 1];
    }

    /// <summary>
    /// The distinct names hashed to each row, in order of appearance (UTF-8 bytes), and the length of the first one's
    /// field name where the reader knows it (a CSV column), else -1 (the field is <see cref="FeatureMap.DefaultField"/>).
    /// </summary>
    private sealed class HashedNames
    {
        private const int MaxShown = 3;
        private readonly Dictionary<int, (List<byte[]> Names, int FieldLength)> _byRow = [];

        public void Add(int row, ReadOnlySpan<byte> name, int fieldLength = -1)
        {
            if (!_byRow.TryGetValue(row, out var entry)) _byRow.Add(row, ([name.ToArray()], fieldLength));
            else if (entry.Names.Count <= MaxShown && !Contains(entry.Names, name)) entry.Names.Add(name.ToArray());
        }

        private static bool Contains(List<byte[]> names, ReadOnlySpan<byte> name)
        {
            foreach (byte[] n in names)
                if (name.SequenceEqual(n)) return true;
            return false;
        }

        /// <summary>Adds the names of a later chunk.</summary>
        public void AddAll(HashedNames later)
        {
            foreach (var (row, (names, fieldLength)) in later._byRow)
                foreach (byte[] name in names) Add(row, name, fieldLength);
        }

        public FeatureMap ToFeatureMap() => FeatureMap.FromNames(_byRow.Select(p =>
        {
            var (bytes, fieldLength) = p.Value;
            var names = bytes.Select(n => Encoding.UTF8.GetString(n)).ToList();
            string shown = string.Join('|', names.Take(MaxShown)) + (names.Count > MaxShown ? "|..." : "");
            return (p.Key, shown, fieldLength >= 0 ? Encoding.UTF8.GetString(bytes[0], 0, fieldLength) : FeatureMap.DefaultField(names[0]));
        }));
    }
}
