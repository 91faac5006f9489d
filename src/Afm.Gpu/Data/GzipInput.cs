using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;

namespace Afm.Gpu.Data;

/// <summary>
/// A gzip file's text, decompressed as it is read, and checked at its end against the file's last 8 bytes (the
/// gzip trailer: CRC-32 and length of the text), so that a truncated or damaged file is an error rather than fewer
/// rows. <see cref="GZipStream"/> alone ends quietly where a truncated file ends. Only a file of one gzip member
/// passes the check, as <c>gzip</c> and <c>pigz</c> write them; files joined with <c>cat a.gz b.gz</c> (or BGZF)
/// are refused at their end, with a message that says to decompress them.
/// </summary>
internal sealed class GzipInput : Stream
{
    private readonly GZipStream _gzip;
    private readonly Crc32 _crc = new();
    private readonly uint _expectedCrc, _expectedLength;
    private readonly bool _hasTrailer;
    private long _length;
    private bool _checked;

    /// <summary>Reads the trailer of <paramref name="file"/> (positioned at its start), then decompresses it from the start.</summary>
    public GzipInput(FileStream file)
    {
        if (file.Length >= 18) // the smallest gzip member: a 10-byte header, an empty deflate block and the trailer
        {
            Span<byte> trailer = stackalloc byte[8];
            file.Position = file.Length - 8;
            file.ReadExactly(trailer);
            _expectedCrc = BinaryPrimitives.ReadUInt32LittleEndian(trailer);
            _expectedLength = BinaryPrimitives.ReadUInt32LittleEndian(trailer[4..]);
            _hasTrailer = true;
        }
        file.Position = 0;
        _gzip = new GZipStream(new BufferedStream(file, 1 << 16), CompressionMode.Decompress);
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
            if (!_hasTrailer || _crc.GetCurrentHashAsUInt32() != _expectedCrc || (uint)_length != _expectedLength)
                throw new InvalidDataException(
                    $"the gzip data does not end as it should: its trailer does not match the {_length} bytes it gave, so the file is " +
                    "truncated or damaged, or several gzip files joined (which are not read: decompress it, e.g. with zcat)");
        }
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _length; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _gzip.Dispose();
        base.Dispose(disposing);
    }
}
