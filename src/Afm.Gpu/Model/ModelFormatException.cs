namespace Afm.Gpu.Model;

/// <summary>
/// A model file that cannot be read: not a model file, an unsupported version, truncated,
/// corrupt, or inconsistent. The message starts with the file's path.
/// </summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="file"/>; the message becomes "<c>file: message</c>".</summary>
    public ModelFormatException(string file, string message, Exception? innerException = null)
        : base($"{file}: {message}", innerException)
    {
        File = file;
    }

    /// <summary>The path of the offending file, as it was given to the loader.</summary>
    public string File { get; }
}
