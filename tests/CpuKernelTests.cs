using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;

namespace Afm.Gpu.Tests;

/// <summary>The shared kernel suite on the CPU accelerator (always present).</summary>
public class CpuKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason)
    {
        skipReason = null;
        return new CpuAccelerator();
    }
}

/// <summary>The same suite on the CPU accelerator's readable stage-by-stage kernels.</summary>
public class CpuReadableKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason)
    {
        skipReason = null;
        return new CpuAccelerator(variant: CpuKernelVariant.Readable);
    }
}
