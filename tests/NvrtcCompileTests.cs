using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Afm.Gpu.Accelerators.Cuda;
using Afm.Gpu.Kernels;
using Afm.Gpu.Kernels.Gpu;
using Afm.Gpu.Model;
using Afm.Gpu.Native.Cuda;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>
/// The real kernel source through a real NVRTC: compiles every shape the self-test and the benchmark use for an
/// H100 (sm_90 cubin, which runs ptxas), an A100 and a device newer than the compiler (PTX), and checks ptxas's
/// own account of each kernel: no warning, the five entries, at most a few spilled scalars in the fused kernels for
/// k up to 64, and shared memory equal to the arithmetic that sizes the tiles. NVRTC needs no
/// GPU, so CI runs these (Debian's libnvrtc); elsewhere they skip with a note unless AFM_REQUIRE_NVRTC=1.
/// </summary>
public sealed partial class NvrtcCompileTests(ITestOutputHelper output)
{
    public static TheoryData<string> Shapes => [.. s_shapes.Keys];

    private static readonly Dictionary<string, ModelShape> s_shapes = new()
    {
        // the benchmark's shapes
        ["AFM m=10 k=64 t=64"] = Afm(10, 64, 64),
        ["AFM m=10 k=16 t=16"] = Afm(10, 16, 16),
        ["AFM m=39 k=16 t=16"] = Afm(39, 16, 16),
        ["AFM m=3 k=256 t=256"] = Afm(3, 256, 256),
        ["FM m=10 k=64"] = new(ModelKind.Fm, 1000, 64, 0, 10, 4096),
        // the self-test's other shapes
        ["AFM m=12 k=8 t=5"] = Afm(12, 8, 5),
        ["AFM m=3 k=64 t=64"] = Afm(3, 64, 64),
        ["AFM m=3 k=128 t=128"] = Afm(3, 128, 128),
        ["FM m=12 k=16"] = new(ModelKind.Fm, 1000, 16, 0, 12, 4096),
        // MovieLens-100k as libFM files give it (user, item and a few side features)
        ["AFM m=24 k=64 t=64"] = Afm(24, 64, 64),
    };

    private static ModelShape Afm(int m, int k, int t) => new(ModelKind.Afm, 1000, k, t, m, 4096);

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryShapeCompilesForAnH100WithoutWarningOrLargeSpill(string name)
    {
        if (!TryLoad(out var nvrtc)) return;
        var shape = s_shapes[name];
        var config = CudaAccelerator.Configure(shape, CudaTestDevice.H100);
        var result = nvrtc.Compile(GpuKernelSource.Text, CudaAccelerator.ProgramName, 9, 0,
            [.. CudaAccelerator.CompileOptions(config), "-Xptxas", "-v"]);
        output.WriteLine($"{name}: {result.Target}, block {config.WorkGroupSize}, tile {config.TilePairs} pairs, {config.RowsPerGroup} rows/group");
        output.WriteLine(result.Log);

        Assert.True(result.IsCubin);
        Assert.Equal("sm_90", result.Target);
        Assert.True(result.Image.AsSpan().StartsWith("\u007fELF"u8), "a cubin is an ELF image");
        Assert.DoesNotMatch(WarningPattern(), result.Log);

        var kernels = PtxasReport.Parse(result.Log);
        Assert.Equal(GpuKernelSource.KernelNames.Order(), kernels.Keys.Order());
        foreach (var (kernel, r) in kernels)
        {
            Assert.True(r.Registers <= 255, $"{kernel}: {r.Registers} registers");
            Assert.True(r.SharedBytes <= GpuKernelSource.LocalMemoryCap, $"{kernel}: {r.SharedBytes} bytes of shared memory");
        }

        var fused = kernels["afm_forward_backward"];
        // The tile arithmetic must agree with what the compiler lays out (alignment padding aside).
        Assert.InRange(fused.SharedBytes, config.LocalBytes - 64, config.LocalBytes);
        // ptxas may keep a few loop-invariant scalars on the stack to save registers (reloaded once per row); a
        // spilled per-pair array (q or dz, K or T floats per work-item, used in the innermost loops) would show as
        // 4 K bytes or more. The limit is half of that.
        if (shape.K <= 64)
        {
            int limit = 2 * shape.K;
            Assert.True(fused.SpillStores <= limit, $"afm_forward_backward spills {fused.SpillStores} bytes (limit {limit})");
            Assert.True(kernels["afm_forward"].SpillStores <= limit, $"afm_forward spills {kernels["afm_forward"].SpillStores} bytes (limit {limit})");
        }
    }

    [Theory]
    [InlineData(8, 0, "sm_80", true)]    // A100: a cubin for its own architecture
    [InlineData(8, 9, "sm_89", true)]    // L4 / RTX 40
    [InlineData(99, 0, null, false)]     // a device newer than any compiler: PTX for the best supported, JIT by the driver
    public void TheTargetFollowsTheDevice(int major, int minor, string? expected, bool cubin)
    {
        if (!TryLoad(out var nvrtc)) return;
        var config = CudaAccelerator.Configure(s_shapes["AFM m=10 k=16 t=16"], CudaTestDevice.H100);
        var result = nvrtc.Compile(GpuKernelSource.Text, CudaAccelerator.ProgramName, major, minor, CudaAccelerator.CompileOptions(config));
        output.WriteLine($"compute capability {major}.{minor} -> {result.Target} ({result.Image.Length} bytes)");
        Assert.Equal(cubin, result.IsCubin);
        if (expected is not null) Assert.Equal(expected, result.Target);
        if (!cubin)
        {
            Assert.Equal($"compute_{nvrtc.SupportedArchitectures[^1]}", result.Target);
            string ptx = Encoding.ASCII.GetString(result.Image).TrimEnd('\0');
            Assert.Equal(0, result.Image[^1]); // cuModuleLoadData reads PTX up to its NUL
            foreach (string kernel in GpuKernelSource.KernelNames)
                Assert.Contains($".visible .entry {kernel}(", ptx); // extern "C": names the driver can look up
        }
    }

    [Fact]
    public void TheCacheServesTheSecondCompileAndSurvivesACorruptEntry()
    {
        if (!TryLoad(out var nvrtc)) return;
        string dir = Path.Combine(Path.GetTempPath(), "afm-nvrtc-cache-" + Guid.NewGuid().ToString("N"));
        try
        {
            var cache = new KernelCache(dir);
            var options = CudaAccelerator.CompileOptions(CudaAccelerator.Configure(s_shapes["AFM m=12 k=8 t=5"], CudaTestDevice.H100));
            byte[] first = nvrtc.CompileCached(cache, GpuKernelSource.Text, CudaAccelerator.ProgramName, 9, 0, options);
            var entry = Assert.Single(Directory.GetFiles(dir));
            DateTime written = File.GetLastWriteTimeUtc(entry);

            byte[] second = nvrtc.CompileCached(cache, GpuKernelSource.Text, CudaAccelerator.ProgramName, 9, 0, options);
            Assert.Equal(first, second);
            Assert.Equal(written, File.GetLastWriteTimeUtc(entry)); // read, not rewritten

            var bytes = File.ReadAllBytes(entry);
            bytes[bytes.Length / 2] ^= 0x5A;
            File.WriteAllBytes(entry, bytes);
            byte[] third = nvrtc.CompileCached(cache, GpuKernelSource.Text, CudaAccelerator.ProgramName, 9, 0, options);
            Assert.Equal(first, third); // recompiled: NVRTC is deterministic for the same input
            Assert.True(cache.TryGet(Path.GetFileNameWithoutExtension(entry), out var repaired));
            Assert.Equal(first, repaired); // and the entry replaced
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ACompileErrorCarriesTheStatusNameAndTheLog()
    {
        if (!TryLoad(out var nvrtc)) return;
        const string broken = "extern \"C\" __global__ void k(float* x) { x[0] = undeclared_name; }\n";
        var e = Assert.Throws<NvrtcException>(() => nvrtc.Compile(broken, "broken.cu", 9, 0));
        output.WriteLine(e.Message);
        Assert.Equal("nvrtcCompileProgram", e.Call);
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.StatusName);
        Assert.Contains("undeclared_name", e.Log);
        Assert.Contains("broken.cu", e.Log);
        Assert.StartsWith("nvrtcCompileProgram failed: NVRTC_ERROR_COMPILATION (6)", e.Message);
        Assert.Contains("undeclared_name", e.Message);
    }

    [Fact]
    public void AnUnknownOptionIsNamedInTheError()
    {
        if (!TryLoad(out var nvrtc)) return;
        var e = Assert.Throws<NvrtcException>(() => nvrtc.Compile("extern \"C\" __global__ void k() {}", "k.cu", 9, 0, ["--no-such-option"]));
        output.WriteLine(e.Message);
        Assert.Equal("NVRTC_ERROR_INVALID_OPTION", e.StatusName);
    }

    /// <summary>
    /// The machine code of the fused kernel, read back with cuobjdump: its innermost loops (the z = W q, dW and dq
    /// products run there) keep everything in registers and shared memory, and the big ones are mostly multiply-adds.
    /// A per-pair array spilled to local memory, or W read one float per multiply-add, fails here long before any
    /// GPU shows it.
    /// </summary>
    [Theory]
    [InlineData("AFM m=10 k=64 t=64")]
    [InlineData("AFM m=10 k=16 t=16")]
    [InlineData("AFM m=39 k=16 t=16")]
    [InlineData("AFM m=24 k=64 t=64")]
    [InlineData("AFM m=3 k=64 t=64")]
    public void TheFusedKernelsInnermostLoopsAreMultiplyAddsFromRegistersAndSharedMemory(string name)
    {
        if (!TryLoad(out var nvrtc)) return;
        if (!Sass.TryFindCuobjdump(out string? cuobjdump, out string? why))
        {
            Assert.False(Environment.GetEnvironmentVariable("AFM_REQUIRE_CUOBJDUMP") == "1", $"AFM_REQUIRE_CUOBJDUMP=1 but {why}");
            output.WriteLine($"SKIP: {why}");
            return;
        }
        var shape = s_shapes[name];
        var config = CudaAccelerator.Configure(shape, CudaTestDevice.H100);
        var result = nvrtc.Compile(GpuKernelSource.Text, CudaAccelerator.ProgramName, 9, 0, CudaAccelerator.CompileOptions(config));
        var loops = Sass.InnermostLoops(Sass.Disassemble(cuobjdump!, result.Image, GpuKernelSource.ForwardBackward));
        output.WriteLine($"{name}, sm_90, tile {config.TilePairs} pairs: {loops.Count} innermost loops in {GpuKernelSource.ForwardBackward}");
        foreach (var loop in loops.OrderByDescending(l => l.Count("FFMA")).Take(8))
            output.WriteLine($"  {loop}");

        Assert.NotEmpty(loops);
        foreach (var loop in loops)
            Assert.True(loop.Count("LDL") + loop.Count("STL") == 0, $"local-memory traffic in an innermost loop: {loop}");
        // the products: every innermost loop with 64 multiply-adds or more
        var products = loops.Where(l => l.Count("FFMA") >= 64).ToList();
        Assert.True(products.Count >= 2, $"expected the dW and dq products among the innermost loops, found {products.Count}");
        foreach (var loop in products)
            Assert.True(loop.Count("FFMA") * 2 >= loop.Total, $"multiply-adds are under half of a product loop: {loop}");
        if (shape.K % 4 == 0 && shape.T % 4 == 0)
        {
            Assert.Contains(products, l => l.Count("LDG.E.128") > 0);  // rows of W, four floats a read
            Assert.Contains(products, l => l.Count("LDS.128") > 0);    // rows of dz, four floats a read
        }
    }

    /// <summary>A real NVRTC, or a skip note (a failure when AFM_REQUIRE_NVRTC=1).</summary>
    private bool TryLoad(out NvrtcCompiler nvrtc)
    {
        if (NvrtcCompiler.TryLoad(out var loaded, out string? why))
        {
            nvrtc = loaded;
            output.WriteLine($"NVRTC {nvrtc.Version} from {nvrtc.LibraryPath}; architectures {string.Join(' ', nvrtc.SupportedArchitectures)}");
            return true;
        }
        nvrtc = null!;
        Assert.False(Environment.GetEnvironmentVariable("AFM_REQUIRE_NVRTC") == "1", $"AFM_REQUIRE_NVRTC=1 but NVRTC could not be loaded: {why}");
        output.WriteLine($"SKIP: no NVRTC here: {why}");
        return false;
    }

    [GeneratedRegex(@"\bwarning\b", RegexOptions.IgnoreCase)]
    private static partial Regex WarningPattern();
}

/// <summary>What ptxas reports for one kernel under <c>-Xptxas -v</c>.</summary>
internal sealed record PtxasKernel(int Registers, int SharedBytes, int StackFrame, int SpillStores, int SpillLoads);

/// <summary>Parses ptxas's verbose report (the NVRTC log of a cubin compile with <c>-Xptxas -v</c>).</summary>
internal static partial class PtxasReport
{
    public static Dictionary<string, PtxasKernel> Parse(string log)
    {
        var result = new Dictionary<string, PtxasKernel>(StringComparer.Ordinal);
        string? current = null;
        int stack = 0, spillStores = 0, spillLoads = 0;
        foreach (string line in log.Split('\n'))
        {
            if (Entry().Match(line) is { Success: true } e)
            {
                current = e.Groups[1].Value;
                (stack, spillStores, spillLoads) = (0, 0, 0);
            }
            else if (current is not null && Frame().Match(line) is { Success: true } f)
            {
                stack = Int(f.Groups[1]);
                spillStores = Int(f.Groups[2]);
                spillLoads = Int(f.Groups[3]);
            }
            else if (current is not null && Used().Match(line) is { Success: true } u)
            {
                int smem = Smem().Match(line) is { Success: true } s ? Int(s.Groups[1]) : 0;
                result[current] = new PtxasKernel(Int(u.Groups[1]), smem, stack, spillStores, spillLoads);
                current = null;
            }
        }
        return result;
    }

    private static int Int(Group g) => int.Parse(g.Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"Compiling entry function '(\w+)'")]
    private static partial Regex Entry();

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex Frame();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex Used();

    [GeneratedRegex(@"(\d+) bytes smem")]
    private static partial Regex Smem();
}

/// <summary>One loop of a kernel's machine code: the instructions from a backward branch's target to the branch.</summary>
internal sealed record SassLoop(int Start, int End, IReadOnlyList<string> Ops)
{
    public int Total => Ops.Count;

    /// <summary>Instructions whose opcode starts with <paramref name="prefix"/> (FFMA, LDL, LDG.E.128, ...).</summary>
    public int Count(string prefix) => Ops.Count(o => o.StartsWith(prefix, StringComparison.Ordinal));

    public override string ToString()
    {
        var top = Ops.GroupBy(o => o).OrderByDescending(g => g.Count()).Take(8).Select(g => $"{g.Key} {g.Count()}");
        return $"0x{Start:x5}-0x{End:x5}: {Total} instructions, FFMA {Count("FFMA")} ({100.0 * Count("FFMA") / Total:F0}%): {string.Join(", ", top)}";
    }
}

/// <summary>Reads cuobjdump's SASS listing of a cubin.</summary>
internal static partial class Sass
{
    /// <summary>cuobjdump from AFM_CUOBJDUMP, the PATH or /usr/local/cuda/bin (with nvdisasm, which it runs, beside it or on the PATH).</summary>
    public static bool TryFindCuobjdump(out string? path, out string? why)
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("AFM_CUOBJDUMP") is { Length: > 0 } env) candidates.Add(env);
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            candidates.Add(Path.Combine(dir, "cuobjdump"));
        candidates.Add("/usr/local/cuda/bin/cuobjdump");
        path = candidates.FirstOrDefault(File.Exists);
        why = path is null ? $"no cuobjdump (looked at {string.Join(", ", candidates.Distinct())}; set AFM_CUOBJDUMP)" : null;
        return path is not null;
    }

    /// <summary>The SASS of one kernel of a cubin, as (address, opcode) in order.</summary>
    public static List<(int Address, string Op)> Disassemble(string cuobjdump, byte[] cubin, string kernel)
    {
        string file = Path.Combine(Path.GetTempPath(), $"afm-sass-{Environment.ProcessId}-{Guid.NewGuid():N}.cubin");
        File.WriteAllBytes(file, cubin);
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo(cuobjdump) { RedirectStandardOutput = true, RedirectStandardError = true };
            // cuobjdump runs nvdisasm, which the toolkit keeps next to it
            start.Environment["PATH"] = Path.GetDirectoryName(Path.GetFullPath(cuobjdump)) + ":" + Environment.GetEnvironmentVariable("PATH");
            foreach (string a in new[] { "-sass", "-fun", kernel, file }) start.ArgumentList.Add(a);
            using var process = System.Diagnostics.Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            string text = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"cuobjdump exited with {process.ExitCode}: {stderr.Result}");
            var code = new List<(int, string)>();
            foreach (Match m in Instruction().Matches(text))
                code.Add((int.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture), m.Groups[2].Value));
            Assert.True(code.Count > 0, $"no instructions of {kernel} in cuobjdump's listing");
            return code;
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>Loops (a branch back to an address at or before itself) that hold no other loop.</summary>
    public static List<SassLoop> InnermostLoops(List<(int Address, string Op)> code)
    {
        var spans = new Dictionary<int, int>();
        foreach (var (address, op) in code)
        {
            if (!op.StartsWith("BRA", StringComparison.Ordinal)) continue;
            // the branch's operand follows the opcode in the listing; Instruction() keeps it in Op after a space
            var target = Target().Match(op);
            if (!target.Success) continue;
            int to = int.Parse(target.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (to <= address) spans[to] = Math.Max(spans.GetValueOrDefault(to), address);
        }
        var all = spans.Select(kv => (Start: kv.Key, End: kv.Value)).ToList();
        return all
            .Where(l => !all.Any(o => o != l && o.Start >= l.Start && o.End <= l.End))
            .Select(l => new SassLoop(l.Start, l.End, code.Where(c => c.Address >= l.Start && c.Address <= l.End).Select(c => Opcode(c.Op)).ToList()))
            .ToList();
    }

    private static string Opcode(string instruction) => instruction.Split(' ', 2)[0];

    // "        /*4070*/                   @!P0 LDG.E.128.CONSTANT R44, [R72.64] ;" -> 4070, "LDG.E.128.CONSTANT R44, [R72.64]"
    [GeneratedRegex(@"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][^;]*?)\s*;")]
    private static partial Regex Instruction();

    [GeneratedRegex(@"^BRA\S*\s+(?:`\(\.L_x_\d+\)\s*)?0x([0-9a-f]+)")]
    private static partial Regex Target();
}
