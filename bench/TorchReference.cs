using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Afm.Gpu.Model;

namespace Afm.Bench;

/// <summary>The PyTorch figures for one shape.</summary>
internal sealed record TorchResult(string Shape, string Device, double TrainSamplesPerSecond, double InferSamplesPerSecond, string? Error);

/// <summary>Runs <c>bench/reference/afm_torch.py throughput</c> on the synthetic shapes.</summary>
internal sealed class TorchReference
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(20);
    private readonly string _script;
    private readonly string _python;
    private readonly Dictionary<(string, string), TorchResult> _cache = [];

    private TorchReference(string script, string python) => (_script, _python) = (script, python);

    /// <summary>
    /// The interpreters tried, in order: <paramref name="pythonOption"/> (--python), $AFM_PYTHON, python3 on the PATH,
    /// /usr/bin/python3 (Debian's python3-torch). The first that imports torch runs the reference.
    /// </summary>
    public static IReadOnlyList<string> PythonCandidates(string? pythonOption)
    {
        var list = new List<string>();
        if (pythonOption is { Length: > 0 }) list.Add(pythonOption);
        else
        {
            if (Environment.GetEnvironmentVariable("AFM_PYTHON") is { Length: > 0 } env) list.Add(env);
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                string candidate = Path.Combine(dir, "python3");
                if (File.Exists(candidate)) { list.Add(candidate); break; }
            }
            list.Add("/usr/bin/python3");
        }
        return list.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>The reference, or null with <paramref name="why"/> when the script or torch is missing.</summary>
    public static TorchReference? Find(string? scriptOption, string? pythonOption, out string why)
    {
        string? script = scriptOption ?? Paths.FindUp(Path.Combine("bench", "reference", "afm_torch.py"));
        if (script is null || !File.Exists(script))
        {
            why = $"--compare-torch skipped: {scriptOption ?? "bench/reference/afm_torch.py"} not found";
            return null;
        }
        var failures = new List<string>();
        foreach (string python in PythonCandidates(pythonOption))
        {
            if (!File.Exists(python))
            {
                failures.Add($"{python} not found");
                continue;
            }
            var (rc, output) = Execute(python, ["-c", "import torch; print(torch.__version__)"], TimeSpan.FromMinutes(2));
            if (rc == 0)
            {
                why = $"PyTorch {output.Trim()} ({python}) via {script}";
                return new TorchReference(Path.GetFullPath(script), python);
            }
            string last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? $"exit code {rc}";
            failures.Add($"{python}: 'import torch' fails: {last}");
        }
        why = $"--compare-torch skipped: no Python with torch ({string.Join("; ", failures)}; --python names one)";
        return null;
    }

    /// <summary>Measures <paramref name="shape"/> with PyTorch on <paramref name="device"/> (cpu or cuda:N); cached per shape and device.</summary>
    public TorchResult Run(BenchShape shape, string device, int threads, int steps)
    {
        if (_cache.TryGetValue((shape.Name, device), out var cached)) return cached;
        string json = Path.Combine(Path.GetTempPath(), $"afm-bench-torch-{Environment.ProcessId}-{shape.Name}.json");
        string I(int v) => v.ToString(CultureInfo.InvariantCulture);
        List<string> args =
        [
            _script, "throughput", "--model", shape.Kind == ModelKind.Fm ? "fm" : "afm", "--fields", I(shape.Fields),
            "--k", I(shape.K), "--t", I(shape.Kind == ModelKind.Fm ? shape.K : shape.T), "--batch", I(shape.Batch),
            "--steps", I(steps), "--threads", I(threads), "--json", json,
        ];
        if (device != "cpu") args.AddRange(["--device", device]);
        TorchResult result;
        try
        {
            var (rc, output) = Execute(_python, args, Timeout);
            if (rc != 0 || !File.Exists(json))
            {
                string tail = string.Join(" | ", output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).TakeLast(2));
                result = new TorchResult(shape.Name, device, double.NaN, double.NaN, $"exit code {rc}: {tail}");
            }
            else
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(json));
                result = new TorchResult(shape.Name, device,
                    doc.RootElement.GetProperty("train_samples_per_s").GetDouble(),
                    doc.RootElement.GetProperty("infer_samples_per_s").GetDouble(), null);
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IOException)
        {
            result = new TorchResult(shape.Name, device, double.NaN, double.NaN, e.Message);
        }
        finally
        {
            File.Delete(json);
        }
        return _cache[(shape.Name, device)] = result;
    }

    /// <summary>Runs <paramref name="python"/> with <paramref name="args"/>; returns the exit code and stdout + stderr (killed after <paramref name="timeout"/>: exit code -1).</summary>
    private static (int ExitCode, string Output) Execute(string python, IEnumerable<string> args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {python}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
            return (-1, $"timed out after {timeout.TotalMinutes:F0} min");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
