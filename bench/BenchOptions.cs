using System.Globalization;

namespace Afm.Bench;

/// <summary>Command-line options of afm-bench.</summary>
internal sealed class BenchOptions
{
    public const string Usage = """
        afm-bench: training / inference throughput, FLOP rate and memory of the AFM kernels.
        Run in Release: dotnet run -c Release --project bench -- [options]

          --accelerators LIST   cpu,cuda:0,opencl:0,ilgpu-cpu (default: the CPU accelerator and every GPU found)
          --shapes LIST         shape names or prefixes (default: all; see --list)
          --quick               short run: 1 warm-up step, >= 3 timed steps, >= 0.25 s per measurement
          --warmup N            warm-up steps before each measurement, and at least min(1 s, min-seconds / 2) (default 3)
          --min-steps N         timed steps at least (default 10)
          --min-seconds S       timed seconds at least (default 2)
          --threads N           CPU accelerator worker threads (default 0 = all logical cores)
          --isa PATH            CPU vector path: avx512, avx2 or sse (default: the widest the CPU has); reruns the
                                bench with the runtime's DOTNET_EnableAVX512=0 or DOTNET_EnableAVX2=0, which select it
          --movielens DIR       folder with ml-100k-libfm train.libfm (default: found by walking up to shared/data)
          --json PATH           JSON results (default bench/results/bench-<timestamp>.json)
          --clock-ghz X         CPU clock for the peak (default: max "cpu MHz" in /proc/cpuinfo)
          --fma-units N         FMA pipes per core for the peak (default 2)
          --peak-gflops X       CPU peak in GFLOP/s, overriding the computed one
          --gpu-peak-gflops X   fp32 peak of the OpenCL/CUDA devices (default: CUDA's from multiprocessors x fp32 lanes
                                x 2 x clock; OpenCL's unknown, % peak not shown)
          --compare-torch       after each synthetic shape, run bench/reference/afm_torch.py throughput and compare
          --torch-script PATH   the PyTorch reference script (default: bench/reference/afm_torch.py, found by walking up)
          --python PATH         the Python that runs it (default: the first that imports torch of $AFM_PYTHON,
                                python3 on the PATH, /usr/bin/python3)
          --onnx                inference rows/s of the ONNX export under ONNX Runtime next to the native CPU
                                predictor's, per shape (same rows, weights and threads), then exit
          --parse               MB/s of text parsed into blocks (libFM ids, hashed ids, hashed names, Criteo TSV) with one
                                parse thread and with --threads (default all cores), then exit
          --parse-mb N          megabytes of text per generated file for --parse (default 256)
          --list                list shapes and accelerators, then exit
          -h, --help            this text

        The data cache and out-of-core training (docs/data-cache.md, bench/out-of-core.sh):
        """ + "\n" + OutOfCore.Usage;

    public List<string>? Accelerators { get; private set; }
    public List<string>? Shapes { get; private set; }
    public bool Quick { get; private set; }
    public int Warmup { get; private set; } = 3;
    public int MinSteps { get; private set; } = 10;
    public double MinSeconds { get; private set; } = 2;
    public int Threads { get; private set; }
    public string? Isa { get; private set; }
    public string? MovieLens { get; private set; }
    public string? Json { get; private set; }
    public double? ClockGhz { get; private set; }
    public int FmaUnits { get; private set; } = 2;
    public double? PeakGflops { get; private set; }
    public double? GpuPeakGflops { get; private set; }
    public bool CompareTorch { get; private set; }
    public string? TorchScript { get; private set; }
    public string? Python { get; private set; }
    public bool Onnx { get; private set; }
    public bool ParseText { get; private set; }
    public long ParseMegabytes { get; private set; } = 256;
    public bool List { get; private set; }
    public bool Help { get; private set; }

    /// <summary>Parses the arguments; throws <see cref="ArgumentException"/> with a one-line message on a bad one.</summary>
    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        bool warmupSet = false, stepsSet = false, secondsSet = false;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value");
            int Int(int min) => int.TryParse(Value(), CultureInfo.InvariantCulture, out int v) && v >= min ? v
                : throw new ArgumentException($"{a} needs an integer >= {min}, not '{args[i]}'");
            double Real() => double.TryParse(Value(), CultureInfo.InvariantCulture, out double v) && v > 0 && double.IsFinite(v) ? v
                : throw new ArgumentException($"{a} needs a positive number, not '{args[i]}'");
            List<string> Items() => [.. Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
            switch (a)
            {
                case "--accelerators": o.Accelerators = Items(); break;
                case "--shapes": o.Shapes = Items(); break;
                case "--quick": o.Quick = true; break;
                case "--warmup": o.Warmup = Int(0); warmupSet = true; break;
                case "--min-steps": o.MinSteps = Int(1); stepsSet = true; break;
                case "--min-seconds": o.MinSeconds = Real(); secondsSet = true; break;
                case "--threads": o.Threads = Int(0); break;
                case "--isa":
                    o.Isa = Value().ToLowerInvariant();
                    if (o.Isa is not ("avx512" or "avx2" or "sse")) throw new ArgumentException($"--isa needs avx512, avx2 or sse, not '{args[i]}'");
                    break;
                case "--movielens": o.MovieLens = Value(); break;
                case "--json": o.Json = Value(); break;
                case "--clock-ghz": o.ClockGhz = Real(); break;
                case "--fma-units": o.FmaUnits = Int(1); break;
                case "--peak-gflops": o.PeakGflops = Real(); break;
                case "--gpu-peak-gflops": o.GpuPeakGflops = Real(); break;
                case "--compare-torch": o.CompareTorch = true; break;
                case "--torch-script": o.TorchScript = Value(); break;
                case "--python": o.Python = Value(); break;
                case "--onnx": o.Onnx = true; break;
                case "--parse": o.ParseText = true; break;
                case "--parse-mb": o.ParseMegabytes = Int(1); break;
                case "--list": o.List = true; break;
                case "-h" or "--help": o.Help = true; break;
                default: throw new ArgumentException($"unknown option '{a}' (see --help)");
            }
        }
        if (o.Quick)
        {
            if (!warmupSet) o.Warmup = 1;
            if (!stepsSet) o.MinSteps = 3;
            if (!secondsSet) o.MinSeconds = 0.25;
        }
        return o;
    }
}
