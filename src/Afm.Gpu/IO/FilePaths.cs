namespace Afm.Gpu.IO;

/// <summary>Questions about file paths.</summary>
public static class FilePaths
{
    /// <summary>
    /// Whether <paramref name="a"/> and <paramref name="b"/> name the same file, after making them absolute and
    /// following symbolic links of the file and of its directory (case-insensitively on Windows and macOS).
    /// </summary>
    public static bool Same(string a, string b) =>
        string.Equals(Resolve(a), Resolve(b), OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);

    /// <summary>The absolute path of <paramref name="p"/> with the symbolic links of the file and of its directory followed
    /// (as far as they can be read; the path as given otherwise).</summary>
    internal static string Resolve(string p)
    {
        string full = Path.GetFullPath(p);
        try
        {
            string? dir = Path.GetDirectoryName(full);
            if (dir is not null)
            {
                var d = new DirectoryInfo(dir);
                string realDir = d.Exists ? (d.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? d.FullName) : dir;
                full = Path.Combine(realDir, Path.GetFileName(full));
            }
            return new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        }
        catch (IOException) { return full; }
        catch (UnauthorizedAccessException) { return full; }
    }
}
