using ILGPU;
using ILGPU.Runtime;

namespace Afm.Gpu.Accelerators.Ilgpu;

/// <summary>
/// A buffer in an ILGPU accelerator's memory. A read into host memory waits for the work queued before it. A write from
/// host memory returns once the source has been taken (it may be overwritten then): on CUDA that is before the copy
/// and the launches queued before it have run, so a training step's batch upload does not wait for the previous
/// step's kernels; on OpenCL, whose writes read the source later, it waits for the queue.
/// </summary>
public sealed class IlgpuBuffer<T> : DeviceBuffer<T> where T : unmanaged
{
    private readonly MemoryBuffer1D<T, Stride1D.Dense> _buffer;
    private readonly bool _writeWithoutWaiting;

    internal IlgpuBuffer(ILGPU.Runtime.Accelerator accelerator, long length) : base(length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _buffer = accelerator.Allocate1D<T>(Math.Max(1, length));
        _buffer.MemSetToZero();
        _writeWithoutWaiting = WritesWithoutWaiting(accelerator.AcceleratorType);
    }

    /// <summary>
    /// Whether a host-to-device write on <paramref name="type"/> may return without waiting for the queue: CUDA copies
    /// pageable host memory into its staging memory before the asynchronous copy returns, and ILGPU's CPU accelerator
    /// copies at once. OpenCL's non-blocking write reads the host memory whenever the queue reaches it.
    /// </summary>
    internal static bool WritesWithoutWaiting(AcceleratorType type) => type is AcceleratorType.Cuda or AcceleratorType.CPU;

    /// <summary>The whole buffer as a kernel argument.</summary>
    internal ArrayView<T> View => _buffer.View;

    /// <inheritdoc />
    public override unsafe void CopyFrom(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(offset, source.Length);
        if (source.Length == 0) return;
        var target = View.SubView(offset, source.Length);
        // ILGPU takes the address as it is: the source stays pinned while it is taken
        fixed (T* p = source)
        {
            if (_writeWithoutWaiting) target.CopyFromCPUUnsafeAsync(ref *p, source.Length);
            else target.CopyFromCPU(ref *p, source.Length);
        }
    }

    /// <inheritdoc />
    public override unsafe void CopyTo(Span<T> destination, long offset = 0)
    {
        CheckRange(offset, destination.Length);
        if (destination.Length == 0) return;
        fixed (T* p = destination)
            View.SubView(offset, destination.Length).CopyToCPU(ref *p, destination.Length);
    }

    /// <inheritdoc />
    public override void Clear() => _buffer.MemSetToZero();

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _buffer.Dispose();
    }
}
