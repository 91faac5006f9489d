using System.Runtime.InteropServices;

namespace Afm.Gpu.IO;

/// <summary>What a path names once its symbolic links are followed.</summary>
public enum FileKindValue
{
    /// <summary>Nothing: the path, or the end of its links, does not exist.</summary>
    Missing,
    /// <summary>A regular file.</summary>
    Regular,
    /// <summary>A directory.</summary>
    Directory,
    /// <summary>A character or block device, a FIFO or a socket (<c>/dev/null</c>, <c>/dev/stdout</c>, a named pipe).</summary>
    Special,
}

/// <summary>
/// Tells a regular file from a device, a FIFO or a socket, which .NET's file APIs do not: on Linux by
/// <c>statx(2)</c>, elsewhere by whether the path or its link target lies under <c>/dev</c> or <c>/proc</c>.
/// </summary>
public static partial class FileKind
{
    /// <summary>The kind of what <paramref name="path"/> names, following symbolic links.</summary>
    /// <remarks>A regular file reached through <c>/dev</c> or <c>/proc</c> (<c>/dev/stdout</c> redirected to a file) counts as
    /// special: it stands for a file descriptor, which is written in place, not replaced.</remarks>
    public static FileKindValue Of(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) return FileKindValue.Directory;
        var info = new FileInfo(full);
        bool throughDevices = UnderDevices(full);
        string? target = null;
        if (info.LinkTarget is not null)
        {
            try { target = info.ResolveLinkTarget(returnFinalTarget: true)?.FullName; }
            catch (IOException) { return FileKindValue.Special; } // a loop of links, or one that cannot be read
            string first = Path.GetFullPath(info.LinkTarget, Path.GetDirectoryName(full)!);
            throughDevices |= UnderDevices(first) || (target is not null && UnderDevices(target));
        }
        if (OperatingSystem.IsLinux() && StatxMode(full) is { } mode)
            return mode < 0 ? FileKindValue.Missing : (mode & 0xF000) switch
            {
                0x8000 => throughDevices ? FileKindValue.Special : FileKindValue.Regular,
                0x4000 => FileKindValue.Directory,
                _ => FileKindValue.Special,
            };
        if (throughDevices && (info.Exists || target is not null)) return FileKindValue.Special;
        return info.LinkTarget is null ? (info.Exists ? FileKindValue.Regular : FileKindValue.Missing)
            : target is not null && File.Exists(target) ? FileKindValue.Regular : FileKindValue.Missing;
    }

    private static bool UnderDevices(string full) =>
        (full.StartsWith("/dev/", StringComparison.Ordinal) && !full.StartsWith("/dev/shm/", StringComparison.Ordinal))
        || full.StartsWith("/proc/", StringComparison.Ordinal);

    /// <summary>st_mode of <paramref name="full"/> (links followed); -1 when it does not exist; null when statx is unavailable.</summary>
    private static unsafe int? StatxMode(string full)
    {
        const int AtFdCwd = -100;
        const uint StatxType = 1;
        byte* buffer = stackalloc byte[256]; // struct statx is 256 bytes; stx_mode is the u16 at offset 28
        try
        {
            if (Statx(AtFdCwd, full, 0, StatxType, buffer) != 0)
                return Marshal.GetLastPInvokeError() is 2 or 20 ? -1 : null; // ENOENT, ENOTDIR: missing
        }
        catch (EntryPointNotFoundException) { return null; }
        catch (DllNotFoundException) { return null; }
        return *(ushort*)(buffer + 28);
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);
}
