using System.Text;

namespace Afm.Gpu.Native.OpenCL;

/// <summary>Broad class of an OpenCL device.</summary>
public enum OpenClDeviceType
{
    /// <summary>Neither CPU, GPU nor accelerator.</summary>
    Other,
    /// <summary><c>CL_DEVICE_TYPE_CPU</c>, e.g. PoCL's pthread device.</summary>
    Cpu,
    /// <summary><c>CL_DEVICE_TYPE_GPU</c>.</summary>
    Gpu,
    /// <summary><c>CL_DEVICE_TYPE_ACCELERATOR</c>.</summary>
    Accelerator,
    /// <summary><c>CL_DEVICE_TYPE_CUSTOM</c>.</summary>
    Custom,
}

/// <summary>An OpenCL platform (one installed ICD driver).</summary>
public sealed record OpenClPlatformInfo
{
    /// <summary>Position in the ICD loader's platform list.</summary>
    public int Index { get; internal init; }

    /// <summary><c>CL_PLATFORM_NAME</c>, e.g. "Portable Computing Language".</summary>
    public string Name { get; internal init; } = "";

    /// <summary><c>CL_PLATFORM_VENDOR</c>.</summary>
    public string Vendor { get; internal init; } = "";

    /// <summary><c>CL_PLATFORM_VERSION</c>, e.g. "OpenCL 3.0 PoCL 3.1 ...".</summary>
    public string Version { get; internal init; } = "";

    internal nint Id { get; init; }
}

/// <summary>One OpenCL device; <see cref="Index"/> is its flat position across all platforms (<c>opencl:N</c>).</summary>
public sealed record OpenClDeviceInfo
{
    /// <summary>Flat index over every device of every platform, as used in <c>opencl:N</c>.</summary>
    public int Index { get; internal init; }

    /// <summary>The platform that owns the device.</summary>
    public OpenClPlatformInfo Platform { get; internal init; } = new();

    /// <summary><c>CL_DEVICE_NAME</c>.</summary>
    public string Name { get; internal init; } = "";

    /// <summary><c>CL_DEVICE_VENDOR</c>.</summary>
    public string Vendor { get; internal init; } = "";

    /// <summary><c>CL_DEVICE_VERSION</c>, e.g. "OpenCL 3.0 PoCL ...".</summary>
    public string Version { get; internal init; } = "";

    /// <summary><c>CL_DRIVER_VERSION</c>.</summary>
    public string DriverVersion { get; internal init; } = "";

    /// <summary>CPU, GPU, accelerator, ...</summary>
    public OpenClDeviceType Type { get; internal init; }

    /// <summary><c>CL_DEVICE_GLOBAL_MEM_SIZE</c> in bytes.</summary>
    public long GlobalMemoryBytes { get; internal init; }

    /// <summary><c>CL_DEVICE_MAX_MEM_ALLOC_SIZE</c>: the largest single buffer, in bytes.</summary>
    public long MaxAllocationBytes { get; internal init; }

    /// <summary><c>CL_DEVICE_LOCAL_MEM_SIZE</c>: local (shared) memory per work-group, in bytes.</summary>
    public long LocalMemoryBytes { get; internal init; }

    /// <summary><c>CL_DEVICE_MAX_COMPUTE_UNITS</c>.</summary>
    public int MaxComputeUnits { get; internal init; }

    /// <summary><c>CL_DEVICE_MAX_WORK_GROUP_SIZE</c> (any kernel's limit may be lower).</summary>
    public long MaxWorkGroupSize { get; internal init; }

    /// <summary><c>CL_DEVICE_MAX_CLOCK_FREQUENCY</c> in MHz.</summary>
    public int MaxClockMHz { get; internal init; }

    /// <summary><c>CL_DEVICE_OPENCL_C_VERSION</c>, e.g. "OpenCL C 1.2 PoCL".</summary>
    public string OpenClCVersion { get; internal init; } = "";

    /// <summary><c>CL_DEVICE_EXTENSIONS</c>: space-separated extension names.</summary>
    public string Extensions { get; internal init; } = "";

    internal nint Id { get; init; }

    /// <summary>Whether <see cref="Extensions"/> lists <paramref name="extension"/> (e.g. <c>cl_khr_fp64</c>).</summary>
    /// <param name="extension">An extension name.</param>
    public bool HasExtension(string extension) =>
        Extensions.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains(extension, StringComparer.Ordinal);

    /// <summary>A one-line summary, e.g. <c>opencl:0 pthread-... (Cpu, 2 CU, 2596 MHz, 7.6 GiB, Portable Computing Language)</c>.</summary>
    public override string ToString() =>
        $"opencl:{Index} {Name} ({Type}, {MaxComputeUnits} CU, {MaxClockMHz} MHz, {GlobalMemoryBytes / (double)(1L << 30):0.#} GiB, {Platform.Name})";
}

/// <summary>Discovers OpenCL platforms and devices through the ICD loader.</summary>
public static class OpenClRuntime
{
    private static readonly Lazy<(IReadOnlyList<OpenClDeviceInfo> Devices, string? Reason)> s_discovery = new(Discover);

    /// <summary>
    /// Every device of every platform, in platform order, with <see cref="OpenClDeviceInfo.Index"/> = position.
    /// Empty when OpenCL is unusable; <see cref="UnavailableReason"/> then says why. Discovered once per process.
    /// </summary>
    public static IReadOnlyList<OpenClDeviceInfo> EnumerateDevices() => s_discovery.Value.Devices;

    /// <summary>Why <see cref="EnumerateDevices"/> is empty (missing loader, no platforms, no devices); null when devices exist.</summary>
    public static string? UnavailableReason => s_discovery.Value.Reason;

    /// <summary>Whether at least one OpenCL device is present.</summary>
    public static bool IsAvailable => EnumerateDevices().Count > 0;

    private static (IReadOnlyList<OpenClDeviceInfo>, string?) Discover()
    {
        try
        {
            var platforms = GetPlatformIds();
            if (platforms.Length == 0)
                return ([], "no OpenCL platforms found (the ICD loader is present but no ICD is registered under /etc/OpenCL/vendors; install e.g. pocl-opencl-icd)");

            var devices = new List<OpenClDeviceInfo>();
            for (int p = 0; p < platforms.Length; p++)
            {
                var platform = new OpenClPlatformInfo
                {
                    Index = p,
                    Id = platforms[p],
                    Name = PlatformString(platforms[p], Cl.CL_PLATFORM_NAME),
                    Vendor = PlatformString(platforms[p], Cl.CL_PLATFORM_VENDOR),
                    Version = PlatformString(platforms[p], Cl.CL_PLATFORM_VERSION),
                };
                foreach (nint id in GetDeviceIds(platforms[p]))
                    devices.Add(Describe(devices.Count, platform, id));
            }
            return devices.Count > 0
                ? (devices.AsReadOnly(), null)
                : ([], $"no OpenCL devices found on {platforms.Length} platform(s)");
        }
        catch (DllNotFoundException)
        {
            return ([], $"{Cl.Library} not found (install ocl-icd-libopencl1 and an ICD such as pocl-opencl-icd)");
        }
        catch (EntryPointNotFoundException e)
        {
            return ([], $"{Cl.Library} lacks a required entry point: {e.Message}");
        }
        catch (OpenClException e)
        {
            return ([], $"OpenCL discovery failed: {e.Message}");
        }
    }

    private static unsafe nint[] GetPlatformIds()
    {
        uint count;
        int status = Cl.clGetPlatformIDs(0, null, &count);
        if (status == Cl.CL_PLATFORM_NOT_FOUND_KHR || (status == Cl.CL_SUCCESS && count == 0))
            return [];
        ClCheck.ThrowIfFailed(status, nameof(Cl.clGetPlatformIDs));
        var ids = new nint[count];
        fixed (nint* p = ids)
            ClCheck.ThrowIfFailed(Cl.clGetPlatformIDs(count, p, &count));
        return ids[..(int)Math.Min(count, (uint)ids.Length)];
    }

    private static unsafe nint[] GetDeviceIds(nint platform)
    {
        uint count;
        int status = Cl.clGetDeviceIDs(platform, Cl.CL_DEVICE_TYPE_ALL, 0, null, &count);
        if (status == Cl.CL_DEVICE_NOT_FOUND || (status == Cl.CL_SUCCESS && count == 0))
            return [];
        ClCheck.ThrowIfFailed(status, nameof(Cl.clGetDeviceIDs));
        var ids = new nint[count];
        fixed (nint* p = ids)
            ClCheck.ThrowIfFailed(Cl.clGetDeviceIDs(platform, Cl.CL_DEVICE_TYPE_ALL, count, p, &count));
        return ids[..(int)Math.Min(count, (uint)ids.Length)];
    }

    private static OpenClDeviceInfo Describe(int index, OpenClPlatformInfo platform, nint id)
    {
        ulong type = DeviceValue<ulong>(id, Cl.CL_DEVICE_TYPE);
        return new OpenClDeviceInfo
        {
            Index = index,
            Platform = platform,
            Id = id,
            Name = DeviceString(id, Cl.CL_DEVICE_NAME),
            Vendor = DeviceString(id, Cl.CL_DEVICE_VENDOR),
            Version = DeviceString(id, Cl.CL_DEVICE_VERSION),
            DriverVersion = DeviceString(id, Cl.CL_DRIVER_VERSION),
            Type = (type & Cl.CL_DEVICE_TYPE_GPU) != 0 ? OpenClDeviceType.Gpu
                : (type & Cl.CL_DEVICE_TYPE_CPU) != 0 ? OpenClDeviceType.Cpu
                : (type & Cl.CL_DEVICE_TYPE_ACCELERATOR) != 0 ? OpenClDeviceType.Accelerator
                : (type & Cl.CL_DEVICE_TYPE_CUSTOM) != 0 ? OpenClDeviceType.Custom
                : OpenClDeviceType.Other,
            GlobalMemoryBytes = (long)DeviceValue<ulong>(id, Cl.CL_DEVICE_GLOBAL_MEM_SIZE),
            MaxAllocationBytes = (long)DeviceValue<ulong>(id, Cl.CL_DEVICE_MAX_MEM_ALLOC_SIZE),
            LocalMemoryBytes = (long)DeviceValue<ulong>(id, Cl.CL_DEVICE_LOCAL_MEM_SIZE),
            MaxComputeUnits = (int)DeviceValue<uint>(id, Cl.CL_DEVICE_MAX_COMPUTE_UNITS),
            MaxWorkGroupSize = (long)DeviceValue<nuint>(id, Cl.CL_DEVICE_MAX_WORK_GROUP_SIZE),
            MaxClockMHz = (int)DeviceValue<uint>(id, Cl.CL_DEVICE_MAX_CLOCK_FREQUENCY),
            OpenClCVersion = DeviceString(id, Cl.CL_DEVICE_OPENCL_C_VERSION),
            Extensions = DeviceString(id, Cl.CL_DEVICE_EXTENSIONS),
        };
    }

    internal static unsafe T DeviceValue<T>(nint device, uint param) where T : unmanaged
    {
        T value = default;
        ClCheck.ThrowIfFailed(Cl.clGetDeviceInfo(device, param, (nuint)sizeof(T), &value, null));
        return value;
    }

    internal static unsafe string DeviceString(nint device, uint param)
    {
        nuint size;
        ClCheck.ThrowIfFailed(Cl.clGetDeviceInfo(device, param, 0, null, &size));
        var bytes = new byte[size];
        fixed (byte* p = bytes)
            ClCheck.ThrowIfFailed(Cl.clGetDeviceInfo(device, param, size, p, null));
        return DecodeCString(bytes);
    }

    private static unsafe string PlatformString(nint platform, uint param)
    {
        nuint size;
        ClCheck.ThrowIfFailed(Cl.clGetPlatformInfo(platform, param, 0, null, &size));
        var bytes = new byte[size];
        fixed (byte* p = bytes)
            ClCheck.ThrowIfFailed(Cl.clGetPlatformInfo(platform, param, size, p, null));
        return DecodeCString(bytes);
    }

    /// <summary>Decodes a NUL-terminated UTF-8 info string, dropping the terminator and surrounding whitespace.</summary>
    internal static string DecodeCString(ReadOnlySpan<byte> bytes)
    {
        int nul = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? bytes[..nul] : bytes).Trim();
    }
}
