namespace Afm.Gpu.Native.OpenCL;

/// <summary>
/// A read-write device buffer of <see cref="Bytes"/> bytes. Typed transfers take element offsets;
/// reads and writes block until done and are ordered after earlier commands on the device's queue.
/// </summary>
public sealed class OpenClBuffer : IDisposable
{
    private readonly OpenClDevice _device;

    internal unsafe OpenClBuffer(OpenClDevice device, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        _device = device;
        Bytes = bytes;
        int status;
        Handle = ClCheck.Created(Cl.clCreateBuffer(device.Context, Cl.CL_MEM_READ_WRITE, (nuint)bytes, null, &status), status, nameof(Cl.clCreateBuffer));
    }

    /// <summary>Size in bytes.</summary>
    public long Bytes { get; }

    internal ClMemHandle Handle { get; }

    /// <summary>Number of whole <typeparamref name="T"/> elements the buffer holds.</summary>
    public unsafe long Length<T>() where T : unmanaged => Bytes / sizeof(T);

    /// <summary>Copies <paramref name="source"/> into the buffer starting at element <paramref name="offsetElements"/>.</summary>
    /// <param name="source">Host data; an empty span is a no-op.</param>
    /// <param name="offsetElements">Destination offset in elements of <typeparamref name="T"/>.</param>
    public unsafe void Write<T>(ReadOnlySpan<T> source, long offsetElements = 0) where T : unmanaged
    {
        (nuint offset, nuint size) = Range<T>(offsetElements, source.Length);
        if (size == 0) return;
        fixed (T* p = source)
            ClCheck.ThrowIfFailed(Cl.clEnqueueWriteBuffer(_device.Queue, Handle, Cl.CL_TRUE, offset, size, p, 0, null, null));
    }

    /// <summary>Copies from the buffer, starting at element <paramref name="offsetElements"/>, into <paramref name="destination"/>.</summary>
    /// <param name="destination">Host memory to fill; its length is the element count.</param>
    /// <param name="offsetElements">Source offset in elements of <typeparamref name="T"/>.</param>
    public unsafe void Read<T>(Span<T> destination, long offsetElements = 0) where T : unmanaged
    {
        (nuint offset, nuint size) = Range<T>(offsetElements, destination.Length);
        if (size == 0) return;
        fixed (T* p = destination)
            ClCheck.ThrowIfFailed(Cl.clEnqueueReadBuffer(_device.Queue, Handle, Cl.CL_TRUE, offset, size, p, 0, null, null));
    }

    /// <summary>Sets every byte to zero (enqueued; ordered before later commands).</summary>
    public void Clear()
    {
        if (Bytes % sizeof(uint) == 0) Fill(0u);
        else Fill((byte)0);
    }

    /// <summary>Sets every element to <paramref name="value"/> (enqueued; ordered before later commands).</summary>
    /// <param name="value">The pattern; <see cref="Bytes"/> must be a multiple of its size (1, 2, 4, ..., 128 bytes).</param>
    public unsafe void Fill<T>(T value) where T : unmanaged
    {
        if (Bytes % sizeof(T) != 0)
            throw new InvalidOperationException($"a {Bytes}-byte buffer cannot be filled with a {sizeof(T)}-byte pattern.");
        ClCheck.ThrowIfFailed(Cl.clEnqueueFillBuffer(_device.Queue, Handle, &value, (nuint)sizeof(T), 0, (nuint)Bytes, 0, null, null));
    }

    /// <summary>Copies the whole buffer into <paramref name="destination"/> (enqueued; device-side).</summary>
    /// <param name="destination">A buffer on the same device, at least as large.</param>
    public void CopyTo(OpenClBuffer destination) => CopyTo(destination, 0, 0, Bytes);

    /// <summary>Copies <paramref name="bytes"/> bytes device-side (enqueued; ranges must not overlap within one buffer).</summary>
    /// <param name="destination">A buffer on the same device.</param>
    /// <param name="sourceOffsetBytes">Byte offset in this buffer.</param>
    /// <param name="destinationOffsetBytes">Byte offset in <paramref name="destination"/>.</param>
    /// <param name="bytes">Number of bytes; zero is a no-op.</param>
    public void CopyTo(OpenClBuffer destination, long sourceOffsetBytes, long destinationOffsetBytes, long bytes)
    {
        ArgumentNullException.ThrowIfNull(destination);
        CheckRange(sourceOffsetBytes, bytes, Bytes, nameof(sourceOffsetBytes));
        CheckRange(destinationOffsetBytes, bytes, destination.Bytes, nameof(destinationOffsetBytes));
        if (bytes == 0) return;
        unsafe
        {
            ClCheck.ThrowIfFailed(Cl.clEnqueueCopyBuffer(_device.Queue, Handle, destination.Handle,
                (nuint)sourceOffsetBytes, (nuint)destinationOffsetBytes, (nuint)bytes, 0, null, null));
        }
    }

    /// <summary>Releases the device memory.</summary>
    public void Dispose() => Handle.Dispose();

    private unsafe (nuint Offset, nuint Size) Range<T>(long offsetElements, int count) where T : unmanaged
    {
        long offset = checked(offsetElements * sizeof(T));
        long size = (long)count * sizeof(T);
        CheckRange(offset, size, Bytes, nameof(offsetElements));
        return ((nuint)offset, (nuint)size);
    }

    private static void CheckRange(long offset, long size, long capacity, string paramName)
    {
        if (offset < 0 || size < 0 || offset > capacity - size)
            throw new ArgumentOutOfRangeException(paramName, $"range [{offset}, {offset} + {size}) bytes exceeds the {capacity}-byte buffer.");
    }
}
