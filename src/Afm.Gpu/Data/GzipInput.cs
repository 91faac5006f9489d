using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using Afm.Gpu.IO;

namespace Afm.Gpu.Data;

/// <summary>
/// A gzip file's text, decompressed as it is read, and checked at its end against the last 8 bytes of the compressed
/// data (the gzip trailer: CRC-32 and length of the text), so that a truncated or damaged file is an error rather than
/// fewer rows: <see cref="GZipStream"/> alone ends quietly where a truncated file ends. Nothing is read twice and
/// nothing is seeked, so a pipe (<c>--train &lt;(curl ...)</c>) works as a file does. Only data of one gzip member
/// passes the check, as <c>gzip</c> and <c>pigz</c> write it; members joined with <c>cat a.gz b.gz</c> (or BGZF)
/// are refused at their end, with a message that says to decompress them.
/// </summary>
internal sealed class GzipInput : ReadOnlyStream
{
    private readonly TailStream _compressed;
    private readonly GZipStream _gzip;
    private readonly Crc32 _crc = new();
    private long _length;
    private bool _checked;

    /// <param name="compressed">The gzip data, read from its start to its end.</param>
    public GzipInput(Stream compressed)
    {
        _compressed = new TailStream(compressed);
        _gzip = new GZipStream(new BufferedStream(_compressed, 1 << 16), CompressionMode.Decompress);
    }

    public override int Read(Span<byte> buffer)
    {
        int n = _gzip.Read(buffer);
        if (n > 0)
        {
            _crc.Append(buffer[..n]);
            _length += n;
        }
        else if (buffer.Length > 0 && !_checked)
        {
            _checked = true;
            _compressed.Drain();
            var tail = _compressed.Tail;
            if (tail.Length < 8 || BinaryPrimitives.ReadUInt32LittleEndian(tail) != _crc.GetCurrentHashAsUInt32()
                || BinaryPrimitives.ReadUInt32LittleEndian(tail[4..]) != (uint)_length)
                throw new InvalidDataException(
                    $"the gzip data does not end as it should: its trailer does not match the {_length} bytes it gave, so the file is " +
                    "truncated or damaged, or several gzip files joined (which are not read: decompress it, e.g. with zcat)");
        }
        return n;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _gzip.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>Passes a stream through, keeping the last 8 bytes read from it.</summary>
    private sealed class TailStream(Stream inner) : ReadOnlyStream
    {
        private readonly byte[] _tail = new byte[8];
        private int _kept;

        /// <summary>The last (up to) 8 bytes read.</summary>
        public ReadOnlySpan<byte> Tail => _tail.AsSpan(0, _kept);

        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            if (n >= 8)
            {
                buffer.Slice(n - 8, 8).CopyTo(_tail);
                _kept = 8;
            }
            else if (n > 0)
            {
                int keep = Math.Min(8 - n, _kept);
                _tail.AsSpan(_kept - keep, keep).CopyTo(_tail); // the newest of the old bytes, then the new ones
                buffer[..n].CopyTo(_tail.AsSpan(keep));
                _kept = keep + n;
            }
            return n;
        }

        /// <summary>Reads what the decompressor left, to the end, so that <see cref="Tail"/> is the data's last bytes.</summary>
        public void Drain()
        {
            Span<byte> scratch = stackalloc byte[4096];
            while (Read(scratch) > 0) { }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}

/// <summary>Bytes already read from a stream's start, then the rest of the stream.</summary>
internal sealed class PrefixedStream(ReadOnlyMemory<byte> prefix, Stream rest) : ReadOnlyStream
{
    private ReadOnlyMemory<byte> _prefix = prefix;

    public override int Read(Span<byte> buffer)
    {
        if (_prefix.IsEmpty) return rest.Read(buffer);
        int n = Math.Min(buffer.Length, _prefix.Length);
        _prefix.Span[..n].CopyTo(buffer);
        _prefix = _prefix[n..];
        return n;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) rest.Dispose();
        base.Dispose(disposing);
    }
}
