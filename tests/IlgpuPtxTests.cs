using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Afm.Gpu.Accelerators.Cuda;
using Afm.Gpu.Accelerators.Ilgpu;
using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Kernels.Ilgpu;
using Afm.Gpu.Model;
using Afm.Gpu.Native.Cuda;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using CudaArchitecture = ILGPU.Runtime.Cuda.CudaArchitecture;
using CudaInstructionSet = ILGPU.Runtime.Cuda.CudaInstructionSet;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>
/// The ILGPU kernels as an H100 would run them, without a GPU: ILGPU's PTX backend compiles the fused kernels for
/// sm_90 with exactly the specialisation the CUDA accelerator uses (constants, group size), Debian's ptxas assembles
/// them and cuobjdump reads the machine code back. Asserted: ptxas accepts every shape, registers within the launch
/// bound, innermost loops free of local memory, and the product loops mostly multiply-adds. A second test prints
/// the side-by-side figures against the C kernels compiled by NVRTC. ptxas and cuobjdump come from Debian's
/// nvidia-cuda-toolkit (CI unpacks them); without them the tests skip, or fail under AFM_REQUIRE_PTXAS=1.
/// </summary>
public sealed class IlgpuPtxTests(ITestOutputHelper output)
{
    public static TheoryData<string> Shapes => [.. s_shapes.Keys];

    // the benchmark's main shape, then the self-test's six
    private static readonly Dictionary<string, ModelShape> s_shapes = new()
    {
        ["AFM m=10 k=64 t=64"] = Afm(10, 64, 64),
        ["AFM m=10 k=16 t=16"] = Afm(10, 16, 16),
        ["AFM m=12 k=8 t=5"] = Afm(12, 8, 5),
        ["AFM m=39 k=16 t=16"] = Afm(39, 16, 16),
        ["AFM m=3 k=64 t=64"] = Afm(3, 64, 64),
        ["AFM m=3 k=128 t=128"] = Afm(3, 128, 128),
        ["FM m=12 k=16"] = new(ModelKind.Fm, 1000, 16, 0, 12, 4096),
    };

    private static ModelShape Afm(int m, int k, int t) => new(ModelKind.Afm, 1000, k, t, m, 4096);

    [Theory]
    [MemberData(nameof(Shapes))]
    public void FusedKernelsAssembleForAnH100WithProductLoopsInRegisters(string name)
    {
        if (!IlgpuPtx.TryFindTools(out var tools, out string? why)) { Skip(why!); return; }
        var shape = s_shapes[name];
        var config = IlgpuPtx.H100Config(shape);
        foreach (string kernel in new[] { nameof(GpuKernels.Train), IlgpuAfmKernels.ForwardName(shape) })
        {
            var c = IlgpuPtx.Compile(tools, config, kernel);
            output.WriteLine($"{name} {kernel}: {c.Report.Registers} registers, {c.Report.SpillStores} B spill stores, " +
                $"{c.Report.StackFrame} B stack, {c.SharedBytes} B dynamic shared, {c.Sass.Count} SASS instructions, {c.Loops.Count} innermost loops");
            foreach (var loop in c.Loops.OrderByDescending(l => l.Count("FFMA")).Take(4)) output.WriteLine($"  {loop}");
            Assert.True(c.Report.Registers <= 65536 / config.WorkGroupSize, $"{kernel}: {c.Report.Registers} registers exceed the launch bound");
            Assert.True(c.SharedBytes <= GpuKernelSource.LocalMemoryCap, $"{kernel}: {c.SharedBytes} B of shared memory");
            foreach (var loop in c.Loops)
                Assert.True(loop.Count("LDL") + loop.Count("STL") == 0, $"{kernel}: local-memory traffic in an innermost loop: {loop}");
            if (kernel == nameof(GpuKernels.Train) && shape.K >= 16 && shape.Kind == ModelKind.Afm)
            {
                var products = c.Loops.Where(l => l.Count("FFMA") >= 4).ToList();
                Assert.True(products.Count >= 2, $"expected the z, dW and dq products among the innermost loops, found {products.Count}");
                var heaviest = products.MaxBy(l => l.Count("FFMA"))!;
                Assert.True(heaviest.Count("FFMA") * 3 >= heaviest.Total, $"multiply-adds are under a third of the largest product loop: {heaviest}");
            }
        }
    }

    /// <summary>
    /// The ILGPU fused kernel next to the C one (NVRTC, same shape, tile and group) on every shape: registers, spills,
    /// shared memory, SASS instructions and, in the innermost loops, multiply-adds and instructions per multiply-add.
    /// Printed for the record; the asserted gate is that both compile.
    /// </summary>
    [Fact]
    public void SideBySideWithTheNvrtcKernels()
    {
        if (!IlgpuPtx.TryFindTools(out var tools, out string? why)) { Skip(why!); return; }
        if (!NvrtcCompiler.TryLoad(out var nvrtc, out string? nvrtcWhy))
        {
            Assert.False(Environment.GetEnvironmentVariable("AFM_REQUIRE_NVRTC") == "1", $"AFM_REQUIRE_NVRTC=1 but {nvrtcWhy}");
            output.WriteLine($"SKIP: no NVRTC: {nvrtcWhy}");
            return;
        }
        var table = new StringBuilder();
        table.AppendLine("| shape | kernel | registers | spill B | shared B | SASS instr. | loop instr. | loop FFMA | instr./FFMA in loops |");
        table.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var (name, shape) in s_shapes)
        {
            var config = CudaAccelerator.Configure(shape, CudaTestDevice.H100);
            var nv = nvrtc.Compile(GpuKernelSource.Text, CudaAccelerator.ProgramName, 9, 0, [.. CudaAccelerator.CompileOptions(config), "-Xptxas", "-v"]);
            var nvReport = PtxasReport.Parse(nv.Log)[GpuKernelSource.ForwardBackward];
            var nvSass = Sass.Disassemble(tools.Cuobjdump, nv.Image, GpuKernelSource.ForwardBackward);
            var il = IlgpuPtx.Compile(tools, IlgpuPtx.H100Config(shape), nameof(GpuKernels.Train));
            table.AppendLine(Row(name, "C / NVRTC", nvReport, (int)config.LocalBytes, nvSass, Sass.InnermostLoops(nvSass)));
            table.AppendLine(Row(name, "C# / ILGPU", il.Report, il.SharedBytes, il.Sass, il.Loops));
        }
        output.WriteLine(table.ToString());
    }

    private static string Row(string shape, string kernel, PtxasKernel r, int shared, List<(int, string)> sass, List<SassLoop> loops)
    {
        int instr = loops.Sum(l => l.Total), ffma = loops.Sum(l => l.Count("FFMA"));
        string per = ffma == 0 ? "-" : (instr / (double)ffma).ToString("F2", CultureInfo.InvariantCulture);
        return $"| {shape} | {kernel} | {r.Registers} | {r.SpillStores} | {shared} | {sass.Count} | {instr} | {ffma} | {per} |";
    }

    private void Skip(string why)
    {
        Assert.False(Environment.GetEnvironmentVariable("AFM_REQUIRE_PTXAS") == "1", $"AFM_REQUIRE_PTXAS=1 but {why}");
        output.WriteLine($"SKIP: {why}");
    }
}

/// <summary>ptxas and cuobjdump found on this machine.</summary>
internal sealed record CudaTools(string Ptxas, string Cuobjdump);

/// <summary>One ILGPU kernel compiled offline: PTX, ptxas's report, the machine code and its innermost loops.</summary>
internal sealed record IlgpuCompiled(string Ptx, PtxasKernel Report, int SharedBytes, List<(int Address, string Op)> Sass, List<SassLoop> Loops);

/// <summary>Compiles the ILGPU kernels to PTX without a GPU and assembles them with ptxas.</summary>
internal static partial class IlgpuPtx
{
    private static readonly Lazy<Context> s_context = new(() =>
        Context.Create(b => b.EnableAlgorithms().Optimize(OptimizationLevel.O2).Inlining(InliningMode.Aggressive)));

    /// <summary>The sizes the ILGPU CUDA accelerator picks on an H100: the C kernels' group size and groups, ILGPU's tile.</summary>
    public static GpuKernelConfig H100Config(ModelShape shape)
    {
        var c = CudaAccelerator.Configure(shape, CudaTestDevice.H100);
        return IlgpuAfmKernels.Plan(shape, c.WorkGroupSize, CudaTestDevice.H100.SharedMemoryPerBlock, c.Groups);
    }

    /// <summary>ptxas (AFM_PTXAS, beside cuobjdump, the PATH or /usr/local/cuda/bin) and cuobjdump.</summary>
    public static bool TryFindTools(out CudaTools tools, out string? why)
    {
        tools = null!;
        if (!Sass.TryFindCuobjdump(out string? cuobjdump, out why)) return false;
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("AFM_PTXAS") is { Length: > 0 } env) candidates.Add(env);
        candidates.Add(Path.Combine(Path.GetDirectoryName(cuobjdump!)!, "ptxas"));
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            candidates.Add(Path.Combine(dir, "ptxas"));
        candidates.Add("/usr/local/cuda/bin/ptxas");
        string? ptxas = candidates.FirstOrDefault(File.Exists);
        if (ptxas is null)
        {
            why = $"no ptxas (looked at {string.Join(", ", candidates.Distinct())}; set AFM_PTXAS)";
            return false;
        }
        tools = new CudaTools(ptxas, cuobjdump!);
        return true;
    }

    /// <summary>
    /// PTX of kernel <paramref name="kernel"/> of <see cref="GpuKernels"/> for sm_90 and PTX ISA 7.8 (what ptxas 11.8
    /// reads), specialised as the CUDA accelerator specialises it for <paramref name="config"/>.
    /// </summary>
    public static string Ptx(GpuKernelConfig config, string kernel)
    {
        var method = IlgpuAfmKernels.KernelMethod(kernel, IlgpuAfmKernels.ShapeType(config));
        lock (s_context)
        {
            var backend = new PTXBackend(s_context.Value, CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, null!);
            var compiled = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), IlgpuAfmKernels.Specialization(config));
            return compiled.PTXAssembly;
        }
    }

    public static IlgpuCompiled Compile(CudaTools tools, GpuKernelConfig config, string kernel)
    {
        string ptx = Ptx(config, kernel);
        string entry = Entry().Match(ptx) is { Success: true } m ? m.Groups[1].Value : throw new InvalidOperationException("no .entry in ILGPU's PTX");
        string dir = Path.Combine(Path.GetTempPath(), $"afm-ptx-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string ptxFile = Path.Combine(dir, "k.ptx"), cubin = Path.Combine(dir, "k.cubin");
            File.WriteAllText(ptxFile, ptx);
            var start = new ProcessStartInfo(tools.Ptxas) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in new[] { "-arch=sm_90", "-v", ptxFile, "-o", cubin }) start.ArgumentList.Add(a);
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            string log = process.StandardError.ReadToEnd();
            process.WaitForExit();
            log += stdout.Result;
            Assert.True(process.ExitCode == 0, $"ptxas rejected ILGPU's PTX for {kernel}: {log}");
            Assert.DoesNotContain("warning", log, StringComparison.OrdinalIgnoreCase);
            var report = PtxasReport.Parse(log)[entry];
            var sass = Sass.Disassemble(tools.Cuobjdump, File.ReadAllBytes(cubin), entry);
            int shared = 4 * IlgpuAfmKernels.Layout(config).Total;
            return new IlgpuCompiled(ptx, report, shared, sass, Sass.InnermostLoops(sass));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [GeneratedRegex(@"\.entry\s+(\w+)")]
    private static partial Regex Entry();
}
