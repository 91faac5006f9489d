using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeBuffer = Afm.Gpu.Native.Cuda.CudaBuffer;

namespace Afm.Gpu.Accelerators.Cuda;

/// <summary>
/// A buffer in a CUDA device's global memory. <see cref="CopyFrom"/> stages the data in pinned memory and queues the
/// transfer on the device's stream, so it returns without waiting for queued kernels and the source may be reused at
/// once; <see cref="CopyTo"/> waits for everything queued before it and returns with the data on the host;
/// <see cref="Clear"/> is queued.
/// </summary>
public sealed class CudaBuffer<T> : DeviceBuffer<T> where T : unmanaged
{
    private readonly CudaAccelerator _accelerator;

    internal CudaBuffer(CudaAccelerator accelerator, long length) : base(length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _accelerator = accelerator;
        Native = accelerator.Device.Allocate<T>(Math.Max(1, length));
        Native.EnqueueZero();
    }

    internal NativeBuffer Native { get; }

    /// <inheritdoc />
    public override void CopyFrom(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(offset, source.Length);
        if (source.IsEmpty) return;
        _accelerator.Staging.Upload(Native, offset * Unsafe.SizeOf<T>(), MemoryMarshal.AsBytes(source));
    }

    /// <inheritdoc />
    public override void CopyTo(Span<T> destination, long offset = 0)
    {
        CheckRange(offset, destination.Length);
        // A synchronous copy runs on the legacy default stream, which waits for the device's (blocking) stream.
        Native.Read(destination, offset * Unsafe.SizeOf<T>());
    }

    /// <inheritdoc />
    public override void Clear() => Native.EnqueueZero();

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) Native.Dispose();
    }
}
