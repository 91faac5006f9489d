using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Afm.Gpu.Accelerators.Ilgpu;

/// <summary>Lists one family of ILGPU devices (CUDA, OpenCL or the CPU accelerator) for <see cref="AcceleratorRegistry"/> and opens them.</summary>
internal sealed class IlgpuBackend(AcceleratorKind kind) : AcceleratorRegistry.IBackend
{
    public AcceleratorKind Kind => kind;

    private List<Device> Devices(out string? unavailable)
    {
        unavailable = null;
        try
        {
            var context = IlgpuContext.Instance;
            var devices = new List<Device>();
            foreach (var d in context.Devices)
            {
                bool match = kind switch
                {
                    AcceleratorKind.IlgpuCpu => d is CPUDevice,
                    AcceleratorKind.Cuda => d is CudaDevice,
                    // ILGPU's OpenCL code needs OpenCL C 2.0's generic address space
                    _ => d is CLDevice cl && cl.Capabilities.GenericAddressSpace,
                };
                if (match) devices.Add(d);
            }
            if (devices.Count == 0)
            {
                unavailable = kind switch
                {
                    AcceleratorKind.Cuda => HasCudaDriver()
                        ? "the NVIDIA driver is present but reports no CUDA device"
                        : "libcuda.so.1 not found: no NVIDIA driver on this machine",
                    AcceleratorKind.OpenCl => context.Devices.OfType<CLDevice>().Select(d => d.Name).ToList() is { Count: > 0 } names
                        ? $"no OpenCL device has OpenCL C 2.0's generic address space, which ILGPU's kernels need ({string.Join(", ", names)} lack it)"
                        : "no OpenCL device found (an OpenCL 2.0 driver and libOpenCL.so.1 are needed)",
                    _ => "ILGPU's CPU accelerator is not available",
                };
            }
            return devices;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException or InvalidOperationException or NotSupportedException)
        {
            unavailable = $"ILGPU could not start: {e.Message.ReplaceLineEndings(" ")}";
            return [];
        }
    }

    private static bool HasCudaDriver()
    {
        if (!NativeLibrary.TryLoad("libcuda.so.1", out var handle)) return false;
        NativeLibrary.Free(handle);
        return true;
    }

    private AcceleratorDescriptor Describe(Device d, int index) => new(
        kind, index, kind == AcceleratorKind.IlgpuCpu ? "ILGPU CPU accelerator (GPU kernels on the host)" : d.Name,
        IlgpuAccelerator.Details(d), kind == AcceleratorKind.IlgpuCpu ? Cpu.CpuAccelerator.Describe().MemoryBytes : d.MemorySize, d.NumMultiprocessors,
        IsGpu: kind == AcceleratorKind.Cuda || (d is CLDevice cl && cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU),
        d is CudaDevice c && c.Architecture is { } a ? PeakGflops(a.Major, a.Minor, c.NumMultiprocessors, c.ClockRate) : null);

    /// <summary>
    /// fp32 peak in GFLOP/s: multiprocessors x fp32 lanes per multiprocessor x 2 (multiply-add) x clock (kHz); null
    /// when the clock is unknown or the architecture is not in the table (CUDA C Programming Guide, arithmetic
    /// instructions: 64 lanes on 6.0, 7.x and 8.0, 128 on the other 5.x to 12.x).
    /// </summary>
    internal static double? PeakGflops(int major, int minor, int multiprocessors, int clockKHz)
    {
        int lanes = (major, minor) switch
        {
            (6, 0) or (7, _) or (8, 0) => 64,
            ( >= 5 and <= 12, _) => 128,
            _ => 0,
        };
        if (lanes == 0 || clockKHz <= 0) return null;
        return multiprocessors * (double)lanes * 2 * clockKHz / 1e6;
    }

    public IReadOnlyList<AcceleratorDescriptor> Enumerate(out string? unavailable) =>
        Devices(out unavailable).Select(Describe).ToList();

    public Accelerator Create(AcceleratorDescriptor device)
    {
        var devices = Devices(out string? why);
        if (device.Kind != kind || device.Index < 0 || device.Index >= devices.Count)
            throw new AcceleratorUnavailableException($"{device.Selector}: no such device{(why is null ? "" : $" ({why})")}");
        return new IlgpuAccelerator(Describe(devices[device.Index], device.Index), devices[device.Index]);
    }

    /// <summary>ILGPU's CPU accelerator, for tests: optionally with a narrower work-group and a smaller tile.</summary>
    internal static IlgpuAccelerator CreateCpu(int workGroupSize = 0, int maxTilePairs = 0)
    {
        var backend = new IlgpuBackend(AcceleratorKind.IlgpuCpu);
        var devices = backend.Devices(out string? why);
        if (devices.Count == 0) throw new AcceleratorUnavailableException($"ilgpu-cpu: {why}");
        return new IlgpuAccelerator(backend.Describe(devices[0], 0), devices[0]) { AskedWorkGroupSize = workGroupSize, MaxTilePairs = maxTilePairs };
    }
}
