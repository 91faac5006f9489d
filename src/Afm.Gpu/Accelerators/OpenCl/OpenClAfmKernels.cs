using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Native.OpenCL;
using NativeBuffer = Afm.Gpu.Native.OpenCL.OpenClBuffer;

namespace Afm.Gpu.Accelerators.OpenCl;

/// <summary>
/// The GPU kernels (Kernels/Gpu/afm_kernels.cu.cl) on an OpenCL device, specialised for one shape.
/// Launches are asynchronous on the device's in-order queue; buffer reads wait for them.
/// </summary>
internal sealed class OpenClAfmKernels : GpuAfmKernels
{
    private readonly object _gate = new();
    private readonly Dictionary<string, OpenClKernel> _kernels;
    private readonly NativeBuffer _unused;

    public OpenClAfmKernels(OpenClAccelerator accelerator, ModelShape shape)
        : this(accelerator, shape, accelerator.Program(shape, out var config), config) { }

    private OpenClAfmKernels(OpenClAccelerator accelerator, ModelShape shape, OpenClProgram program, GpuKernelConfig config)
        : base(accelerator, shape, config)
    {
        _kernels = GpuKernelSource.KernelNames.ToDictionary(n => n, program.CreateKernel);
        _unused = accelerator.Device.Allocate<float>(1);
    }

    private NativeBuffer Native(object? buffer) => buffer switch
    {
        null => _unused,
        OpenClBuffer<float> f => f.Native,
        OpenClBuffer<int> i => i.Native,
        _ => throw new ArgumentException("the buffer belongs to another accelerator"),
    };

    protected override void Launch(string kernel, long workItems, ReadOnlySpan<GpuArg> args)
    {
        nuint wg = (nuint)Config.WorkGroupSize;
        nuint global = ((nuint)workItems + wg - 1) / wg * wg;
        lock (_gate)
        {
            var k = _kernels[kernel];
            for (int i = 0; i < args.Length; i++)
            {
                var a = args[i];
                switch (a.Kind)
                {
                    case GpuArg.ArgKind.Buffer: k.SetArg(i, Native(a.Buffer)); break;
                    case GpuArg.ArgKind.Int: k.SetArg(i, a.Int); break;
                    case GpuArg.ArgKind.UInt: k.SetArg(i, a.UInt); break;
                    default: k.SetArg(i, a.Float); break;
                }
            }
            k.Launch([global], [wg]);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        foreach (var k in _kernels.Values) k.Dispose();
        _unused.Dispose();
    }
}
