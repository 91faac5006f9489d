using System.Runtime.InteropServices;

namespace Afm.Gpu.Native.Cuda;

/// <summary>
/// Raw CUDA driver API bindings (<c>libcuda.so.1</c>). Every function returns a <c>CUresult</c> as <see cref="int"/>.
/// Handle types: <c>CUdevice</c> = <see cref="int"/>; <c>CUcontext</c>, <c>CUmodule</c>, <c>CUfunction</c>,
/// <c>CUstream</c> = <see cref="nint"/>; <c>CUdeviceptr</c> = <see cref="ulong"/>; <c>size_t</c> = <see cref="nuint"/>.
/// Versioned (<c>_v2</c>) entry points are bound wherever cuda.h maps the plain name to one.
/// </summary>
internal static unsafe partial class CudaDriver
{
    internal const string LibraryName = "libcuda.so.1";

    // CUdevice_attribute (cuda.h)
    internal const int AttrMaxThreadsPerBlock = 1;
    internal const int AttrMaxSharedMemoryPerBlock = 8;
    internal const int AttrWarpSize = 10;
    internal const int AttrClockRate = 13;
    internal const int AttrMultiprocessorCount = 16;
    internal const int AttrComputeCapabilityMajor = 75;
    internal const int AttrComputeCapabilityMinor = 76;
    internal const int AttrMaxSharedMemoryPerBlockOptin = 97;

    // CUfunction_attribute (cuda.h)
    internal const int FuncAttrSharedSizeBytes = 1;
    internal const int FuncAttrLocalSizeBytes = 3;
    internal const int FuncAttrNumRegs = 4;
    internal const int FuncAttrMaxDynamicSharedSizeBytes = 8;

    // CUstream_flags: CU_STREAM_DEFAULT = 0 (blocking: ordered with the legacy NULL stream, which the
    // synchronous cuMemcpy*/cuMemset* calls use), CU_STREAM_NON_BLOCKING = 1.
    internal const uint StreamDefault = 0;

    // CUevent_flags: CU_EVENT_DISABLE_TIMING = 2 (cheapest event, for ordering only).
    internal const uint EventDisableTiming = 2;

    // CUresult of cuEventQuery / cuStreamQuery while work is pending.
    internal const int ErrorNotReady = 600;

    private static volatile bool s_loaded;
    private static readonly Lazy<string?> s_loadError = new(() =>
    {
        try
        {
            NativeLibrary.Load(LibraryName);
            s_loaded = true;
            return null;
        }
        catch (DllNotFoundException e)
        {
            return e.Message;
        }
        catch (BadImageFormatException e)
        {
            return e.Message;
        }
    });

    /// <summary>True once <c>libcuda.so.1</c> has been loaded successfully; never triggers a load.</summary>
    internal static bool IsLoaded => s_loaded;

    /// <summary>Loads the driver library once; returns null on success, else the loader's message.</summary>
    internal static string? TryLoad() => s_loadError.Value;

    [LibraryImport(LibraryName)] internal static partial int cuInit(uint flags);
    [LibraryImport(LibraryName)] internal static partial int cuDriverGetVersion(int* driverVersion);
    [LibraryImport(LibraryName)] internal static partial int cuGetErrorName(int error, byte** pStr);
    [LibraryImport(LibraryName)] internal static partial int cuGetErrorString(int error, byte** pStr);

    [LibraryImport(LibraryName)] internal static partial int cuDeviceGetCount(int* count);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceGet(int* device, int ordinal);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceGetName(byte* name, int len, int dev);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceGetAttribute(int* pi, int attrib, int dev);
    [LibraryImport(LibraryName)] internal static partial int cuDeviceTotalMem_v2(nuint* bytes, int dev);

    [LibraryImport(LibraryName)] internal static partial int cuDevicePrimaryCtxRetain(nint* pctx, int dev);
    [LibraryImport(LibraryName)] internal static partial int cuDevicePrimaryCtxRelease_v2(int dev);
    [LibraryImport(LibraryName)] internal static partial int cuCtxSetCurrent(nint ctx);
    [LibraryImport(LibraryName)] internal static partial int cuCtxSynchronize();

    [LibraryImport(LibraryName)] internal static partial int cuModuleLoadData(nint* module, void* image);
    [LibraryImport(LibraryName)] internal static partial int cuModuleGetFunction(nint* hfunc, nint hmod, byte* name);
    [LibraryImport(LibraryName)] internal static partial int cuModuleUnload(nint hmod);
    [LibraryImport(LibraryName)] internal static partial int cuFuncSetAttribute(nint hfunc, int attrib, int value);
    [LibraryImport(LibraryName)] internal static partial int cuFuncGetAttribute(int* pi, int attrib, nint hfunc);
    [LibraryImport(LibraryName)]
    internal static partial int cuOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, nint func, int blockSize, nuint dynamicSMemSize);
    [LibraryImport(LibraryName)]
    internal static partial int cuLaunchKernel(nint f, uint gridDimX, uint gridDimY, uint gridDimZ,
        uint blockDimX, uint blockDimY, uint blockDimZ, uint sharedMemBytes, nint hStream, void** kernelParams, void** extra);

    [LibraryImport(LibraryName)] internal static partial int cuMemGetInfo_v2(nuint* free, nuint* total);
    [LibraryImport(LibraryName)] internal static partial int cuMemAlloc_v2(ulong* dptr, nuint bytesize);
    [LibraryImport(LibraryName)] internal static partial int cuMemFree_v2(ulong dptr);
    [LibraryImport(LibraryName)] internal static partial int cuMemAllocHost_v2(void** pp, nuint bytesize);
    [LibraryImport(LibraryName)] internal static partial int cuMemFreeHost(void* p);

    [LibraryImport(LibraryName)] internal static partial int cuMemcpyHtoD_v2(ulong dstDevice, void* srcHost, nuint byteCount);
    [LibraryImport(LibraryName)] internal static partial int cuMemcpyDtoH_v2(void* dstHost, ulong srcDevice, nuint byteCount);
    [LibraryImport(LibraryName)] internal static partial int cuMemcpyDtoD_v2(ulong dstDevice, ulong srcDevice, nuint byteCount);
    [LibraryImport(LibraryName)] internal static partial int cuMemcpyHtoDAsync_v2(ulong dstDevice, void* srcHost, nuint byteCount, nint hStream);
    [LibraryImport(LibraryName)] internal static partial int cuMemcpyDtoHAsync_v2(void* dstHost, ulong srcDevice, nuint byteCount, nint hStream);
    [LibraryImport(LibraryName)] internal static partial int cuMemsetD8_v2(ulong dstDevice, byte uc, nuint n);
    [LibraryImport(LibraryName)] internal static partial int cuMemsetD32_v2(ulong dstDevice, uint ui, nuint n);
    [LibraryImport(LibraryName)] internal static partial int cuMemsetD8Async(ulong dstDevice, byte uc, nuint n, nint hStream);
    [LibraryImport(LibraryName)] internal static partial int cuMemsetD32Async(ulong dstDevice, uint ui, nuint n, nint hStream);

    [LibraryImport(LibraryName)] internal static partial int cuStreamCreate(nint* phStream, uint flags);
    [LibraryImport(LibraryName)] internal static partial int cuStreamDestroy_v2(nint hStream);
    [LibraryImport(LibraryName)] internal static partial int cuStreamSynchronize(nint hStream);

    [LibraryImport(LibraryName)] internal static partial int cuEventCreate(nint* phEvent, uint flags);
    [LibraryImport(LibraryName)] internal static partial int cuEventRecord(nint hEvent, nint hStream);
    [LibraryImport(LibraryName)] internal static partial int cuEventQuery(nint hEvent);
    [LibraryImport(LibraryName)] internal static partial int cuEventSynchronize(nint hEvent);
    [LibraryImport(LibraryName)] internal static partial int cuEventDestroy_v2(nint hEvent);
}
