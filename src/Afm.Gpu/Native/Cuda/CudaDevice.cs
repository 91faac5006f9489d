namespace Afm.Gpu.Native.Cuda;

/// <summary>
/// One CUDA device: its retained primary context and one stream on which kernels and
/// <c>Enqueue*</c> copies run in order. The context is made current on the calling thread as needed, so the
/// device may be used from any thread (but not from several at once). Dispose buffers, pinned buffers and
/// modules before the device; once it is disposed their <c>Dispose</c> does nothing (the driver reclaims their
/// memory with the context).
/// </summary>
public sealed unsafe class CudaDevice : IDisposable
{
    [ThreadStatic] private static CudaDevice? t_current;

    private readonly int _device;
    private readonly nint _context;
    private nint _stream;
    private int _disposed;

    private CudaDevice(int device, nint context, nint stream, CudaDeviceInfo info)
    {
        _device = device;
        _context = context;
        _stream = stream;
        Info = info;
    }

    /// <summary>Static properties of the device.</summary>
    public CudaDeviceInfo Info { get; }

    /// <summary>True once <see cref="Dispose"/> has run.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    internal nint Stream
    {
        get
        {
            ThrowIfDisposed();
            return _stream;
        }
    }

    /// <summary>Retains the primary context of device <paramref name="ordinal"/> and creates its stream.</summary>
    /// <exception cref="InvalidOperationException">CUDA is unavailable (see <see cref="CudaRuntime.UnavailableReason"/>).</exception>
    /// <exception cref="CudaException">A driver call failed (e.g. <c>CUDA_ERROR_INVALID_DEVICE</c>).</exception>
    public static CudaDevice Open(int ordinal = 0)
    {
        CudaRuntime.EnsureAvailable();
        var info = CudaRuntime.QueryDevice(ordinal);
        int dev;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDeviceGet(&dev, ordinal));
        nint ctx;
        CudaCheck.ThrowIfFailed(CudaDriver.cuDevicePrimaryCtxRetain(&ctx, dev));
        try
        {
            CudaCheck.ThrowIfFailed(CudaDriver.cuCtxSetCurrent(ctx));
            nint stream;
            CudaCheck.ThrowIfFailed(CudaDriver.cuStreamCreate(&stream, CudaDriver.StreamDefault));
            var device = new CudaDevice(dev, ctx, stream, info);
            t_current = device;
            return device;
        }
        catch
        {
            CudaDriver.cuDevicePrimaryCtxRelease_v2(dev);
            t_current = null;
            throw;
        }
    }

    /// <summary>Loads a cubin, fatbin or PTX image (PTX need not be NUL-terminated) into the context.</summary>
    public CudaModule LoadModule(byte[] image)
    {
        ArgumentNullException.ThrowIfNull(image);
        bool elf = image is [0x7F, (byte)'E', (byte)'L', (byte)'F', ..];
        if (!elf && (image.Length == 0 || image[^1] != 0)) image = [.. image, 0];
        MakeCurrent();
        nint module;
        fixed (byte* p = image) CudaCheck.ThrowIfFailed(CudaDriver.cuModuleLoadData(&module, p));
        return new CudaModule(this, module);
    }

    /// <summary>Allocates <paramref name="bytes"/> bytes of device memory (uninitialized; 0 is allowed).</summary>
    public CudaBuffer Allocate(long bytes) => new(this, bytes);

    /// <summary>Allocates device memory for <paramref name="count"/> values of <typeparamref name="T"/>.</summary>
    public CudaBuffer Allocate<T>(long count) where T : unmanaged => new(this, checked(count * sizeof(T)));

    /// <summary>Allocates page-locked host memory for <paramref name="length"/> values, for <c>Enqueue*</c> copies.</summary>
    public PinnedBuffer<T> AllocatePinned<T>(int length) where T : unmanaged => new(this, length);

    /// <summary>Blocks until all work queued on this device's stream has finished.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaCheck.ThrowIfFailed(CudaDriver.cuStreamSynchronize(_stream));
    }

    /// <summary>Free and total device memory in bytes, as the driver reports them now.</summary>
    public (long Free, long Total) GetMemoryInfo()
    {
        MakeCurrent();
        nuint free, total;
        CudaCheck.ThrowIfFailed(CudaDriver.cuMemGetInfo_v2(&free, &total));
        return ((long)free, (long)total);
    }

    /// <summary>Makes this device's context current on the calling thread (cheap when it already is).</summary>
    internal void MakeCurrent()
    {
        ThrowIfDisposed();
        if (ReferenceEquals(t_current, this)) return;
        CudaCheck.ThrowIfFailed(CudaDriver.cuCtxSetCurrent(_context));
        t_current = this;
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);

    /// <summary>Destroys the stream (pending work still completes) and releases the primary context.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // Failures are ignored: there is nothing useful to do about them while tearing down.
        CudaDriver.cuCtxSetCurrent(_context);
        CudaDriver.cuStreamDestroy_v2(_stream);
        _stream = 0;
        CudaDriver.cuDevicePrimaryCtxRelease_v2(_device);
        t_current = null;
    }
}

/// <summary>A loaded module (cubin/PTX) whose kernels can be looked up by name.</summary>
public sealed unsafe class CudaModule : IDisposable
{
    private nint _handle;

    internal CudaModule(CudaDevice device, nint handle)
    {
        Device = device;
        _handle = handle;
    }

    /// <summary>The device the module is loaded on.</summary>
    public CudaDevice Device { get; }

    /// <summary>Looks up a <c>__global__</c> function; use <c>extern "C"</c> in the source to keep names unmangled.</summary>
    /// <exception cref="CudaException"><c>CUDA_ERROR_NOT_FOUND</c> when there is no such kernel.</exception>
    public CudaKernel GetKernel(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Device.MakeCurrent();
        nint module = Handle;
        var utf8 = new byte[System.Text.Encoding.UTF8.GetByteCount(name) + 1];
        System.Text.Encoding.UTF8.GetBytes(name, utf8);
        nint function;
        fixed (byte* n = utf8) CudaCheck.ThrowIfFailed(CudaDriver.cuModuleGetFunction(&function, module, n));
        return new CudaKernel(this, function, name);
    }

    internal nint Handle
    {
        get
        {
            var h = Volatile.Read(ref _handle);
            ObjectDisposedException.ThrowIf(h == 0, this);
            return h;
        }
    }

    /// <summary>Unloads the module; its kernels become unusable. Safe to call twice.</summary>
    public void Dispose()
    {
        var h = Interlocked.Exchange(ref _handle, 0);
        if (h == 0 || Device.IsDisposed) return;
        Device.MakeCurrent();
        CudaDriver.cuModuleUnload(h);
    }
}

/// <summary>A kernel of a loaded <see cref="CudaModule"/>.</summary>
public sealed unsafe class CudaKernel
{
    private readonly nint _function;

    internal CudaKernel(CudaModule module, nint function, string name)
    {
        Module = module;
        _function = function;
        Name = name;
    }

    /// <summary>The module the kernel belongs to.</summary>
    public CudaModule Module { get; }

    /// <summary>The kernel's (unmangled) name.</summary>
    public string Name { get; }

    /// <summary>
    /// Allows launches with up to <paramref name="bytes"/> of dynamic shared memory; needed above 48 KiB, up to
    /// <see cref="CudaDeviceInfo.SharedMemoryPerBlockOptin"/> minus the kernel's static shared memory.
    /// </summary>
    public void SetMaxDynamicSharedMemory(int bytes)
    {
        _ = Module.Handle;
        Module.Device.MakeCurrent();
        CudaCheck.ThrowIfFailed(CudaDriver.cuFuncSetAttribute(_function, CudaDriver.FuncAttrMaxDynamicSharedSizeBytes, bytes));
    }

    /// <summary>
    /// How many blocks of <paramref name="blockSize"/> threads (and <paramref name="dynamicSharedBytes"/> of dynamic
    /// shared memory) one multiprocessor holds at once, given the kernel's registers and static shared memory
    /// (<c>cuOccupancyMaxActiveBlocksPerMultiprocessor</c>).
    /// </summary>
    public int MaxActiveBlocksPerMultiprocessor(int blockSize, int dynamicSharedBytes = 0)
    {
        _ = Module.Handle;
        Module.Device.MakeCurrent();
        int blocks;
        CudaCheck.ThrowIfFailed(CudaDriver.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, _function, blockSize, (nuint)dynamicSharedBytes));
        return blocks;
    }

    /// <summary>Registers per thread and bytes of static shared and local (spill) memory, as the driver reports them.</summary>
    public (int Registers, int SharedBytes, int LocalBytes) Resources()
    {
        _ = Module.Handle;
        Module.Device.MakeCurrent();
        int regs, shared, local;
        CudaCheck.ThrowIfFailed(CudaDriver.cuFuncGetAttribute(&regs, CudaDriver.FuncAttrNumRegs, _function));
        CudaCheck.ThrowIfFailed(CudaDriver.cuFuncGetAttribute(&shared, CudaDriver.FuncAttrSharedSizeBytes, _function));
        CudaCheck.ThrowIfFailed(CudaDriver.cuFuncGetAttribute(&local, CudaDriver.FuncAttrLocalSizeBytes, _function));
        return (regs, shared, local);
    }

    /// <summary>
    /// Queues the kernel on the device's stream with a <paramref name="gridX"/> x <paramref name="gridY"/> grid of
    /// <paramref name="blockX"/> x <paramref name="blockY"/> blocks. Arguments are passed in order and must match the
    /// kernel's parameter types exactly (an <see cref="int"/> for <c>int</c>, a <see cref="float"/> for <c>float</c>,
    /// a <see cref="CudaBuffer"/> for any pointer). No heap allocation: the compiler puts the arguments on the stack.
    /// </summary>
    /// <example><c>kernel.Launch(blocks, 1, 256, 1, 0, output, input, n, 0.5f);</c></example>
    public void Launch(uint gridX, uint gridY, uint blockX, uint blockY, uint sharedBytes, params ReadOnlySpan<KernelArg> args)
    {
        _ = Module.Handle;
        var device = Module.Device;
        device.MakeCurrent();
        void** pointers = stackalloc void*[args.Length];
        fixed (KernelArg* a = args)
        {
            for (int i = 0; i < args.Length; i++) pointers[i] = &a[i];
            CudaCheck.ThrowIfFailed(CudaDriver.cuLaunchKernel(_function, gridX, gridY, 1, blockX, blockY, 1,
                sharedBytes, device.Stream, pointers, null));
        }
    }
}

/// <summary>
/// One kernel argument: up to 8 bytes of value (scalar or device pointer), read by the driver from the address of
/// the struct. Converts implicitly from <see cref="int"/>, <see cref="uint"/>, <see cref="long"/>,
/// <see cref="ulong"/>, <see cref="float"/> and <see cref="CudaBuffer"/>; use <see cref="From{T}"/> for other
/// types (a <see cref="double"/> must be explicit, so that a literal like <c>0.5</c> is never silently passed to a
/// <c>float</c> parameter).
/// </summary>
public readonly struct KernelArg
{
    private readonly ulong _bits;

    private KernelArg(ulong bits) => _bits = bits;

    /// <summary>The 8 bytes handed to the driver (the value in the low bytes).</summary>
    internal ulong Bits => _bits;

    /// <summary>Wraps any unmanaged value of at most 8 bytes (e.g. <see cref="double"/>, <see cref="short"/>, a small struct).</summary>
    public static unsafe KernelArg From<T>(T value) where T : unmanaged
    {
        if (sizeof(T) > sizeof(ulong)) throw new ArgumentException($"{typeof(T).Name} is {sizeof(T)} bytes; kernel arguments are limited to 8", nameof(value));
        ulong bits = 0;
        *(T*)&bits = value;
        return new KernelArg(bits);
    }

    /// <summary>A raw device pointer (<c>CUdeviceptr</c>).</summary>
    public static KernelArg Pointer(ulong devicePointer) => new(devicePointer);

    /// <summary>Passes an <c>int</c>.</summary>
    public static implicit operator KernelArg(int value) => From(value);

    /// <summary>Passes an <c>unsigned int</c>.</summary>
    public static implicit operator KernelArg(uint value) => From(value);

    /// <summary>Passes a <c>long long</c>.</summary>
    public static implicit operator KernelArg(long value) => From(value);

    /// <summary>Passes an <c>unsigned long long</c>.</summary>
    public static implicit operator KernelArg(ulong value) => From(value);

    /// <summary>Passes a <c>float</c>.</summary>
    public static implicit operator KernelArg(float value) => From(value);

    /// <summary>Passes the buffer's device pointer (for any <c>T*</c> parameter).</summary>
    public static implicit operator KernelArg(CudaBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        return new(buffer.DevicePointer);
    }
}
