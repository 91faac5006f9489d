using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Cpu;

namespace Afm.Gpu.Accelerators.Cpu;

/// <summary>The always-available accelerator: managed kernels, SIMD, parallel over the batch.</summary>
public sealed class CpuAccelerator : Accelerator
{
    /// <summary>Creates the CPU accelerator.</summary>
    /// <param name="maxThreads">Worker threads for kernels; 0 means one per logical core.</param>
    /// <param name="variant">Which AFM kernels to run (the fast blocked path unless testing).</param>
    public CpuAccelerator(int maxThreads = 0, CpuKernelVariant variant = CpuKernelVariant.Fast)
        : this(maxThreads, variant, CpuSimd.Path)
    {
    }

    /// <summary>Creates the CPU accelerator on a given vector width (a narrower one than the CPU's, for tests).</summary>
    internal CpuAccelerator(int maxThreads, CpuKernelVariant variant, CpuSimdPath simdPath)
    {
        SimdPath = simdPath;
        MaxThreads = maxThreads > 0 ? maxThreads : Environment.ProcessorCount;
        Variant = variant;
        Descriptor = Describe();
    }

    /// <summary>The descriptor of the host CPU.</summary>
    public static AcceleratorDescriptor Describe()
    {
        string isa = CpuSimd.Describe(CpuSimd.Path);
        long mem = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return new AcceleratorDescriptor(AcceleratorKind.Cpu, 0, "CPU (managed kernels)",
            $"{Environment.ProcessorCount} logical cores, {isa}, {System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}",
            mem, Environment.ProcessorCount, IsGpu: false);
    }

    /// <inheritdoc />
    public override AcceleratorDescriptor Descriptor { get; }

    /// <summary>Worker threads used by the kernels.</summary>
    public int MaxThreads { get; }

    /// <summary>The vector width the kernels run on: <see cref="CpuSimd.Path"/>, the widest the process has.</summary>
    public CpuSimdPath SimdPath { get; }

    /// <summary>Which AFM kernels run.</summary>
    public CpuKernelVariant Variant { get; }

    /// <inheritdoc />
    public override DeviceBuffer<T> Allocate<T>(long length) => new CpuBuffer<T>(length);

    /// <inheritdoc />
    public override AfmKernels CreateKernels(ModelShape shape) => new CpuAfmKernels(this, shape);
}

/// <summary>The CPU accelerator's AFM kernel implementations.</summary>
public enum CpuKernelVariant
{
    /// <summary>Register-blocked matrix products for the attention MLP on the widest vectors the CPU has, padded rows.</summary>
    Fast,
    /// <summary>The readable stage-by-stage kernels (a reference for the fast path).</summary>
    Readable,
}

/// <summary>A CPU "device" buffer: a managed array.</summary>
public sealed class CpuBuffer<T> : DeviceBuffer<T> where T : unmanaged
{
    internal CpuBuffer(long length) : base(length)
    {
        if (length > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(length), length, "too large for one CPU buffer");
        Data = new T[length];
    }

    /// <summary>The backing array.</summary>
    internal T[] Data { get; }

    /// <inheritdoc />
    public override void CopyFrom(ReadOnlySpan<T> source, long offset = 0)
    {
        CheckRange(offset, source.Length);
        source.CopyTo(Data.AsSpan((int)offset));
    }

    /// <inheritdoc />
    public override void CopyTo(Span<T> destination, long offset = 0)
    {
        CheckRange(offset, destination.Length);
        Data.AsSpan((int)offset, destination.Length).CopyTo(destination);
    }

    /// <inheritdoc />
    public override void Clear() => Array.Clear(Data);
}
