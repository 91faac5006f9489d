using System.Runtime.InteropServices;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Accelerators.Cuda;
using Afm.Gpu.Accelerators.OpenCl;
using Afm.Gpu.Diagnostics;
using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Model;
using Afm.Gpu.Native.Cuda;
using Afm.Gpu.Tests.Reference;
using Afm.Gpu.Training;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>Opens the first CUDA device for tests; no device (or no NVRTC) is a skip, or a failure when AFM_REQUIRE_CUDA=1.</summary>
internal static class CudaTestDevice
{
    public static CudaAccelerator? Create(out string? skipReason, int maxWorkGroupSize = 0, int maxTilePairs = 0, int stagingBytes = 0)
    {
        var devices = CudaRuntime.EnumerateDevices();
        skipReason = devices.Count == 0 ? $"no CUDA device: {CudaRuntime.UnavailableReason ?? "the driver reports none"}"
            : !NvrtcCompiler.TryLoad(out _, out string? why) ? $"no NVRTC: {why}"
            : null;
        if (skipReason is not null)
        {
            if (Environment.GetEnvironmentVariable("AFM_REQUIRE_CUDA") == "1")
                throw new InvalidOperationException($"AFM_REQUIRE_CUDA=1 but there is {skipReason}");
            return null;
        }
        return new CudaAccelerator(devices[0])
        {
            MaxWorkGroupSize = maxWorkGroupSize,
            MaxTilePairs = maxTilePairs,
            StagingBytes = stagingBytes > 0 ? stagingBytes : CudaAccelerator.DefaultStagingBytes,
        };
    }

    /// <summary>An H100 as the driver describes it, for the tests that need no device.</summary>
    public static CudaDeviceInfo H100 => new(0, "NVIDIA H100 80GB HBM3", 9, 0, 85_000_000_000, 132, 1024, 48 * 1024, 227 * 1024, 1_980_000, 32);
}

/// <summary>The shared kernel suite on the first CUDA device.</summary>
public class CudaKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason) => CudaTestDevice.Create(out skipReason);
}

/// <summary>
/// The suite again with 16 threads per block, one pair column per backward tile and a 256-byte upload ring, so that
/// the multi-tile and k &gt; block paths run, and every upload wraps the ring and goes in pieces.
/// </summary>
public class CudaNarrowKernelTests : KernelTestsBase
{
    protected override Accelerator? CreateAccelerator(out string? skipReason) =>
        CudaTestDevice.Create(out skipReason, maxWorkGroupSize: 16, maxTilePairs: 1, stagingBytes: 256);
}

/// <summary>The CUDA accelerator: what needs no GPU runs everywhere; the rest skips without one.</summary>
public sealed class CudaAcceleratorTests(ITestOutputHelper output)
{
    private static readonly ModelShape Afm39 = new(ModelKind.Afm, 100, 16, 16, 39, 4096);
    private static readonly ModelShape Afm10 = new(ModelKind.Afm, 100, 16, 16, 10, 4096);
    private static readonly ModelShape Fm12 = new(ModelKind.Fm, 100, 16, 0, 12, 4096);

    private static bool CudaUsable => CudaRuntime.EnumerateDevices().Count > 0 && NvrtcCompiler.TryLoad(out _, out _);

    [Fact]
    public void WithoutADriverCreateThrowsAOneLineReason()
    {
        if (CudaRuntime.IsAvailable)
        {
            output.WriteLine("SKIPPED: this machine has a CUDA driver");
            return;
        }
        foreach (string selector in new[] { "cuda", "cuda:0", "CUDA:1" })
        {
            var e = Assert.Throws<AcceleratorUnavailableException>(() => AcceleratorRegistry.Create(selector, out _));
            Assert.Equal($"cuda: {CudaRuntime.UnavailableReason}", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        if (!NativeLibrary.TryLoad("libcuda.so.1", out _))
        {
            var e = Assert.Throws<AcceleratorUnavailableException>(() => AcceleratorRegistry.Create("cuda", out _));
            Assert.Equal("cuda: libcuda.so.1 not found: no NVIDIA driver on this machine", e.Message);
        }
    }

    [Fact]
    public void AutoPrefersCudaAndOtherwiseSaysWhyNot()
    {
        using var acc = AcceleratorRegistry.Create("auto", out string note);
        output.WriteLine(note);
        if (CudaUsable)
        {
            Assert.IsType<CudaAccelerator>(acc);
            Assert.StartsWith("auto: using cuda:0", note);
            return;
        }
        Assert.IsNotType<CudaAccelerator>(acc);
        if (acc is CpuAccelerator) // an OpenCL GPU, when there is one, is taken without a word about CUDA
            Assert.Contains(CudaRuntime.IsAvailable ? "cuda" : $"cuda: {CudaRuntime.UnavailableReason}", note);
    }

    [Fact]
    public void EnumerationNotesWhyThereIsNoCudaDevice()
    {
        var notes = new List<string>();
        var devices = AcceleratorRegistry.Enumerate(notes);
        if (CudaRuntime.EnumerateDevices().Count > 0)
        {
            Assert.Contains(devices, d => d.Kind == AcceleratorKind.Cuda && d.IsGpu);
            return;
        }
        Assert.DoesNotContain(devices, d => d.Kind == AcceleratorKind.Cuda);
        Assert.Contains(notes, n => n.StartsWith("cuda: ", StringComparison.Ordinal) && !n.Contains('\n'));
    }

    [Fact]
    public void DescriptorNamesComputeCapabilitySmsAndDriver()
    {
        var d = CudaAccelerator.Describe(CudaTestDevice.H100);
        Assert.Equal(AcceleratorKind.Cuda, d.Kind);
        Assert.Equal("cuda:0", d.Selector);
        Assert.Equal("NVIDIA H100 80GB HBM3", d.Name);
        Assert.StartsWith("compute capability 9.0, 132 SMs, driver ", d.Details);
        Assert.True(d.IsGpu);
        Assert.Equal(132, d.ComputeUnits);
        Assert.Equal(85_000_000_000, d.MemoryBytes);
        // 132 SMs x 128 fp32 lanes x 2 x 1.98 GHz: the H100 SXM's published 67 TFLOP/s
        Assert.Equal(66_908.16, d.PeakGflops!.Value, 2);
        Assert.Equal(108 * 64 * 2 * 1.41, CudaAccelerator.PeakGflops(CudaTestDevice.H100 with { ComputeCapabilityMajor = 8, MultiprocessorCount = 108, ClockRateKHz = 1_410_000 })!.Value, 2);
        Assert.Null(CudaAccelerator.PeakGflops(CudaTestDevice.H100 with { ClockRateKHz = 0 }));
        Assert.Equal("13.0", CudaAccelerator.DriverVersionText(13000));
        Assert.Equal("12.4", CudaAccelerator.DriverVersionText(12040));
        Assert.Equal("unknown", CudaAccelerator.DriverVersionText(0));
    }

    [Fact]
    public void ConfigurationIsTheOpenClOneForTheSameLimits()
    {
        foreach (var shape in new[] { Afm39, Afm10, Fm12 })
        {
            var cuda = CudaAccelerator.Configure(shape, CudaTestDevice.H100);
            var openCl = GpuKernelSource.Configure(shape, 128, 48 * 1024, 132 * OpenClAccelerator.GroupsPerComputeUnit);
            Assert.Equal(openCl, cuda);
            Assert.Equal(128, cuda.WorkGroupSize);
            Assert.Equal(528, 132 * CudaAccelerator.GroupsPerMultiprocessor);
            Assert.True(cuda.LocalBytes <= GpuKernelSource.LocalMemoryCap - GpuKernelSource.LocalMemorySlack);
        }
        var narrow = CudaAccelerator.Configure(Afm10, CudaTestDevice.H100, maxWorkGroupSize: 16, maxTilePairs: 1);
        Assert.Equal(16, narrow.WorkGroupSize);
        Assert.Equal(9, narrow.TilePairs);
    }

    [Fact]
    public void TheGridFollowsTheResidentBlocks()
    {
        Assert.Equal(1, CudaAccelerator.GroupsPerMultiprocessorFor(0));
        Assert.Equal(3, CudaAccelerator.GroupsPerMultiprocessorFor(3));
        Assert.Equal(CudaAccelerator.MaxGroupsPerMultiprocessor, CudaAccelerator.GroupsPerMultiprocessorFor(32));
        // k = t = 64 at batch 8192: 3 blocks resident per SM (168 registers x 128 threads) must give one wave of
        // 132 x 3 blocks, where the planned 4 per SM would leave a second wave a third full.
        var shape = new ModelShape(ModelKind.Afm, 1000, 64, 64, 10, 8192);
        var planned = CudaAccelerator.Configure(shape, CudaTestDevice.H100);
        var sized = CudaAccelerator.Configure(shape, CudaTestDevice.H100, groupsPerMultiprocessor: 3);
        Assert.True(planned.Groups > 132 * 3);
        Assert.True(sized.Groups <= 132 * 3);
        Assert.Equal((8192 + 132 * 3 - 1) / (132 * 3), sized.RowsPerGroup);
    }

    [Fact]
    public void CompileOptionsAreTheOpenClDefinesAndNothingElse()
    {
        var config = CudaAccelerator.Configure(Afm39, CudaTestDevice.H100);
        var options = CudaAccelerator.CompileOptions(config);
        Assert.Equal(config.Defines, options);
        Assert.All(options, o => Assert.StartsWith("-DAFM_", o));
        Assert.DoesNotContain(options, o => o.Contains("CUDA", StringComparison.OrdinalIgnoreCase) || o.Contains("OPENCL", StringComparison.OrdinalIgnoreCase));
        // The OpenCL build gets the same defines as one option string.
        Assert.Equal(string.Join(' ', config.Defines), string.Join(' ', options));

        var full = NvrtcCompiler.BuildOptions(90, cubin: true, options);
        Assert.Equal(["-arch=sm_90", "-default-device", "--std=c++17", .. options], full);
    }

    [Fact]
    public void CacheKeyFollowsShapeTargetAndCompilerVersion()
    {
        static string Key(ModelShape shape, int arch = 90, string version = "13.0")
        {
            var options = NvrtcCompiler.BuildOptions(arch, cubin: true, CudaAccelerator.CompileOptions(CudaAccelerator.Configure(shape, CudaTestDevice.H100)));
            return KernelCache.ComputeKey(GpuKernelSource.Text, options, NvrtcCompiler.TargetName(arch, cubin: true), version);
        }
        string k = Key(Afm39);
        Assert.Equal(k, Key(Afm39));
        Assert.Equal(k, Key(Afm39 with { FeatureCount = 7 })); // n is not compiled in: the same image serves any vocabulary
        Assert.NotEqual(k, Key(Afm10));
        Assert.NotEqual(k, Key(Afm39 with { K = 8 }));
        Assert.NotEqual(k, Key(Fm12));
        Assert.NotEqual(k, Key(Afm39, arch: 80));
        Assert.NotEqual(k, Key(Afm39, version: "13.1"));
    }

    [Fact]
    public void TheKernelSourceIsFitForNvrtc()
    {
        string text = GpuKernelSource.Text;
        Assert.DoesNotContain("#include", text); // NVRTC has no system headers, and afm_common.h is inlined
        Assert.Contains("#define KERNEL extern \"C\" __global__ void", text); // unmangled names for cuModuleGetFunction
        Assert.Contains("defined(__CUDACC_RTC__)", text);
        foreach (string name in GpuKernelSource.KernelNames) Assert.Contains($"KERNEL {name}(", text);
    }

    // ---- on a GPU ------------------------------------------------------------------------------------

    [Fact]
    public void UploadsMayReuseTheHostArrayAtOnce()
    {
        using var acc = CudaTestDevice.Create(out string? why, stagingBytes: 64);
        if (acc is null)
        {
            output.WriteLine($"SKIPPED: {why}");
            return;
        }
        const int n = 1000;
        using var buffer = acc.Allocate<float>(n);
        var host = new float[n];
        var expected = new float[n];
        for (int round = 0; round < 3; round++)
        {
            // Three overlapping writes from one host array, overwritten right after each CopyFrom.
            for (int part = 0; part < 4; part++)
            {
                int at = part * 250 - (part > 0 ? 10 : 0), count = 250 + (part > 0 ? 10 : 0);
                for (int i = 0; i < count; i++) host[i] = round * 10_000 + part * 1000 + i;
                buffer.CopyFrom(host.AsSpan(0, count), at);
                host.AsSpan(0, count).CopyTo(expected.AsSpan(at));
                Array.Fill(host, float.NaN);
            }
            Assert.Equal(expected, buffer.ToArray());
        }
        buffer.Clear();
        Assert.All(buffer.ToArray(), x => Assert.Equal(0f, x));
    }

    /// <summary>
    /// Training with validation, dropout and each optimizer, then prediction with attention, on CUDA. Only that it
    /// runs and gives finite numbers is checked: the other tests check the values. Under .ci/check-cuda-plumbing.sh
    /// (a fake driver that validates every call and launch) this is what exercises the whole path.
    /// </summary>
    [Theory]
    [InlineData(ModelKind.Afm, OptimizerKind.Adam)]
    [InlineData(ModelKind.Afm, OptimizerKind.Adagrad)]
    [InlineData(ModelKind.Fm, OptimizerKind.Sgd)]
    public void TrainingAndPredictionRunEndToEnd(ModelKind kind, OptimizerKind optimizer)
    {
        using var cuda = CudaTestDevice.Create(out string? why, stagingBytes: 4096);
        if (cuda is null)
        {
            output.WriteLine($"SKIPPED: {why}");
            return;
        }
        var data = Fixtures.RaggedData(50, Enumerable.Range(0, 400).Select(i => i % 9).ToArray(), LossKind.Squared, seed: 3);
        var options = new TrainerOptions
        {
            Model = kind, K = 8, T = 4, Epochs = 2, BatchSize = 48, Optimizer = optimizer, Keep0 = 0.8f, Keep1 = 0.9f,
            ValidationFraction = 0.2f, Patience = 0, Seed = 5,
        };
        var result = new Trainer(cuda, options).Train(data);
        Assert.Equal(2, result.History.Count);
        Assert.All(result.History, e => Assert.True(double.IsFinite(e.TrainLoss)));
        using var predictor = new Predictor(cuda, result.Model, maxNnz: data.MaxNnz, batchSize: 64);
        var predictions = predictor.Predict(data, out float[][] attention);
        Assert.Equal(data.Rows, predictions.Length);
        Assert.All(predictions, p => Assert.True(float.IsFinite(p)));
        Assert.All(attention, a => Assert.All(a, w => Assert.True(float.IsFinite(w))));
    }

    [Fact]
    public void SelfTestAgainstTheCpuPasses()
    {
        using var cuda = CudaTestDevice.Create(out string? why);
        if (cuda is null)
        {
            output.WriteLine($"SKIPPED: {why}");
            return;
        }
        AgainstCpu.SelfTestPasses(cuda, output.WriteLine);
    }

    /// <summary>As OpenClTrainingTests: three epochs with dropout from one seed on CUDA and the CPU agree closely.</summary>
    [Theory]
    [InlineData(ModelKind.Afm, OptimizerKind.Adagrad)]
    [InlineData(ModelKind.Afm, OptimizerKind.Adam)]
    [InlineData(ModelKind.Fm, OptimizerKind.Adagrad)]
    public void TrainingMatchesCpu(ModelKind kind, OptimizerKind optimizer)
    {
        using var cuda = CudaTestDevice.Create(out string? why);
        if (cuda is null)
        {
            output.WriteLine($"SKIPPED: {why}");
            return;
        }
        var data = Fixtures.RaggedData(60, Enumerable.Range(0, 300).Select(i => i * 7 % 10).ToArray(), LossKind.Squared, seed: 7);
        AgainstCpu.TrainingMatches(cuda, "CUDA", kind, optimizer, data, output.WriteLine);
    }

    [Fact]
    public void TheSecondAcceleratorLoadsTheKernelsFromTheCache() => WithDeviceAndCacheDirectory((info, dir) =>
    {
        var shape = Afm10 with { BatchCapacity = 64 };
        using (var first = new CudaAccelerator(info, new KernelCache(dir)))
        using (first.CreateKernels(shape)) { }
        var entries = Directory.GetFiles(dir, "*.bin");
        Assert.Single(entries);
        var written = File.GetLastWriteTimeUtc(entries[0]);
        using (var second = new CudaAccelerator(info, new KernelCache(dir)))
        using (second.CreateKernels(shape)) { }
        Assert.Equal(entries, Directory.GetFiles(dir, "*.bin"));
        Assert.Equal(written, File.GetLastWriteTimeUtc(entries[0]));
    });

    [Fact]
    public void TheTrainingGridIsOneWaveOfResidentBlocks() => WithDeviceAndCacheDirectory((info, dir) =>
    {
        using var accelerator = new CudaAccelerator(info, new KernelCache(dir));
        var module = accelerator.Module(Afm10, out var config);
        var kernel = module.GetKernel(GpuKernelSource.ForwardBackward);
        int resident = kernel.MaxActiveBlocksPerMultiprocessor(config.WorkGroupSize);
        var (registers, shared, local) = kernel.Resources();
        output.WriteLine($"{info.Name}: {resident} blocks of {config.WorkGroupSize} resident per multiprocessor " +
            $"({registers} registers, {shared} B shared, {local} B local); {config.Groups} blocks of {config.RowsPerGroup} rows");
        int perSm = CudaAccelerator.GroupsPerMultiprocessorFor(resident);
        Assert.Equal(CudaAccelerator.Configure(Afm10, info, groupsPerMultiprocessor: perSm), config);
        Assert.True(config.Groups <= info.MultiprocessorCount * Math.Max(resident, 1), "the grid needs a second wave");
        // Asked again, the accelerator serves the module it settled on.
        Assert.Same(module, accelerator.Module(Afm10, out var again));
        Assert.Equal(config, again);
    });

    /// <summary>Runs <paramref name="body"/> with the first CUDA device and an empty kernel-cache folder; skips with a note without either.</summary>
    private void WithDeviceAndCacheDirectory(Action<CudaDeviceInfo, string> body)
    {
        var devices = CudaRuntime.EnumerateDevices();
        if (devices.Count == 0 || !NvrtcCompiler.TryLoad(out _, out _))
        {
            output.WriteLine("SKIPPED: no CUDA device or no NVRTC");
            return;
        }
        string dir = Directory.CreateTempSubdirectory("afm-cuda-cache-").FullName;
        try
        {
            body(devices[0], dir);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>The upload ring's bookkeeping, with fences that record when they are waited for.</summary>
public class StagingRingTests
{
    private sealed class Fence(int id)
    {
        public int Id { get; } = id;
        public bool Done { get; set; }
        public override string ToString() => $"#{Id}";
    }

    private sealed class Harness
    {
        public readonly List<int> Waited = [];
        public readonly Stack<Fence> Released = new();
        public readonly List<Fence> All = [];
        public readonly StagingRing<Fence> Ring;

        public Harness(int capacity) => Ring = new StagingRing<Fence>(capacity, f => f.Done, f =>
        {
            Waited.Add(f.Id);
            foreach (var g in All.Where(g => g.Id <= f.Id)) g.Done = true; // one in-order stream
        });

        /// <summary>Reserves and commits a copy of <paramref name="bytes"/>; returns (offset, fence id).</summary>
        public (long At, int Id) Copy(int bytes)
        {
            long at = Ring.Reserve(bytes, Released);
            var f = new Fence(All.Count);
            All.Add(f);
            Ring.Commit(at, bytes, f);
            return (at, f.Id);
        }

        public int[] ReleasedIds() => Released.Select(f => f.Id).OrderBy(i => i).ToArray();
    }

    [Fact]
    public void RegionsFollowEachOtherAndWrapWithoutWaitingUntilTheyOverlap()
    {
        var h = new Harness(100);
        Assert.Equal((0L, 0), h.Copy(40));
        Assert.Equal((40L, 1), h.Copy(40));
        Assert.Empty(h.Waited);
        Assert.Equal((0L, 2), h.Copy(30)); // 80 + 30 > 100: wraps, over copy #0 only
        Assert.Equal([0], h.Waited);
        Assert.Equal([0], h.ReleasedIds());
        Assert.Equal(2, h.Ring.PendingCount);
        Assert.Equal((30L, 3), h.Copy(20)); // [30, 50) overlaps #1 at [40, 80)
        Assert.Equal([0, 1], h.Waited);
        Assert.Equal(2, h.Ring.PendingCount);
    }

    [Fact]
    public void AfterAWrapTheYoungestOverlappingCopyIsWaitedFor()
    {
        var h = new Harness(100);
        h.Copy(60); // #0 [0, 60)
        h.Copy(40); // #1 [60, 100)
        h.Copy(30); // #2 [0, 30), waits for #0
        h.Copy(20); // #3 [30, 50)
        h.Waited.Clear();
        // 50 + 60 > 100: wraps to [0, 60), which overlaps #2 and #3 but not the older #1 at the end.
        Assert.Equal((0L, 4), h.Copy(60));
        Assert.Equal([3], h.Waited);
        Assert.Equal([0, 1, 2, 3], h.ReleasedIds());
        Assert.Equal(1, h.Ring.PendingCount);
    }

    [Fact]
    public void AFullSizeRegionWaitsForEverything()
    {
        var h = new Harness(64);
        h.Copy(10);
        h.Copy(10);
        h.Copy(64);
        Assert.Equal([1], h.Waited);
        h.Copy(64);
        Assert.Equal([1, 2], h.Waited);
        h.Ring.Drain(h.Released);
        Assert.Equal([1, 2, 3], h.Waited);
        Assert.Equal(0, h.Ring.PendingCount);
        Assert.Equal([0, 1, 2, 3], h.ReleasedIds());
        h.Ring.Drain(h.Released);
        Assert.Equal([1, 2, 3], h.Waited);
    }

    [Fact]
    public void FinishedCopiesAreRetiredWithoutWaiting()
    {
        var h = new Harness(100);
        h.Copy(40);
        h.Copy(40);
        h.Copy(10);
        h.All[0].Done = h.All[1].Done = true;
        Assert.Equal((0L, 3), h.Copy(30)); // wraps over #0, which has finished: no wait
        Assert.Empty(h.Waited);
        Assert.Equal([0, 1], h.ReleasedIds());
        Assert.Equal(2, h.Ring.PendingCount);
        Assert.Equal((30L, 4), h.Copy(60)); // [30, 90) overlaps #2 at [80, 90), still in flight
        Assert.Equal([2], h.Waited);
        Assert.Equal([0, 1, 2], h.ReleasedIds()); // #3 at [0, 30) is left in flight
        Assert.Equal(2, h.Ring.PendingCount);
    }

    [Fact]
    public void RegionsMustFitTheRing()
    {
        var h = new Harness(16);
        Assert.Throws<ArgumentOutOfRangeException>(() => h.Ring.Reserve(17, h.Released));
        Assert.Throws<ArgumentOutOfRangeException>(() => h.Ring.Reserve(0, h.Released));
        Assert.Throws<ArgumentOutOfRangeException>(() => new StagingRing<Fence>(0, _ => true, _ => { }));
    }
}
