using System.Runtime.InteropServices;

namespace Afm.Gpu.Native.Cuda;

/// <summary>Static description of one CUDA device.</summary>
/// <param name="Index">Device ordinal, as passed to <see cref="CudaDevice.Open"/>.</param>
/// <param name="Name">Marketing name, e.g. "NVIDIA H100 80GB HBM3".</param>
/// <param name="ComputeCapabilityMajor">Compute capability, major (9 for Hopper).</param>
/// <param name="ComputeCapabilityMinor">Compute capability, minor.</param>
/// <param name="TotalMemoryBytes">Global memory in bytes.</param>
/// <param name="MultiprocessorCount">Number of streaming multiprocessors.</param>
/// <param name="MaxThreadsPerBlock">Largest block size a kernel may be launched with.</param>
/// <param name="SharedMemoryPerBlock">Shared memory available to a block by default, in bytes.</param>
/// <param name="SharedMemoryPerBlockOptin">Shared memory a block may use after <see cref="CudaKernel.SetMaxDynamicSharedMemory"/>, in bytes.</param>
/// <param name="ClockRateKHz">Typical SM clock in kHz; 0 where the driver no longer reports it.</param>
/// <param name="WarpSize">Threads per warp.</param>
public sealed record CudaDeviceInfo(
    int Index,
    string Name,
    int ComputeCapabilityMajor,
    int ComputeCapabilityMinor,
    long TotalMemoryBytes,
    int MultiprocessorCount,
    int MaxThreadsPerBlock,
    int SharedMemoryPerBlock,
    int SharedMemoryPerBlockOptin,
    int ClockRateKHz,
    int WarpSize)
{
    /// <summary>A one-line summary, e.g. <c>[0] NVIDIA H100 (sm_90, 79.1 GiB, 132 SMs)</c>.</summary>
    public override string ToString() =>
        $"[{Index}] {Name} (sm_{ComputeCapabilityMajor}{ComputeCapabilityMinor}, {TotalMemoryBytes / (double)(1L << 30):F1} GiB, {MultiprocessorCount} SMs)";
}

/// <summary>Entry point to the CUDA driver: availability, driver version and device enumeration.</summary>
public static unsafe class CudaRuntime
{
    private static readonly Lazy<string?> s_unavailable = new(Initialize);
    private static int s_driverVersion;

    /// <summary>Null when the driver loaded and <c>cuInit</c> succeeded; otherwise a one-line reason.</summary>
    public static string? UnavailableReason => s_unavailable.Value;

    /// <summary>True when CUDA can be used on this machine.</summary>
    public static bool IsAvailable => UnavailableReason is null;

    /// <summary>The driver's CUDA version as <c>1000 * major + 10 * minor</c> (13000 for 13.0); 0 when unavailable.</summary>
    public static int DriverVersion => IsAvailable ? s_driverVersion : 0;

    /// <summary>Lists the visible CUDA devices; empty (see <see cref="UnavailableReason"/>) when there is no usable driver.</summary>
    public static IReadOnlyList<CudaDeviceInfo> EnumerateDevices()
    {
        if (!IsAvailable) return [];
        int count;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGetCount(&count));
        var devices = new CudaDeviceInfo[count];
        for (int i = 0; i < count; i++) devices[i] = QueryDevice(i);
        return devices;
    }

    /// <summary>Throws <see cref="InvalidOperationException"/> with <see cref="UnavailableReason"/> when CUDA is unusable.</summary>
    internal static void EnsureAvailable()
    {
        if (UnavailableReason is { } reason) throw new InvalidOperationException($"CUDA is unavailable: {reason}");
    }

    internal static CudaDeviceInfo QueryDevice(int ordinal)
    {
        int dev;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGet(&dev, ordinal));
        byte* name = stackalloc byte[256];
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGetName(name, 256, dev));
        nuint total;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceTotalMem_v2(&total, dev));
        int clock;
        if (CudaDriver.cuDeviceGetAttribute(&clock, CudaDriver.AttrClockRate, dev) != 0) clock = 0;
        return new CudaDeviceInfo(
            ordinal,
            Marshal.PtrToStringUTF8((nint)name) ?? "",
            Attribute(CudaDriver.AttrComputeCapabilityMajor, dev),
            Attribute(CudaDriver.AttrComputeCapabilityMinor, dev),
            (long)total,
            Attribute(CudaDriver.AttrMultiprocessorCount, dev),
            Attribute(CudaDriver.AttrMaxThreadsPerBlock, dev),
            Attribute(CudaDriver.AttrMaxSharedMemoryPerBlock, dev),
            Attribute(CudaDriver.AttrMaxSharedMemoryPerBlockOptin, dev),
            clock,
            Attribute(CudaDriver.AttrWarpSize, dev));
    }

    private static int Attribute(int attribute, int dev)
    {
        int value;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGetAttribute(&value, attribute, dev));
        return value;
    }

    private static string? Initialize()
    {
        if (!OperatingSystem.IsLinux()) return "the CUDA backend supports Linux only";
        if (CudaDriver.TryLoad() is { } loadError)
            return loadError.Contains("cannot open shared object file", StringComparison.Ordinal)
                ? $"{CudaDriver.LibraryName} not found: no NVIDIA driver on this machine"
                : $"{CudaDriver.LibraryName} could not be loaded: {LibraryResolver.OneLine(loadError)}";
        try
        {
            int status = CudaDriver.cuInit(0);
            if (status != 0) return $"cuInit failed: {CudaResultNames.GetName(status)} ({status})";
            int version;
            CudaCheck.ThrowIfFailed(CudaDriver.cuDriverGetVersion(&version));
            s_driverVersion = version;
            return null;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException or CudaException)
        {
            return $"{CudaDriver.LibraryName} is unusable: {e.Message}";
        }
    }
}
