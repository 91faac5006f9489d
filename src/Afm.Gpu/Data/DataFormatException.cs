namespace Afm.Gpu.Data;

/// <summary>
/// Thrown when a data file cannot be read or does not follow its format. The message reads
/// <c>file:line: problem</c>, or <c>file: problem</c> when the problem is not about one line.
/// </summary>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="problem"/> found in <paramref name="file"/> at <paramref name="line"/>.</summary>
    /// <param name="file">The file (or source name) being read.</param>
    /// <param name="line">1-based line number; 0 when the problem is not about a single line.</param>
    /// <param name="problem">What is wrong, without the location.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public DataFormatException(string file, long line, string problem, Exception? innerException = null)
        : base(line > 0 ? $"{file}:{line}: {problem}" : $"{file}: {problem}", innerException)
    {
        File = file;
        Line = line;
        Problem = problem;
    }

    /// <summary>The file (or source name) being read.</summary>
    public string File { get; }

    /// <summary>1-based line number of the problem; 0 when it is not about a single line.</summary>
    public long Line { get; }

    /// <summary>What is wrong, without the location.</summary>
    public string Problem { get; }
}
