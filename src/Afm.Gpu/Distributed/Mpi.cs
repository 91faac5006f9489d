using System.Runtime.InteropServices;

namespace Afm.Gpu.Distributed;

/// <summary>
/// The few MPI calls data-parallel training needs, bound to Open MPI's libmpi at run time. Open MPI's handles
/// (MPI_COMM_WORLD, MPI_BYTE, MPI_DOUBLE) are the addresses of exported globals, found with
/// <see cref="NativeLibrary.GetExport"/>. Every buffer travels as MPI_BYTE (the ranks run the same build on
/// machines of one byte order), except broadcasts of doubles.
/// </summary>
internal static unsafe class Mpi
{
    private const int Success = 0;
    private static nint _lib, _comm, _byte, _double;
    private static delegate* unmanaged<int*, byte***, int> _init;
    private static delegate* unmanaged<int> _finalize;
    private static delegate* unmanaged<nint, int*, int> _commRank, _commSize;
    private static delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> _allgather;
    private static delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, int> _allgatherv;
    private static delegate* unmanaged<void*, int, nint, int, nint, int> _bcast;
    private static delegate* unmanaged<nint, int, int> _abort;

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    /// <summary>Loads libmpi and calls MPI_Init; returns this process's rank and the world's size.</summary>
    /// <exception cref="DllNotFoundException">Open MPI's libmpi cannot be loaded.</exception>
    public static (int Rank, int Size) Init()
    {
        Load();
        // Open MPI would otherwise install handlers for SIGSEGV, SIGBUS and SIGFPE, which the .NET runtime owns (it
        // turns them into NullReferenceException and the like).
        SetEnv("OMPI_MCA_opal_signal", "", 0);
        Check(_init(null, null), "MPI_Init");
        int rank, size;
        Check(_commRank(_comm, &rank), "MPI_Comm_rank");
        Check(_commSize(_comm, &size), "MPI_Comm_size");
        return (rank, size);
    }

    /// <summary>MPI_Finalize.</summary>
    public static void Shutdown() => Check(_finalize(), "MPI_Finalize");

    /// <summary>Every rank's <paramref name="send"/> (the same length on all), in rank order, into <paramref name="receive"/>.</summary>
    public static void AllGather(ReadOnlySpan<byte> send, Span<byte> receive)
    {
        fixed (byte* s = send, r = receive)
            Check(_allgather(s, send.Length, _byte, r, send.Length, _byte, _comm), "MPI_Allgather");
    }

    /// <summary>Every rank's <paramref name="send"/> (rank i's is <paramref name="counts"/>[i] bytes), in rank order, into <paramref name="receive"/>.</summary>
    public static void AllGatherV(ReadOnlySpan<byte> send, Span<byte> receive, int[] counts, int[] offsets)
    {
        fixed (byte* s = send, r = receive)
        fixed (int* c = counts, o = offsets)
            Check(_allgatherv(s, send.Length, _byte, r, c, o, _byte, _comm), "MPI_Allgatherv");
    }

    /// <summary>Rank 0's <paramref name="values"/> onto every rank.</summary>
    public static void Broadcast(Span<double> values)
    {
        fixed (double* v = values)
            Check(_bcast(v, values.Length, _double, 0, _comm), "MPI_Bcast");
    }

    /// <summary>MPI_Abort: ends every rank of the job with <paramref name="code"/>.</summary>
    public static void Abort(int code) => _abort(_comm, code);

    private static void Load()
    {
        if (_lib != 0) return;
        _lib = Open();
        _comm = NativeLibrary.GetExport(_lib, "ompi_mpi_comm_world");
        _byte = NativeLibrary.GetExport(_lib, "ompi_mpi_byte");
        _double = NativeLibrary.GetExport(_lib, "ompi_mpi_double");
        _init = (delegate* unmanaged<int*, byte***, int>)NativeLibrary.GetExport(_lib, "MPI_Init");
        _finalize = (delegate* unmanaged<int>)NativeLibrary.GetExport(_lib, "MPI_Finalize");
        _commRank = (delegate* unmanaged<nint, int*, int>)NativeLibrary.GetExport(_lib, "MPI_Comm_rank");
        _commSize = (delegate* unmanaged<nint, int*, int>)NativeLibrary.GetExport(_lib, "MPI_Comm_size");
        _allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)NativeLibrary.GetExport(_lib, "MPI_Allgather");
        _allgatherv = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, int>)NativeLibrary.GetExport(_lib, "MPI_Allgatherv");
        _bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)NativeLibrary.GetExport(_lib, "MPI_Bcast");
        _abort = (delegate* unmanaged<nint, int, int>)NativeLibrary.GetExport(_lib, "MPI_Abort");
    }

    private static nint Open()
    {
        // RTLD_GLOBAL: Open MPI's components, which it loads as plug-ins, resolve libmpi's symbols globally.
        foreach (string name in new[] { "libmpi.so.40", "libmpi.so" })
        {
            nint h = DlOpen(name, RtldNow | RtldGlobal);
            if (h != 0) return h;
        }
        throw new DllNotFoundException("this process was started by mpirun but Open MPI's libmpi.so.40 cannot be loaded (install openmpi-bin and libopenmpi-dev)");
    }

    private const int RtldNow = 2, RtldGlobal = 0x100;

    [DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint DlOpen(string file, int mode);

    private static void Check(int rc, string call)
    {
        if (rc != Success) throw new InvalidOperationException($"{call} failed with MPI error {rc}");
    }
}
