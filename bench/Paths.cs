namespace Afm.Bench;

/// <summary>Finding files by walking up from the current directory and from the program's own folder.</summary>
internal static class Paths
{
    /// <summary>The first existing <c>dir/relative</c> (file or folder) for dir = the current directory and its ancestors, then the program's folder and its ancestors.</summary>
    public static string? FindUp(string relative)
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, relative);
                if (File.Exists(candidate) || Directory.Exists(candidate)) return candidate;
            }
        }
        return null;
    }

    /// <summary>The repository root (the folder holding Afm.Gpu.sln), or the current directory.</summary>
    public static string RepoRoot() =>
        Path.GetDirectoryName(FindUp("Afm.Gpu.sln") ?? Path.Combine(Directory.GetCurrentDirectory(), "x"))!;

    /// <summary>ml-100k-libfm's train.libfm: from --movielens (a folder or the file), else found under shared/data.</summary>
    public static string? MovieLensTrain(string? option)
    {
        if (option is not null)
            return File.Exists(option) ? option : Path.Combine(option, "train.libfm") is var f && File.Exists(f) ? f : null;
        return FindUp(Path.Combine("shared", "data", "ml-100k-libfm", "train.libfm"));
    }
}
