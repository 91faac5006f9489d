using Afm.Gpu.Native.OpenCL;

namespace Afm.Gpu.Accelerators.OpenCl;

/// <summary>Lists OpenCL devices for <see cref="AcceleratorRegistry"/> and opens them.</summary>
internal sealed class OpenClBackend : AcceleratorRegistry.IBackend
{
    public AcceleratorKind Kind => AcceleratorKind.OpenCl;

    public IReadOnlyList<AcceleratorDescriptor> Enumerate(out string? unavailable)
    {
        var devices = OpenClRuntime.EnumerateDevices();
        unavailable = devices.Count == 0 ? OpenClRuntime.UnavailableReason : null;
        return devices.Select(OpenClAccelerator.Describe).ToList();
    }

    public Accelerator Create(AcceleratorDescriptor device)
    {
        var devices = OpenClRuntime.EnumerateDevices();
        if (device.Kind != AcceleratorKind.OpenCl || device.Index < 0 || device.Index >= devices.Count)
            throw new AcceleratorUnavailableException($"{device.Selector}: no such OpenCL device");
        return new OpenClAccelerator(devices[device.Index]);
    }
}
