using Afm.Gpu.Native.Cuda;
using NativeBuffer = Afm.Gpu.Native.Cuda.CudaBuffer;

namespace Afm.Gpu.Accelerators.Cuda;

/// <summary>
/// The bookkeeping of a ring of staging bytes, apart from any device so that it can be tested without one.
/// Regions are handed out one after another, wrapping to 0 when the next does not fit before the end; a region
/// whose earlier copy may still be reading it is reused only after waiting for that copy's fence. Fences complete
/// in the order they were committed (one in-order stream), so waiting for the youngest overlapping one suffices.
/// Copies already finished are retired as they are met, so only copies in flight are tracked.
/// </summary>
/// <typeparam name="TFence">What marks the end of a copy (a CUDA event on the device).</typeparam>
internal sealed class StagingRing<TFence> where TFence : class
{
    private readonly Queue<(long Start, long End, TFence Fence)> _pending = new(); // oldest first
    private readonly Func<TFence, bool> _isComplete;
    private readonly Action<TFence> _wait;
    private long _head;

    /// <summary>
    /// A ring of <paramref name="capacity"/> bytes; <paramref name="isComplete"/> tells whether a fence has completed,
    /// <paramref name="wait"/> blocks until it has.
    /// </summary>
    public StagingRing(int capacity, Func<TFence, bool> isComplete, Action<TFence> wait)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _isComplete = isComplete;
        _wait = wait;
    }

    /// <summary>Size of the ring in bytes; no single region is larger.</summary>
    public int Capacity { get; }

    /// <summary>Copies committed and not yet known to be finished.</summary>
    public int PendingCount => _pending.Count;

    /// <summary>
    /// Reserves <paramref name="bytes"/> bytes (1 to <see cref="Capacity"/>) and returns their offset. Copies known to be
    /// finished are retired first; then, if a copy still in flight reads an overlapping region, the youngest such copy
    /// is waited for. The fences of retired copies are pushed onto <paramref name="released"/> for reuse.
    /// </summary>
    public long Reserve(int bytes, Stack<TFence> released)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, Capacity);
        while (_pending.TryPeek(out var oldest) && _isComplete(oldest.Fence)) released.Push(_pending.Dequeue().Fence);
        long start = _head + bytes <= Capacity ? _head : 0, end = start + bytes;
        int i = 0, youngest = -1;
        foreach (var (s, e, _) in _pending)
        {
            if (s < end && start < e) youngest = i;
            i++;
        }
        if (youngest >= 0) Retire(youngest, released);
        _head = end;
        return start;
    }

    /// <summary>Records that the copy reading [<paramref name="start"/>, +<paramref name="bytes"/>) ends at <paramref name="fence"/>.</summary>
    public void Commit(long start, int bytes, TFence fence) => _pending.Enqueue((start, start + bytes, fence));

    /// <summary>Waits for every pending copy and pushes all their fences onto <paramref name="released"/>.</summary>
    public void Drain(Stack<TFence> released)
    {
        if (_pending.Count > 0) Retire(_pending.Count - 1, released);
    }

    /// <summary>Waits for the copy at queue position <paramref name="youngest"/>, then retires it and all older ones.</summary>
    private void Retire(int youngest, Stack<TFence> released)
    {
        int i = 0;
        foreach (var (_, _, fence) in _pending)
        {
            if (i++ == youngest)
            {
                _wait(fence);
                break;
            }
        }
        for (i = 0; i <= youngest; i++) released.Push(_pending.Dequeue().Fence);
    }
}

/// <summary>
/// Host-to-device uploads through page-locked memory. <see cref="Upload"/> copies the host data into a region of a
/// pinned ring (synchronously, so the caller may reuse its array at once), queues an asynchronous copy from there on
/// the device's stream, and records an event after it; the region is reused only once that event has completed.
/// Uploads therefore never wait for queued kernels unless the ring is full of copies still queued behind them.
/// Larger uploads go through in ring-sized pieces.
/// </summary>
internal sealed unsafe class CudaStaging : IDisposable
{
    private readonly object _gate = new();
    private readonly CudaDevice _device;
    private readonly StagingRing<CudaEvent> _ring;
    private readonly Stack<CudaEvent> _idle = new();
    private PinnedBuffer<byte>? _memory;

    /// <summary>A ring of <paramref name="capacity"/> bytes on <paramref name="device"/>, allocated on first use.</summary>
    public CudaStaging(CudaDevice device, int capacity)
    {
        _device = device;
        _ring = new StagingRing<CudaEvent>(capacity, e => e.IsComplete, e => e.Synchronize());
    }

    /// <summary>Queues a copy of <paramref name="source"/> into <paramref name="destination"/> at <paramref name="byteOffset"/>.</summary>
    public void Upload(NativeBuffer destination, long byteOffset, ReadOnlySpan<byte> source)
    {
        if (byteOffset < 0 || source.Length > destination.SizeBytes - byteOffset)
            throw new ArgumentOutOfRangeException(nameof(byteOffset), $"{source.Length} bytes at {byteOffset} do not fit in {destination.SizeBytes}");
        lock (_gate)
        {
            _memory ??= _device.AllocatePinned<byte>(_ring.Capacity);
            byte* ring = (byte*)_memory.Pointer;
            ulong target = destination.DevicePointer + (ulong)byteOffset;
            while (!source.IsEmpty)
            {
                int n = Math.Min(source.Length, _ring.Capacity);
                long at = _ring.Reserve(n, _idle);
                source[..n].CopyTo(new Span<byte>(ring + at, n));
                _device.MakeCurrent();
                CudaCheck.ThrowIfFailed(CudaDriver.cuMemcpyHtoDAsync_v2(target, ring + at, (nuint)n, _device.Stream));
                var done = _idle.Count > 0 ? _idle.Pop() : new CudaEvent(_device);
                done.Record();
                _ring.Commit(at, n, done);
                source = source[n..];
                target += (ulong)n;
            }
        }
    }

    /// <summary>Waits for the pending copies, then frees the events and the pinned memory.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (!_device.IsDisposed)
            {
                try
                {
                    _ring.Drain(_idle);
                }
                catch (CudaException)
                {
                    // The context is broken (an earlier failure was already reported); nothing is copying any more.
                }
            }
            while (_idle.Count > 0) _idle.Pop().Dispose();
            _memory?.Dispose();
            _memory = null;
        }
    }
}
