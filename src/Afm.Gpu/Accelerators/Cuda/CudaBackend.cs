using Afm.Gpu.Native.Cuda;

namespace Afm.Gpu.Accelerators.Cuda;

/// <summary>Lists CUDA devices for <see cref="AcceleratorRegistry"/> and opens them.</summary>
internal sealed class CudaBackend : AcceleratorRegistry.IBackend
{
    public AcceleratorKind Kind => AcceleratorKind.Cuda;

    public IReadOnlyList<AcceleratorDescriptor> Enumerate(out string? unavailable)
    {
        IReadOnlyList<CudaDeviceInfo> devices;
        try
        {
            devices = CudaRuntime.EnumerateDevices();
        }
        catch (CudaException e)
        {
            unavailable = $"listing the devices failed: {e.Message}";
            return [];
        }
        unavailable = devices.Count == 0 ? CudaRuntime.UnavailableReason ?? "the driver reports no CUDA device" : null;
        return devices.Select(CudaAccelerator.Describe).ToList();
    }

    public Accelerator Create(AcceleratorDescriptor device)
    {
        var devices = CudaRuntime.EnumerateDevices();
        if (device.Kind != AcceleratorKind.Cuda || device.Index < 0 || device.Index >= devices.Count)
            throw new AcceleratorUnavailableException($"{device.Selector}: no such CUDA device");
        return new CudaAccelerator(devices[device.Index]);
    }
}
