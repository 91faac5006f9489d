using System.Security.Cryptography;

namespace Afm.Gpu.IO;

/// <summary>
/// Writes a file all or nothing: the content goes to a temporary file in the same directory, is
/// flushed to disk, and is then renamed over the target. On any failure the temporary file is
/// removed and an existing target is left untouched.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The target's directory does not exist.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? throw new IOException($"cannot write '{path}': not a file path");
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"cannot write '{path}': directory '{dir}' does not exist");
        string tmp = $"{full}.tmp-{RandomNumberGenerator.GetHexString(12, lowercase: true)}";
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Writes text lines (UTF-8, '\n' endings) atomically.</summary>
    public static void WriteLines(string path, IEnumerable<string> lines) => Write(path, stream =>
    {
        using var w = new StreamWriter(stream, leaveOpen: true) { NewLine = "\n" };
        foreach (string line in lines) w.WriteLine(line);
    });
}
