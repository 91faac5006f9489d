using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels.Ilgpu;

/// <summary>
/// How the GPU kernels are specialised for one shape on one device: the work-group size every
/// kernel is launched with, the rows each training work-group takes, and the backward pair tiles.
/// </summary>
/// <param name="Shape">The model / batch shape.</param>
/// <param name="WorkGroupSize">Work-items per group (a power of two).</param>
/// <param name="RowsPerGroup">Consecutive rows per training work-group.</param>
/// <param name="TilePairs">Pairs per backward tile (at least MaxNnz - 1: a tile holds whole pair columns).</param>
/// <param name="GlobalAccumulator">The dense-gradient accumulator lives in global memory (the group's slice of the partials) because it does not fit in local memory next to the rest.</param>
internal sealed record GpuKernelConfig(ModelShape Shape, int WorkGroupSize, int RowsPerGroup, int TilePairs, bool GlobalAccumulator = false)
{
    /// <summary>Training work-groups for a full batch: one partial dense gradient each.</summary>
    public int Groups => (Shape.BatchCapacity + RowsPerGroup - 1) / RowsPerGroup;

    /// <summary>Backward tiles for a row of MaxNnz slots (the kernel's recurrence, replayed).</summary>
    public int Tiles
    {
        get
        {
            if (Shape.Kind == ModelKind.Fm) return 0;
            int tiles = 0, m = Shape.MaxNnz;
            for (int j0 = 1; j0 < m; tiles++)
            {
                int pb = j0 * (j0 - 1) / 2, j1 = j0 + 1;
                while (j1 < m && (j1 + 1) * j1 / 2 - pb <= TilePairs) j1++;
                j0 = j1;
            }
            return tiles;
        }
    }

    /// <summary>Shared memory of the training kernel, the largest user, in bytes.</summary>
    public long LocalBytes => 4L * new SharedLayout(Shape.K, Shape.Kind == ModelKind.Fm ? 0 : Shape.T, Shape.MaxNnz, TilePairs, WorkGroupSize, GlobalAccumulator).Total;
}

/// <summary>
/// How the GPU kernels are sized for a shape on a device: the work-group size, the rows each training group takes,
/// the backward tile (whole pair columns that fit the shared memory) and where the dense accumulator lives.
/// </summary>
internal static class KernelPlan
{
    /// <summary>Local memory assumed when a device reports more: CUDA's limit for static shared arrays.</summary>
    public const long LocalMemoryCap = 48 * 1024;

    /// <summary>Local memory left unplanned, for the compiler's own use and alignment.</summary>
    public const long LocalMemorySlack = 256;

    /// <summary>Work-group size tried first; lowered to what the device and the compiled kernels allow.</summary>
    public const int PreferredWorkGroupSize = 128;

    /// <summary>The shape in a message: <c>AFM with 40 non-zeros per row, k = 16, t = 16</c> (FM: no t).</summary>
    internal static string Describe(ModelShape s) =>
        s.Kind == ModelKind.Fm ? $"FM with {s.MaxNnz} non-zeros per row, k = {s.K}" : $"AFM with {s.MaxNnz} non-zeros per row, k = {s.K}, t = {s.T}";

    /// <summary>The largest power of two not above <paramref name="limit"/> nor <see cref="PreferredWorkGroupSize"/>.</summary>
    public static int WorkGroupSize(long limit, int preferred = PreferredWorkGroupSize)
    {
        long cap = Math.Max(1, Math.Min(limit, preferred));
        int wg = 1;
        while (wg * 2L <= cap) wg *= 2;
        return wg;
    }

    /// <summary>Bytes of the training kernel's shared arrays that do not depend on the tile (<see cref="SharedLayout"/>).</summary>
    public static long FixedLocalBytes(ModelShape s, int workGroupSize, bool globalAccumulator = false) =>
        4L * new SharedLayout(s.K, s.Kind == ModelKind.Fm ? 0 : s.T, s.MaxNnz, 0, workGroupSize, globalAccumulator).Total;

    /// <summary>Bytes per pair of a backward tile: relu(z), then dz (t), and dq (k).</summary>
    public static long TileBytesPerPair(ModelShape s) => s.Kind == ModelKind.Fm ? 0 : 4L * (Math.Max(s.T, 1) + s.K);

    /// <summary>
    /// The configuration for <paramref name="shape"/>: about <paramref name="groups"/> training work-groups
    /// of consecutive rows; the tile so that the training kernel fits in <paramref name="localMemoryBytes"/>
    /// (capped at <see cref="LocalMemoryCap"/>): all pairs in one tile when they fit, else as many whole
    /// pair columns as fit. The tile's two arrays add at most 24 bytes of alignment. <paramref name="maxTilePairs"/> (0: none) lowers the tile further, for tests.
    /// </summary>
    /// <exception cref="NotSupportedException">Even a one-column tile does not fit.</exception>
    public static GpuKernelConfig Configure(ModelShape shape, int workGroupSize, long localMemoryBytes, int groups, int maxTilePairs = 0)
    {
        if (workGroupSize < 1 || (workGroupSize & (workGroupSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(workGroupSize), workGroupSize, "must be a power of two");
        int rowsPerGroup = (shape.BatchCapacity + Math.Max(groups, 1) - 1) / Math.Max(groups, 1);
        long budget = Math.Min(localMemoryBytes, LocalMemoryCap) - LocalMemorySlack;
        // The dense-gradient accumulator (t k + 2 t + k + 1 floats) stays in local memory when it fits
        // next to the rest; otherwise (large k and t) it accumulates in the group's slice of partials.
        bool global = FixedLocalBytes(shape, workGroupSize) + (shape.Kind == ModelKind.Fm ? 0 : Math.Max(1, shape.MaxNnz - 1) * TileBytesPerPair(shape)) > budget;
        if (shape.Kind == ModelKind.Fm)
            return new GpuKernelConfig(shape, workGroupSize, rowsPerGroup, 1, global);
        int minTile = Math.Max(1, shape.MaxNnz - 1);
        long room = budget - FixedLocalBytes(shape, workGroupSize, global) - 24;
        long fit = room / TileBytesPerPair(shape);
        if (fit < minTile)
            throw new NotSupportedException(
                $"{Describe(shape)} needs " +
                $"{FixedLocalBytes(shape, workGroupSize, global) + minTile * TileBytesPerPair(shape)} bytes of shared memory per work-group; the device offers {budget}");
        int tile = (int)Math.Min(Math.Max(shape.Pairs, 1), fit);
        if (maxTilePairs > 0) tile = Math.Min(tile, Math.Max(minTile, maxTilePairs));
        return new GpuKernelConfig(shape, workGroupSize, rowsPerGroup, tile, global);
    }
}
