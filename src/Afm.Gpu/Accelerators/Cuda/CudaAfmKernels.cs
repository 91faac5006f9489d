using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Native.Cuda;
using NativeBuffer = Afm.Gpu.Native.Cuda.CudaBuffer;

namespace Afm.Gpu.Accelerators.Cuda;

/// <summary>
/// The GPU kernels (Kernels/Gpu/afm_kernels.cu.cl) on a CUDA device, specialised for one shape, with the grid and
/// block sizes of the OpenCL accelerator: one block of <see cref="GpuKernelConfig.WorkGroupSize"/> threads per
/// work-group. Launches are asynchronous on the device's stream; buffer reads wait for them. The kernels use only
/// static shared memory (at most 48 KiB, as <see cref="GpuKernelSource.Configure"/> plans it), so no dynamic
/// shared memory is requested.
/// </summary>
internal sealed class CudaAfmKernels : GpuAfmKernels
{
    private readonly Dictionary<string, CudaKernel> _kernels;
    private readonly NativeBuffer _unused;

    public CudaAfmKernels(CudaAccelerator accelerator, ModelShape shape)
        : this(accelerator, shape, accelerator.Module(shape, out var config), config) { }

    private CudaAfmKernels(CudaAccelerator accelerator, ModelShape shape, CudaModule module, GpuKernelConfig config)
        : base(accelerator, shape, config)
    {
        _kernels = GpuKernelSource.KernelNames.ToDictionary(n => n, module.GetKernel);
        _unused = accelerator.Device.Allocate<float>(1);
    }

    /// <inheritdoc />
    public override string LaunchPlan
    {
        get
        {
            var k = _kernels[GpuKernelSource.ForwardBackward];
            var (registers, shared, local) = k.Resources();
            return $"{base.LaunchPlan}; compiled: {registers} registers, {shared:N0} B shared, {local:N0} B local per thread, " +
                $"{k.MaxActiveBlocksPerMultiprocessor(Config.WorkGroupSize)} blocks resident per multiprocessor";
        }
    }

    private NativeBuffer Native(object? buffer) => buffer switch
    {
        null => _unused,
        CudaBuffer<float> f => f.Native,
        CudaBuffer<int> i => i.Native,
        _ => throw new ArgumentException("the buffer belongs to another accelerator"),
    };

    /// <summary>
    /// Queues the kernel on enough blocks to cover <paramref name="workItems"/> threads. A refused launch
    /// names the kernel; faults while it runs surface at the next call that waits (CUDA_LAUNCH_BLOCKING=1 makes every
    /// launch wait, so that they are reported here).
    /// </summary>
    protected override void Launch(string kernel, long workItems, ReadOnlySpan<GpuArg> args)
    {
        long wg = Config.WorkGroupSize, blocks = (workItems + wg - 1) / wg;
        if (blocks > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(workItems), workItems, "too many blocks for one launch");
        Span<KernelArg> native = stackalloc KernelArg[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            var a = args[i];
            native[i] = a.Kind switch
            {
                GpuArg.ArgKind.Buffer => Native(a.Buffer),
                GpuArg.ArgKind.Int => a.Int,
                GpuArg.ArgKind.UInt => a.UInt,
                _ => a.Float,
            };
        }
        var k = _kernels[kernel];
        try
        {
            k.Launch((uint)blocks, 1, (uint)wg, 1, 0, native);
        }
        catch (CudaException e)
        {
            throw new InvalidOperationException($"{k.Name} ({blocks} blocks of {wg} threads; {Shape.Kind} k={Shape.K} t={Shape.T} m={Shape.MaxNnz}): {e.Message}", e);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _unused.Dispose();
    }
}
