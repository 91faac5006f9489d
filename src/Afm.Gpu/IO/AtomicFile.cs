using System.Security.Cryptography;

namespace Afm.Gpu.IO;

/// <summary>
/// Writes a file all or nothing: the content goes to a temporary file in the same directory, is
/// flushed to disk, and is then renamed over the target. On any failure the temporary file is
/// removed and an existing target is left untouched. A symbolic link is followed (the file it points to is
/// replaced, and the link kept); a device, FIFO or socket (<c>/dev/null</c>, <c>/dev/stdout</c>) is written in place.
/// </summary>
public static class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="write"/>. Temporary files of earlier writes of the
    /// same path that were killed before they could clean up (<c>path.tmp-*</c>, not held open by a writer) are
    /// removed first.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The target's directory does not exist.</exception>
    /// <exception cref="IOException">The target cannot be written (a directory, no permission, ...); the message names the target.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = CheckTarget(path);
        if (FileKind.Of(full) == FileKindValue.Special)
        {
            WriteInPlace(path, full, write);
            return;
        }
        full = ReplacedFile(full);
        RemoveStaleTemporaries(full);
        string tmp = TemporaryName(full);
        FileStream stream;
        try
        {
            stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw CannotWrite(path, e, tmp);
        }
        try
        {
            using (stream)
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            try
            {
                File.Move(tmp, full, overwrite: true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw CannotWrite(path, e, tmp);
            }
        }
        catch
        {
            try { File.Delete(tmp); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>
    /// Checks, without touching an existing file, that <see cref="Write"/> could write <paramref name="path"/>:
    /// its directory exists, it is not a directory, and a file can be created next to it. Run it before long work
    /// whose result goes there. Stale temporary files of the path are removed, as by <see cref="Write"/>.
    /// </summary>
    /// <exception cref="IOException">The path cannot be written; the message names it and why.</exception>
    public static void EnsureWritable(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = CheckTarget(path);
        if (FileKind.Of(full) == FileKindValue.Special) return; // written in place; opening a FIFO here would wait for its reader
        full = ReplacedFile(full);
        RemoveStaleTemporaries(full);
        string probe = TemporaryName(full);
        try
        {
            new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1).Dispose();
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw CannotWrite(path, e, probe);
        }
    }

    /// <summary>
    /// Removes the temporary files an interrupted <see cref="Write"/> of <paramref name="path"/> left behind
    /// (<c>path.tmp-</c> followed by 12 hex digits). A file another writer holds open is left alone.
    /// </summary>
    /// <returns>How many files were removed.</returns>
    public static int RemoveStaleTemporaries(string path)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        string prefix = Path.GetFileName(full) + ".tmp-";
        if (dir is null || prefix.Length == 5 || !Directory.Exists(dir)) return 0;
        int removed = 0;
        IEnumerable<string> candidates;
        try { candidates = Directory.EnumerateFiles(dir, prefix + "*").ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
        foreach (string file in candidates)
        {
            string suffix = Path.GetFileName(file).Substring(prefix.Length);
            if (suffix.Length != 12 || !suffix.All(char.IsAsciiHexDigitLower)) continue;
            try
            {
                // A writer in progress holds its temporary file with FileShare.None; opening it fails then.
                new FileStream(file, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1).Dispose();
                File.Delete(file);
                removed++;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return removed;
    }

    /// <summary>A device, FIFO or socket (<c>/dev/null</c>, <c>/dev/stdout</c>, a named pipe) is written as it is: renaming a
    /// file over it would replace the device's name with a file, and there is nothing to keep whole.</summary>
    private static void WriteInPlace(string path, string full, Action<Stream> write)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write '{path}': {(e is UnauthorizedAccessException ? "permission denied" : e.Message)}", e);
        }
        using (stream)
        {
            write(stream);
            stream.Flush();
        }
    }

    /// <summary>
    /// The file a write of <paramref name="full"/> replaces: where its symbolic links end (so that a link to a model keeps
    /// pointing to the new one), or the path itself when that end's directory does not exist.
    /// </summary>
    private static string ReplacedFile(string full)
    {
        string real = FilePaths.Resolve(full);
        return Directory.Exists(Path.GetDirectoryName(real)) ? real : full;
    }

    private static string CheckTarget(string path)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? throw new IOException($"cannot write '{path}': not a file path");
        if (Path.EndsInDirectorySeparator(path) || Directory.Exists(full))
            throw new IOException($"cannot write '{path}': it is a directory");
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"cannot write '{path}': directory '{dir}' does not exist");
        return full;
    }

    private static string TemporaryName(string full) => $"{full}.tmp-{RandomNumberGenerator.GetHexString(12, lowercase: true)}";

    private static IOException CannotWrite(string path, Exception e, string tmp)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path)) ?? path;
        string why = e switch
        {
            UnauthorizedAccessException => $"permission denied in '{dir}'",
            FileNotFoundException or DirectoryNotFoundException => $"no file can be created in '{dir}'",
            _ => e.Message.Replace(tmp, Path.GetFullPath(path), StringComparison.Ordinal),
        };
        return new IOException($"cannot write '{path}': {why}", e);
    }

    /// <summary>Writes text lines (UTF-8, '\n' endings) atomically.</summary>
    public static void WriteLines(string path, IEnumerable<string> lines) => Write(path, stream =>
    {
        using var w = new StreamWriter(stream, leaveOpen: true) { NewLine = "\n" };
        foreach (string line in lines) w.WriteLine(line);
    });
}
