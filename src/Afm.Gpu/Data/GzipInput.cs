using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using Afm.Gpu.IO;

namespace Afm.Gpu.Data;

/// <summary>
/// A gzip file's text, decompressed as it is read, and checked at its end against the last 8 bytes of the compressed
/// data (the gzip trailer: CRC-32 and length of the text), so that a truncated or damaged file is an error rather than
/// fewer rows: <see cref="GZipStream"/> alone ends quietly where a truncated file ends. Nothing is read twice and
/// nothing is seeked, so a pipe (<c>--train &lt;(curl ...)</c>) works as a file does.
/// </summary>
/// <remarks>
/// Several gzip members joined (<c>cat a.gz b.gz</c>, BGZF) read as their texts one after the other, as <c>zcat</c>
/// reads them. The runtime's decompressor checks every member's trailer that it reaches, and it returns from a read
/// where a member ends; what it does not say is whether the last member ended or the data was cut short. So every
/// read's end is noted with the CRC-32 of the text up to it, and at the end the last 8 bytes must be the trailer of
/// the text from one of those ends on: the CRC-32 of that suffix follows from the two running values
/// (<see cref="SuffixCrc"/>). The notes cost 12 bytes a read, about 1.5 MB per GB of compressed data. A file cut
/// exactly where one of its members ends reads as the members before the cut, as it does for <c>zcat</c>: nothing
/// in the data tells it from a whole file.
/// </remarks>
internal sealed class GzipInput : ReadOnlyStream
{
    private readonly TailStream _compressed;
    private readonly GZipStream _gzip;
    private readonly Crc32 _crc = new();
    private long _length;
    private bool _checked;
    // Each read's end: the text's length up to it and the CRC-32 of that text (the first note is the start).
    private readonly List<(long Length, uint Crc)> _ends = [(0, 0)];

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
            _ends.Add((_length, _crc.GetCurrentHashAsUInt32()));
        }
        else if (buffer.Length > 0 && !_checked)
        {
            _checked = true;
            _compressed.Drain();
            if (!EndsWithATrailer(_compressed.Tail))
                throw new InvalidDataException(
                    $"the gzip data does not end as it should: its last 8 bytes are not the trailer (CRC-32 and length) of the {_length} bytes " +
                    "it gave, so the file is truncated or damaged");
        }
        return n;
    }

    /// <summary>Whether <paramref name="tail"/> is the trailer of the text from some read's end to the end: the last member's.</summary>
    private bool EndsWithATrailer(ReadOnlySpan<byte> tail)
    {
        if (tail.Length < 8) return false;
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(tail), size = BinaryPrimitives.ReadUInt32LittleEndian(tail[4..]);
        uint whole = _crc.GetCurrentHashAsUInt32();
        // ISIZE is the member's length modulo 2^32; from the last note back, so one member's file checks the start last
        for (int i = _ends.Count - 1; i >= 0; i--)
        {
            var (start, startCrc) = _ends[i];
            long suffix = _length - start;
            if ((uint)suffix == size && SuffixCrc(whole, startCrc, suffix) == crc) return true;
        }
        return false;
    }

    /// <summary>
    /// The CRC-32 of B from those of A B and A and B's length: CRC-32 is linear, crc(A B) = crc(A) x^(8 |B|) + crc(B)
    /// modulo its polynomial, as zlib's <c>crc32_combine</c> uses it.
    /// </summary>
    internal static uint SuffixCrc(uint whole, uint prefix, long suffixLength) => whole ^ MultiplyModP(XPower8N(suffixLength), prefix);

    private const uint Polynomial = 0xEDB88320; // reflected, as gzip's CRC-32

    // a * b modulo the polynomial, bit-reflected (x^0 is the top bit)
    private static uint MultiplyModP(uint a, uint b)
    {
        uint m = 1u << 31, p = 0;
        while (true)
        {
            if ((a & m) != 0)
            {
                p ^= b;
                if ((a & (m - 1)) == 0) return p;
            }
            m >>= 1;
            b = (b & 1) != 0 ? (b >> 1) ^ Polynomial : b >> 1;
        }
    }

    // x^(2^k) modulo the polynomial, k = 0..31
    private static readonly uint[] XPowers2K = BuildPowers();

    private static uint[] BuildPowers()
    {
        var t = new uint[32];
        uint p = 1u << 30; // x^1
        t[0] = p;
        for (int k = 1; k < 32; k++) t[k] = p = MultiplyModP(p, p);
        return t;
    }

    // x^(8 n) modulo the polynomial
    private static uint XPower8N(long n)
    {
        uint p = 1u << 31; // x^0
        for (int k = 3; n != 0; n >>= 1, k++)
            if ((n & 1) != 0) p = MultiplyModP(XPowers2K[k & 31], p);
        return p;
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
