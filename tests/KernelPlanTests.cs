using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Ilgpu;
using Afm.Gpu.Model;

namespace Afm.Gpu.Tests;

/// <summary>The sizing of the GPU kernels' shared memory (no device needed).</summary>
public class KernelPlanTests
{
    [Theory]
    [InlineData(16, 16, 10, false)]
    [InlineData(64, 64, 3, false)]
    [InlineData(128, 128, 3, true)]
    [InlineData(256, 256, 3, true)]
    public void LargeDenseGradientsAccumulateInGlobalMemory(int k, int t, int m, bool global)
    {
        var shape = new ModelShape(ModelKind.Afm, 1000, k, t, m, 4096);
        var config = KernelPlan.Configure(shape, 128, 48 * 1024, 32);
        Assert.Equal(global, config.GlobalAccumulator);
        Assert.True(config.LocalBytes <= 48 * 1024 - KernelPlan.LocalMemorySlack, $"{config.LocalBytes} bytes of shared memory");
    }

    /// <summary>
    /// The forward's z = W q slices: every work-item's share of t is a whole number of the four-t blocks the
    /// vectorised path reads (a slice of 2 of t = 4 once left every score 0 and relu(z) unwritten), the pairs times the
    /// slices fit the group, and short rows on a wide group still get more than one slice where t allows it.
    /// </summary>
    [Fact]
    public void ZSlicesCutTIntoWholeBlocksThatFitTheGroup()
    {
        foreach (int group in new[] { 16, 32, 64, 128, 256 })
            for (int m = 0; m <= 12; m++)
                for (int t = 1; t <= 68; t++)
                    foreach (int unit in new[] { 1, 4 })
                    {
                        if (unit == 4 && t % 4 != 0) continue;
                        int pairs = Math.Max(1, m * (m - 1) / 2);
                        int s = GpuKernels.ZSlices(t, m, tile: pairs, group, unit);
                        Assert.True(s >= 1 && (s & (s - 1)) == 0, $"t = {t}, m = {m}, group {group}: {s} slices");
                        Assert.True(t % (s * unit) == 0, $"t = {t}, m = {m}, group {group}, unit {unit}: {s} slices leave a slice of {(double)t / s} t's");
                        Assert.True(s == 1 || pairs * s <= group, $"t = {t}, m = {m}, group {group}: {s} slices x {pairs} pairs");
                        Assert.Equal(1, GpuKernels.ZSlices(t, m, tile: pairs - 1, group, unit)); // tiled backward: no slices
                    }
        Assert.Equal(8, GpuKernels.ZSlices(64, 5, 10, 128, 4)); // 10 pairs x 8 slices of 8 t's
        Assert.Equal(2, GpuKernels.ZSlices(8, 5, 10, 128, 4));
        Assert.Equal(1, GpuKernels.ZSlices(4, 5, 10, 128, 4));
        Assert.Equal(4, GpuKernels.ZSlices(4, 5, 10, 128, 1));
    }

    [Fact]
    public void WorkGroupSizeIsAPowerOfTwoWithinTheLimit()
    {
        Assert.Equal(128, KernelPlan.WorkGroupSize(4096));
        Assert.Equal(64, KernelPlan.WorkGroupSize(100));
        Assert.Equal(1, KernelPlan.WorkGroupSize(1));
    }

    [Fact]
    public void ManyPairsAreTiledWithinTheLocalMemoryBudget()
    {
        var shape = new ModelShape(ModelKind.Afm, 100, 16, 16, 39, 4096);
        var config = KernelPlan.Configure(shape, 128, 1 << 20, groups: 528);
        Assert.True(config.LocalBytes <= KernelPlan.LocalMemoryCap - KernelPlan.LocalMemorySlack);
        Assert.InRange(config.TilePairs, shape.MaxNnz - 1, shape.Pairs - 1);
        Assert.True(config.Tiles > 1);
        Assert.Equal(8, config.RowsPerGroup);
        Assert.Equal(512, config.Groups);

        var small = KernelPlan.Configure(shape with { MaxNnz = 10 }, 128, 48 * 1024, groups: 8);
        Assert.Equal(45, small.TilePairs);
        Assert.Equal(1, small.Tiles);
        var forced = KernelPlan.Configure(shape with { MaxNnz = 10 }, 128, 48 * 1024, groups: 8, maxTilePairs: 1);
        Assert.Equal(9, forced.TilePairs);
    }

    [Fact]
    public void ShapesBeyondLocalMemoryAreRefusedWithAReason()
    {
        var shape = new ModelShape(ModelKind.Afm, 100, 16, 16, 120, 64);
        var e = Assert.Throws<NotSupportedException>(() => KernelPlan.Configure(shape, 128, 48 * 1024, groups: 8));
        Assert.Contains("shared memory", e.Message);
    }

    /// <summary>The layout the kernels carve is what the plan sized: every array 16-byte aligned, within the budget, none overlapping.</summary>
    [Theory]
    [InlineData(64, 64, 10)]
    [InlineData(16, 16, 39)]
    [InlineData(8, 5, 12)]
    [InlineData(19, 5, 7)]
    [InlineData(16, 0, 12)]
    public void SharedArraysAreAlignedDisjointAndWithinTheBudget(int k, int t, int m)
    {
        var shape = new ModelShape(t == 0 ? ModelKind.Fm : ModelKind.Afm, 1000, k, t, m, 4096);
        var c = KernelPlan.Configure(shape, 128, 48 * 1024, 528);
        var L = new SharedLayout(k, t, m, c.TilePairs, c.WorkGroupSize, c.GlobalAccumulator);
        int[] starts = [L.ZR, L.DQ, L.E, L.DE, L.S, L.A, L.AD, L.U, L.DU, L.ESum, L.Acc, L.X, L.Id, L.Sc, L.Red];
        Assert.All(starts, o => Assert.Equal(0, o % 4));
        Assert.Equal(starts.Order(), starts);
        Assert.True(L.Total * 4L <= 48 * 1024 - KernelPlan.LocalMemorySlack, $"{L.Total * 4} bytes");
        Assert.True(L.E - L.DQ >= (t == 0 ? 0 : c.TilePairs * k) && L.DQ - L.ZR >= (t == 0 ? 0 : c.TilePairs * t));
        Assert.True(L.DE - L.E >= m * SharedLayout.EStride(k, t));
        Assert.True(L.RedLength >= Math.Max(c.WorkGroupSize, k));
    }
}
