using System.Runtime.InteropServices;

namespace Afm.Gpu.Distributed;

/// <summary>
/// The processes of one data-parallel training job started by Open MPI's <c>mpirun</c>: this process's rank, the
/// number of ranks, its rank on its own machine, and the collectives the trainer exchanges gradients and epoch
/// decisions with. A process not started by <c>mpirun</c> never loads MPI (<see cref="FromEnvironment"/> is null).
/// </summary>
public sealed class MpiCluster : IDisposable
{
    private bool _disposed;

    private MpiCluster(int rank, int size, int localRank, int localSize)
    {
        Rank = rank;
        Size = size;
        LocalRank = localRank;
        LocalSize = Math.Max(1, localSize);
    }

    /// <summary>This process's rank, 0 .. <see cref="Size"/> - 1.</summary>
    public int Rank { get; }

    /// <summary>The number of ranks.</summary>
    public int Size { get; }

    /// <summary>This process's rank among the ranks on its machine (Open MPI's OMPI_COMM_WORLD_LOCAL_RANK).</summary>
    public int LocalRank { get; }

    /// <summary>How many ranks run on this process's machine (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE).</summary>
    public int LocalSize { get; }

    /// <summary>
    /// Threads that merge the gathered gradient lists: this machine's cores shared among its ranks, 1 to 8 (memory
    /// bandwidth, not cores, bounds a merge beyond that).
    /// The merge runs while the rank's accelerator waits for it, so the cores are otherwise idle.
    /// </summary>
    public int MergeThreads => Math.Clamp(Environment.ProcessorCount / LocalSize, 1, 8);

    /// <summary>Whether this is rank 0, which alone prints, evaluates and writes files.</summary>
    public bool IsRoot => Rank == 0;

    /// <summary>Training steps that exchanged gradients.</summary>
    public long Steps { get; private set; }

    /// <summary>Bytes this rank sent in those steps (each rank receives <see cref="Size"/> times as many, its own included).</summary>
    public long BytesSent { get; private set; }

    /// <summary>Of <see cref="BytesSent"/>, the dense gradients, loss and counts.</summary>
    public long DenseBytesSent { get; private set; }

    /// <summary>Whether this process was started by Open MPI's <c>mpirun</c> (OMPI_COMM_WORLD_SIZE is set).</summary>
    public static bool IsLaunched => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is { Length: > 0 };

    /// <summary>
    /// Joins the job when this process was started by <c>mpirun</c> (calls MPI_Init); null otherwise, without
    /// loading MPI. Dispose calls MPI_Finalize.
    /// </summary>
    /// <exception cref="NotSupportedException">Started by an MPI other than Open MPI, or not on Linux.</exception>
    public static MpiCluster? FromEnvironment()
    {
        if (!IsLaunched)
        {
            if (Environment.GetEnvironmentVariable("PMI_SIZE") is { Length: > 0 } && Environment.GetEnvironmentVariable("PMI_SIZE") != "1")
                throw new NotSupportedException("this process was started by an MPI launcher other than Open MPI's mpirun (PMI_SIZE is set); data-parallel training needs Open MPI");
            return null;
        }
        if (!OperatingSystem.IsLinux())
            throw new NotSupportedException("data-parallel training under mpirun needs Linux and Open MPI");
        var (rank, size) = Mpi.Init();
        int local = int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_RANK"), out int l) ? l : 0;
        int localSize = int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out int ls) ? ls : size;
        return new MpiCluster(rank, size, local, localSize);
    }

    /// <summary>
    /// The rows [lo, hi) of a global batch of <paramref name="count"/> rows that this rank trains on:
    /// rank r takes [r count / N, (r + 1) count / N).
    /// </summary>
    public (int Lo, int Hi) ShardOf(int count) => ((int)((long)Rank * count / Size), (int)((long)(Rank + 1) * count / Size));

    /// <summary>
    /// An accelerator selector for this rank: <c>cuda</c> and <c>opencl</c> without an index become the device of
    /// this rank's <see cref="LocalRank"/> (one GPU per rank on a machine of several); any other is kept.
    /// </summary>
    public string DeviceSelector(string selector)
    {
        string s = (selector ?? "auto").Trim().ToLowerInvariant();
        return s is "cuda" or "opencl" ? $"{s}:{LocalRank}" : selector ?? "auto";
    }

    /// <summary>
    /// Opens this rank's accelerator: <paramref name="open"/> with <see cref="DeviceSelector"/>'s selector; when
    /// <c>auto</c> took a GPU, the GPU of the same family of this rank's <see cref="LocalRank"/> instead.
    /// </summary>
    public Accelerators.Accelerator OpenAccelerator(string selector, Func<string, Accelerators.Accelerator> open)
    {
        ArgumentNullException.ThrowIfNull(open);
        string mine = DeviceSelector(selector);
        var acc = open(mine);
        if (LocalRank == 0 || mine.Trim().ToLowerInvariant() is not ("" or "auto") || !acc.Descriptor.IsGpu) return acc;
        string family = Accelerators.AcceleratorDescriptor.FamilyName(acc.Descriptor.Kind);
        acc.Dispose();
        return open($"{family}:{LocalRank}");
    }

    /// <summary>Every rank's <paramref name="send"/> (the same length on all ranks), in rank order.</summary>
    internal void AllGather<T>(ReadOnlySpan<T> send, Span<T> receive) where T : unmanaged =>
        Mpi.AllGather(MemoryMarshal.AsBytes(send), MemoryMarshal.AsBytes(receive));

    /// <summary>Every rank's <paramref name="send"/>, rank i's <paramref name="counts"/>[i] bytes long, in rank order.</summary>
    internal void AllGatherV(ReadOnlySpan<byte> send, Span<byte> receive, int[] counts, int[] offsets) =>
        Mpi.AllGatherV(send, receive, counts, offsets);

    /// <summary>Rank 0's <paramref name="values"/> onto every rank.</summary>
    internal void Broadcast(Span<double> values) => Mpi.Broadcast(values);

    /// <summary>Distinct ids of the merged lists, summed over the steps.</summary>
    public long MergedIds { get; private set; }

    /// <summary>
    /// Time spent exchanging in those steps: from the reduced gradients on the accelerator to the merged list on it
    /// (downloads, the collectives, which include waiting for the slowest rank, the merge and the upload).
    /// </summary>
    public TimeSpan ExchangeTime { get; private set; }

    /// <summary>Counts one step's exchange.</summary>
    internal void CountStep(long denseBytes, long sparseBytes, int mergedIds, TimeSpan time)
    {
        Steps++;
        MergedIds += mergedIds;
        ExchangeTime += time;
        DenseBytesSent += denseBytes;
        BytesSent += denseBytes + sparseBytes;
    }

    /// <summary>Checks that every rank computed the same <paramref name="checksum"/> (e.g. of a model's parameters).</summary>
    /// <exception cref="InvalidOperationException">Some rank's differs; the message names the ranks.</exception>
    internal void CheckIdentical(uint checksum, string what)
    {
        Span<uint> mine = [checksum];
        var all = new uint[Size];
        AllGather<uint>(mine, all);
        var differing = Enumerable.Range(0, Size).Where(r => all[r] != all[0]).ToList();
        if (differing.Count > 0)
            throw new InvalidOperationException($"{what} of rank(s) {string.Join(", ", differing)} differ from rank 0's (CRC-32 {all[0]:x8}); the replicas are out of step");
    }

    /// <summary>
    /// Ends the whole job after a failure on this rank: prints <paramref name="message"/> naming the rank and calls
    /// MPI_Abort, which stops every rank (none is left waiting in a collective). Does not return.
    /// </summary>
    public void Abort(string message, TextWriter stderr, int code = 1)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        // A failure every rank meets alike (a bad input file) is told once: rank 0 ends the job at once, the others a
        // moment later, so that their copy of the message is only seen when rank 0 did not fail.
        if (!IsRoot) Thread.Sleep(1000);
        stderr.WriteLine($"afm-gpu: error: rank {Rank} of {Size}: {message}");
        stderr.Flush();
        Mpi.Abort(code);
        Environment.Exit(code);
    }

    /// <summary>Calls MPI_Finalize.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Mpi.Shutdown();
    }
}
