using System.IO.Hashing;
using System.Text;

namespace Afm.Gpu.Data;

/// <summary>
/// Implicit caches of text data files: a text file is converted once into a <see cref="CacheFile"/> in a cache
/// directory (by default <c>$XDG_CACHE_HOME/afm-gpu</c>, else <c>~/.cache/afm-gpu</c>), named after its full path
/// and what the reading options make of it (<see cref="CacheFile.Fingerprint"/>), so that one file read two ways
/// has two caches, and reused while the file keeps its size and modification time; otherwise it is rebuilt.
/// </summary>
public static class DataCache
{
    /// <summary>Text files at least this large are cached by default (1 GiB).</summary>
    public const long DefaultThreshold = 1L << 30;

    /// <summary>The default cache directory: <c>$XDG_CACHE_HOME/afm-gpu</c>, else <c>~/.cache/afm-gpu</c>.</summary>
    public static string DefaultDirectory
    {
        get
        {
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string root = !string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "afm-gpu");
        }
    }

    /// <summary>
    /// Where the cache of <paramref name="source"/> read with <paramref name="options"/> lives in <paramref name="directory"/>:
    /// a hash of its full path and of the options' <see cref="CacheFile.Fingerprint"/>.
    /// </summary>
    public static string PathFor(string source, string directory, LibFmReadOptions? options = null)
    {
        string full = Path.GetFullPath(source);
        string hash = XxHash64.HashToUInt64(Encoding.UTF8.GetBytes($"{full}\0{CacheFile.Fingerprint(options):x16}")).ToString("x16");
        string name = Path.GetFileNameWithoutExtension(full);
        if (name.Length > 40) name = name[..40];
        return Path.Combine(directory, $"{name}-{hash}{CacheFile.Extension}");
    }

    /// <summary>Whether <paramref name="header"/> is a cache of <paramref name="source"/> as it is now, read with <paramref name="options"/>.</summary>
    public static bool IsCurrent(CacheHeader header, FileInfo source, LibFmReadOptions? options) =>
        header.SourceLength == source.Length && header.SourceWriteTicks == source.LastWriteTimeUtc.Ticks
        && header.OptionsFingerprint == CacheFile.Fingerprint(options); // the format and hashing among them

    /// <summary>
    /// Whether <paramref name="path"/> can be cached: a seekable file, not a pipe, whose content no size and time
    /// identify. Nothing is read from it.
    /// </summary>
    public static bool IsSeekable(string path)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            return f.CanSeek;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// Opens the cache of <paramref name="source"/> in <paramref name="directory"/>, converting the file first when
    /// there is none, it is stale (the file's size or time changed), or it cannot be read. Other reading options
    /// (another <c>--format</c>, <c>--hash-bits</c> or row limit) have a cache of their own.
    /// </summary>
    /// <param name="source">The text data file.</param>
    /// <param name="directory">The cache directory (created when missing).</param>
    /// <param name="options">Reading options of the conversion.</param>
    /// <param name="log">Receives one line saying whether the cache was reused or (re)built.</param>
    /// <returns>The open cache and whether it was built now.</returns>
    /// <exception cref="DataFormatException">The text is missing or malformed.</exception>
    public static (CacheFile File, bool Built) OpenOrBuild(string source, string directory, LibFmReadOptions? options = null, Action<string>? log = null)
    {
        var info = new FileInfo(source);
        if (!info.Exists) throw new DataFormatException(source, 0, Directory.Exists(source) ? "is a directory, not a data file" : "file not found");
        string path = PathFor(source, directory, options);
        try
        {
            Directory.CreateDirectory(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            string? file = FileOnPath(directory);
            string problem = e is UnauthorizedAccessException ? "permission denied"
                : file == Path.GetFullPath(directory) ? "a file of that name exists"
                : file is not null ? $"'{file}' is a file" : e.Message;
            throw new IOException($"cannot create the cache directory '{directory}' for {source}: {problem} {WayOut}", e);
        }
        // One conversion at a time per cache: processes that need it at once (the ranks of an MPI job on one
        // machine, or two jobs) wait for the first, then use what it wrote.
        using var guard = new CacheLock(path, source, log);
        string? why = "no cache yet";
        if (File.Exists(path))
        {
            try
            {
                var cache = CacheFile.Open(path);
                if (IsCurrent(cache.Header, info, options))
                {
                    log?.Invoke($"using the cache {path} of {source}");
                    return (cache, false);
                }
                cache.Dispose();
                why = "the file changed";
            }
            catch (DataFormatException e)
            {
                why = e.Problem;
            }
        }
        log?.Invoke($"converting {source} ({info.Length / 1e6:F0} MB) into the cache {path} ({why}); it is reused while the file is unchanged");
        CacheFile.Write(source, path, options);
        return (CacheFile.Open(path), true);
    }

    /// <summary>The path of <paramref name="directory"/> or of one of its parents that is a file, or null.</summary>
    private static string? FileOnPath(string directory)
    {
        for (string? d = Path.GetFullPath(directory); d is not null; d = Path.GetDirectoryName(d))
            if (File.Exists(d)) return d;
        return null;
    }

    /// <summary>What a user can do about a cache that cannot be written, ending its messages.</summary>
    private const string WayOut = "(--cache-dir DIR for another directory, --cache off to read the text)";

    // The IOException.HResult of a file another process holds locked: EWOULDBLOCK from flock on Linux, ERROR_SHARING_VIOLATION on Windows.
    private const int LockHeld = 11, SharingViolation = unchecked((int)0x80070020);

    /// <summary>
    /// Holds the cache's path + <c>.lock</c> (an advisory lock, FileShare.None), waiting while another process
    /// holds it; the lock goes when the process ends, however it ends. The lock file is removed on release. A
    /// process that opened the old file just before that may then lock it while a third locks a new one: both convert,
    /// and the cache, written atomically, is still whole.
    /// </summary>
    private sealed class CacheLock : IDisposable
    {
        private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(100);
        private readonly string _path;
        private readonly FileStream _stream;

        public CacheLock(string cache, string source, Action<string>? log)
        {
            _path = cache + ".lock";
            bool said = false;
            while (true)
            {
                try
                {
                    _stream = new FileStream(_path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1);
                    return;
                }
                catch (IOException e) when (e.HResult is LockHeld or SharingViolation)
                {
                    if (!said) log?.Invoke($"waiting for another process converting {source} into the cache {cache}");
                    said = true;
                    Thread.Sleep(Poll);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    string why = e is UnauthorizedAccessException ? $"permission denied in '{Path.GetDirectoryName(cache)}'" : e.Message;
                    throw new IOException($"cannot write the cache '{cache}' of {source}: {why} {WayOut}", e);
                }
            }
        }

        public void Dispose()
        {
            try { File.Delete(_path); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            _stream.Dispose();
        }
    }
}
