using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Model;

namespace Afm.Gpu.Tests;

/// <summary>The embedded GPU source and the sizing of its local memory (no device needed).</summary>
public class GpuKernelSourceTests
{
    [Fact]
    public void SourceIsEmbeddedWithTheHeaderInlined()
    {
        string text = GpuKernelSource.Text;
        Assert.DoesNotContain("#include", text);
        Assert.Contains("#define AFM_COMMON_H", text);
        foreach (string name in GpuKernelSource.KernelNames) Assert.Contains($"KERNEL {name}(", text);
    }

    [Theory]
    [InlineData(16, 16, 10, false)]
    [InlineData(64, 64, 3, false)]
    [InlineData(128, 128, 3, true)]
    [InlineData(256, 256, 3, true)]
    public void LargeDenseGradientsAccumulateInGlobalMemory(int k, int t, int m, bool global)
    {
        var shape = new ModelShape(ModelKind.Afm, 1000, k, t, m, 4096);
        var config = GpuKernelSource.Configure(shape, 128, 48 * 1024, 32);
        Assert.Equal(global, config.GlobalAccumulator);
        Assert.Contains($"-DAFM_ACC_GLOBAL={(global ? 1 : 0)}", config.Defines);
        Assert.True(config.LocalBytes <= 48 * 1024 - GpuKernelSource.LocalMemorySlack, $"{config.LocalBytes} bytes of local memory");
    }

    [Fact]
    public void WorkGroupSizeIsAPowerOfTwoWithinTheLimit()
    {
        Assert.Equal(128, GpuKernelSource.WorkGroupSize(4096));
        Assert.Equal(64, GpuKernelSource.WorkGroupSize(100));
        Assert.Equal(1, GpuKernelSource.WorkGroupSize(1));
    }

    [Fact]
    public void ManyPairsAreTiledWithinTheLocalMemoryBudget()
    {
        var shape = new ModelShape(ModelKind.Afm, 100, 16, 16, 39, 4096);
        var config = GpuKernelSource.Configure(shape, 128, 1 << 20, groups: 528);
        Assert.True(config.LocalBytes <= GpuKernelSource.LocalMemoryCap - GpuKernelSource.LocalMemorySlack);
        Assert.InRange(config.TilePairs, shape.MaxNnz - 1, shape.Pairs - 1);
        Assert.True(config.Tiles > 1);
        Assert.Equal(8, config.RowsPerGroup);
        Assert.Equal(512, config.Groups);
        Assert.Contains("-DAFM_NTILES=" + config.Tiles, config.Defines);

        var small = GpuKernelSource.Configure(shape with { MaxNnz = 10 }, 128, 48 * 1024, groups: 8);
        Assert.Equal(45, small.TilePairs);
        Assert.Equal(1, small.Tiles);
        var forced = GpuKernelSource.Configure(shape with { MaxNnz = 10 }, 128, 48 * 1024, groups: 8, maxTilePairs: 1);
        Assert.Equal(9, forced.TilePairs);
    }

    [Fact]
    public void ShapesBeyondLocalMemoryAreRefusedWithAReason()
    {
        var shape = new ModelShape(ModelKind.Afm, 100, 16, 16, 120, 64);
        var e = Assert.Throws<NotSupportedException>(() => GpuKernelSource.Configure(shape, 128, 48 * 1024, groups: 8));
        Assert.Contains("local memory", e.Message);
    }
}
