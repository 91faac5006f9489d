using System.Globalization;
using System.Runtime.InteropServices;
using Afm.Bench;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
if (args.Length > 0 && args[0] == "out-of-core") return OutOfCore.Run(args[1..]);
if (args.Length > 0 && args[0] == "merge") return MergeBench.Run(args[1..]);
BenchOptions o;
try
{
    o = BenchOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"afm-bench: {e.Message}");
    return 2;
}
if (o.Help)
{
    Console.WriteLine(BenchOptions.Usage);
    return 0;
}

if (o.Isa is not null)
{
    // The runtime reads its instruction-set switches at start, so a narrower path needs a fresh process.
    var want = o.Isa switch { "avx512" => CpuSimdPath.Avx512, "avx2" => CpuSimdPath.Avx2, _ => CpuSimdPath.Sse };
    if (CpuSimd.Path != want)
    {
        if (Environment.GetEnvironmentVariable("AFM_BENCH_ISA_CHILD") is not null || want == CpuSimdPath.Avx512)
        {
            Console.Error.WriteLine($"afm-bench: --isa {o.Isa}: this process runs {CpuSimd.Name(CpuSimd.Path)} (the CPU or the runtime's switches do not allow {CpuSimd.Name(want)})");
            return 2;
        }
        var psi = new System.Diagnostics.ProcessStartInfo(Environment.ProcessPath!) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet") psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, typeof(BenchOptions).Assembly.GetName().Name + ".dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        psi.Environment["AFM_BENCH_ISA_CHILD"] = "1";
        psi.Environment["DOTNET_EnableAVX512"] = "0";
        psi.Environment["DOTNET_EnableAVX512F"] = "0";
        if (want == CpuSimdPath.Sse) psi.Environment["DOTNET_EnableAVX2"] = "0";
        using var child = System.Diagnostics.Process.Start(psi)!;
        child.WaitForExit();
        return child.ExitCode;
    }
}

var notes = new List<string>();
void Note(string line)
{
    notes.Add(line);
    Console.Error.WriteLine($"note: {line}");
}
#if DEBUG
Note("Debug build: figures are not representative; run with -c Release");
#endif

if (o.ParseText) return ParseBench.Run(o);

var devices = AcceleratorRegistry.Enumerate(notes);
string? movieLens = Paths.MovieLensTrain(o.MovieLens);
if (o.MovieLens is not null && movieLens is null) Note($"--movielens {o.MovieLens}: no train.libfm there; ml100k shape skipped");
var shapes = BenchShape.All(movieLens);
if (o.Shapes is not null)
{
    var unknown = o.Shapes.Where(s => !shapes.Exists(b => b.Name.StartsWith(s, StringComparison.OrdinalIgnoreCase))).ToList();
    if (unknown.Count > 0)
    {
        Console.Error.WriteLine($"afm-bench: no shape matches {string.Join(", ", unknown)}; shapes: {string.Join(", ", shapes.Select(s => s.Name))}");
        return 2;
    }
    shapes = shapes.FindAll(b => o.Shapes.Exists(s => b.Name.StartsWith(s, StringComparison.OrdinalIgnoreCase)));
}

if (o.Onnx) return OnnxBench.Run(o, shapes);

// Every device by default, except CPU devices that run the GPU kernels (ILGPU's CPU accelerator, OpenCL CPU devices), which only run when named.
var selectors = o.Accelerators ?? [.. devices.Where(d => d.Kind == AcceleratorKind.Cpu || d.IsGpu).Select(d => d.Selector)];
if (o.List)
{
    Console.WriteLine("shapes:");
    foreach (var s in shapes) Console.WriteLine($"  {s.Name,-20} {s.Describe()}");
    Console.WriteLine("accelerators:");
    foreach (var d in devices)
        Console.WriteLine($"  {d.Selector,-10} {d.Name} ({d.Details}){(selectors.Contains(d.Selector) ? "" : "  [only when named]")}");
    foreach (string n in notes) Console.WriteLine($"  {n}");
    return 0;
}

int cpuCores = o.Threads > 0 ? Math.Min(o.Threads, Environment.ProcessorCount) : Environment.ProcessorCount;
var cpuPeak = CpuPeak.Detect(cpuCores, o.FmaUnits, o.ClockGhz, o.PeakGflops);
var accelerators = new List<Accelerator>();
foreach (string sel in selectors)
{
    try
    {
        accelerators.Add(AcceleratorRegistry.Create(sel, out string note, o.Threads));
        Console.Error.WriteLine(note);
    }
    catch (AcceleratorUnavailableException e)
    {
        Note($"{sel} skipped: {e.Message}");
    }
}
if (accelerators.Count == 0)
{
    Console.Error.WriteLine("afm-bench: no accelerator to measure");
    return 1;
}

TorchReference? torch = null;
if (o.CompareTorch)
{
    torch = TorchReference.Find(o.TorchScript, o.Python, out string why);
    if (torch is null) Note(why);
    else Console.Error.WriteLine(why);
}

Console.WriteLine($"afm-bench on {cpuPeak.Model}, {Environment.ProcessorCount} logical cores, {RuntimeInformation.FrameworkDescription}, {RuntimeInformation.OSDescription}");
Console.WriteLine(cpuPeak.Describe());
Console.WriteLine($"CPU kernels: {CpuSimd.Describe(CpuSimd.Path)}");
Console.WriteLine($"load average (1 min) at start: {Runner.LoadAverage():F2}");
Console.WriteLine($"timing: >= {o.Warmup} warm-up steps and >= {Math.Min(1, o.MinSeconds / 2)} s, then >= {o.MinSteps} steps and >= {o.MinSeconds} s; Adagrad, squared loss, no dropout");
Console.WriteLine();

var results = new List<Measurement>();
var comparisons = new List<TorchComparison>();
foreach (var shape in shapes)
{
    SparseDataset data;
    try
    {
        data = shape.Load();
    }
    catch (DataFormatException e)
    {
        Note($"{shape.Name} skipped: {e.Message}");
        continue;
    }
    foreach (var acc in accelerators)
    {
        string sel = acc.Descriptor.Selector;
        Console.Error.Write($"{shape.Name} on {sel} ({shape.Describe()}) ... ");
        try
        {
            double? peak = acc.Descriptor.IsGpu ? o.GpuPeakGflops ?? acc.Descriptor.PeakGflops : cpuPeak.Gflops;
            var m = Runner.Run(acc, shape, data, o, peak);
            results.Add(m);
            Console.Error.WriteLine($"train {Report.Rate(m.Train.SamplesPerSecond)}/s, kernel-only {Report.Rate(m.KernelOnly.SamplesPerSecond)}/s, infer {Report.Rate(m.Infer.SamplesPerSecond)}/s");
            if (m.LaunchPlan.Length > 0) Console.Error.WriteLine($"  {m.LaunchPlan}");
            Console.Error.WriteLine($"  host: HostBatch.Fill for training {Report.Rate(m.HostFillRowsPerSecond)} rows/s on one thread (a ceiling on training rows/s: the trainer builds the next batch while the device runs the current one)");
            if (torch is not null && shape.IsSynthetic)
            {
                // PyTorch on the same CUDA device (its name for it is cuda:N whichever engine drives it here)
                string device = acc.Descriptor.Kind switch
                {
                    AcceleratorKind.Cuda => $"cuda:{acc.Descriptor.Index}",
                    _ => "cpu",
                };
                Console.Error.Write($"  torch {shape.Name} on {device} ... ");
                var t = torch.Run(shape, device, cpuCores, o.MinSteps);
                Console.Error.WriteLine(t.Error ?? $"train {Report.Rate(t.TrainSamplesPerSecond)}/s, infer {Report.Rate(t.InferSamplesPerSecond)}/s");
                comparisons.Add(new TorchComparison(shape.Name, sel, device, m.Train.SamplesPerSecond, m.KernelOnly.SamplesPerSecond,
                    m.Infer.SamplesPerSecond, t.TrainSamplesPerSecond, t.InferSamplesPerSecond, t.Error));
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Console.Error.WriteLine("failed");
            Note($"{shape.Name} on {sel} failed: {e.GetType().Name}: {e.Message}");
        }
    }
}
foreach (var acc in accelerators) acc.Dispose();
double maxLoad = results.Count == 0 ? 0 : results.Max(r => double.IsNaN(r.LoadAverage) ? 0 : r.LoadAverage);
if (maxLoad > 0.5 * Environment.ProcessorCount)
    Note($"the machine was busy (1-min load average up to {maxLoad:F1} on {Environment.ProcessorCount} logical cores): CPU figures are low");

Console.WriteLine();
Report.PrintResults(Console.Out, results);
Console.WriteLine();
Console.WriteLine("train/s: full step (HostBatch.Fill + upload + ForwardBackward + ReduceDense + UpdateSparse + UpdateDense);");
Console.WriteLine("kernel-only/s: the same step on an uploaded batch; infer/s: Forward on an uploaded batch;");
Console.WriteLine("GFLOP/s and % peak: training FLOP x kernel-only rate; device MiB: model + Adagrad state + batch + workspace buffers;");
Console.WriteLine("step % peak: training FLOP x train rate (batch building and upload included); products % peak: the attention");
Console.WriteLine("products' FLOP (6Ptk) over their time inside the CPU kernels, summed over the workers and divided by their number;");
Console.WriteLine("host alloc/step: managed bytes allocated per full training step (all threads).");
Console.WriteLine(Flops.Formula);
var gpuPeaks = accelerators.Where(a => a.Descriptor.IsGpu).Select(a => a.Descriptor.Selector + " " + (
    o.GpuPeakGflops is double given ? $"{given:F0} GFLOP/s (given)"
    : a.Descriptor.PeakGflops is double reported ? $"{reported:F0} GFLOP/s (multiprocessors x fp32 lanes x 2 x clock)"
    : "unknown (--gpu-peak-gflops)")).ToList();
Console.WriteLine(cpuPeak.Describe() + (gpuPeaks.Count > 0 ? "; GPU peak: " + string.Join(", ", gpuPeaks) : ""));
if (comparisons.Count > 0)
{
    Console.WriteLine();
    Console.WriteLine("PyTorch reference (ratio = ours / torch; kernel-only ratio = our kernel-only rate / torch train rate):");
    Report.PrintTorch(Console.Out, comparisons);
}
if (notes.Count > 0)
{
    Console.WriteLine();
    foreach (string n in notes) Console.WriteLine($"note: {n}");
}

string json = o.Json ?? Path.Combine(Paths.RepoRoot(), "bench", "results", $"bench-{DateTime.Now:yyyyMMdd-HHmmss}.json");
var settings = new BenchSettings(o.Warmup, o.MinSteps, o.MinSeconds, o.Quick, cpuCores, [.. selectors], [.. shapes.Select(s => s.Name)]);
var report = new BenchReport(DateTimeOffset.Now, cpuPeak.Model, RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription,
#if DEBUG
    false,
#else
    true,
#endif
    Environment.ProcessorCount, cpuPeak, Flops.Formula, settings, results, comparisons, notes);
Report.WriteJson(json, report);
Console.WriteLine();
Console.WriteLine($"JSON: {json}");
return results.Count > 0 ? 0 : 1;
