using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Diagnostics;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>The selftest library: CPU against itself (exact). The GPU kernels against the CPU: IlgpuKernelTests, GpuAcceleratorTests.</summary>
public sealed class SelfTestTests(ITestOutputHelper output)
{
    [Fact]
    public void CpuAgainstCpuIsExact()
    {
        using var a = new CpuAccelerator();
        using var b = new CpuAccelerator(maxThreads: 1);
        var rows = SelfTest.Run(a, b);
        output.WriteLine(SelfTest.Format(rows));
        Assert.Equal(7, rows.Select(r => r.Shape).Distinct().Count());
        Assert.All(rows, r =>
        {
            Assert.True(r.Pass, $"{r.Shape} / {r.Kernel}");
            Assert.Equal(0, r.MaxAbsError);
        });
    }
}
