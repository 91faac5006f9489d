using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Ilgpu;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Afm.Gpu.Accelerators.Ilgpu;

/// <summary>
/// A device run through ILGPU: an NVIDIA GPU (ILGPU generates the PTX itself, so only the driver is needed), an
/// OpenCL 2.0 device, or ILGPU's CPU accelerator, which runs the same GPU kernels on the host (one thread per
/// simulated work-item: slow, and meant for tests). The kernels are the C# kernels of Kernels/Ilgpu, compiled once
/// per shape and kept for the accelerator's lifetime.
/// </summary>
public sealed class IlgpuAccelerator : Accelerator
{
    /// <summary>Work-groups of the training kernel per multiprocessor (each owns one partial dense gradient).</summary>
    internal const int GroupsPerMultiprocessor = 4;

    /// <summary>Work-items per group on ILGPU's CPU accelerator, where each is an OS thread.</summary>
    internal const int CpuGroupSize = 32;

    internal IlgpuAccelerator(AcceleratorDescriptor descriptor, Device device)
    {
        Descriptor = descriptor;
        Device = device;
        Native = device.CreateAccelerator(IlgpuContext.Instance);
    }

    /// <inheritdoc />
    public override AcceleratorDescriptor Descriptor { get; }

    /// <summary>The ILGPU device.</summary>
    internal Device Device { get; }

    /// <summary>The ILGPU accelerator.</summary>
    internal ILGPU.Runtime.Accelerator Native { get; }

    /// <summary>
    /// The work-group size asked for (0: the default, <see cref="CpuGroupSize"/> on ILGPU's CPU accelerator and
    /// <see cref="KernelPlan.PreferredWorkGroupSize"/> on a GPU), within what the device allows. Tests set it: lower,
    /// and on the CPU accelerator to a GPU's size.
    /// </summary>
    internal int AskedWorkGroupSize { get; init; }

    /// <summary>Upper bound on the pairs per backward tile (0: as many as shared memory holds). Tests lower it.</summary>
    internal int MaxTilePairs { get; init; }

    /// <summary>Serialises launches and transfers of the kernel sets on this accelerator.</summary>
    internal object Gate { get; } = new();

    /// <summary>The work-group size the kernels are specialised for: a power of two.</summary>
    internal int WorkGroupSize
    {
        get
        {
            int preferred = AskedWorkGroupSize > 0 ? AskedWorkGroupSize
                : Descriptor.Kind == AcceleratorKind.IlgpuCpu ? CpuGroupSize : KernelPlan.PreferredWorkGroupSize;
            return KernelPlan.WorkGroupSize(Native.MaxNumThreadsPerGroup, preferred);
        }
    }

    /// <summary>Training work-groups to plan for.</summary>
    internal int TrainingGroups => Math.Max(1, Native.NumMultiprocessors) * GroupsPerMultiprocessor;

    /// <inheritdoc />
    public override DeviceBuffer<T> Allocate<T>(long length)
    {
        lock (Gate) return new IlgpuBuffer<T>(Native, length);
    }

    /// <inheritdoc />
    public override AfmKernels CreateKernels(ModelShape shape) => new IlgpuAfmKernels(this, shape);

    /// <inheritdoc />
    public override void Synchronize()
    {
        lock (Gate) Native.Synchronize();
    }

    /// <summary>One line of facts about an ILGPU device.</summary>
    internal static string Details(Device device) => device switch
    {
        CudaDevice c => $"ILGPU, compute capability {c.Architecture?.Major}.{c.Architecture?.Minor}, {c.NumMultiprocessors} SMs, PTX {c.InstructionSet}",
        CLDevice cl => $"ILGPU, {cl.PlatformName}, OpenCL C {cl.CVersion}, {cl.NumMultiprocessors} compute units",
        _ => $"ILGPU CPU accelerator, {device.NumMultiprocessors} processors, warp {device.WarpSize}",
    };

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) Native.Dispose();
    }
}
