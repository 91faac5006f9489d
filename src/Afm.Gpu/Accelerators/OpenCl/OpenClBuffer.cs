using Afm.Gpu.Native.OpenCL;
using NativeBuffer = Afm.Gpu.Native.OpenCL.OpenClBuffer;

namespace Afm.Gpu.Accelerators.OpenCl;

/// <summary>A buffer in an OpenCL device's global memory; transfers block until done.</summary>
public sealed class OpenClBuffer<T> : DeviceBuffer<T> where T : unmanaged
{
    internal OpenClBuffer(OpenClDevice device, long length) : base(length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Native = device.Allocate<T>(Math.Max(1, length));
        Native.Clear();
    }

    internal NativeBuffer Native { get; }

    /// <inheritdoc />
    public override void CopyFrom(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(offset, source.Length);
        Native.Write(source, offset);
    }

    /// <inheritdoc />
    public override void CopyTo(Span<T> destination, long offset = 0)
    {
        CheckRange(offset, destination.Length);
        Native.Read(destination, offset);
    }

    /// <inheritdoc />
    public override void Clear() => Native.Clear();

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) Native.Dispose();
    }
}
