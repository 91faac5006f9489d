using System.Text;

namespace Afm.Gpu.Native.OpenCL;

/// <summary>
/// A context and one in-order command queue on a single OpenCL device. Kernel launches are asynchronous;
/// buffer transfers are blocking. Not thread-safe: use one device object per thread.
/// </summary>
public sealed class OpenClDevice : IDisposable
{
    private readonly ClContextHandle _context;
    private readonly ClQueueHandle _queue;

    /// <summary>Creates a context and an in-order queue on <paramref name="info"/>'s device.</summary>
    /// <param name="info">A device from <see cref="OpenClRuntime.EnumerateDevices"/>.</param>
    public unsafe OpenClDevice(OpenClDeviceInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (info.Id == 0)
            throw new ArgumentException("the device info did not come from OpenClRuntime.EnumerateDevices().", nameof(info));
        Info = info;

        nint id = info.Id;
        nint* properties = stackalloc nint[] { Cl.CL_CONTEXT_PLATFORM, info.Platform.Id, 0 };
        int status;
        _context = ClCheck.Created(Cl.clCreateContext(properties, 1, &id, 0, null, &status), status, nameof(Cl.clCreateContext));
        try
        {
            _queue = ClCheck.Created(Cl.clCreateCommandQueueWithProperties(_context, id, null, &status), status, nameof(Cl.clCreateCommandQueueWithProperties));
        }
        catch
        {
            _context.Dispose();
            throw;
        }
    }

    /// <summary>Opens device <c>opencl:<paramref name="index"/></c>.</summary>
    /// <param name="index">Flat device index (see <see cref="OpenClDeviceInfo.Index"/>).</param>
    /// <exception cref="InvalidOperationException">OpenCL is unavailable or the index is out of range.</exception>
    public static OpenClDevice Open(int index = 0)
    {
        var devices = OpenClRuntime.EnumerateDevices();
        if (devices.Count == 0)
            throw new InvalidOperationException($"OpenCL is unavailable: {OpenClRuntime.UnavailableReason}");
        if ((uint)index >= (uint)devices.Count)
            throw new InvalidOperationException($"opencl:{index} does not exist; {devices.Count} OpenCL device(s) found (opencl:0..opencl:{devices.Count - 1}).");
        return new OpenClDevice(devices[index]);
    }

    /// <summary>What the device is.</summary>
    public OpenClDeviceInfo Info { get; }

    internal ClContextHandle Context => _context;

    internal ClQueueHandle Queue => _queue;

    /// <summary>Compiles <paramref name="source"/> for this device.</summary>
    /// <param name="source">OpenCL C source.</param>
    /// <param name="options">Compiler options, e.g. <c>-cl-std=CL1.2 -DTILE=16</c>.</param>
    /// <exception cref="OpenClException">The build failed; <see cref="OpenClException.BuildLog"/> and the message hold the compiler log.</exception>
    public unsafe OpenClProgram Build(string source, string options = "")
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(options);
        byte[] utf8 = Encoding.UTF8.GetBytes(source);
        int status;
        ClProgramHandle program;
        fixed (byte* p = utf8)
        {
            byte* text = p;
            nuint length = (nuint)utf8.Length;
            program = ClCheck.Created(Cl.clCreateProgramWithSource(_context, 1, &text, &length, &status), status, nameof(Cl.clCreateProgramWithSource));
        }

        nint id = Info.Id;
        status = Cl.clBuildProgram(program, 1, &id, options, 0, null);
        string log = BuildLog(program);
        if (status != Cl.CL_SUCCESS)
        {
            program.Dispose();
            throw new OpenClException(nameof(Cl.clBuildProgram), status, log);
        }
        return new OpenClProgram(this, program, log);
    }

    /// <summary>Allocates an uninitialised read-write buffer.</summary>
    /// <param name="bytes">Size in bytes (&gt; 0).</param>
    public OpenClBuffer Allocate(long bytes) => new(this, bytes);

    /// <summary>Allocates an uninitialised read-write buffer of <paramref name="count"/> elements of <typeparamref name="T"/>.</summary>
    /// <param name="count">Number of elements (&gt; 0).</param>
    public unsafe OpenClBuffer Allocate<T>(long count) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        return new(this, checked(count * sizeof(T)));
    }

    /// <summary>Blocks until every queued command has completed.</summary>
    public void Finish() => ClCheck.ThrowIfFailed(Cl.clFinish(_queue));

    /// <summary>Submits queued commands to the device without waiting.</summary>
    public void Flush() => ClCheck.ThrowIfFailed(Cl.clFlush(_queue));

    /// <summary>Releases the queue and the context (objects created from it stay valid until they are disposed).</summary>
    public void Dispose()
    {
        _queue.Dispose();
        _context.Dispose();
    }

    private unsafe string BuildLog(ClProgramHandle program)
    {
        nuint size;
        if (Cl.clGetProgramBuildInfo(program, Info.Id, Cl.CL_PROGRAM_BUILD_LOG, 0, null, &size) != Cl.CL_SUCCESS || size == 0)
            return "";
        var bytes = new byte[size];
        fixed (byte* p = bytes)
        {
            if (Cl.clGetProgramBuildInfo(program, Info.Id, Cl.CL_PROGRAM_BUILD_LOG, size, p, null) != Cl.CL_SUCCESS)
                return "";
        }
        return OpenClRuntime.DecodeCString(bytes);
    }
}
