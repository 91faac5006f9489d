using System.Runtime.InteropServices;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Accelerators.Ilgpu;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>
/// The CUDA and OpenCL accelerators (ILGPU): what needs no GPU runs everywhere (selectors, reasons, the peak); the
/// self-test and training against the CPU accelerator run on the first GPU of each family when there is one, and skip
/// with a note otherwise.
/// </summary>
public sealed class GpuAcceleratorTests(ITestOutputHelper output)
{
    private static bool HasDriver => NativeLibrary.TryLoad("libcuda.so.1", out _);

    [Fact]
    public void WithoutADriverCudaSelectorsThrowAOneLineReason()
    {
        if (HasDriver)
        {
            output.WriteLine("SKIPPED: this machine has an NVIDIA driver");
            return;
        }
        foreach (string selector in new[] { "cuda", "cuda:0", "CUDA:1" })
        {
            var e = Assert.Throws<AcceleratorUnavailableException>(() => AcceleratorRegistry.Create(selector, out _));
            Assert.Equal("cuda: libcuda.so.1 not found: no NVIDIA driver on this machine", e.Message);
        }
    }

    [Fact]
    public void OpenClWithoutAnOpenCl2DeviceSaysWhatIsMissing()
    {
        if (AcceleratorRegistry.Enumerate().Any(d => d.Kind == AcceleratorKind.OpenCl))
        {
            output.WriteLine("SKIPPED: this machine has an OpenCL 2.0 device");
            return;
        }
        var e = Assert.Throws<AcceleratorUnavailableException>(() => AcceleratorRegistry.Create("opencl", out _));
        Assert.StartsWith("opencl: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        if (OpenClPlatformInstalled())
            Assert.Contains("generic address space", e.Message); // PoCL in CI: found, and refused with the reason
        else
            Assert.Equal("opencl: no OpenCL device found (an OpenCL 2.0 driver and libOpenCL.so.1 are needed)", e.Message);
    }

    private static bool OpenClPlatformInstalled() =>
        Directory.Exists("/etc/OpenCL/vendors") && Directory.EnumerateFiles("/etc/OpenCL/vendors", "*.icd").Any()
        && NativeLibrary.TryLoad("libOpenCL.so.1", out _);

    /// <summary>
    /// ILGPU loads libOpenCL by its unversioned name, which only the -dev package installs; through the engine's
    /// resolver it finds the platform that the driver package registers (PoCL in CI, which ILGPU cannot run: it is
    /// listed in the reason, not as a device).
    /// </summary>
    [Fact]
    public void IlgpuFindsTheOpenClPlatformThroughTheVersionedLibrary()
    {
        if (!OpenClPlatformInstalled())
        {
            Assert.False(Environment.GetEnvironmentVariable("AFM_REQUIRE_OPENCL") == "1", "AFM_REQUIRE_OPENCL=1 but no OpenCL platform is installed");
            output.WriteLine("SKIPPED: no OpenCL platform (libOpenCL.so.1 and an ICD) here");
            return;
        }
        var devices = IlgpuContext.Instance.Devices.OfType<ILGPU.Runtime.OpenCL.CLDevice>().ToList();
        Assert.NotEmpty(devices);
        foreach (var d in devices) output.WriteLine($"{d.Name}: OpenCL C {d.CVersion}, generic address space {d.Capabilities.GenericAddressSpace}");
        var listed = AcceleratorRegistry.Enumerate(new List<string>()).Where(d => d.Kind == AcceleratorKind.OpenCl).ToList();
        Assert.Equal(devices.Count(d => d.Capabilities.GenericAddressSpace), listed.Count);
    }

    [Theory]
    [InlineData("cuda:x", "malformed accelerator 'cuda:x'")]
    [InlineData("cuda:-1", "malformed accelerator 'cuda:-1'")]
    [InlineData("metal", "unknown accelerator 'metal'")]
    public void MalformedSelectorsAreNamed(string selector, string message)
    {
        var e = Assert.Throws<AcceleratorUnavailableException>(() => AcceleratorRegistry.Create(selector, out _));
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void AutoPrefersAGpuAndOtherwiseSaysWhyNot()
    {
        using var acc = AcceleratorRegistry.Create("auto", out string note);
        output.WriteLine(note);
        var gpu = AcceleratorRegistry.Enumerate().FirstOrDefault(d => d.IsGpu);
        if (gpu is not null)
        {
            Assert.StartsWith($"auto: using {gpu.Selector}", note);
            return;
        }
        Assert.IsType<CpuAccelerator>(acc);
        Assert.StartsWith("auto: using the CPU accelerator (", note);
        Assert.Contains("cuda: ", note);
        Assert.Contains("opencl: ", note);
        Assert.DoesNotContain('\n', note);
    }

    [Fact]
    public void EnumerationListsTheIlgpuCpuAcceleratorAndNotesAbsentFamilies()
    {
        var notes = new List<string>();
        var devices = AcceleratorRegistry.Enumerate(notes);
        Assert.Equal("cpu", devices[0].Selector);
        Assert.Single(devices, d => d.Selector == "ilgpu-cpu");
        foreach (var kind in new[] { AcceleratorKind.Cuda, AcceleratorKind.OpenCl })
        {
            string family = AcceleratorDescriptor.FamilyName(kind);
            if (devices.Any(d => d.Kind == kind)) continue;
            Assert.Contains(notes, n => n.StartsWith(family + ": ", StringComparison.Ordinal) && !n.Contains('\n'));
        }
    }

    [Fact]
    public void CudaPeakIsLanesTimesMultiprocessorsTimesClock()
    {
        // 132 SMs x 128 fp32 lanes x 2 x 1.98 GHz: the H100 SXM's published 67 TFLOP/s
        Assert.Equal(132 * 128 * 2 * 1.98, IlgpuBackend.PeakGflops(9, 0, 132, 1_980_000)!.Value, 2);
        Assert.Equal(108 * 64 * 2 * 1.41, IlgpuBackend.PeakGflops(8, 0, 108, 1_410_000)!.Value, 2);
        Assert.Null(IlgpuBackend.PeakGflops(9, 0, 132, 0));
        Assert.Null(IlgpuBackend.PeakGflops(3, 5, 15, 1_000_000));
    }

    public static TheoryData<string> Families => ["cuda", "opencl"];

    public static TheoryData<string> IlgpuFamilies => ["ilgpu-cpu", "cuda", "opencl"];

    /// <summary>
    /// An upload's source may be overwritten as soon as the upload returns (the trainer refills the host batch then),
    /// whether or not the upload waited for the queue: a kernel queued before it and a read after it see the rows as
    /// they were when it was issued.
    /// </summary>
    [Theory]
    [MemberData(nameof(IlgpuFamilies))]
    public void AnUploadTakesItsSourceBeforeItReturns(string family)
    {
        var device = AcceleratorRegistry.Enumerate().FirstOrDefault(d => AcceleratorDescriptor.FamilyName(d.Kind) == family && (d.IsGpu || family == "ilgpu-cpu"));
        if (device is null)
        {
            output.WriteLine($"SKIPPED: no {family} device here");
            return;
        }
        using var acc = AcceleratorRegistry.Create(device.Selector, out _);
        const int n = 1 << 20;
        using var a = acc.Allocate<float>(n);
        using var b = acc.Allocate<float>(n);
        var host = new float[n];
        for (int round = 0; round < 3; round++)
        {
            Array.Fill(host, round + 1f);
            a.CopyFrom(host);
            Array.Fill(host, -1f); // at once, as the next batch is filled
            b.CopyFrom(host.AsSpan(0, n / 2), n / 2);
            Array.Fill(host, -2f);
            var back = a.ToArray();
            Assert.All(back, v => Assert.Equal(round + 1f, v));
            var half = b.ToArray();
            Assert.All(half.AsSpan(n / 2).ToArray(), v => Assert.Equal(-1f, v));
        }
        Assert.True(IlgpuBuffer<float>.WritesWithoutWaiting(ILGPU.Runtime.AcceleratorType.Cuda));
        Assert.False(IlgpuBuffer<float>.WritesWithoutWaiting(ILGPU.Runtime.AcceleratorType.OpenCL));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void OnAGpuTheSelfTestAndTrainingMatchTheCpu(string family)
    {
        var device = AcceleratorRegistry.Enumerate().FirstOrDefault(d => AcceleratorDescriptor.FamilyName(d.Kind) == family && d.IsGpu);
        if (device is null)
        {
            output.WriteLine($"SKIPPED: no {family} GPU here");
            return;
        }
        using var acc = AcceleratorRegistry.Create(device.Selector, out _);
        AgainstCpu.SelfTestPasses(acc, output.WriteLine);
        var data = AgainstCpu.RandomData(rows: 300, features: 60, maxNnz: 9, seed: 7);
        foreach (var (kind, opt) in new[] { (ModelKind.Afm, OptimizerKind.Adagrad), (ModelKind.Afm, OptimizerKind.Adam), (ModelKind.Fm, OptimizerKind.Adagrad) })
            AgainstCpu.TrainingMatches(acc, device.Selector, kind, opt, data, output.WriteLine);
    }
}
