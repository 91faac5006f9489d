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
    private const string Python = "/usr/bin/python3";
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(20);
    private readonly string _script;
    private readonly Dictionary<(string, string), TorchResult> _cache = [];

    private TorchReference(string script) => _script = script;

    /// <summary>The reference, or null with <paramref name="why"/> when the script or torch is missing.</summary>
    public static TorchReference? Find(string? scriptOption, out string why)
    {
        string? script = scriptOption ?? Paths.FindUp(Path.Combine("bench", "reference", "afm_torch.py"));
        if (script is null || !File.Exists(script))
        {
            why = $"--compare-torch skipped: {scriptOption ?? "bench/reference/afm_torch.py"} not found";
            return null;
        }
        if (!File.Exists(Python))
        {
            why = $"--compare-torch skipped: {Python} not found";
            return null;
        }
        var (rc, output) = Execute([ "-c", "import torch; print(torch.__version__)" ], TimeSpan.FromMinutes(2));
        if (rc != 0)
        {
            string last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? $"exit code {rc}";
            why = $"--compare-torch skipped: 'import torch' fails with {Python}: {last}";
            return null;
        }
        why = $"PyTorch {output.Trim()} via {script}";
        return new TorchReference(Path.GetFullPath(script));
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
            var (rc, output) = Execute(args, Timeout);
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

    /// <summary>Runs python with <paramref name="args"/>; returns the exit code and stdout + stderr (killed after <paramref name="timeout"/>: exit code -1).</summary>
    private static (int ExitCode, string Output) Execute(IEnumerable<string> args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {Python}");
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
