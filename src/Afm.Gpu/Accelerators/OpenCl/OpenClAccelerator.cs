using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Native.OpenCL;

namespace Afm.Gpu.Accelerators.OpenCl;

/// <summary>
/// An OpenCL device running the single-source GPU kernels (Kernels/Gpu). Programs are compiled once
/// per shape and kept for the accelerator's lifetime. All work goes to one in-order queue; each
/// kernel set serialises its own launches.
/// </summary>
public sealed class OpenClAccelerator : Accelerator
{
    /// <summary>Work-groups of the training kernel per compute unit (each owns one partial dense gradient).</summary>
    internal const int GroupsPerComputeUnit = 4;

    private readonly Dictionary<string, OpenClProgram> _programs = [];

    /// <summary>Opens <paramref name="info"/>'s device (a context and an in-order queue).</summary>
    /// <param name="info">A device from <see cref="OpenClRuntime.EnumerateDevices"/>.</param>
    public OpenClAccelerator(OpenClDeviceInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        Info = info;
        Device = new OpenClDevice(info);
        Descriptor = Describe(info);
    }

    /// <summary>The descriptor of an OpenCL device.</summary>
    public static AcceleratorDescriptor Describe(OpenClDeviceInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        return new AcceleratorDescriptor(AcceleratorKind.OpenCl, info.Index, info.Name,
            $"{info.Platform.Name}, {info.Version}, {info.MaxComputeUnits} compute units",
            info.GlobalMemoryBytes, info.MaxComputeUnits, info.Type == OpenClDeviceType.Gpu);
    }

    /// <summary>What the device is.</summary>
    public OpenClDeviceInfo Info { get; }

    /// <inheritdoc />
    public override AcceleratorDescriptor Descriptor { get; }

    internal OpenClDevice Device { get; }

    /// <summary>Upper bound on the work-group size (0: the device's limit, at most 128). Tests lower it.</summary>
    internal int MaxWorkGroupSize { get; init; }

    /// <summary>Upper bound on the pairs per backward tile (0: as many as local memory holds). Tests lower it.</summary>
    internal int MaxTilePairs { get; init; }

    /// <inheritdoc />
    public override DeviceBuffer<T> Allocate<T>(long length) => new OpenClBuffer<T>(Device, length);

    /// <inheritdoc />
    public override AfmKernels CreateKernels(ModelShape shape) => new OpenClAfmKernels(this, shape);

    /// <inheritdoc />
    public override void Synchronize() => Device.Finish();

    /// <summary>
    /// The program for <paramref name="shape"/>, built with the largest power-of-two work-group size
    /// that the device and every compiled kernel accept.
    /// </summary>
    internal OpenClProgram Program(ModelShape shape, out GpuKernelConfig config)
    {
        long limit = MaxWorkGroupSize > 0 ? Math.Min(MaxWorkGroupSize, Info.MaxWorkGroupSize) : Info.MaxWorkGroupSize;
        int wg = GpuKernelSource.WorkGroupSize(limit);
        lock (_programs)
        {
            while (true)
            {
                config = GpuKernelSource.Configure(shape, wg, Info.LocalMemoryBytes, Info.MaxComputeUnits * GroupsPerComputeUnit, MaxTilePairs);
                string options = string.Join(' ', config.Defines);
                if (!_programs.TryGetValue(options, out var program))
                {
                    program = Device.Build(GpuKernelSource.Text, options);
                    _programs.Add(options, program);
                }
                long allowed = long.MaxValue;
                foreach (string name in GpuKernelSource.KernelNames)
                {
                    using var kernel = program.CreateKernel(name);
                    allowed = Math.Min(allowed, (long)kernel.WorkGroupSize);
                }
                if (allowed >= wg) return program;
                if (allowed < 1) throw new NotSupportedException($"{Info.Name}: the AFM kernels cannot run on this device (work-group limit {allowed})");
                wg = GpuKernelSource.WorkGroupSize(allowed);
            }
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        lock (_programs)
        {
            foreach (var p in _programs.Values) p.Dispose();
            _programs.Clear();
        }
        Device.Dispose();
    }
}
