using System.Runtime.InteropServices;
using System.Text;

namespace Afm.Gpu.Native.Cuda;

/// <summary>Tries to load one candidate; on failure sets <paramref name="error"/> to a short reason.</summary>
internal delegate bool LibraryLoader(string candidate, out nint handle, out string error);

/// <summary>One candidate tried while resolving a native library, and what happened.</summary>
internal readonly record struct LoadAttempt(string Candidate, bool Loaded, string Outcome)
{
    public override string ToString() => $"{Candidate}: {Outcome}";
}

/// <summary>The outcome of <see cref="LibraryResolver.Resolve"/>: the handle (0 on failure) and every attempt in order.</summary>
internal sealed record LibraryResolution(string Library, nint Handle, string? LoadedFrom, IReadOnlyList<LoadAttempt> Attempts)
{
    public bool Success => Handle != 0;

    /// <summary>A multi-line report listing every place tried with its reason.</summary>
    public string Describe()
    {
        var sb = new StringBuilder(Success ? $"{Library} loaded from {LoadedFrom}; tried:" : $"{Library} could not be loaded; tried:");
        foreach (var a in Attempts) sb.Append("\n  ").Append(a);
        return sb.ToString();
    }
}

/// <summary>Finds a native library by trying candidates in order; pure apart from the supplied loader.</summary>
internal static class LibraryResolver
{
    /// <summary>Tries each distinct candidate with <paramref name="loader"/> until one loads.</summary>
    public static LibraryResolution Resolve(string library, IEnumerable<string> candidates, LibraryLoader loader)
    {
        var attempts = new List<LoadAttempt>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var c in candidates)
        {
            if (!seen.Add(c)) continue;
            bool ok;
            nint handle;
            string error;
            try
            {
                ok = loader(c, out handle, out error);
            }
            catch (Exception e)
            {
                (ok, handle, error) = (false, 0, e.Message);
            }
            if (ok && handle != 0)
            {
                attempts.Add(new LoadAttempt(c, true, "loaded"));
                return new LibraryResolution(library, handle, c, attempts);
            }
            var reason = OneLine(error);
            if (reason.StartsWith(c + ": ", StringComparison.Ordinal)) reason = reason[(c.Length + 2)..]; // dlerror repeats the name
            attempts.Add(new LoadAttempt(c, false, reason));
        }
        return new LibraryResolution(library, 0, null, attempts);
    }

    /// <summary>
    /// The real loader: a rooted path that does not exist is reported as such without calling dlopen;
    /// otherwise <see cref="NativeLibrary.Load(string)"/>, whose message carries the dlopen error.
    /// </summary>
    public static bool NativeLoader(string candidate, out nint handle, out string error)
    {
        handle = 0;
        if (Path.IsPathRooted(candidate) && !File.Exists(candidate))
        {
            error = "not found";
            return false;
        }
        try
        {
            handle = NativeLibrary.Load(candidate);
            error = "";
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>
    /// Expands a path whose segments may contain <c>*</c>/<c>?</c> wildcards into existing entries, sorted
    /// descending so that higher versions come first. IO errors yield no matches.
    /// </summary>
    public static IEnumerable<string> Glob(string pattern)
    {
        if (!Path.IsPathRooted(pattern)) return [];
        var current = new List<string> { Path.GetPathRoot(pattern)! };
        foreach (var segment in pattern[current[0].Length..].Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            bool wild = segment.AsSpan().IndexOfAny('*', '?') >= 0;
            var next = new List<string>();
            foreach (var dir in current)
            {
                if (!wild)
                {
                    var p = Path.Combine(dir, segment);
                    if (Path.Exists(p)) next.Add(p);
                    continue;
                }
                try
                {
                    next.AddRange(Directory.EnumerateFileSystemEntries(dir, segment).OrderDescending(StringComparer.Ordinal));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
            current = next;
            if (current.Count == 0) break;
        }
        return current;
    }

    /// <summary>
    /// Reduces a loader message to one line. .NET's DllNotFoundException text is a generic sentence followed
    /// by the dlopen error(s) on later lines; the latter is what matters.
    /// </summary>
    internal static string OneLine(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length switch
        {
            0 => "failed",
            1 => lines[0],
            _ => string.Join("; ", lines[1..]),
        };
    }
}
