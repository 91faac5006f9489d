using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Afm.Gpu.Native.Cuda;

/// <summary>The output of <see cref="NvrtcCompiler.Compile"/>.</summary>
/// <param name="Image">A cubin (ELF) when <paramref name="IsCubin"/>, else NUL-terminated PTX; either loads with <see cref="CudaDevice.LoadModule"/>.</param>
/// <param name="IsCubin">True for a cubin built for <c>sm_XY</c>; false for PTX (<c>compute_XY</c>) that the driver JIT-compiles.</param>
/// <param name="Architecture">The architecture compiled for, as <c>10 * major + minor</c> (90 for sm_90).</param>
/// <param name="Options">The exact options passed to NVRTC.</param>
/// <param name="Log">The compiler log (warnings); empty when there were none.</param>
public sealed record CompileResult(byte[] Image, bool IsCubin, int Architecture, IReadOnlyList<string> Options, string Log)
{
    /// <summary>The target name, e.g. <c>sm_90</c> or <c>compute_90</c>.</summary>
    public string Target => NvrtcCompiler.TargetName(Architecture, IsCubin);
}

/// <summary>Runtime compilation of CUDA C++ with NVRTC.</summary>
public sealed unsafe class NvrtcCompiler
{
    private readonly NvrtcApi _api;

    private NvrtcCompiler(NvrtcApi api)
    {
        _api = api;
        int major, minor;
        Check(_api.Version(&major, &minor), "nvrtcVersion");
        VersionMajor = major;
        VersionMinor = minor;
        int count;
        Check(_api.GetNumSupportedArchs(&count), "nvrtcGetNumSupportedArchs");
        var archs = new int[count];
        fixed (int* p = archs) Check(_api.GetSupportedArchs(p), "nvrtcGetSupportedArchs");
        Array.Sort(archs);
        SupportedArchitectures = archs;
    }

    /// <summary>Path (or soname) NVRTC was loaded from.</summary>
    public string LibraryPath => _api.LibraryPath;

    /// <summary>NVRTC major version (e.g. 13).</summary>
    public int VersionMajor { get; }

    /// <summary>NVRTC minor version.</summary>
    public int VersionMinor { get; }

    /// <summary>"major.minor", as used in cache keys.</summary>
    public string Version => $"{VersionMajor}.{VersionMinor}";

    /// <summary>Architectures this NVRTC can target, ascending, as <c>10 * major + minor</c>.</summary>
    public IReadOnlyList<int> SupportedArchitectures { get; }

    /// <summary>Loads NVRTC (see <c>AFM_NVRTC_PATH</c>); throws <see cref="DllNotFoundException"/> listing every place tried.</summary>
    public static NvrtcCompiler Load() =>
        TryLoad(out var compiler, out var reason) ? compiler : throw new DllNotFoundException(reason);

    /// <summary>Loads NVRTC; on failure returns false with a report of every place tried and why it failed.</summary>
    public static bool TryLoad([NotNullWhen(true)] out NvrtcCompiler? compiler, [NotNullWhen(false)] out string? reason)
    {
        compiler = null;
        if (!NvrtcApi.TryLoad(out var api, out reason)) return false;
        compiler = new NvrtcCompiler(api);
        return true;
    }

    /// <summary>
    /// Picks the highest supported architecture not above the device's compute capability. A cubin is produced
    /// when that architecture has the device's major version (cubins run on same-major devices of equal or higher
    /// minor); otherwise PTX, which the driver JIT-compiles for the newer device.
    /// </summary>
    /// <exception cref="NotSupportedException">No supported architecture is at or below the device's.</exception>
    public static (int Architecture, bool Cubin) SelectTarget(IReadOnlyList<int> supported, int ccMajor, int ccMinor)
    {
        int device = ccMajor * 10 + ccMinor;
        int best = -1;
        foreach (int a in supported)
            if (a <= device && a > best) best = a;
        if (best < 0)
            throw new NotSupportedException(
                $"NVRTC supports [{string.Join(", ", supported)}], none at or below compute capability {ccMajor}.{ccMinor}");
        return (best, best / 10 == ccMajor);
    }

    /// <summary><c>sm_XY</c> for a cubin target, <c>compute_XY</c> for PTX.</summary>
    public static string TargetName(int architecture, bool cubin) => $"{(cubin ? "sm" : "compute")}_{architecture}";

    /// <summary>The full NVRTC option list: architecture, <c>-default-device</c>, <c>--std=c++17</c>, then the extras.</summary>
    /// <exception cref="ArgumentException">An extra option sets the architecture itself.</exception>
    public static IReadOnlyList<string> BuildOptions(int architecture, bool cubin, IEnumerable<string>? extraOptions)
    {
        var options = new List<string> { $"-arch={TargetName(architecture, cubin)}", "-default-device", "--std=c++17" };
        foreach (var o in extraOptions ?? [])
        {
            if (o.StartsWith("-arch", StringComparison.Ordinal) || o.StartsWith("--gpu-architecture", StringComparison.Ordinal))
                throw new ArgumentException($"the architecture is chosen from the device; remove '{o}'", nameof(extraOptions));
            options.Add(o);
        }
        return options;
    }

    /// <summary>Compiles <paramref name="source"/> for a device of compute capability <paramref name="ccMajor"/>.<paramref name="ccMinor"/>.</summary>
    /// <param name="source">CUDA C++ source; kernels should be <c>extern "C"</c> so their names are not mangled.</param>
    /// <param name="name">Program name used in diagnostics, e.g. <c>afm.cu</c>.</param>
    /// <param name="ccMajor">Device compute capability, major.</param>
    /// <param name="ccMinor">Device compute capability, minor.</param>
    /// <param name="extraOptions">Further NVRTC options (e.g. <c>--use_fast_math</c>, <c>-DK=64</c>); not the architecture.</param>
    /// <exception cref="NvrtcException">Compilation failed; <see cref="NvrtcException.Log"/> has the diagnostics.</exception>
    public CompileResult Compile(string source, string name, int ccMajor, int ccMinor, IEnumerable<string>? extraOptions = null)
    {
        var (arch, cubin) = SelectTarget(SupportedArchitectures, ccMajor, ccMinor);
        return CompileFor(source, name, arch, cubin, BuildOptions(arch, cubin, extraOptions));
    }

    /// <summary>
    /// Like <see cref="Compile"/>, but served from <paramref name="cache"/> when an image for the same source,
    /// options, target and NVRTC version is already there.
    /// </summary>
    public byte[] CompileCached(KernelCache cache, string source, string name, int ccMajor, int ccMinor, IEnumerable<string>? extraOptions = null)
    {
        var (arch, cubin) = SelectTarget(SupportedArchitectures, ccMajor, ccMinor);
        var options = BuildOptions(arch, cubin, extraOptions);
        var key = KernelCache.ComputeKey(source, options, TargetName(arch, cubin), Version);
        return cache.GetOrAdd(key, () => CompileFor(source, name, arch, cubin, options).Image);
    }

    private CompileResult CompileFor(string source, string name, int arch, bool cubin, IReadOnlyList<string> options)
    {
        // All option strings NUL-terminated in one buffer, addressed through a pointer array.
        var blob = new List<byte>();
        var offsets = new int[options.Count];
        for (int i = 0; i < options.Count; i++)
        {
            offsets[i] = blob.Count;
            blob.AddRange(Utf8Z(options[i]));
        }
        var optionBytes = blob.ToArray();
        var optionPtrs = new nint[options.Count];
        nint prog = 0;
        try
        {
            int status;
            fixed (byte* src = Utf8Z(source), nm = Utf8Z(name), ob = optionBytes)
            fixed (nint* op = optionPtrs)
            {
                for (int i = 0; i < offsets.Length; i++) op[i] = (nint)(ob + offsets[i]);
                Check(_api.CreateProgram(&prog, src, nm, 0, null, null), "nvrtcCreateProgram");
                status = _api.CompileProgram(prog, options.Count, (byte**)op);
            }
            string log = ReadLog(prog);
            if (status != 0) throw new NvrtcException("nvrtcCompileProgram", status, log);
            byte[] image = cubin
                ? Read(prog, _api.GetCUBINSize, _api.GetCUBIN, "nvrtcGetCUBIN")
                : Read(prog, _api.GetPTXSize, _api.GetPTX, "nvrtcGetPTX");
            return new CompileResult(image, cubin, arch, options, log);
        }
        finally
        {
            if (prog != 0) _api.DestroyProgram(&prog);
        }
    }

    private string ReadLog(nint prog)
    {
        nuint size;
        if (_api.GetProgramLogSize(prog, &size) != 0 || size <= 1) return "";
        var buf = new byte[size];
        fixed (byte* p = buf)
            if (_api.GetProgramLog(prog, p) != 0) return "";
        return Encoding.UTF8.GetString(buf, 0, (int)size - 1).Trim();
    }

    private static byte[] Read(nint prog, delegate* unmanaged<nint, nuint*, int> getSize, delegate* unmanaged<nint, byte*, int> get, string call)
    {
        nuint size;
        Check(getSize(prog, &size), call + "Size");
        var buf = new byte[size];
        fixed (byte* p = buf) Check(get(prog, p), call);
        return buf;
    }

    private static byte[] Utf8Z(string s)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, bytes);
        return bytes;
    }

    private static void Check(int status, string call)
    {
        if (status != 0) throw new NvrtcException(call, status);
    }
}
