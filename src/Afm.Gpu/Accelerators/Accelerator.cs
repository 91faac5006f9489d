using Afm.Gpu.Kernels;

namespace Afm.Gpu.Accelerators;

/// <summary>The families of accelerator the engine can run on.</summary>
public enum AcceleratorKind
{
    /// <summary>Managed C# kernels on the host CPU (SIMD, parallel over the batch): the production CPU engine and the reference.</summary>
    Cpu,
    /// <summary>An OpenCL 2.0 device (with the generic address space) running the GPU kernels through ILGPU.</summary>
    OpenCl,
    /// <summary>An NVIDIA GPU running the GPU kernels through ILGPU (which generates the PTX: only the driver is needed).</summary>
    Cuda,
    /// <summary>ILGPU's CPU accelerator running the GPU kernels on the host: their test device.</summary>
    IlgpuCpu,
}

/// <summary>One device an accelerator can be created on, as listed by <see cref="AcceleratorRegistry.Enumerate"/>.</summary>
/// <param name="Kind">The accelerator family.</param>
/// <param name="Index">Index within the family (the N of <c>opencl:N</c> / <c>cuda:N</c>).</param>
/// <param name="Name">Device name.</param>
/// <param name="Details">One line of further facts (platform, compute capability, ...).</param>
/// <param name="MemoryBytes">Device memory in bytes (host memory for the CPU).</param>
/// <param name="ComputeUnits">Compute units / multiprocessors / cores.</param>
/// <param name="IsGpu">True for a GPU device.</param>
/// <param name="PeakGflops">The device's fp32 peak in GFLOP/s (a multiply-add counts 2) where what it reports gives it; else null.</param>
public sealed record AcceleratorDescriptor(
    AcceleratorKind Kind, int Index, string Name, string Details, long MemoryBytes, int ComputeUnits, bool IsGpu, double? PeakGflops = null)
{
    /// <summary>The selector that picks this device: <c>cpu</c>, <c>opencl:N</c>, <c>cuda:N</c> or <c>ilgpu-cpu</c>.</summary>
    public string Selector => Kind switch
    {
        AcceleratorKind.Cpu => "cpu",
        AcceleratorKind.IlgpuCpu => "ilgpu-cpu",
        _ => $"{FamilyName(Kind)}:{Index}",
    };

    /// <summary>The family's name in selectors: <c>cpu</c>, <c>opencl</c>, <c>cuda</c> or <c>ilgpu-cpu</c>.</summary>
    public static string FamilyName(AcceleratorKind kind) => kind switch
    {
        AcceleratorKind.Cpu => "cpu",
        AcceleratorKind.OpenCl => "opencl",
        AcceleratorKind.Cuda => "cuda",
        _ => "ilgpu-cpu",
    };
}

/// <summary>
/// A device able to hold buffers and run the AFM kernels. Accelerators own native resources:
/// dispose every buffer and kernel set before the accelerator.
/// </summary>
public abstract class Accelerator : IDisposable
{
    /// <summary>What this accelerator runs on.</summary>
    public abstract AcceleratorDescriptor Descriptor { get; }

    /// <summary>Allocates a zero-filled buffer of <paramref name="length"/> elements on the device.</summary>
    public abstract DeviceBuffer<T> Allocate<T>(long length) where T : unmanaged;

    /// <summary>Creates the AFM kernel set for models and batches of the given shape.</summary>
    public abstract AfmKernels CreateKernels(ModelShape shape);

    /// <summary>Waits until every queued operation has finished.</summary>
    public virtual void Synchronize() { }

    /// <summary>Allocates a buffer and fills it from host memory.</summary>
    public DeviceBuffer<T> Upload<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        var buffer = Allocate<T>(Math.Max(1, data.Length));
        buffer.CopyFrom(data);
        return buffer;
    }

    /// <summary>Releases the device.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases native resources.</summary>
    protected virtual void Dispose(bool disposing) { }
}

/// <summary>A typed buffer in an accelerator's memory.</summary>
public abstract class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    /// <summary>Creates the buffer's bookkeeping.</summary>
    protected DeviceBuffer(long length) => Length = length;

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>Copies host data into the buffer starting at element <paramref name="offset"/>.</summary>
    public abstract void CopyFrom(ReadOnlySpan<T> source, long offset = 0);

    /// <summary>Copies buffer contents starting at element <paramref name="offset"/> into host memory.</summary>
    public abstract void CopyTo(Span<T> destination, long offset = 0);

    /// <summary>Sets every element to zero.</summary>
    public abstract void Clear();

    /// <summary>Reads the whole buffer into a new array.</summary>
    public T[] ToArray()
    {
        var a = new T[Length];
        CopyTo(a);
        return a;
    }

    /// <summary>Checks that a transfer of <paramref name="count"/> elements at <paramref name="offset"/> fits.</summary>
    protected void CheckRange(long offset, long count)
    {
        if (offset < 0 || count < 0 || offset + count > Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"transfer of {count} elements at {offset} exceeds a buffer of {Length}");
    }

    /// <summary>Frees the device memory.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees native resources.</summary>
    protected virtual void Dispose(bool disposing) { }
}
