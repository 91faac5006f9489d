namespace Afm.Gpu.Native.Cuda;

/// <summary>
/// A marker in a device's stream (<c>cuEventCreate</c> without timing): <see cref="Record"/> places it after the
/// work queued so far; <see cref="Synchronize"/> waits for exactly that work, not for what was queued later.
/// Disposing twice is harmless; nothing is destroyed if the device was disposed first.
/// </summary>
public sealed unsafe class CudaEvent : IDisposable
{
    private nint _handle;

    /// <summary>Creates an event in <paramref name="device"/>'s context.</summary>
    public CudaEvent(CudaDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
        device.MakeCurrent();
        nint h;
        CudaCheck.ThrowIfFailed(CudaDriver.cuEventCreate(&h, CudaDriver.EventDisableTiming));
        _handle = h;
    }

    /// <summary>The device whose stream the event is recorded on.</summary>
    public CudaDevice Device { get; }

    private nint Handle
    {
        get
        {
            var h = Volatile.Read(ref _handle);
            ObjectDisposedException.ThrowIf(h == 0, this);
            return h;
        }
    }

    /// <summary>Records the event on the device's stream, after everything queued there so far.</summary>
    public void Record()
    {
        var h = Handle;
        Device.MakeCurrent();
        CudaCheck.ThrowIfFailed(CudaDriver.cuEventRecord(h, Device.Stream));
    }

    /// <summary>True once the work before the last <see cref="Record"/> has finished (or if it was never recorded).</summary>
    public bool IsComplete
    {
        get
        {
            var h = Handle;
            Device.MakeCurrent();
            int status = CudaDriver.cuEventQuery(h);
            if (status == CudaDriver.ErrorNotReady) return false;
            CudaCheck.ThrowIfFailed(status, nameof(CudaDriver.cuEventQuery));
            return true;
        }
    }

    /// <summary>Blocks until the work before the last <see cref="Record"/> has finished.</summary>
    public void Synchronize()
    {
        var h = Handle;
        Device.MakeCurrent();
        CudaCheck.ThrowIfFailed(CudaDriver.cuEventSynchronize(h));
    }

    /// <summary>Destroys the event (the driver releases it once pending work reaches it).</summary>
    public void Dispose()
    {
        var h = Interlocked.Exchange(ref _handle, 0);
        if (h == 0 || Device.IsDisposed) return;
        Device.MakeCurrent();
        CudaDriver.cuEventDestroy_v2(h);
    }
}
