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
        return IlgpuBackend.CreateCpu(workGroupSize: 16, maxTilePairs: 1);
    }
}

/// <summary>
/// The suite again with 128 work-items per group, the size the kernels take on a GPU (<c>KernelPlan.PreferredWorkGroupSize</c>),
/// so that the paths a wide group chooses (more work-items than pairs, each pair's z = W q split over up to 16 of them)
/// run without a GPU.
/// </summary>
public class IlgpuCpuWideKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason)
    {
        skipReason = null;
        var acc = IlgpuBackend.CreateCpu(workGroupSize: Kernels.Ilgpu.KernelPlan.PreferredWorkGroupSize);
        Assert.Equal(Kernels.Ilgpu.KernelPlan.PreferredWorkGroupSize, acc.WorkGroupSize);
        return acc;
    }
}

/// <summary>ILGPU's CPU accelerator as the registry, the selftest and the trainer see it.</summary>
public class IlgpuCpuAcceleratorTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void RegistryListsAndOpensTheIlgpuCpuAccelerator()
    {
        var notes = new List<string>();
        var device = Assert.Single(AcceleratorRegistry.Enumerate(notes), d => d.Kind == AcceleratorKind.IlgpuCpu);
        Assert.Equal("ilgpu-cpu", device.Selector);
        Assert.False(device.IsGpu);
        Assert.Contains("ILGPU CPU accelerator", device.Details);
        // no GPU here: the ILGPU CUDA family says why in one line
        Assert.All(notes, n => Assert.DoesNotContain('\n', n));
        using var acc = AcceleratorRegistry.Create("ilgpu-cpu", out string note);
        Assert.IsType<IlgpuAccelerator>(acc);
        Assert.Contains("ilgpu-cpu", note);
        var e = Assert.Throws<AcceleratorUnavailableException>(() => AcceleratorRegistry.Create("ilgpu-cpu:1", out _));
        Assert.Contains("ilgpu-cpu:1", e.Message);
    }

    [Fact]
    public void SelfTestAgainstCpuPasses()
    {
        using var acc = IlgpuBackend.CreateCpu();
        AgainstCpu.SelfTestPasses(acc, output.WriteLine);
    }

    /// <summary>The self-test's shapes (39 fields in tiles, k = t = 128 with the accumulator in global memory) at a GPU's 128 work-items per group.</summary>
    [Fact]
    public void SelfTestAgainstCpuPassesAtAGpusGroupSize()
    {
        using var acc = IlgpuBackend.CreateCpu(workGroupSize: Kernels.Ilgpu.KernelPlan.PreferredWorkGroupSize);
        AgainstCpu.SelfTestPasses(acc, output.WriteLine);
    }

    /// <summary>Three epochs with dropout on ILGPU's CPU accelerator and on the CPU accelerator agree closely (<see cref="AgainstCpu.TrainingMatches"/>).</summary>
    [Theory]
    [InlineData(Model.ModelKind.Afm, Kernels.OptimizerKind.Adagrad)]
    [InlineData(Model.ModelKind.Afm, Kernels.OptimizerKind.Adam)]
    [InlineData(Model.ModelKind.Fm, Kernels.OptimizerKind.Adagrad)]
    public void TrainingMatchesCpu(Model.ModelKind kind, Kernels.OptimizerKind optimizer)
    {
        using var acc = IlgpuBackend.CreateCpu();
        var data = AgainstCpu.RandomData(rows: 300, features: 60, maxNnz: 9, seed: 7);
        AgainstCpu.TrainingMatches(acc, "ILGPU CPU", kind, optimizer, data, output.WriteLine);
    }
}
