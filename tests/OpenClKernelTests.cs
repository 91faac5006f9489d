using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Accelerators.OpenCl;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Native.OpenCL;
using Afm.Gpu.Training;

namespace Afm.Gpu.Tests;

/// <summary>Opens the first OpenCL device for tests; absent OpenCL is a skip, or a failure when AFM_REQUIRE_OPENCL=1 (CI).</summary>
internal static class OpenClTestDevice
{
    public static OpenClAccelerator? Create(out string? skipReason, int maxWorkGroupSize = 0, int maxTilePairs = 0)
    {
        var devices = OpenClRuntime.EnumerateDevices();
        if (devices.Count == 0)
        {
            skipReason = $"no OpenCL device: {OpenClRuntime.UnavailableReason}";
            if (Environment.GetEnvironmentVariable("AFM_REQUIRE_OPENCL") == "1")
                throw new InvalidOperationException($"AFM_REQUIRE_OPENCL=1 but there is {skipReason}");
            return null;
        }
        skipReason = null;
        return new OpenClAccelerator(devices[0]) { MaxWorkGroupSize = maxWorkGroupSize, MaxTilePairs = maxTilePairs };
    }
}

/// <summary>The shared kernel suite on the first OpenCL device (PoCL in CI).</summary>
public class OpenClKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason) => OpenClTestDevice.Create(out skipReason);
}

/// <summary>
/// The suite again with 16 work-items per group (fewer than k in some shapes) and one pair column
/// per backward tile, so that the multi-tile and k &gt; work-group paths run on every shape.
/// </summary>
public class OpenClNarrowKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason) =>
        OpenClTestDevice.Create(out skipReason, maxWorkGroupSize: 16, maxTilePairs: 1);
}

/// <summary>The OpenCL backend as the registry sees it.</summary>
public class OpenClRegistryTests
{
    [Fact]
    public void RegistryListsAndOpensOpenClDevices()
    {
        using var probe = OpenClTestDevice.Create(out string? why);
        if (probe is null)
        {
            Console.WriteLine($"SKIPPED {nameof(OpenClRegistryTests)}: {why}");
            return;
        }
        var device = Assert.Single(AcceleratorRegistry.Enumerate(), d => d.Selector == "opencl:0");
        Assert.Equal(probe.Info.Name, device.Name);
        Assert.Contains(probe.Info.Platform.Name, device.Details);
        Assert.Contains("compute units", device.Details);
        Assert.Equal(probe.Info.Type == OpenClDeviceType.Gpu, device.IsGpu);
        using var acc = AcceleratorRegistry.Create("opencl:0", out string note);
        Assert.IsType<OpenClAccelerator>(acc);
        Assert.Contains("opencl:0", note);
    }
}

/// <summary>OpenCL against the CPU accelerator over whole training runs.</summary>
public class OpenClTrainingTests
{
    /// <summary>Three epochs with dropout on OpenCL and the CPU agree closely (<see cref="AgainstCpu.TrainingMatches"/>).</summary>
    [Theory]
    [InlineData(ModelKind.Afm, OptimizerKind.Adagrad)]
    [InlineData(ModelKind.Afm, OptimizerKind.Adam)]
    [InlineData(ModelKind.Fm, OptimizerKind.Adagrad)]
    public void TrainingMatchesCpu(ModelKind kind, OptimizerKind optimizer)
    {
        using var cl = OpenClTestDevice.Create(out string? why);
        if (cl is null)
        {
            Console.WriteLine($"SKIPPED {nameof(OpenClTrainingTests)}: {why}");
            return;
        }
        var data = RandomData(rows: 300, features: 60, maxNnz: 9, seed: 7);
        AgainstCpu.TrainingMatches(cl, "OpenCL", kind, optimizer, data, Console.WriteLine);
    }

    internal static SparseDataset RandomData(int rows, int features, int maxNnz, int seed)
    {
        var rng = new Random(seed);
        var offsets = new long[rows + 1];
        var ids = new List<int>();
        var vals = new List<float>();
        var labels = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            foreach (int id in Enumerable.Range(0, features).OrderBy(_ => rng.Next()).Take(rng.Next(maxNnz + 1)))
            {
                ids.Add(id);
                vals.Add(rng.Next(2) == 0 ? 1f : (float)(rng.NextDouble() * 2 - 1));
            }
            offsets[r + 1] = ids.Count;
            labels[r] = (float)(1 + 4 * rng.NextDouble());
        }
        return new SparseDataset(offsets, ids.ToArray(), vals.ToArray(), labels, features);
    }
}
