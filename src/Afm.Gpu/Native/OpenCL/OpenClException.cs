using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Afm.Gpu.Native.OpenCL;

/// <summary>An OpenCL call returned an error status.</summary>
public sealed class OpenClException : Exception
{
    /// <summary>Creates the exception for a failed call.</summary>
    /// <param name="call">The OpenCL function that failed, e.g. <c>clBuildProgram</c>.</param>
    /// <param name="status">The status it returned (a negative <c>cl_int</c>).</param>
    /// <param name="buildLog">The compiler output when a program build failed; otherwise null.</param>
    public OpenClException(string call, int status, string? buildLog = null)
        : base(FormatMessage(call, status, buildLog))
    {
        Call = call;
        Status = status;
        BuildLog = buildLog;
    }

    /// <summary>The OpenCL function that failed, e.g. <c>clEnqueueNDRangeKernel</c>.</summary>
    public string Call { get; }

    /// <summary>The raw status code.</summary>
    public int Status { get; }

    /// <summary>The symbolic name of <see cref="Status"/>, e.g. <c>CL_OUT_OF_RESOURCES</c>.</summary>
    public string StatusName => GetStatusName(Status);

    /// <summary>The device compiler's log for a failed program build; null for other failures.</summary>
    public string? BuildLog { get; }

    /// <summary>Names a status code as in <c>CL/cl.h</c>; unknown codes give <c>CL_UNKNOWN_ERROR(n)</c>.</summary>
    /// <param name="status">A <c>cl_int</c> status.</param>
    public static string GetStatusName(int status) => status switch
    {
        0 => "CL_SUCCESS",
        -1 => "CL_DEVICE_NOT_FOUND",
        -2 => "CL_DEVICE_NOT_AVAILABLE",
        -3 => "CL_COMPILER_NOT_AVAILABLE",
        -4 => "CL_MEM_OBJECT_ALLOCATION_FAILURE",
        -5 => "CL_OUT_OF_RESOURCES",
        -6 => "CL_OUT_OF_HOST_MEMORY",
        -7 => "CL_PROFILING_INFO_NOT_AVAILABLE",
        -8 => "CL_MEM_COPY_OVERLAP",
        -9 => "CL_IMAGE_FORMAT_MISMATCH",
        -10 => "CL_IMAGE_FORMAT_NOT_SUPPORTED",
        -11 => "CL_BUILD_PROGRAM_FAILURE",
        -12 => "CL_MAP_FAILURE",
        -13 => "CL_MISALIGNED_SUB_BUFFER_OFFSET",
        -14 => "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST",
        -15 => "CL_COMPILE_PROGRAM_FAILURE",
        -16 => "CL_LINKER_NOT_AVAILABLE",
        -17 => "CL_LINK_PROGRAM_FAILURE",
        -18 => "CL_DEVICE_PARTITION_FAILED",
        -19 => "CL_KERNEL_ARG_INFO_NOT_AVAILABLE",
        -30 => "CL_INVALID_VALUE",
        -31 => "CL_INVALID_DEVICE_TYPE",
        -32 => "CL_INVALID_PLATFORM",
        -33 => "CL_INVALID_DEVICE",
        -34 => "CL_INVALID_CONTEXT",
        -35 => "CL_INVALID_QUEUE_PROPERTIES",
        -36 => "CL_INVALID_COMMAND_QUEUE",
        -37 => "CL_INVALID_HOST_PTR",
        -38 => "CL_INVALID_MEM_OBJECT",
        -39 => "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR",
        -40 => "CL_INVALID_IMAGE_SIZE",
        -41 => "CL_INVALID_SAMPLER",
        -42 => "CL_INVALID_BINARY",
        -43 => "CL_INVALID_BUILD_OPTIONS",
        -44 => "CL_INVALID_PROGRAM",
        -45 => "CL_INVALID_PROGRAM_EXECUTABLE",
        -46 => "CL_INVALID_KERNEL_NAME",
        -47 => "CL_INVALID_KERNEL_DEFINITION",
        -48 => "CL_INVALID_KERNEL",
        -49 => "CL_INVALID_ARG_INDEX",
        -50 => "CL_INVALID_ARG_VALUE",
        -51 => "CL_INVALID_ARG_SIZE",
        -52 => "CL_INVALID_KERNEL_ARGS",
        -53 => "CL_INVALID_WORK_DIMENSION",
        -54 => "CL_INVALID_WORK_GROUP_SIZE",
        -55 => "CL_INVALID_WORK_ITEM_SIZE",
        -56 => "CL_INVALID_GLOBAL_OFFSET",
        -57 => "CL_INVALID_EVENT_WAIT_LIST",
        -58 => "CL_INVALID_EVENT",
        -59 => "CL_INVALID_OPERATION",
        -60 => "CL_INVALID_GL_OBJECT",
        -61 => "CL_INVALID_BUFFER_SIZE",
        -62 => "CL_INVALID_MIP_LEVEL",
        -63 => "CL_INVALID_GLOBAL_WORK_SIZE",
        -64 => "CL_INVALID_PROPERTY",
        -65 => "CL_INVALID_IMAGE_DESCRIPTOR",
        -66 => "CL_INVALID_COMPILER_OPTIONS",
        -67 => "CL_INVALID_LINKER_OPTIONS",
        -68 => "CL_INVALID_DEVICE_PARTITION_COUNT",
        -69 => "CL_INVALID_PIPE_SIZE",
        -70 => "CL_INVALID_DEVICE_QUEUE",
        -71 => "CL_INVALID_SPEC_ID",
        -72 => "CL_MAX_SIZE_RESTRICTION_EXCEEDED",
        -1001 => "CL_PLATFORM_NOT_FOUND_KHR",
        _ => $"CL_UNKNOWN_ERROR({status})",
    };

    private static string FormatMessage(string call, int status, string? buildLog)
    {
        string message = $"{call} failed with {GetStatusName(status)} ({status}).";
        return string.IsNullOrWhiteSpace(buildLog) ? message : $"{message}{Environment.NewLine}Build log:{Environment.NewLine}{buildLog.TrimEnd()}";
    }
}

/// <summary>Turns OpenCL status codes into <see cref="OpenClException"/>s.</summary>
internal static class ClCheck
{
    /// <summary>Throws when <paramref name="status"/> is not <c>CL_SUCCESS</c>.</summary>
    /// <param name="status">The status returned by the call.</param>
    /// <param name="call">The call expression (filled in by the compiler) or a function name; trimmed to the function name.</param>
    internal static void ThrowIfFailed(int status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != Cl.CL_SUCCESS)
            throw new OpenClException(FunctionName(call), status);
    }

    /// <summary>Checks the <c>errcode_ret</c> of a create call; on failure disposes the (invalid) handle and throws.</summary>
    internal static T Created<T>(T handle, int status, string call) where T : SafeHandle
    {
        if (status == Cl.CL_SUCCESS)
            return handle;
        handle.Dispose();
        throw new OpenClException(FunctionName(call), status);
    }

    /// <summary><c>"Cl.clFinish(_queue)"</c> becomes <c>"clFinish"</c>; a bare name is returned unchanged.</summary>
    internal static string FunctionName(string call)
    {
        ReadOnlySpan<char> head = call.AsSpan();
        int paren = head.IndexOf('(');
        if (paren >= 0) head = head[..paren];
        int dot = head.LastIndexOf('.');
        return head[(dot + 1)..].Trim().ToString();
    }
}
