using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Native.Cuda;

namespace Afm.Gpu.Accelerators.Cuda;

/// <summary>
/// An NVIDIA GPU running the single-source GPU kernels (Kernels/Gpu) through the CUDA driver API. The kernels are
/// compiled with NVRTC for the device's compute capability once per shape, through an on-disk
/// <see cref="KernelCache"/> so that later runs load the compiled image instead. All work goes to the device's one
/// stream, in order; <see cref="Synchronize"/> waits for it.
/// </summary>
public sealed class CudaAccelerator : Accelerator
{
    /// <summary>
    /// Blocks of the training kernel per multiprocessor (each owns one partial dense gradient) planned before the
    /// kernel is compiled; <see cref="Module"/> then sizes the grid to what the driver says is resident at once.
    /// </summary>
    internal const int GroupsPerMultiprocessor = 4;

    /// <summary>At most this many training blocks per multiprocessor, however many would fit.</summary>
    internal const int MaxGroupsPerMultiprocessor = 8;

    /// <summary>Size of the pinned staging ring that uploads go through.</summary>
    internal const int DefaultStagingBytes = 64 << 20;

    /// <summary>The program name NVRTC reports in diagnostics.</summary>
    internal const string ProgramName = "afm_kernels.cu";

    private readonly Dictionary<string, (CudaModule Module, GpuKernelConfig Config)> _modules = [];
    private readonly NvrtcCompiler _compiler;
    private readonly KernelCache _cache;
    private readonly Lazy<CudaStaging> _staging;

    /// <summary>Opens <paramref name="info"/>'s device and loads NVRTC.</summary>
    /// <param name="info">A device from <see cref="CudaRuntime.EnumerateDevices"/>.</param>
    /// <param name="cache">Where compiled kernels are kept (default: <see cref="KernelCache.DefaultDirectory()"/>).</param>
    /// <exception cref="AcceleratorUnavailableException">NVRTC cannot be loaded (the reason lists where it was looked for).</exception>
    /// <exception cref="CudaException">Opening the device failed.</exception>
    public CudaAccelerator(CudaDeviceInfo info, KernelCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(info);
        if (!NvrtcCompiler.TryLoad(out var compiler, out string? why))
            throw new AcceleratorUnavailableException($"cuda:{info.Index}: NVRTC, which compiles the kernels, could not be loaded: {OneLine(why)}");
        _compiler = compiler;
        _cache = cache ?? new KernelCache();
        Info = info;
        Descriptor = Describe(info);
        Device = CudaDevice.Open(info.Index);
        _staging = new Lazy<CudaStaging>(() => new CudaStaging(Device, StagingBytes));
    }

    /// <summary>The descriptor of a CUDA device: compute capability, multiprocessors and driver version.</summary>
    public static AcceleratorDescriptor Describe(CudaDeviceInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        return new AcceleratorDescriptor(AcceleratorKind.Cuda, info.Index, info.Name,
            $"compute capability {info.ComputeCapabilityMajor}.{info.ComputeCapabilityMinor}, {info.MultiprocessorCount} SMs, driver {DriverVersionText(CudaRuntime.DriverVersion)}",
            info.TotalMemoryBytes, info.MultiprocessorCount, IsGpu: true, PeakGflops(info));
    }

    /// <summary>
    /// fp32 peak in GFLOP/s: multiprocessors x fp32 lanes per multiprocessor x 2 (multiply-add) x clock; null
    /// when the driver reports no clock or the architecture is not in the table (CUDA C Programming Guide,
    /// arithmetic instructions: 64 lanes on 6.0, 7.x and 8.0, 128 on the other 5.x to 12.x).
    /// </summary>
    public static double? PeakGflops(CudaDeviceInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        int lanes = (info.ComputeCapabilityMajor, info.ComputeCapabilityMinor) switch
        {
            (6, 0) or (7, _) or (8, 0) => 64,
            ( >= 5 and <= 12, _) => 128,
            _ => 0,
        };
        if (lanes == 0 || info.ClockRateKHz <= 0) return null;
        return info.MultiprocessorCount * (double)lanes * 2 * info.ClockRateKHz / 1e6;
    }

    /// <summary>What the device is.</summary>
    public CudaDeviceInfo Info { get; }

    /// <inheritdoc />
    public override AcceleratorDescriptor Descriptor { get; }

    /// <summary>Where compiled kernel images are kept.</summary>
    public KernelCache Cache => _cache;

    internal CudaDevice Device { get; }

    internal CudaStaging Staging => _staging.Value;

    /// <summary>Upper bound on the block size (0: the device's limit, at most 128). Tests lower it.</summary>
    internal int MaxWorkGroupSize { get; init; }

    /// <summary>Upper bound on the pairs per backward tile (0: as many as shared memory holds). Tests lower it.</summary>
    internal int MaxTilePairs { get; init; }

    /// <summary>Bytes of the pinned upload ring. Tests lower it to exercise wrapping and pieces.</summary>
    internal int StagingBytes { get; init; } = DefaultStagingBytes;

    /// <inheritdoc />
    public override DeviceBuffer<T> Allocate<T>(long length) => new CudaBuffer<T>(this, length);

    /// <inheritdoc />
    public override AfmKernels CreateKernels(ModelShape shape) => new CudaAfmKernels(this, shape);

    /// <inheritdoc />
    public override void Synchronize() => Device.Synchronize();

    /// <summary>
    /// The specialisation for <paramref name="shape"/> on a device with these limits: the largest power-of-two
    /// block size allowed (at most <see cref="GpuKernelSource.PreferredWorkGroupSize"/>), tiles sized to the
    /// static shared memory (48 KiB at most, <see cref="GpuKernelSource.LocalMemoryCap"/>), and
    /// <paramref name="groupsPerMultiprocessor"/> training blocks per multiprocessor. Pure: no device needed.
    /// </summary>
    internal static GpuKernelConfig Configure(ModelShape shape, CudaDeviceInfo info, int maxWorkGroupSize = 0, int maxTilePairs = 0,
        int groupsPerMultiprocessor = GroupsPerMultiprocessor)
    {
        long limit = maxWorkGroupSize > 0 ? Math.Min(maxWorkGroupSize, info.MaxThreadsPerBlock) : info.MaxThreadsPerBlock;
        return GpuKernelSource.Configure(shape, GpuKernelSource.WorkGroupSize(limit), info.SharedMemoryPerBlock,
            info.MultiprocessorCount * groupsPerMultiprocessor, maxTilePairs);
    }

    /// <summary>
    /// Training blocks per multiprocessor for a kernel of which <paramref name="resident"/> blocks fit on one at
    /// once: all of them (so that the grid runs in a single wave, with no second, partly empty one), at least one
    /// and at most <see cref="MaxGroupsPerMultiprocessor"/> (more blocks only add partial gradients to reduce).
    /// </summary>
    internal static int GroupsPerMultiprocessorFor(int resident) => Math.Clamp(resident, 1, MaxGroupsPerMultiprocessor);

    /// <summary>
    /// The NVRTC options that specialise the source: exactly the -D defines the OpenCL build gets. The language needs
    /// no switch (NVRTC defines __CUDACC_RTC__, OpenCL __OPENCL_VERSION__); <see cref="NvrtcCompiler"/> adds the
    /// architecture, -default-device and --std=c++17.
    /// </summary>
    internal static IReadOnlyList<string> CompileOptions(GpuKernelConfig config) => config.Defines;

    /// <summary>
    /// The module for <paramref name="shape"/>, compiled (or loaded from the cache) on first use. The training grid is
    /// planned at <see cref="GroupsPerMultiprocessor"/> blocks per multiprocessor; when the compiled training kernel's
    /// registers and shared memory let a different number be resident at once, the rows per block are re-planned
    /// for that number and the source compiled again (both images are cached, so this costs one extra compile ever).
    /// </summary>
    internal CudaModule Module(ModelShape shape, out GpuKernelConfig config)
    {
        var planned = Configure(shape, Info, MaxWorkGroupSize, MaxTilePairs);
        string key = string.Join(' ', CompileOptions(planned));
        lock (_modules)
        {
            if (_modules.TryGetValue(key, out var entry))
            {
                config = entry.Config;
                return entry.Module;
            }
            var module = Load(planned);
            config = planned;
            try
            {
                int resident = module.GetKernel(GpuKernelSource.ForwardBackward).MaxActiveBlocksPerMultiprocessor(planned.WorkGroupSize);
                var sized = Configure(shape, Info, MaxWorkGroupSize, MaxTilePairs, GroupsPerMultiprocessorFor(resident));
                if (sized != planned)
                {
                    var resized = Load(sized);
                    module.Dispose();
                    (module, config) = (resized, sized);
                }
            }
            catch
            {
                module.Dispose();
                throw;
            }
            _modules.Add(key, (module, config));
            return module;
        }
    }

    private CudaModule Load(GpuKernelConfig config)
    {
        byte[] image = _compiler.CompileCached(_cache, GpuKernelSource.Text, ProgramName,
            Info.ComputeCapabilityMajor, Info.ComputeCapabilityMinor, CompileOptions(config));
        return Device.LoadModule(image);
    }

    /// <summary><c>13.0</c> for the driver's 13000.</summary>
    internal static string DriverVersionText(int version) => version <= 0 ? "unknown" : $"{version / 1000}.{version % 1000 / 10}";

    private static string OneLine(string text) =>
        string.Join("; ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        try
        {
            Device.Synchronize(); // nothing may still use the modules or the staging memory
        }
        catch (CudaException)
        {
            // An earlier failure broke the context and was reported then; tear down regardless.
        }
        lock (_modules)
        {
            foreach (var (m, _) in _modules.Values) m.Dispose();
            _modules.Clear();
        }
        if (_staging.IsValueCreated) _staging.Value.Dispose();
        Device.Dispose();
    }
}
