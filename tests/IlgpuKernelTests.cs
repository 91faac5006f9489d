using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Ilgpu;

namespace Afm.Gpu.Tests;

/// <summary>The shared kernel suite on ILGPU's CPU accelerator: the ILGPU GPU kernels, run on the host.</summary>
public class IlgpuCpuKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason)
    {
        skipReason = null;
        return IlgpuBackend.CreateCpu();
    }
}

/// <summary>
/// The suite again with 16 work-items per group (fewer than k in some shapes) and one pair column per backward
/// tile, so that the multi-tile path (relu(z) recomputed per tile) and the k &gt; work-group paths run on every shape.
/// </summary>
public class IlgpuCpuNarrowKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason)
    {
        skipReason = null;
        return IlgpuBackend.CreateCpu(maxWorkGroupSize: 16, maxTilePairs: 1);
    }
}
