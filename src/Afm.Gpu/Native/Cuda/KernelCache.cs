using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Afm.Gpu.Native.Cuda;

/// <summary>
/// A disk cache of compiled kernel images. Each entry is <c>&lt;key&gt;.bin</c>: a 48-byte header
/// (magic <c>AFMK</c>, format version, payload length, SHA-256 of the payload) followed by the payload.
/// Damaged entries are detected, recompiled and replaced atomically (temp file + rename); a cache folder that
/// cannot be created, read or written degrades to compiling every time, never to a failure.
/// </summary>
public sealed class KernelCache
{
    private const uint Magic = 0x4B4D4641; // "AFMK" little-endian
    private const uint FormatVersion = 1;
    private const int HeaderSize = 4 + 4 + 8 + 32;

    /// <summary>Creates a cache in <paramref name="directory"/>, or in <see cref="DefaultDirectory()"/> when null.</summary>
    public KernelCache(string? directory = null) => Directory = directory ?? DefaultDirectory();

    /// <summary>The folder holding the entries (created on first write).</summary>
    public string Directory { get; }

    /// <summary>The last IO problem met (the cache then went on without it); null if none.</summary>
    public string? LastError { get; private set; }

    /// <summary><c>$AFM_GPU_CACHE_DIR</c>, else <c>$XDG_CACHE_HOME/afm-gpu</c>, else <c>~/.cache/afm-gpu</c>.</summary>
    public static string DefaultDirectory() =>
        DefaultDirectory(Environment.GetEnvironmentVariable, Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    internal static string DefaultDirectory(Func<string, string?> environment, string home)
    {
        var explicitDir = environment("AFM_GPU_CACHE_DIR");
        if (!string.IsNullOrWhiteSpace(explicitDir)) return explicitDir;
        var xdg = environment("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg)) return Path.Combine(xdg, "afm-gpu");
        return Path.Combine(home, ".cache", "afm-gpu");
    }

    /// <summary>
    /// The cache key: lowercase hex SHA-256 over the length-prefixed UTF-8 fields (so that no two different
    /// inputs serialize alike): source, option count and each option, architecture, compiler version.
    /// </summary>
    public static string ComputeKey(string source, IEnumerable<string> options, string architecture, string compilerVersion)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var opts = options.ToList();
        Append(hash, "afm-gpu kernel v1");
        Append(hash, source);
        Append(hash, opts.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (var o in opts) Append(hash, o);
        Append(hash, architecture);
        Append(hash, compilerVersion);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static void Append(IncrementalHash hash, string field)
    {
        var bytes = Encoding.UTF8.GetBytes(field);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(length, bytes.Length);
        hash.AppendData(length);
        hash.AppendData(bytes);
    }

    /// <summary>The entry's path for <paramref name="key"/>.</summary>
    public string PathFor(string key)
    {
        if (key.Length == 0 || key.Any(c => !char.IsAsciiLetterOrDigit(c) && c != '-' && c != '_'))
            throw new ArgumentException("cache keys are limited to ASCII letters, digits, '-' and '_'", nameof(key));
        return Path.Combine(Directory, key + ".bin");
    }

    /// <summary>Returns the cached payload for <paramref name="key"/>, or compiles, stores and returns it.</summary>
    public byte[] GetOrAdd(string key, Func<byte[]> compile)
    {
        var path = PathFor(key);
        if (TryRead(path, out var cached)) return cached;
        var payload = compile();
        TryWrite(path, payload);
        return payload;
    }

    /// <summary>Reads a valid entry; false when it is missing, unreadable, truncated or fails its checksum.</summary>
    public bool TryGet(string key, out byte[] payload) => TryRead(PathFor(key), out payload);

    private bool TryRead(string path, out byte[] payload)
    {
        payload = [];
        byte[] file;
        try
        {
            if (!File.Exists(path)) return false;
            file = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LastError = $"reading {path}: {e.Message}";
            return false;
        }
        if (file.Length < HeaderSize) return false;
        var header = file.AsSpan(0, HeaderSize);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic
            || BinaryPrimitives.ReadUInt32LittleEndian(header[4..]) != FormatVersion
            || BinaryPrimitives.ReadInt64LittleEndian(header[8..]) != file.Length - HeaderSize)
            return false;
        var body = file.AsSpan(HeaderSize);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(header[16..])) return false;
        payload = body.ToArray();
        return true;
    }

    private void TryWrite(string path, byte[] payload)
    {
        string? temp = null;
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            var header = new byte[HeaderSize];
            BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), FormatVersion);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(8), payload.Length);
            SHA256.HashData(payload, header.AsSpan(16));
            temp = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                fs.Write(header);
                fs.Write(payload);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
            temp = null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LastError = $"writing {path}: {e.Message}";
        }
        finally
        {
            if (temp is not null)
                try { File.Delete(temp); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }
}
