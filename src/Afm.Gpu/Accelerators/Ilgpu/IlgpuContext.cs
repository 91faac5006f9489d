using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Afm.Gpu.Accelerators.Ilgpu;

/// <summary>
/// The process's one ILGPU context: CUDA, OpenCL and a CPU device of the NVIDIA kind (warp 32, up to 1024
/// work-items per group), optimised and with ILGPU.Algorithms' math. ILGPU loads libcuda.so and libOpenCL.so by
/// their unversioned names, which only the -dev packages provide; a resolver maps them to the .so.1 names that the
/// driver packages install. Under WSL ILGPU registers a resolver of its own (for /usr/lib/wsl/lib) and fails if one
/// is there already, so there the engine leaves the resolving to ILGPU.
/// </summary>
internal static class IlgpuContext
{
    private static readonly Lazy<Context> s_context = new(Create, LazyThreadSafetyMode.ExecutionAndPublication);
    private static int s_resolver;

    public static Context Instance => s_context.Value;

    private static Context Create()
    {
        RegisterResolver();
        return Context.Create(b => b
            .Cuda()
            .OpenCL(_ => true) // every device, so that one ILGPU cannot use is reported as such (IlgpuBackend)
            .CPU(CPUDeviceKind.Nvidia)
            .EnableAlgorithms()
            .Optimize(OptimizationLevel.O2)
            .Inlining(InliningMode.Aggressive));
    }

    internal static void RegisterResolver()
    {
        if (Interlocked.Exchange(ref s_resolver, 1) != 0 || IsWsl()) return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // a resolver was already registered for ILGPU by the application: keep it
        }
    }

    private static bool IsWsl()
    {
        try
        {
            return OperatingSystem.IsLinux() && File.ReadAllText("/proc/version").Contains("microsoft", StringComparison.OrdinalIgnoreCase);
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        string? soname = name switch
        {
            "nvcuda" or "cuda" or "libcuda" or "libcuda.so" => "libcuda.so.1",
            "OpenCL" or "libOpenCL" or "libOpenCL.so" or "opencl" => "libOpenCL.so.1",
            _ => null,
        };
        if (soname is null || !OperatingSystem.IsLinux()) return IntPtr.Zero;
        return NativeLibrary.TryLoad(soname, assembly, path, out var handle) ? handle : IntPtr.Zero;
    }
}
