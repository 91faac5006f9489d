namespace Afm.Gpu.Native.Cuda;

/// <summary>
/// A block of device memory. <see cref="Write{T}"/>, <see cref="Read{T}"/>, <see cref="Zero"/> and
/// <see cref="Fill(uint)"/> are ordered after previously queued kernels (the device's stream is a blocking stream,
/// which the driver's synchronous calls wait for) and <see cref="Read{T}"/> returns once the data is on the host.
/// The <c>Enqueue*</c> methods run on the device's stream and complete by <see cref="CudaDevice.Synchronize"/>;
/// they copy from/to <see cref="PinnedBuffer{T}"/>, which must stay alive and untouched until then.
/// A zero-byte buffer is allowed (its pointer is 0). Disposing twice is harmless.
/// </summary>
public sealed unsafe class CudaBuffer : IDisposable
{
    private ulong _pointer;

    internal CudaBuffer(CudaDevice device, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Device = device;
        SizeBytes = bytes;
        if (bytes == 0)
        {
            device.ThrowIfDisposed();
            return;
        }
        device.MakeCurrent();
        ulong p;
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemAlloc_v2(&p, (nuint)bytes));
        _pointer = p;
    }

    /// <summary>Allocates <paramref name="bytes"/> bytes on <paramref name="device"/>; same as <see cref="CudaDevice.Allocate(long)"/>.</summary>
    public static CudaBuffer Allocate(CudaDevice device, long bytes)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new CudaBuffer(device, bytes);
    }

    /// <summary>The device the memory lives on.</summary>
    public CudaDevice Device { get; }

    /// <summary>Size in bytes.</summary>
    public long SizeBytes { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>The <c>CUdeviceptr</c> (0 for an empty buffer).</summary>
    public ulong DevicePointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _pointer;
        }
    }

    /// <summary>Copies <paramref name="source"/> to the buffer at <paramref name="byteOffset"/>.</summary>
    public void Write<T>(ReadOnlySpan<T> source, long byteOffset = 0) where T : unmanaged
    {
        long bytes = Range<T>(source.Length, byteOffset);
        if (bytes == 0) return;
        fixed (T* p = source) CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyHtoD_v2(_pointer + (ulong)byteOffset, p, (nuint)bytes));
    }

    /// <summary>Copies from the buffer at <paramref name="byteOffset"/> into <paramref name="destination"/>; returns when done.</summary>
    public void Read<T>(Span<T> destination, long byteOffset = 0) where T : unmanaged
    {
        long bytes = Range<T>(destination.Length, byteOffset);
        if (bytes == 0) return;
        fixed (T* p = destination) CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyDtoH_v2(p, _pointer + (ulong)byteOffset, (nuint)bytes));
    }

    /// <summary>Reads the whole buffer as an array of <typeparamref name="T"/>.</summary>
    public T[] ToArray<T>() where T : unmanaged
    {
        var result = new T[SizeBytes / sizeof(T)];
        Read<T>(result);
        return result;
    }

    /// <summary>Queues a copy of the first <paramref name="count"/> (default: all) elements of <paramref name="source"/> to the buffer.</summary>
    public void EnqueueWrite<T>(PinnedBuffer<T> source, int count = -1, long byteOffset = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(source);
        long bytes = Range<T>(Count(source, count), byteOffset);
        if (bytes == 0) return;
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyHtoDAsync_v2(_pointer + (ulong)byteOffset, source.Pointer, (nuint)bytes, Device.Stream));
    }

    /// <summary>Queues a copy from the buffer into the first <paramref name="count"/> (default: all) elements of <paramref name="destination"/>.</summary>
    public void EnqueueRead<T>(PinnedBuffer<T> destination, int count = -1, long byteOffset = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(destination);
        long bytes = Range<T>(Count(destination, count), byteOffset);
        if (bytes == 0) return;
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyDtoHAsync_v2(destination.Pointer, _pointer + (ulong)byteOffset, (nuint)bytes, Device.Stream));
    }

    /// <summary>Sets every byte to 0.</summary>
    public void Zero()
    {
        if (Prepare()) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD8_v2(_pointer, 0, (nuint)SizeBytes));
    }

    /// <summary>Queues setting every byte to 0 on the device's stream.</summary>
    public void EnqueueZero()
    {
        if (Prepare()) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD8Async(_pointer, 0, (nuint)SizeBytes, Device.Stream));
    }

    /// <summary>Sets every 32-bit word to <paramref name="value"/>; the size must be a multiple of 4.</summary>
    public void Fill(uint value)
    {
        if (SizeBytes % 4 != 0) throw new InvalidOperationException($"a {SizeBytes}-byte buffer is not made of 32-bit words");
        if (Prepare()) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32_v2(_pointer, value, (nuint)(SizeBytes / 4)));
    }

    /// <summary>Sets every <see cref="float"/> to <paramref name="value"/>; the size must be a multiple of 4.</summary>
    public void Fill(float value) => Fill(BitConverter.SingleToUInt32Bits(value));

    /// <summary>Queues setting every 32-bit word to <paramref name="value"/> on the device's stream.</summary>
    public void EnqueueFill(uint value)
    {
        if (SizeBytes % 4 != 0) throw new InvalidOperationException($"a {SizeBytes}-byte buffer is not made of 32-bit words");
        if (Prepare()) CudaCheck.ThrowIfFailed(CudaDriver.cuMemsetD32Async(_pointer, value, (nuint)(SizeBytes / 4), Device.Stream));
    }

    /// <summary>Copies the whole buffer into <paramref name="destination"/> (device to device), which must be at least as large.</summary>
    public void CopyTo(CudaBuffer destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (destination.SizeBytes < SizeBytes) throw new ArgumentException("destination is smaller than the source", nameof(destination));
        _ = destination.DevicePointer;
        if (Prepare()) CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyDtoD_v2(destination._pointer, _pointer, (nuint)SizeBytes));
    }

    /// <summary>Frees the memory; later calls do nothing. Nothing is freed if the device was disposed first.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        ulong p = Interlocked.Exchange(ref _pointer, 0);
        if (p == 0 || Device.IsDisposed) return;
        Device.MakeCurrent();
        CudaDriver.cuMemFree_v2(p);
    }

    private bool Prepare()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (SizeBytes == 0) return false;
        Device.MakeCurrent();
        return true;
    }

    private long Range<T>(int count, long byteOffset) where T : unmanaged
    {
        long bytes = (long)count * sizeof(T);
        if (byteOffset < 0 || byteOffset > SizeBytes || bytes > SizeBytes - byteOffset)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"{bytes} bytes at offset {byteOffset} do not fit in {SizeBytes} bytes");
        return Prepare() ? bytes : 0;
    }

    private static int Count<T>(PinnedBuffer<T> buffer, int count) where T : unmanaged
    {
        if (count < 0) return buffer.Length;
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, buffer.Length);
        return count;
    }
}

/// <summary>
/// Page-locked host memory (<c>cuMemAllocHost</c>) for asynchronous copies, exposed as a <see cref="Span{T}"/>.
/// Disposing twice is harmless; nothing is freed if the device was disposed first.
/// </summary>
public sealed unsafe class PinnedBuffer<T> : IDisposable where T : unmanaged
{
    private nint _pointer;

    internal PinnedBuffer(CudaDevice device, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Device = device;
        Length = length;
        device.MakeCurrent();
        if (length == 0) return;
        void* p;
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemAllocHost_v2(&p, (nuint)((long)length * sizeof(T))));
        _pointer = (nint)p;
    }

    /// <summary>The device whose context owns the allocation.</summary>
    public CudaDevice Device { get; }

    /// <summary>Number of elements.</summary>
    public int Length { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>The memory as a span; do not use it while an <c>Enqueue*</c> copy involving it is pending.</summary>
    public Span<T> Span => new(Pointer, Length);

    internal void* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return (void*)_pointer;
        }
    }

    /// <summary>Frees the memory; later calls do nothing.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        nint p = Interlocked.Exchange(ref _pointer, 0);
        if (p == 0 || Device.IsDisposed) return;
        Device.MakeCurrent();
        CudaDriver.cuMemFreeHost((void*)p);
    }
}
