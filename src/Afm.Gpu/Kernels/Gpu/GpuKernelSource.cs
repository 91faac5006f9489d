using System.Globalization;
using System.Reflection;
using Afm.Gpu.Model;

namespace Afm.Gpu.Kernels.Gpu;

/// <summary>
/// How the GPU kernels are specialised for one shape on one device: the work-group size every
/// kernel is launched with, the rows each training work-group takes, and the backward pair tiles.
/// </summary>
/// <param name="Shape">The model / batch shape.</param>
/// <param name="WorkGroupSize">Work-items per group (a power of two).</param>
/// <param name="RowsPerGroup">Consecutive rows per work-group of afm_forward_backward.</param>
/// <param name="TilePairs">Pairs per backward tile (at least MaxNnz - 1: a tile holds whole pair columns).</param>
/// <param name="GlobalAccumulator">The dense-gradient accumulator lives in global memory (the group's slice of the partials) because it does not fit in local memory next to the rest.</param>
internal sealed record GpuKernelConfig(ModelShape Shape, int WorkGroupSize, int RowsPerGroup, int TilePairs, bool GlobalAccumulator = false)
{
    /// <summary>Work-groups of afm_forward_backward for a full batch: one partial dense gradient each.</summary>
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

    /// <summary>The -D options (one per entry) that specialise the source.</summary>
    public IReadOnlyList<string> Defines
    {
        get
        {
            var s = Shape;
            static string D(string name, int value) => $"-D{name}={value.ToString(CultureInfo.InvariantCulture)}";
            return
            [
                D("AFM_K", s.K), D("AFM_T", s.T), D("AFM_M", s.MaxNnz), D("AFM_P", s.Pairs), D("AFM_DENSE", s.DenseSize),
                D("AFM_WG", WorkGroupSize), D("AFM_TILE", TilePairs), D("AFM_NTILES", Tiles), D("AFM_RPG", RowsPerGroup),
                D("AFM_FM", s.Kind == ModelKind.Fm ? 1 : 0), D("AFM_ACC_GLOBAL", GlobalAccumulator ? 1 : 0),
            ];
        }
    }

    /// <summary>Static local (shared) memory of afm_forward_backward, the largest user, in bytes.</summary>
    public long LocalBytes => GpuKernelSource.FixedLocalBytes(Shape, WorkGroupSize, GlobalAccumulator) + (long)TilePairs * GpuKernelSource.TileBytesPerPair(Shape);
}

/// <summary>
/// The kernel source shared by the OpenCL and CUDA accelerators (afm_common.h + afm_kernels.cu.cl,
/// embedded in the assembly) and the arithmetic that sizes its local memory.
/// </summary>
internal static class GpuKernelSource
{
    /// <summary>Inference kernel: one work-group per row.</summary>
    public const string Forward = "afm_forward";
    /// <summary>Fused training kernel: a fixed number of work-groups, each with its partial dense gradient.</summary>
    public const string ForwardBackward = "afm_forward_backward";
    /// <summary>Sum of the partial dense gradients.</summary>
    public const string ReduceDense = "afm_reduce_dense";
    /// <summary>Embedding-gradient gather and optimizer step per (distinct id, dimension).</summary>
    public const string UpdateSparse = "afm_update_sparse";
    /// <summary>Optimizer step over the dense vector.</summary>
    public const string UpdateDense = "afm_update_dense";

    /// <summary>Every kernel of the program.</summary>
    public static readonly IReadOnlyList<string> KernelNames = [Forward, ForwardBackward, ReduceDense, UpdateSparse, UpdateDense];

    /// <summary>Local memory assumed when a device reports more: CUDA's limit for static shared arrays.</summary>
    public const long LocalMemoryCap = 48 * 1024;

    /// <summary>Local memory left unplanned, for the compiler's own use and alignment.</summary>
    public const long LocalMemorySlack = 256;

    /// <summary>Work-group size tried first; lowered to what the device and the compiled kernels allow.</summary>
    public const int PreferredWorkGroupSize = 128;

    private static readonly Lazy<string> s_text = new(Load);

    /// <summary>The complete program text: the kernels with afm_common.h inlined where it is included.</summary>
    public static string Text => s_text.Value;

    private static string Load()
    {
        string common = Resource("afm_common.h");
        string kernels = Resource("afm_kernels.cu.cl");
        const string include = "#include \"afm_common.h\"";
        if (!kernels.Contains(include, StringComparison.Ordinal))
            throw new InvalidOperationException("afm_kernels.cu.cl no longer includes afm_common.h");
        return kernels.Replace(include, common, StringComparison.Ordinal);
    }

    private static string Resource(string name)
    {
        var asm = typeof(GpuKernelSource).Assembly;
        using var stream = asm.GetManifestResourceStream("Afm.Gpu.Kernels." + name)
            ?? throw new InvalidOperationException($"embedded kernel source {name} is missing from {asm.GetName().Name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>The largest power of two not above <paramref name="limit"/> nor <see cref="PreferredWorkGroupSize"/>.</summary>
    public static int WorkGroupSize(long limit, int preferred = PreferredWorkGroupSize)
    {
        long cap = Math.Max(1, Math.Min(limit, preferred));
        int wg = 1;
        while (wg * 2L <= cap) wg *= 2;
        return wg;
    }

    /// <summary>Bytes of afm_forward_backward's local arrays that do not depend on the tile.</summary>
    public static long FixedLocalBytes(ModelShape s, int workGroupSize, bool globalAccumulator = false)
    {
        long m = s.MaxNnz, k = s.K, red = Math.Max(workGroupSize, s.K), rowStride = s.K | 1;
        long floats = 2 * m + m * rowStride + 2 * k + red + 2 + (globalAccumulator ? 0 : s.DenseSize);
        floats += s.Kind == ModelKind.Fm ? k : m * k + 3L * Math.Max(s.Pairs, 1);
        // AFM: the relu(z) / dz tile is 16-byte aligned for four-float reads (up to 12 bytes of padding)
        return 4 * floats + (s.Kind == ModelKind.Fm ? 0 : 12);
    }

    /// <summary>Bytes per pair of a backward tile: relu(z), then dz (t), and dq (k).</summary>
    public static long TileBytesPerPair(ModelShape s) => s.Kind == ModelKind.Fm ? 0 : 4L * (Math.Max(s.T, 1) + s.K);

    /// <summary>
    /// The configuration for <paramref name="shape"/>: about <paramref name="groups"/> training work-groups
    /// of consecutive rows; the tile so that afm_forward_backward fits in <paramref name="localMemoryBytes"/>
    /// (capped at <see cref="LocalMemoryCap"/>): all pairs in one tile when they fit, else as many whole
    /// pair columns as fit. <paramref name="maxTilePairs"/> (0: none) lowers the tile further, for tests.
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
        long room = budget - FixedLocalBytes(shape, workGroupSize, global);
        long fit = room / TileBytesPerPair(shape);
        if (fit < minTile)
            throw new NotSupportedException(
                $"AFM with {shape.MaxNnz} non-zeros per row, k = {shape.K}, t = {shape.T} needs " +
                $"{FixedLocalBytes(shape, workGroupSize, global) + minTile * TileBytesPerPair(shape)} bytes of local memory per work-group; the device offers {budget}");
        int tile = (int)Math.Min(Math.Max(shape.Pairs, 1), fit);
        if (maxTilePairs > 0) tile = Math.Min(tile, Math.Max(minTile, maxTilePairs));
        return new GpuKernelConfig(shape, workGroupSize, rowsPerGroup, tile, global);
    }
}
