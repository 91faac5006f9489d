using Afm.Gpu.Accelerators.Cpu;

namespace Afm.Gpu.Accelerators;

/// <summary>Raised when a requested accelerator cannot be used; the message is one line for the user.</summary>
public sealed class AcceleratorUnavailableException(string message) : Exception(message);

/// <summary>Finds devices and creates accelerators from selectors such as <c>auto</c>, <c>cpu</c>, <c>opencl:1</c>, <c>cuda</c>.</summary>
public static class AcceleratorRegistry
{
    /// <summary>A backend that can list its devices and create accelerators on them.</summary>
    internal interface IBackend
    {
        AcceleratorKind Kind { get; }
        /// <summary>Devices present, or empty with <paramref name="unavailable"/> saying why.</summary>
        IReadOnlyList<AcceleratorDescriptor> Enumerate(out string? unavailable);
        Accelerator Create(AcceleratorDescriptor device);
    }

    private static readonly List<IBackend> Backends = [];

    static AcceleratorRegistry()
    {
        Register(new Ilgpu.IlgpuBackend(AcceleratorKind.Cuda));
        Register(new Ilgpu.IlgpuBackend(AcceleratorKind.OpenCl));
        Register(new Ilgpu.IlgpuBackend(AcceleratorKind.IlgpuCpu));
    }

    private static readonly AcceleratorKind[] Listed = [AcceleratorKind.Cuda, AcceleratorKind.OpenCl, AcceleratorKind.IlgpuCpu];

    internal static void Register(IBackend backend)
    {
        lock (Backends)
            if (!Backends.Exists(b => b.Kind == backend.Kind)) Backends.Add(backend);
    }

    private static IBackend? Backend(AcceleratorKind kind)
    {
        lock (Backends) return Backends.Find(b => b.Kind == kind);
    }

    /// <summary>Every device of every backend, CPU first; <paramref name="notes"/> gets a line per backend that has none, with the reason.</summary>
    public static IReadOnlyList<AcceleratorDescriptor> Enumerate(ICollection<string>? notes = null)
    {
        var list = new List<AcceleratorDescriptor> { CpuAccelerator.Describe() };
        foreach (var kind in Listed)
        {
            var backend = Backend(kind);
            if (backend is null) continue;
            var devices = backend.Enumerate(out string? why);
            if (devices.Count == 0) notes?.Add($"{AcceleratorDescriptor.FamilyName(kind)}: {why ?? "no devices"}");
            list.AddRange(devices);
        }
        return list;
    }

    /// <summary>
    /// Creates the accelerator a selector names. <c>auto</c> prefers CUDA, then an OpenCL GPU, then
    /// the CPU accelerator (never an OpenCL CPU device nor ilgpu-cpu); <paramref name="note"/> says what
    /// was picked and why.
    /// </summary>
    /// <param name="selector">auto, cpu, opencl[:N], cuda[:N] or ilgpu-cpu.</param>
    /// <param name="note">What was picked, for the user.</param>
    /// <param name="cpuThreads">Worker threads if the CPU accelerator is used (0 = all cores).</param>
    /// <exception cref="AcceleratorUnavailableException">The selector is malformed or names an absent device.</exception>
    public static Accelerator Create(string selector, out string note, int cpuThreads = 0)
    {
        string s = (selector ?? "auto").Trim().ToLowerInvariant();
        if (s is "" or "auto") return CreateAuto(out note, cpuThreads);
        if (s == "cpu")
        {
            note = "using the CPU accelerator";
            return new CpuAccelerator(cpuThreads);
        }
        string[] parts = s.Split(':');
        AcceleratorKind kind = parts[0] switch
        {
            "cuda" => AcceleratorKind.Cuda,
            "opencl" => AcceleratorKind.OpenCl,
            "ilgpu-cpu" => AcceleratorKind.IlgpuCpu,
            _ => throw new AcceleratorUnavailableException($"unknown accelerator '{selector}': use auto, cpu, opencl[:N], cuda[:N] or ilgpu-cpu"),
        };
        int index = 0;
        if (parts.Length > 2 || (parts.Length == 2 && (!int.TryParse(parts[1], out index) || index < 0)))
            throw new AcceleratorUnavailableException($"malformed accelerator '{selector}': the device index must be a non-negative integer, as in {parts[0]}:0");
        string name = parts[0];
        var backend = Backend(kind) ?? throw new AcceleratorUnavailableException($"{name}: this build has no {name} backend");
        var devices = backend.Enumerate(out string? why);
        if (devices.Count == 0) throw new AcceleratorUnavailableException($"{name}: {why ?? "no devices"}");
        if (index >= devices.Count)
            throw new AcceleratorUnavailableException($"{name}:{index}: there are only {devices.Count} {name} device(s) (0..{devices.Count - 1}); run 'afm-gpu devices'");
        var device = devices[index];
        note = $"using {device.Selector}: {device.Name}";
        return backend.Create(device);
    }

    private static Accelerator CreateAuto(out string note, int cpuThreads)
    {
        var reasons = new List<string>();
        foreach (var kind in new[] { AcceleratorKind.Cuda, AcceleratorKind.OpenCl })
        {
            var backend = Backend(kind);
            if (backend is null) continue;
            var devices = backend.Enumerate(out string? why);
            var gpu = devices.FirstOrDefault(d => d.IsGpu);
            if (gpu is not null)
            {
                try
                {
                    var acc = backend.Create(gpu);
                    note = $"auto: using {gpu.Selector}: {gpu.Name}";
                    return acc;
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    reasons.Add($"{gpu.Selector} failed to start: {e.Message}");
                }
            }
            else reasons.Add($"{AcceleratorDescriptor.FamilyName(kind)}: {why ?? "no GPU device"}");
        }
        note = reasons.Count == 0 ? "auto: using the CPU accelerator" : $"auto: using the CPU accelerator ({string.Join("; ", reasons)})";
        return new CpuAccelerator(cpuThreads);
    }
}
