using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Afm.Gpu.Native.Cuda;

/// <summary>A CUDA driver API call returned something other than <c>CUDA_SUCCESS</c>.</summary>
public sealed class CudaException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> having returned <paramref name="status"/>.</summary>
    public CudaException(string call, int status)
        : this(call, status, CudaResultNames.GetName(status)) { }

    private CudaException(string call, int status, string statusName)
        : base($"{call} failed: {statusName} ({status})")
    {
        Call = call;
        Status = status;
        StatusName = statusName;
    }

    /// <summary>The driver function that failed, e.g. <c>cuMemAlloc_v2</c>.</summary>
    public string Call { get; }

    /// <summary>The raw <c>CUresult</c> value.</summary>
    public int Status { get; }

    /// <summary>The symbolic <c>CUresult</c> name, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string StatusName { get; }
}

/// <summary>Turns driver status codes into <see cref="CudaException"/>s.</summary>
public static class CudaCheck
{
    /// <summary>Throws a <see cref="CudaException"/> naming the called function when <paramref name="status"/> is not 0.</summary>
    /// <param name="status">The <c>CUresult</c> returned by the call.</param>
    /// <param name="call">Filled in by the compiler with the call expression; only the function name is kept.</param>
    public static void ThrowIfFailed(int status, [CallerArgumentExpression(nameof(status))] string call = "")
    {
        if (status != 0) throw new CudaException(FunctionName(call), status);
    }

    /// <summary>Reduces an expression such as <c>CudaDriver.cuMemAlloc_v2(&amp;p, n)</c> to <c>cuMemAlloc_v2</c>.</summary>
    internal static string FunctionName(string call)
    {
        var s = call.AsSpan();
        int paren = s.IndexOf('(');
        if (paren >= 0) s = s[..paren];
        s = s.Trim();
        int dot = s.LastIndexOf('.');
        return (dot >= 0 ? s[(dot + 1)..] : s).ToString();
    }
}

/// <summary>Symbolic names of <c>CUresult</c> values.</summary>
public static class CudaResultNames
{
    // The CUresult enum of cuda.h (CUDA 13.0, plus 917 from 13.1 and 918 from 13.3).
    private static readonly Dictionary<int, string> s_table = new()
    {
        [0] = "CUDA_SUCCESS",
        [1] = "CUDA_ERROR_INVALID_VALUE",
        [2] = "CUDA_ERROR_OUT_OF_MEMORY",
        [3] = "CUDA_ERROR_NOT_INITIALIZED",
        [4] = "CUDA_ERROR_DEINITIALIZED",
        [5] = "CUDA_ERROR_PROFILER_DISABLED",
        [6] = "CUDA_ERROR_PROFILER_NOT_INITIALIZED",
        [7] = "CUDA_ERROR_PROFILER_ALREADY_STARTED",
        [8] = "CUDA_ERROR_PROFILER_ALREADY_STOPPED",
        [34] = "CUDA_ERROR_STUB_LIBRARY",
        [36] = "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER",
        [46] = "CUDA_ERROR_DEVICE_UNAVAILABLE",
        [100] = "CUDA_ERROR_NO_DEVICE",
        [101] = "CUDA_ERROR_INVALID_DEVICE",
        [102] = "CUDA_ERROR_DEVICE_NOT_LICENSED",
        [200] = "CUDA_ERROR_INVALID_IMAGE",
        [201] = "CUDA_ERROR_INVALID_CONTEXT",
        [202] = "CUDA_ERROR_CONTEXT_ALREADY_CURRENT",
        [205] = "CUDA_ERROR_MAP_FAILED",
        [206] = "CUDA_ERROR_UNMAP_FAILED",
        [207] = "CUDA_ERROR_ARRAY_IS_MAPPED",
        [208] = "CUDA_ERROR_ALREADY_MAPPED",
        [209] = "CUDA_ERROR_NO_BINARY_FOR_GPU",
        [210] = "CUDA_ERROR_ALREADY_ACQUIRED",
        [211] = "CUDA_ERROR_NOT_MAPPED",
        [212] = "CUDA_ERROR_NOT_MAPPED_AS_ARRAY",
        [213] = "CUDA_ERROR_NOT_MAPPED_AS_POINTER",
        [214] = "CUDA_ERROR_ECC_UNCORRECTABLE",
        [215] = "CUDA_ERROR_UNSUPPORTED_LIMIT",
        [216] = "CUDA_ERROR_CONTEXT_ALREADY_IN_USE",
        [217] = "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED",
        [218] = "CUDA_ERROR_INVALID_PTX",
        [219] = "CUDA_ERROR_INVALID_GRAPHICS_CONTEXT",
        [220] = "CUDA_ERROR_NVLINK_UNCORRECTABLE",
        [221] = "CUDA_ERROR_JIT_COMPILER_NOT_FOUND",
        [222] = "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
        [223] = "CUDA_ERROR_JIT_COMPILATION_DISABLED",
        [224] = "CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY",
        [225] = "CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC",
        [226] = "CUDA_ERROR_CONTAINED",
        [300] = "CUDA_ERROR_INVALID_SOURCE",
        [301] = "CUDA_ERROR_FILE_NOT_FOUND",
        [302] = "CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND",
        [303] = "CUDA_ERROR_SHARED_OBJECT_INIT_FAILED",
        [304] = "CUDA_ERROR_OPERATING_SYSTEM",
        [400] = "CUDA_ERROR_INVALID_HANDLE",
        [401] = "CUDA_ERROR_ILLEGAL_STATE",
        [402] = "CUDA_ERROR_LOSSY_QUERY",
        [500] = "CUDA_ERROR_NOT_FOUND",
        [600] = "CUDA_ERROR_NOT_READY",
        [700] = "CUDA_ERROR_ILLEGAL_ADDRESS",
        [701] = "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
        [702] = "CUDA_ERROR_LAUNCH_TIMEOUT",
        [703] = "CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING",
        [704] = "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED",
        [705] = "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED",
        [708] = "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE",
        [709] = "CUDA_ERROR_CONTEXT_IS_DESTROYED",
        [710] = "CUDA_ERROR_ASSERT",
        [711] = "CUDA_ERROR_TOO_MANY_PEERS",
        [712] = "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
        [713] = "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
        [714] = "CUDA_ERROR_HARDWARE_STACK_ERROR",
        [715] = "CUDA_ERROR_ILLEGAL_INSTRUCTION",
        [716] = "CUDA_ERROR_MISALIGNED_ADDRESS",
        [717] = "CUDA_ERROR_INVALID_ADDRESS_SPACE",
        [718] = "CUDA_ERROR_INVALID_PC",
        [719] = "CUDA_ERROR_LAUNCH_FAILED",
        [720] = "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE",
        [721] = "CUDA_ERROR_TENSOR_MEMORY_LEAK",
        [800] = "CUDA_ERROR_NOT_PERMITTED",
        [801] = "CUDA_ERROR_NOT_SUPPORTED",
        [802] = "CUDA_ERROR_SYSTEM_NOT_READY",
        [803] = "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        [804] = "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
        [805] = "CUDA_ERROR_MPS_CONNECTION_FAILED",
        [806] = "CUDA_ERROR_MPS_RPC_FAILURE",
        [807] = "CUDA_ERROR_MPS_SERVER_NOT_READY",
        [808] = "CUDA_ERROR_MPS_MAX_CLIENTS_REACHED",
        [809] = "CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED",
        [810] = "CUDA_ERROR_MPS_CLIENT_TERMINATED",
        [811] = "CUDA_ERROR_CDP_NOT_SUPPORTED",
        [812] = "CUDA_ERROR_CDP_VERSION_MISMATCH",
        [900] = "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
        [901] = "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
        [902] = "CUDA_ERROR_STREAM_CAPTURE_MERGE",
        [903] = "CUDA_ERROR_STREAM_CAPTURE_UNMATCHED",
        [904] = "CUDA_ERROR_STREAM_CAPTURE_UNJOINED",
        [905] = "CUDA_ERROR_STREAM_CAPTURE_ISOLATION",
        [906] = "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
        [907] = "CUDA_ERROR_CAPTURED_EVENT",
        [908] = "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD",
        [909] = "CUDA_ERROR_TIMEOUT",
        [910] = "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE",
        [911] = "CUDA_ERROR_EXTERNAL_DEVICE",
        [912] = "CUDA_ERROR_INVALID_CLUSTER_SIZE",
        [913] = "CUDA_ERROR_FUNCTION_NOT_LOADED",
        [914] = "CUDA_ERROR_INVALID_RESOURCE_TYPE",
        [915] = "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION",
        [916] = "CUDA_ERROR_KEY_ROTATION",
        [917] = "CUDA_ERROR_STREAM_DETACHED",
        [918] = "CUDA_ERROR_GRAPH_RECAPTURE_FAILURE",
        [999] = "CUDA_ERROR_UNKNOWN",
    };

    /// <summary>The name from the built-in table (no driver needed); <c>CUresult(N)</c> for values it lacks.</summary>
    public static string FromTable(int status) => s_table.TryGetValue(status, out var n) ? n : $"CUresult({status})";

    /// <summary>The name reported by <c>cuGetErrorName</c> when the driver is loaded, else the built-in table's.</summary>
    public static unsafe string GetName(int status)
    {
        if (!CudaDriver.IsLoaded) return FromTable(status);
        byte* p = null;
        try
        {
            if (CudaDriver.cuGetErrorName(status, &p) != 0) p = null;
        }
        catch (EntryPointNotFoundException)
        {
            p = null;
        }
        return p == null ? FromTable(status) : Marshal.PtrToStringUTF8((nint)p) ?? FromTable(status);
    }
}
