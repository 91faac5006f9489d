namespace Afm.Gpu.Native.OpenCL;

/// <summary>A program built for one <see cref="OpenClDevice"/>; create kernels from it by name.</summary>
public sealed class OpenClProgram : IDisposable
{
    private readonly ClProgramHandle _handle;

    internal OpenClProgram(OpenClDevice device, ClProgramHandle handle, string buildLog)
    {
        Device = device;
        _handle = handle;
        BuildLog = buildLog;
    }

    /// <summary>The device the program was built for.</summary>
    public OpenClDevice Device { get; }

    /// <summary>The compiler's log of the successful build (warnings; often empty).</summary>
    public string BuildLog { get; }

    /// <summary>Creates a kernel object for the <c>__kernel</c> function <paramref name="name"/>.</summary>
    /// <param name="name">The kernel function's name.</param>
    /// <exception cref="OpenClException">No such kernel (<c>CL_INVALID_KERNEL_NAME</c>).</exception>
    public unsafe OpenClKernel CreateKernel(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        int status;
        var kernel = ClCheck.Created(Cl.clCreateKernel(_handle, name, &status), status, nameof(Cl.clCreateKernel));
        return new OpenClKernel(Device, kernel, name);
    }

    /// <summary>Releases the program; kernels already created from it stay valid.</summary>
    public void Dispose() => _handle.Dispose();
}

/// <summary>
/// A kernel with its arguments. Arguments persist between launches, so set only those that change.
/// Buffers bound with <see cref="SetArg(int, OpenClBuffer)"/> are kept referenced by the kernel object,
/// but disposing them while a launch still uses them is an error.
/// </summary>
public sealed class OpenClKernel : IDisposable
{
    private readonly ClKernelHandle _handle;
    private readonly OpenClDevice _device;
    private readonly Dictionary<int, OpenClBuffer> _bound = [];

    internal OpenClKernel(OpenClDevice device, ClKernelHandle handle, string name)
    {
        _device = device;
        _handle = handle;
        Name = name;
    }

    /// <summary>The kernel function's name.</summary>
    public string Name { get; }

    /// <summary><c>CL_KERNEL_WORK_GROUP_SIZE</c>: the largest work-group this kernel can be launched with on this device.</summary>
    public nuint WorkGroupSize => WorkGroupInfo<nuint>(Cl.CL_KERNEL_WORK_GROUP_SIZE);

    /// <summary><c>CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE</c>: work-group sizes should be multiples of this (warp/wavefront/SIMD width).</summary>
    public nuint PreferredWorkGroupSizeMultiple => WorkGroupInfo<nuint>(Cl.CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE);

    /// <summary><c>CL_KERNEL_LOCAL_MEM_SIZE</c>: local memory the kernel uses, in bytes, including <see cref="SetLocal"/> arguments.</summary>
    public long LocalMemoryBytes => (long)WorkGroupInfo<ulong>(Cl.CL_KERNEL_LOCAL_MEM_SIZE);

    /// <summary>Binds a buffer to a <c>__global</c> or <c>__constant</c> pointer argument.</summary>
    /// <param name="index">Argument position.</param>
    /// <param name="buffer">The buffer (must belong to the same device).</param>
    public unsafe void SetArg(int index, OpenClBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        bool added = false;
        try
        {
            buffer.Handle.DangerousAddRef(ref added);
            nint mem = buffer.Handle.Raw;
            ClCheck.ThrowIfFailed(Cl.clSetKernelArg(_handle, checked((uint)index), (nuint)sizeof(nint), &mem));
        }
        finally
        {
            if (added) buffer.Handle.DangerousRelease();
        }
        _bound[index] = buffer;
    }

    /// <summary>Sets a by-value argument (a scalar, or a struct laid out as in the kernel).</summary>
    /// <param name="index">Argument position.</param>
    /// <param name="value">The value; its size must match the kernel parameter's (<c>int</c> vs <c>long</c> matters).</param>
    public unsafe void SetArg<T>(int index, T value) where T : unmanaged
    {
        ClCheck.ThrowIfFailed(Cl.clSetKernelArg(_handle, checked((uint)index), (nuint)sizeof(T), &value));
        _bound.Remove(index);
    }

    /// <summary>Sizes a <c>__local</c> pointer argument.</summary>
    /// <param name="index">Argument position.</param>
    /// <param name="bytes">Local memory per work-group, in bytes (&gt; 0).</param>
    public unsafe void SetLocal(int index, nuint bytes)
    {
        ArgumentOutOfRangeException.ThrowIfZero(bytes);
        ClCheck.ThrowIfFailed(Cl.clSetKernelArg(_handle, checked((uint)index), bytes, null));
        _bound.Remove(index);
    }

    /// <summary>Enqueues the kernel over an N-D range (1 to 3 dimensions) without waiting for it.</summary>
    /// <param name="global">Global work size per dimension.</param>
    /// <param name="local">Work-group size per dimension (same rank as <paramref name="global"/>), or null to let the runtime choose.</param>
    public unsafe void Launch(nuint[] global, nuint[]? local = null)
    {
        ArgumentNullException.ThrowIfNull(global);
        if (global.Length is < 1 or > 3)
            throw new ArgumentException($"expected 1 to 3 dimensions, got {global.Length}.", nameof(global));
        if (local is not null && local.Length != global.Length)
            throw new ArgumentException($"local has {local.Length} dimensions but global has {global.Length}.", nameof(local));
        fixed (nuint* g = global)
        fixed (nuint* l = local)
            ClCheck.ThrowIfFailed(Cl.clEnqueueNDRangeKernel(_device.Queue, _handle, (uint)global.Length, null, g, l, 0, null, null));
    }

    /// <summary>Releases the kernel object.</summary>
    public void Dispose()
    {
        _handle.Dispose();
        _bound.Clear();
    }

    private unsafe T WorkGroupInfo<T>(uint param) where T : unmanaged
    {
        T value = default;
        ClCheck.ThrowIfFailed(Cl.clGetKernelWorkGroupInfo(_handle, _device.Info.Id, param, (nuint)sizeof(T), &value, null));
        return value;
    }
}
