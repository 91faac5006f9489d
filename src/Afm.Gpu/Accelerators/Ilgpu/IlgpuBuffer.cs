using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace Afm.Gpu.Accelerators.Ilgpu;

/// <summary>A buffer in an ILGPU accelerator's memory; transfers block until done.</summary>
public sealed class IlgpuBuffer<T> : DeviceBuffer<T> where T : unmanaged
{
    private readonly MemoryBuffer1D<T, Stride1D.Dense> _buffer;

    internal IlgpuBuffer(ILGPU.Runtime.Accelerator accelerator, long length) : base(length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        _buffer = accelerator.Allocate1D<T>(Math.Max(1, length));
        _buffer.MemSetToZero();
    }

    /// <summary>The whole buffer as a kernel argument.</summary>
    internal ArrayView<T> View => _buffer.View;

    /// <inheritdoc />
    public override void CopyFrom(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(offset, source.Length);
        if (source.Length == 0) return;
        View.SubView(offset, source.Length).CopyFromCPU(ref MemoryMarshal.GetReference(source), source.Length);
    }

    /// <inheritdoc />
    public override void CopyTo(Span<T> destination, long offset = 0)
    {
        CheckRange(offset, destination.Length);
        if (destination.Length == 0) return;
        View.SubView(offset, destination.Length).CopyToCPU(ref MemoryMarshal.GetReference(destination), destination.Length);
    }

    /// <inheritdoc />
    public override void Clear() => _buffer.MemSetToZero();

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _buffer.Dispose();
    }
}
