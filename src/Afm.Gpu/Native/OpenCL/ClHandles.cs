using System.Runtime.InteropServices;

namespace Afm.Gpu.Native.OpenCL;

/// <summary>
/// A reference-counted OpenCL object. <see cref="SafeHandle.Dispose()"/> drops our reference exactly once
/// (a second Dispose is a no-op) and P/Invoke keeps the handle alive for the duration of each call.
/// OpenCL objects retain their context, so release order between handles does not matter.
/// </summary>
internal abstract class ClHandle() : SafeHandle(IntPtr.Zero, ownsHandle: true)
{
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>The raw pointer, for passing by address (kernel arguments). Callers must keep <c>this</c> alive.</summary>
    internal nint Raw => handle;
}

internal sealed class ClContextHandle : ClHandle
{
    protected override bool ReleaseHandle() => Cl.clReleaseContext(handle) == Cl.CL_SUCCESS;
}

internal sealed class ClQueueHandle : ClHandle
{
    protected override bool ReleaseHandle() => Cl.clReleaseCommandQueue(handle) == Cl.CL_SUCCESS;
}

internal sealed class ClProgramHandle : ClHandle
{
    protected override bool ReleaseHandle() => Cl.clReleaseProgram(handle) == Cl.CL_SUCCESS;
}

internal sealed class ClKernelHandle : ClHandle
{
    protected override bool ReleaseHandle() => Cl.clReleaseKernel(handle) == Cl.CL_SUCCESS;
}

internal sealed class ClMemHandle : ClHandle
{
    protected override bool ReleaseHandle() => Cl.clReleaseMemObject(handle) == Cl.CL_SUCCESS;
}
