using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace Afm.Gpu.Native.Cuda;

/// <summary>An NVRTC call failed; for compilation failures <see cref="Log"/> holds the compiler output.</summary>
public sealed class NvrtcException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> having returned <paramref name="status"/>.</summary>
    public NvrtcException(string call, int status, string log = "")
        : base(FormatMessage(call, status, log))
    {
        Call = call;
        Status = status;
        StatusName = NvrtcResultNames.GetName(status);
        Log = log;
    }

    /// <summary>The NVRTC function that failed, e.g. <c>nvrtcCompileProgram</c>.</summary>
    public string Call { get; }

    /// <summary>The raw <c>nvrtcResult</c> value.</summary>
    public int Status { get; }

    /// <summary>The symbolic <c>nvrtcResult</c> name, e.g. <c>NVRTC_ERROR_COMPILATION</c>.</summary>
    public string StatusName { get; }

    /// <summary>The program log (compiler diagnostics); empty when there was none.</summary>
    public string Log { get; }

    private static string FormatMessage(string call, int status, string log)
    {
        var head = $"{call} failed: {NvrtcResultNames.GetName(status)} ({status})";
        return string.IsNullOrWhiteSpace(log) ? head : $"{head}\n{log.TrimEnd()}";
    }
}

/// <summary>Symbolic names of <c>nvrtcResult</c> values.</summary>
public static class NvrtcResultNames
{
    // The nvrtcResult enum of nvrtc.h (CUDA 13.0; NVRTC_ERROR_BUSY from 13.3).
    private static readonly string[] s_table =
    [
        "NVRTC_SUCCESS",
        "NVRTC_ERROR_OUT_OF_MEMORY",
        "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
        "NVRTC_ERROR_INVALID_INPUT",
        "NVRTC_ERROR_INVALID_PROGRAM",
        "NVRTC_ERROR_INVALID_OPTION",
        "NVRTC_ERROR_COMPILATION",
        "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
        "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
        "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
        "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
        "NVRTC_ERROR_INTERNAL_ERROR",
        "NVRTC_ERROR_TIME_FILE_WRITE_FAILED",
        "NVRTC_ERROR_NO_PCH_CREATE_ATTEMPTED",
        "NVRTC_ERROR_PCH_CREATE_HEAP_EXHAUSTED",
        "NVRTC_ERROR_PCH_CREATE",
        "NVRTC_ERROR_CANCELLED",
        "NVRTC_ERROR_TIME_TRACE_FILE_WRITE_FAILED",
        "NVRTC_ERROR_BUSY",
    ];

    /// <summary>The name from the built-in table (no NVRTC needed); <c>nvrtcResult(N)</c> for values it lacks.</summary>
    public static string FromTable(int status) =>
        (uint)status < (uint)s_table.Length ? s_table[status] : $"nvrtcResult({status})";

    /// <summary>The name from the table, falling back to <c>nvrtcGetErrorString</c> when NVRTC is loaded.</summary>
    public static unsafe string GetName(int status)
    {
        if ((uint)status < (uint)s_table.Length) return s_table[status];
        var api = NvrtcApi.Loaded;
        byte* p = api is null ? null : api.GetErrorString(status);
        return p == null ? FromTable(status) : Marshal.PtrToStringUTF8((nint)p) ?? FromTable(status);
    }
}

/// <summary>
/// NVRTC entry points, loaded dynamically (NVRTC ships with the toolkit, not the driver, and its soname carries
/// the CUDA major version) and bound through <see cref="NativeLibrary.GetExport"/> as unmanaged function pointers.
/// </summary>
internal sealed unsafe class NvrtcApi
{
    internal const string PathVariable = "AFM_NVRTC_PATH";

    private static readonly Lazy<(NvrtcApi? Api, string? Error)> s_default = new(LoadDefault);
    private static volatile NvrtcApi? s_loaded;

    public readonly string LibraryPath;
    public readonly delegate* unmanaged<int*, int*, int> Version;
    public readonly delegate* unmanaged<int*, int> GetNumSupportedArchs;
    public readonly delegate* unmanaged<int*, int> GetSupportedArchs;
    public readonly delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int> CreateProgram;
    public readonly delegate* unmanaged<nint, int, byte**, int> CompileProgram;
    public readonly delegate* unmanaged<nint*, int> DestroyProgram;
    public readonly delegate* unmanaged<nint, nuint*, int> GetProgramLogSize;
    public readonly delegate* unmanaged<nint, byte*, int> GetProgramLog;
    public readonly delegate* unmanaged<nint, nuint*, int> GetPTXSize;
    public readonly delegate* unmanaged<nint, byte*, int> GetPTX;
    public readonly delegate* unmanaged<nint, nuint*, int> GetCUBINSize;
    public readonly delegate* unmanaged<nint, byte*, int> GetCUBIN;
    public readonly delegate* unmanaged<int, byte*> GetErrorString;

    private NvrtcApi(nint lib, string path)
    {
        LibraryPath = path;
        Version = (delegate* unmanaged<int*, int*, int>)NativeLibrary.GetExport(lib, "nvrtcVersion");
        GetNumSupportedArchs = (delegate* unmanaged<int*, int>)NativeLibrary.GetExport(lib, "nvrtcGetNumSupportedArchs");
        GetSupportedArchs = (delegate* unmanaged<int*, int>)NativeLibrary.GetExport(lib, "nvrtcGetSupportedArchs");
        CreateProgram = (delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int>)NativeLibrary.GetExport(lib, "nvrtcCreateProgram");
        CompileProgram = (delegate* unmanaged<nint, int, byte**, int>)NativeLibrary.GetExport(lib, "nvrtcCompileProgram");
        DestroyProgram = (delegate* unmanaged<nint*, int>)NativeLibrary.GetExport(lib, "nvrtcDestroyProgram");
        GetProgramLogSize = (delegate* unmanaged<nint, nuint*, int>)NativeLibrary.GetExport(lib, "nvrtcGetProgramLogSize");
        GetProgramLog = (delegate* unmanaged<nint, byte*, int>)NativeLibrary.GetExport(lib, "nvrtcGetProgramLog");
        GetPTXSize = (delegate* unmanaged<nint, nuint*, int>)NativeLibrary.GetExport(lib, "nvrtcGetPTXSize");
        GetPTX = (delegate* unmanaged<nint, byte*, int>)NativeLibrary.GetExport(lib, "nvrtcGetPTX");
        GetCUBINSize = (delegate* unmanaged<nint, nuint*, int>)NativeLibrary.GetExport(lib, "nvrtcGetCUBINSize");
        GetCUBIN = (delegate* unmanaged<nint, byte*, int>)NativeLibrary.GetExport(lib, "nvrtcGetCUBIN");
        GetErrorString = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(lib, "nvrtcGetErrorString");
    }

    /// <summary>The process-wide NVRTC once it has been loaded; null before (or if loading failed).</summary>
    public static NvrtcApi? Loaded => s_loaded;

    /// <summary>Loads NVRTC once per process from <see cref="Candidates"/>; returns the error report on failure.</summary>
    public static bool TryLoad([NotNullWhen(true)] out NvrtcApi? api, [NotNullWhen(false)] out string? error)
    {
        (api, error) = s_default.Value;
        error ??= api is null ? "NVRTC could not be loaded" : null;
        return api is not null;
    }

    private static (NvrtcApi?, string?) LoadDefault()
    {
        var resolution = LibraryResolver.Resolve("NVRTC (libnvrtc.so)",
            Candidates(Environment.GetEnvironmentVariable(PathVariable), Environment.GetFolderPath(Environment.SpecialFolder.UserProfile)),
            LibraryResolver.NativeLoader);
        if (!resolution.Success)
            return (null, resolution.Describe() + $"\nSet {PathVariable} to the full path of libnvrtc.so.* to choose one explicitly.");
        try
        {
            var api = new NvrtcApi(resolution.Handle, resolution.LoadedFrom!);
            s_loaded = api;
            return (api, null);
        }
        catch (EntryPointNotFoundException e)
        {
            return (null, $"NVRTC at {resolution.LoadedFrom} is unusable (too old?): {e.Message}");
        }
    }

    /// <summary>
    /// Where to look for NVRTC, in order: <c>$AFM_NVRTC_PATH</c> (a file, or a folder holding libnvrtc.so*), the
    /// sonames libnvrtc.so.13 / .12 / libnvrtc.so through the dynamic loader's search path, then the usual toolkit
    /// folders and pip-installed <c>nvidia/*/lib</c> folders. A folder pattern with no match is returned as is,
    /// so that it shows up (as "not found") in the failure report.
    /// </summary>
    internal static IEnumerable<string> Candidates(string? envPath, string? home)
    {
        if (!string.IsNullOrWhiteSpace(envPath))
        {
            if (Directory.Exists(envPath))
                foreach (var c in Expand(Path.Combine(envPath, "libnvrtc.so*"))) yield return c;
            else
                yield return envPath;
        }
        yield return "libnvrtc.so.13";
        yield return "libnvrtc.so.12";
        yield return "libnvrtc.so";
        yield return "libnvrtc.so.11.2"; // CUDA 11.2 to 11.8 (and Debian's libnvrtc11.2)
        string[] folders =
        [
            "/usr/local/cuda/lib64",
            "/usr/local/cuda-13*/lib64",
            "/usr/local/cuda-12*/lib64",
            "/usr/local/cuda-11*/lib64",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/local/lib/python3*/dist-packages/nvidia/cu*/lib",
            "/usr/local/lib/python3*/site-packages/nvidia/cu*/lib",
            "/usr/lib/python3/dist-packages/nvidia/cu*/lib",
        ];
        foreach (var folder in folders)
            foreach (var c in Expand(folder + "/libnvrtc.so*")) yield return c;
        if (!string.IsNullOrEmpty(home))
            foreach (var c in Expand(Path.Combine(home, ".local/lib/python3*/site-packages/nvidia/cu*/lib/libnvrtc.so*"))) yield return c;
    }

    private static IEnumerable<string> Expand(string pattern)
    {
        var matches = LibraryResolver.Glob(pattern).Where(File.Exists).ToList();
        return matches.Count > 0 ? matches : [pattern];
    }
}
