using System.Runtime.InteropServices;

namespace Afm.Gpu.Native.OpenCL;

/// <summary>
/// Raw OpenCL 1.2/2.0 entry points from the ICD loader (<c>libOpenCL.so.1</c>) and the constants we use,
/// named as in Khronos <c>CL/cl.h</c>. Platform and device ids are plain pointers (they are not reference
/// counted); every other object travels as its <see cref="ClHandle"/> subclass so it cannot be released mid-call.
/// </summary>
internal static unsafe partial class Cl
{
    /// <summary>The ICD loader's soname; <c>libOpenCL.so</c> exists only with the -dev package.</summary>
    internal const string Library = "libOpenCL.so.1";

    // Status codes (the full table lives in OpenClException.GetStatusName).
    internal const int CL_SUCCESS = 0;
    internal const int CL_DEVICE_NOT_FOUND = -1;
    internal const int CL_BUILD_PROGRAM_FAILURE = -11;
    internal const int CL_PLATFORM_NOT_FOUND_KHR = -1001;

    internal const uint CL_TRUE = 1;

    // cl_platform_info
    internal const uint CL_PLATFORM_PROFILE = 0x0900;
    internal const uint CL_PLATFORM_VERSION = 0x0901;
    internal const uint CL_PLATFORM_NAME = 0x0902;
    internal const uint CL_PLATFORM_VENDOR = 0x0903;

    // cl_device_type (bitfield)
    internal const ulong CL_DEVICE_TYPE_DEFAULT = 1 << 0;
    internal const ulong CL_DEVICE_TYPE_CPU = 1 << 1;
    internal const ulong CL_DEVICE_TYPE_GPU = 1 << 2;
    internal const ulong CL_DEVICE_TYPE_ACCELERATOR = 1 << 3;
    internal const ulong CL_DEVICE_TYPE_CUSTOM = 1 << 4;
    internal const ulong CL_DEVICE_TYPE_ALL = 0xFFFFFFFF;

    // cl_device_info
    internal const uint CL_DEVICE_TYPE = 0x1000;
    internal const uint CL_DEVICE_MAX_COMPUTE_UNITS = 0x1002;
    internal const uint CL_DEVICE_MAX_WORK_GROUP_SIZE = 0x1004;
    internal const uint CL_DEVICE_MAX_CLOCK_FREQUENCY = 0x100C;
    internal const uint CL_DEVICE_MAX_MEM_ALLOC_SIZE = 0x1010;
    internal const uint CL_DEVICE_GLOBAL_MEM_SIZE = 0x101F;
    internal const uint CL_DEVICE_LOCAL_MEM_SIZE = 0x1023;
    internal const uint CL_DEVICE_NAME = 0x102B;
    internal const uint CL_DEVICE_VENDOR = 0x102C;
    internal const uint CL_DRIVER_VERSION = 0x102D;
    internal const uint CL_DEVICE_VERSION = 0x102F;
    internal const uint CL_DEVICE_EXTENSIONS = 0x1030;
    internal const uint CL_DEVICE_OPENCL_C_VERSION = 0x103D;

    // cl_context_properties
    internal const nint CL_CONTEXT_PLATFORM = 0x1084;

    // cl_mem_flags (bitfield)
    internal const ulong CL_MEM_READ_WRITE = 1 << 0;
    internal const ulong CL_MEM_WRITE_ONLY = 1 << 1;
    internal const ulong CL_MEM_READ_ONLY = 1 << 2;

    // cl_program_build_info
    internal const uint CL_PROGRAM_BUILD_STATUS = 0x1181;
    internal const uint CL_PROGRAM_BUILD_LOG = 0x1183;

    // cl_kernel_work_group_info
    internal const uint CL_KERNEL_WORK_GROUP_SIZE = 0x11B0;
    internal const uint CL_KERNEL_LOCAL_MEM_SIZE = 0x11B2;
    internal const uint CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE = 0x11B3;
    internal const uint CL_KERNEL_PRIVATE_MEM_SIZE = 0x11B4;

    // Platforms and devices
    [LibraryImport(Library)]
    internal static partial int clGetPlatformIDs(uint numEntries, nint* platforms, uint* numPlatforms);

    [LibraryImport(Library)]
    internal static partial int clGetPlatformInfo(nint platform, uint paramName, nuint paramValueSize, void* paramValue, nuint* paramValueSizeRet);

    [LibraryImport(Library)]
    internal static partial int clGetDeviceIDs(nint platform, ulong deviceType, uint numEntries, nint* devices, uint* numDevices);

    [LibraryImport(Library)]
    internal static partial int clGetDeviceInfo(nint device, uint paramName, nuint paramValueSize, void* paramValue, nuint* paramValueSizeRet);

    // Contexts and queues
    [LibraryImport(Library)]
    internal static partial ClContextHandle clCreateContext(nint* properties, uint numDevices, nint* devices, nint pfnNotify, void* userData, int* errcodeRet);

    [LibraryImport(Library)]
    internal static partial int clReleaseContext(nint context);

    [LibraryImport(Library)]
    internal static partial ClQueueHandle clCreateCommandQueueWithProperties(ClContextHandle context, nint device, ulong* properties, int* errcodeRet);

    [LibraryImport(Library)]
    internal static partial int clReleaseCommandQueue(nint commandQueue);

    // Programs and kernels
    [LibraryImport(Library)]
    internal static partial ClProgramHandle clCreateProgramWithSource(ClContextHandle context, uint count, byte** strings, nuint* lengths, int* errcodeRet);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int clBuildProgram(ClProgramHandle program, uint numDevices, nint* deviceList, string? options, nint pfnNotify, void* userData);

    [LibraryImport(Library)]
    internal static partial int clGetProgramBuildInfo(ClProgramHandle program, nint device, uint paramName, nuint paramValueSize, void* paramValue, nuint* paramValueSizeRet);

    [LibraryImport(Library)]
    internal static partial int clReleaseProgram(nint program);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial ClKernelHandle clCreateKernel(ClProgramHandle program, string kernelName, int* errcodeRet);

    [LibraryImport(Library)]
    internal static partial int clReleaseKernel(nint kernel);

    [LibraryImport(Library)]
    internal static partial int clSetKernelArg(ClKernelHandle kernel, uint argIndex, nuint argSize, void* argValue);

    [LibraryImport(Library)]
    internal static partial int clGetKernelWorkGroupInfo(ClKernelHandle kernel, nint device, uint paramName, nuint paramValueSize, void* paramValue, nuint* paramValueSizeRet);

    // Buffers
    [LibraryImport(Library)]
    internal static partial ClMemHandle clCreateBuffer(ClContextHandle context, ulong flags, nuint size, void* hostPtr, int* errcodeRet);

    [LibraryImport(Library)]
    internal static partial int clReleaseMemObject(nint memobj);

    // Enqueued commands (event arguments are always empty here)
    [LibraryImport(Library)]
    internal static partial int clEnqueueWriteBuffer(ClQueueHandle queue, ClMemHandle buffer, uint blockingWrite, nuint offset, nuint size, void* ptr, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(Library)]
    internal static partial int clEnqueueReadBuffer(ClQueueHandle queue, ClMemHandle buffer, uint blockingRead, nuint offset, nuint size, void* ptr, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(Library)]
    internal static partial int clEnqueueFillBuffer(ClQueueHandle queue, ClMemHandle buffer, void* pattern, nuint patternSize, nuint offset, nuint size, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(Library)]
    internal static partial int clEnqueueCopyBuffer(ClQueueHandle queue, ClMemHandle srcBuffer, ClMemHandle dstBuffer, nuint srcOffset, nuint dstOffset, nuint size, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(Library)]
    internal static partial int clEnqueueNDRangeKernel(ClQueueHandle queue, ClKernelHandle kernel, uint workDim, nuint* globalWorkOffset, nuint* globalWorkSize, nuint* localWorkSize, uint numEventsInWaitList, nint* eventWaitList, nint* evt);

    [LibraryImport(Library)]
    internal static partial int clFinish(ClQueueHandle queue);

    [LibraryImport(Library)]
    internal static partial int clFlush(ClQueueHandle queue);
}
