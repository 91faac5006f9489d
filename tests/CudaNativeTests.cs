using System.Runtime.InteropServices;
using Afm.Gpu.Native.Cuda;

namespace Afm.Gpu.Tests;

public sealed class CudaNativeTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("afm-cuda-tests-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    // ---- library resolution -------------------------------------------------------------------------

    private static LibraryLoader FailingLoader(List<string>? tried = null) =>
        (string c, out nint h, out string e) =>
        {
            tried?.Add(c);
            h = 0;
            e = $"reason-for-{Path.GetFileName(c)}";
            return false;
        };

    [Fact]
    public void Resolve_Failure_ListsEveryCandidateWithItsReason()
    {
        string[] candidates = ["/a/libnvrtc.so.13", "libnvrtc.so.12", "/b/libnvrtc.so*", "libnvrtc.so.12"];
        var r = LibraryResolver.Resolve("NVRTC", candidates, FailingLoader());

        Assert.False(r.Success);
        Assert.Equal(3, r.Attempts.Count); // duplicate tried once
        var report = r.Describe();
        Assert.Contains("NVRTC could not be loaded", report);
        foreach (var c in candidates)
        {
            Assert.Contains(c, report);
            Assert.Contains($"{c}: reason-for-{Path.GetFileName(c)}", report);
        }
    }

    [Fact]
    public void Resolve_StopsAtFirstSuccess()
    {
        var tried = new List<string>();
        LibraryLoader loader = (string c, out nint h, out string e) =>
        {
            tried.Add(c);
            h = c == "second" ? 42 : 0;
            e = h == 0 ? "nope" : "";
            return h != 0;
        };
        var r = LibraryResolver.Resolve("X", ["first", "second", "third"], loader);

        Assert.True(r.Success);
        Assert.Equal(42, r.Handle);
        Assert.Equal("second", r.LoadedFrom);
        Assert.Equal(["first", "second"], tried);
        Assert.Equal([false, true], r.Attempts.Select(a => a.Loaded));
    }

    [Fact]
    public void Resolve_LoaderThatThrows_IsRecordedAsFailure()
    {
        LibraryLoader loader = (string c, out nint h, out string e) => throw new InvalidOperationException("boom\ndetail");
        var r = LibraryResolver.Resolve("X", ["one"], loader);
        Assert.False(r.Success);
        Assert.Equal("detail", r.Attempts[0].Outcome);
    }

    [Fact]
    public void NativeLoader_MissingAbsolutePath_SaysNotFound()
    {
        Assert.False(LibraryResolver.NativeLoader(Path.Combine(_temp, "libnope.so"), out var h, out var error));
        Assert.Equal(0, h);
        Assert.Equal("not found", error);
    }

    [Fact]
    public void NativeLoader_NotAnElf_ReportsLoaderError()
    {
        var bogus = Path.Combine(_temp, "libbogus.so");
        File.WriteAllText(bogus, "not a library");
        Assert.False(LibraryResolver.NativeLoader(bogus, out _, out var error));
        Assert.Contains("libbogus.so", LibraryResolver.OneLine(error));
    }

    [Fact]
    public void OneLine_KeepsTheDlopenPartOfDotNetMessages()
    {
        var msg = "Unable to load shared library 'libx.so' or one of its dependencies. In order to help ...: \n" +
                  "libx.so: cannot open shared object file: No such file or directory\n";
        Assert.Equal("libx.so: cannot open shared object file: No such file or directory", LibraryResolver.OneLine(msg));
        Assert.Equal("single", LibraryResolver.OneLine("single"));
    }

    [Fact]
    public void NvrtcCandidates_EnvOverrideComesFirst_ThenSonamesInOrder_ThenFolders()
    {
        var c = NvrtcApi.Candidates("/opt/custom/libnvrtc.so.13.9", home: null).ToList();

        Assert.Equal("/opt/custom/libnvrtc.so.13.9", c[0]);
        int s13 = c.IndexOf("libnvrtc.so.13"), s12 = c.IndexOf("libnvrtc.so.12"), s = c.IndexOf("libnvrtc.so");
        Assert.True(0 < s13 && s13 < s12 && s12 < s, string.Join(", ", c));
        int firstFolder = c.FindIndex(x => x.StartsWith("/usr/local/cuda/lib64/", StringComparison.Ordinal));
        Assert.True(firstFolder > s);
        foreach (var prefix in new[] { "/usr/local/cuda-13", "/usr/local/cuda-12", "/usr/lib/x86_64-linux-gnu/", "/usr/lib/python3/dist-packages/nvidia/" })
            Assert.Contains(c, x => x.StartsWith(prefix, StringComparison.Ordinal));
    }

    [Fact]
    public void NvrtcCandidates_WithoutEnv_StartWithSoname()
    {
        Assert.Equal("libnvrtc.so.13", NvrtcApi.Candidates(null, null).First());
        Assert.Equal("libnvrtc.so.13", NvrtcApi.Candidates("  ", null).First());
    }

    [Fact]
    public void NvrtcCandidates_EnvFolder_ExpandsToLibrariesInIt_NewestFirst()
    {
        File.WriteAllText(Path.Combine(_temp, "libnvrtc.so.12"), "");
        File.WriteAllText(Path.Combine(_temp, "libnvrtc.so.13"), "");
        File.WriteAllText(Path.Combine(_temp, "libnvrtc-builtins.so.13"), "");
        var c = NvrtcApi.Candidates(_temp, null).ToList();
        Assert.Equal(Path.Combine(_temp, "libnvrtc.so.13"), c[0]);
        Assert.Equal(Path.Combine(_temp, "libnvrtc.so.12"), c[1]);
        Assert.DoesNotContain(c, x => x.Contains("builtins"));
    }

    [Fact]
    public void NvrtcCandidates_FindPipWheelLayoutsUnderHome()
    {
        var lib = Directory.CreateDirectory(Path.Combine(_temp, ".local/lib/python3.12/site-packages/nvidia/cu13/lib")).FullName;
        File.WriteAllText(Path.Combine(lib, "libnvrtc.so.13"), "");
        Assert.Contains(Path.Combine(lib, "libnvrtc.so.13"), NvrtcApi.Candidates(null, _temp));
    }

    [Fact]
    public void NvrtcResolution_WithFakeLoader_TriesEnvFirstAndReportsAll()
    {
        var tried = new List<string>();
        var r = LibraryResolver.Resolve("NVRTC", NvrtcApi.Candidates("/env/libnvrtc.so", null), FailingLoader(tried));
        Assert.Equal("/env/libnvrtc.so", tried[0]);
        Assert.Equal(tried, r.Attempts.Select(a => a.Candidate));
        var report = r.Describe();
        foreach (var t in tried) Assert.Contains(t, report);
    }

    [Fact]
    public void NvrtcCompiler_TryLoad_NeverThrows_AndExplainsFailure()
    {
        if (NvrtcCompiler.TryLoad(out var compiler, out var reason))
        {
            Assert.True(compiler.VersionMajor >= 11, $"NVRTC {compiler.Version}");
            Assert.NotEmpty(compiler.SupportedArchitectures);
            return;
        }
        Assert.Contains("libnvrtc.so.13", reason);
        Assert.Contains("libnvrtc.so.12", reason);
        Assert.Contains("/usr/local/cuda/lib64/", reason);
        Assert.Contains("AFM_NVRTC_PATH", reason);
        var e = Assert.Throws<DllNotFoundException>(() => NvrtcCompiler.Load());
        Assert.Equal(reason, e.Message);
    }

    // ---- NVRTC target selection and options ----------------------------------------------------------

    private static readonly int[] s_cuda13Archs = [75, 80, 86, 87, 88, 89, 90, 100, 103, 110, 120, 121];

    [Theory]
    [InlineData(9, 0, 90, true)]
    [InlineData(8, 0, 80, true)]
    [InlineData(8, 6, 86, true)]
    [InlineData(8, 9, 89, true)]
    [InlineData(10, 0, 100, true)]
    [InlineData(12, 0, 120, true)]
    [InlineData(13, 0, 121, false)] // newer than anything NVRTC knows: PTX for the driver to JIT
    public void SelectTarget_PicksBestNotAboveDevice(int major, int minor, int arch, bool cubin)
    {
        Assert.Equal((arch, cubin), NvrtcCompiler.SelectTarget(s_cuda13Archs, major, minor));
    }

    [Fact]
    public void SelectTarget_SameMajorLowerMinor_IsCubin_OtherMajor_IsPtx()
    {
        Assert.Equal((80, true), NvrtcCompiler.SelectTarget([75, 80, 90], 8, 6));
        Assert.Equal((90, false), NvrtcCompiler.SelectTarget([75, 80, 90], 10, 0));
    }

    [Fact]
    public void SelectTarget_DeviceOlderThanEverySupportedArch_Throws()
    {
        var e = Assert.Throws<NotSupportedException>(() => NvrtcCompiler.SelectTarget(s_cuda13Archs, 7, 0));
        Assert.Contains("7.0", e.Message);
    }

    [Fact]
    public void BuildOptions_ArchFirst_DefaultsThenExtras()
    {
        Assert.Equal(["-arch=sm_90", "-default-device", "--std=c++17", "--use_fast_math", "-DK=8"],
            NvrtcCompiler.BuildOptions(90, cubin: true, ["--use_fast_math", "-DK=8"]));
        Assert.Equal("-arch=compute_120", NvrtcCompiler.BuildOptions(120, cubin: false, null)[0]);
        Assert.DoesNotContain("--use_fast_math", NvrtcCompiler.BuildOptions(90, true, null));
        Assert.Throws<ArgumentException>(() => NvrtcCompiler.BuildOptions(90, true, ["-arch=sm_80"]));
        Assert.Throws<ArgumentException>(() => NvrtcCompiler.BuildOptions(90, true, ["--gpu-architecture=sm_80"]));
    }

    // ---- kernel cache -------------------------------------------------------------------------------

    private static string Key(string src = "src", string[]? opts = null, string arch = "sm_90", string ver = "13.0") =>
        KernelCache.ComputeKey(src, opts ?? ["-arch=sm_90", "-default-device"], arch, ver);

    [Fact]
    public void CacheKey_IsStableLowercaseSha256Hex()
    {
        var k = Key();
        Assert.Equal(k, Key());
        Assert.Equal(64, k.Length);
        Assert.Matches("^[0-9a-f]{64}$", k);
    }

    [Fact]
    public void CacheKey_ChangesWithEveryInput()
    {
        var keys = new[]
        {
            Key(),
            Key(src: "src "),
            Key(opts: ["-arch=sm_90"]),
            Key(opts: ["-default-device", "-arch=sm_90"]),
            Key(opts: ["-arch=sm_90", "-default-device", "--use_fast_math"]),
            Key(arch: "compute_90"),
            Key(ver: "13.1"),
            // Field boundaries are unambiguous.
            KernelCache.ComputeKey("src", ["ab", "c"], "sm_90", "13.0"),
            KernelCache.ComputeKey("src", ["a", "bc"], "sm_90", "13.0"),
            KernelCache.ComputeKey("src", ["abc"], "sm_90", "13.0"),
        };
        Assert.Equal(keys.Length, keys.Distinct().Count());
    }

    [Fact]
    public void Cache_MissCompilesAndStores_HitDoesNotCompile()
    {
        var cache = new KernelCache(Path.Combine(_temp, "cache"));
        int compiles = 0;
        byte[] Compile() { compiles++; return [1, 2, 3, 4, 5]; }

        Assert.Equal([1, 2, 3, 4, 5], cache.GetOrAdd(Key(), Compile));
        Assert.Equal(1, compiles);
        Assert.True(File.Exists(cache.PathFor(Key())));

        Assert.Equal([1, 2, 3, 4, 5], cache.GetOrAdd(Key(), Compile));
        Assert.Equal([1, 2, 3, 4, 5], new KernelCache(cache.Directory).GetOrAdd(Key(), Compile));
        Assert.Equal(1, compiles);
        Assert.Empty(Directory.GetFiles(cache.Directory, "*.tmp"));
    }

    [Theory]
    [InlineData("flip-payload")]
    [InlineData("flip-header")]
    [InlineData("truncate")]
    [InlineData("extend")]
    [InlineData("empty")]
    public void Cache_CorruptEntry_IsRecompiledAndReplaced(string damage)
    {
        var cache = new KernelCache(Path.Combine(_temp, "cache"));
        var key = Key();
        cache.GetOrAdd(key, () => [10, 20, 30, 40]);
        var path = cache.PathFor(key);
        var bytes = File.ReadAllBytes(path);
        switch (damage)
        {
            case "flip-payload": bytes[^2] ^= 0xFF; break;
            case "flip-header": bytes[0] ^= 0xFF; break;
            case "truncate": bytes = bytes[..^1]; break;
            case "extend": bytes = [.. bytes, 0]; break;
            case "empty": bytes = []; break;
        }
        File.WriteAllBytes(path, bytes);
        Assert.False(cache.TryGet(key, out _));

        int compiles = 0;
        Assert.Equal([7, 7, 7], cache.GetOrAdd(key, () => { compiles++; return [7, 7, 7]; }));
        Assert.Equal(1, compiles);
        Assert.True(cache.TryGet(key, out var repaired));
        Assert.Equal([7, 7, 7], repaired);
    }

    [Fact]
    public void Cache_UnwritableDirectory_StillReturnsCompiledBytes()
    {
        var blocker = Path.Combine(_temp, "not-a-dir");
        File.WriteAllText(blocker, "a file where the cache folder should be");
        var cache = new KernelCache(Path.Combine(blocker, "cache"));
        int compiles = 0;

        Assert.Equal([9], cache.GetOrAdd(Key(), () => { compiles++; return [9]; }));
        Assert.Equal([9], cache.GetOrAdd(Key(), () => { compiles++; return [9]; }));
        Assert.Equal(2, compiles);
        Assert.NotNull(cache.LastError);
    }

    [Fact]
    public void Cache_RejectsKeysThatAreNotPlainFileNames()
    {
        var cache = new KernelCache(_temp);
        Assert.Throws<ArgumentException>(() => cache.GetOrAdd("../escape", () => []));
        Assert.Throws<ArgumentException>(() => cache.GetOrAdd("", () => []));
    }

    [Fact]
    public void Cache_DefaultDirectory_Precedence()
    {
        Dictionary<string, string?> env = new() { ["AFM_GPU_CACHE_DIR"] = "/explicit", ["XDG_CACHE_HOME"] = "/xdg" };
        string? Get(string name) => env.GetValueOrDefault(name);

        Assert.Equal("/explicit", KernelCache.DefaultDirectory(Get, "/home/u"));
        env["AFM_GPU_CACHE_DIR"] = "";
        Assert.Equal("/xdg/afm-gpu", KernelCache.DefaultDirectory(Get, "/home/u"));
        env.Remove("XDG_CACHE_HOME");
        Assert.Equal("/home/u/.cache/afm-gpu", KernelCache.DefaultDirectory(Get, "/home/u"));
    }

    // ---- runtime without a driver -------------------------------------------------------------------

    [Fact]
    public void EnumerateDevices_NeverThrows_AndExplainsAbsence()
    {
        var devices = CudaRuntime.EnumerateDevices();
        if (CudaRuntime.IsAvailable)
        {
            Assert.True(CudaRuntime.DriverVersion > 0);
            Assert.All(devices, d => Assert.True(d.ComputeCapabilityMajor > 0 && d.TotalMemoryBytes > 0));
            return;
        }
        Assert.Empty(devices);
        Assert.False(string.IsNullOrWhiteSpace(CudaRuntime.UnavailableReason));
        Assert.DoesNotContain('\n', CudaRuntime.UnavailableReason);
        Assert.Equal(0, CudaRuntime.DriverVersion);
        if (!NativeLibrary.TryLoad("libcuda.so.1", out _))
            Assert.Equal("libcuda.so.1 not found: no NVIDIA driver on this machine", CudaRuntime.UnavailableReason);
        var e = Assert.Throws<InvalidOperationException>(() => CudaDevice.Open());
        Assert.Contains(CudaRuntime.UnavailableReason!, e.Message);
    }

    // ---- status names and exceptions ----------------------------------------------------------------

    [Theory]
    [InlineData(0, "CUDA_SUCCESS")]
    [InlineData(1, "CUDA_ERROR_INVALID_VALUE")]
    [InlineData(2, "CUDA_ERROR_OUT_OF_MEMORY")]
    [InlineData(3, "CUDA_ERROR_NOT_INITIALIZED")]
    [InlineData(4, "CUDA_ERROR_DEINITIALIZED")]
    [InlineData(34, "CUDA_ERROR_STUB_LIBRARY")]
    [InlineData(100, "CUDA_ERROR_NO_DEVICE")]
    [InlineData(101, "CUDA_ERROR_INVALID_DEVICE")]
    [InlineData(200, "CUDA_ERROR_INVALID_IMAGE")]
    [InlineData(201, "CUDA_ERROR_INVALID_CONTEXT")]
    [InlineData(209, "CUDA_ERROR_NO_BINARY_FOR_GPU")]
    [InlineData(218, "CUDA_ERROR_INVALID_PTX")]
    [InlineData(222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION")]
    [InlineData(500, "CUDA_ERROR_NOT_FOUND")]
    [InlineData(600, "CUDA_ERROR_NOT_READY")]
    [InlineData(700, "CUDA_ERROR_ILLEGAL_ADDRESS")]
    [InlineData(701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES")]
    [InlineData(702, "CUDA_ERROR_LAUNCH_TIMEOUT")]
    [InlineData(719, "CUDA_ERROR_LAUNCH_FAILED")]
    [InlineData(801, "CUDA_ERROR_NOT_SUPPORTED")]
    [InlineData(999, "CUDA_ERROR_UNKNOWN")]
    [InlineData(12345, "CUresult(12345)")]
    public void CuResultNames_FromTable(int status, string name)
    {
        Assert.Equal(name, CudaResultNames.FromTable(status));
        if (!CudaRuntime.IsAvailable && !NativeLibrary.TryLoad("libcuda.so.1", out _))
            Assert.Equal(name, CudaResultNames.GetName(status));
    }

    [Theory]
    [InlineData(0, "NVRTC_SUCCESS")]
    [InlineData(1, "NVRTC_ERROR_OUT_OF_MEMORY")]
    [InlineData(3, "NVRTC_ERROR_INVALID_INPUT")]
    [InlineData(5, "NVRTC_ERROR_INVALID_OPTION")]
    [InlineData(6, "NVRTC_ERROR_COMPILATION")]
    [InlineData(11, "NVRTC_ERROR_INTERNAL_ERROR")]
    [InlineData(17, "NVRTC_ERROR_TIME_TRACE_FILE_WRITE_FAILED")]
    [InlineData(-1, "nvrtcResult(-1)")]
    [InlineData(99, "nvrtcResult(99)")]
    public void NvrtcResultNames_FromTable(int status, string name)
    {
        Assert.Equal(name, NvrtcResultNames.FromTable(status));
        if (status is >= 0 and <= 17) Assert.Equal(name, NvrtcResultNames.GetName(status));
    }

    private static int FakeDriverCall(int status) => status;

    [Fact]
    public void CudaCheck_NamesTheFunction()
    {
        CudaCheck.ThrowIfFailed(FakeDriverCall(0));
        var e = Assert.Throws<CudaException>(() => CudaCheck.ThrowIfFailed(FakeDriverCall(2)));
        Assert.Equal("FakeDriverCall", e.Call);
        Assert.Equal(2, e.Status);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.StatusName);
        Assert.Equal("FakeDriverCall failed: CUDA_ERROR_OUT_OF_MEMORY (2)", e.Message);

        Assert.Equal("cuMemAlloc_v2", CudaCheck.FunctionName("CudaDriver.cuMemAlloc_v2(&p, (nuint)bytes)"));
        Assert.Equal("cuCtxSynchronize", CudaCheck.FunctionName("cuCtxSynchronize()"));
        Assert.Equal("status", CudaCheck.FunctionName("status"));
    }

    [Fact]
    public void NvrtcException_CarriesNameAndLog()
    {
        var e = new NvrtcException("nvrtcCompileProgram", 6, "k.cu(3): error: identifier \"x\" is undefined\n");
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.StatusName);
        Assert.Equal(6, e.Status);
        Assert.Equal("nvrtcCompileProgram", e.Call);
        Assert.Contains("identifier \"x\" is undefined", e.Log);
        Assert.StartsWith("nvrtcCompileProgram failed: NVRTC_ERROR_COMPILATION (6)\nk.cu(3)", e.Message);
    }

    // ---- end to end, only where a GPU, its driver and NVRTC are present -------------------------------

    [Fact]
    public void Gpu_CompileCacheLoadLaunchCopy_WhenAvailable()
    {
        if (!CudaRuntime.IsAvailable || !NvrtcCompiler.TryLoad(out var nvrtc, out _)) return;

        using var device = CudaDevice.Open(0);
        var (major, minor) = (device.Info.ComputeCapabilityMajor, device.Info.ComputeCapabilityMinor);
        const string source = """
            extern "C" __global__ void axpy(float* y, const float* x, float a, int n)
            {
                int i = blockIdx.x * blockDim.x + threadIdx.x;
                if (i < n) y[i] += a * x[i];
            }
            """;
        var cache = new KernelCache(Path.Combine(_temp, "kernels"));
        var image = nvrtc.CompileCached(cache, source, "axpy.cu", major, minor);
        Assert.Equal(image, nvrtc.CompileCached(cache, source, "axpy.cu", major, minor));
        Assert.Single(Directory.GetFiles(cache.Directory, "*.bin"));

        using var module = device.LoadModule(image);
        var axpy = module.GetKernel("axpy");
        const int n = 1000;
        var x = Enumerable.Range(0, n).Select(i => (float)i).ToArray();
        using var dx = device.Allocate<float>(n);
        using var dy = device.Allocate<float>(n);
        dx.Write<float>(x);
        dy.Fill(1f);
        axpy.Launch((n + 255) / 256, 1, 256, 1, 0, dy, dx, 2f, n);
        var y = dy.ToArray<float>();
        for (int i = 0; i < n; i++) Assert.Equal(1f + 2f * i, y[i]);

        using var pinned = device.AllocatePinned<float>(n);
        dy.EnqueueZero();
        axpy.Launch((n + 255) / 256, 1, 256, 1, 0, dy, dx, 3f, n);
        dy.EnqueueRead(pinned);
        device.Synchronize();
        Assert.Equal(3f * (n - 1), pinned.Span[n - 1]);

        var missing = Assert.Throws<CudaException>(() => module.GetKernel("nope"));
        Assert.Equal("CUDA_ERROR_NOT_FOUND", missing.StatusName);
        var bad = Assert.Throws<NvrtcException>(() => nvrtc.Compile("__global__ void k() { undefined_x; }", "bad.cu", major, minor));
        Assert.Equal("NVRTC_ERROR_COMPILATION", bad.StatusName);
        Assert.Contains("undefined_x", bad.Log);

        dx.Dispose();
        dx.Dispose();
        Assert.True(device.GetMemoryInfo().Free > 0);
    }

    // ---- kernel arguments ---------------------------------------------------------------------------

    private static ulong[] Bits(params ReadOnlySpan<KernelArg> args)
    {
        var r = new ulong[args.Length];
        for (int i = 0; i < args.Length; i++) r[i] = args[i].Bits;
        return r;
    }

    [Fact]
    public void KernelArg_PacksValuesInTheLowBytes()
    {
        Assert.Equal(8, Marshal.SizeOf<KernelArg>());
        Assert.Equal(
            [0xFFFF_FFFFUL, 7UL, 0x3F80_0000UL, 0xFFFF_FFFF_FFFF_FFFEUL, 0x3FF0_0000_0000_0000UL, 0x1234UL],
            Bits(-1, 7u, 1.0f, -2L, KernelArg.From(1.0), KernelArg.Pointer(0x1234)));
        Assert.Throws<ArgumentException>(() => KernelArg.From(Guid.Empty));
    }
}
