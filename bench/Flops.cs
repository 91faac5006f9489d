using System.Globalization;
using Afm.Gpu.Data;
using Afm.Gpu.Model;

namespace Afm.Bench;

/// <summary>
/// Floating-point operations per sample (an FMA counts 2), by the kernels' own stages, for a row with n
/// non-zeros and P = n (n - 1) / 2 pairs. Optimizer updates (element-wise, memory bound) are not counted.
/// <code>
/// AFM training = 6 P t k                      attention products: z = W q (2tk), dW += dz qᵀ (2tk), dq += Wᵀ dz (2tk)
///              + P (10 k + 7 t + 8)           q = e_i ⊙ e_j (k), u += a q (2k), da = du · q (2k), dq = a du (k),
///                                             de_i += dq ⊙ e_j and de_j += dq ⊙ e_i (4k); z + b (t), h · relu z (2t),
///                                             dh += ds z (2t), dz = ds h (t), db += dz (t); softmax fwd + bwd (8)
///              + n (3 k + 4)                  gather e = v x (k), w x (2); scatter dv += de x (2k), dw += g x (2)
///              + 7 k + 6                      ŷ = p · u' (2k), u' = u mask (k), dp += g u' (2k), du = g p mask (2k), loss
/// AFM inference = P (2 t k + 3 k + 3 t + 4) + n (k + 2) + 2 k + 2
/// FM training  = n (9 k + 4) + 8 k + 6       gather, Σe and Σe² (4k), de = du ⊙ (Σe - e) (2k), scatter; O(n k), no pairs
/// FM inference = n (5 k + 2) + 5 k + 2
/// </code>
/// </summary>
internal static class Flops
{
    public const string Formula =
        "FLOP/sample (FMA = 2; n non-zeros, P = n(n-1)/2 pairs; optimizer updates not counted):\n" +
        "  AFM train = 6Ptk [z=Wq, dW+=dz q^T, dq+=W^T dz] + P(10k+7t+8) + n(3k+4) + 7k+6\n" +
        "  AFM infer = P(2tk+3k+3t+4) + n(k+2) + 2k+2\n" +
        "  FM  train = n(9k+4) + 8k+6        FM infer = n(5k+2) + 5k+2";

    /// <summary>Training FLOP of one row with <paramref name="n"/> non-zeros.</summary>
    public static double Train(ModelKind kind, int n, int k, int t)
    {
        double p = n * (n - 1) / 2.0;
        return kind == ModelKind.Fm
            ? n * (9.0 * k + 4) + 8.0 * k + 6
            : 6.0 * p * t * k + p * (10.0 * k + 7.0 * t + 8) + n * (3.0 * k + 4) + 7.0 * k + 6;
    }

    /// <summary>Inference FLOP of one row with <paramref name="n"/> non-zeros.</summary>
    public static double Infer(ModelKind kind, int n, int k, int t)
    {
        double p = n * (n - 1) / 2.0;
        return kind == ModelKind.Fm
            ? n * (5.0 * k + 2) + 5.0 * k + 2
            : p * (2.0 * t * k + 3.0 * k + 3.0 * t + 4) + n * (k + 2.0) + 2.0 * k + 2;
    }

    /// <summary>The attention products alone (6 P t k; 0 for FM).</summary>
    public static double Attention(ModelKind kind, int n, int k, int t) =>
        kind == ModelKind.Fm ? 0 : 6.0 * (n * (n - 1) / 2.0) * t * k;

    /// <summary>Mean of <paramref name="perRow"/> over the rows of a dataset (rows differ in length in real data).</summary>
    public static double Mean(SparseDataset data, Func<int, double> perRow)
    {
        var byLength = new Dictionary<int, double>();
        double sum = 0;
        for (int r = 0; r < data.Rows; r++)
        {
            int n = data.RowLength(r);
            if (!byLength.TryGetValue(n, out double f)) byLength[n] = f = perRow(n);
            sum += f;
        }
        return sum / data.Rows;
    }
}

/// <summary>The host CPU's fp32 peak on the vector path the kernels run: cores × its SIMD lanes × FMA pipes × 2 × clock.</summary>
internal sealed record CpuPeak(string Model, int Cores, int Lanes, int FmaUnits, double ClockGhz, string ClockSource, double? Override, string Path = "")
{
    public double Gflops => Override ?? Cores * Lanes * FmaUnits * 2 * ClockGhz;

    public string Describe() => Override is not null
        ? $"CPU peak {Gflops:F0} GFLOP/s (given)"
        : $"CPU peak ({Path}) = {Cores} cores x {Lanes} fp32 lanes x {FmaUnits} FMA pipes x 2 x {ClockGhz:F2} GHz ({ClockSource}) = {Gflops:F0} GFLOP/s";

    /// <summary>Reads the model name and clock from /proc/cpuinfo (or takes the overrides).</summary>
    public static CpuPeak Detect(int cores, int fmaUnits, double? clockGhz, double? peakOverride)
    {
        var path = Afm.Gpu.Accelerators.Cpu.CpuSimd.Path;
        int lanes = Afm.Gpu.Accelerators.Cpu.CpuSimd.Lanes(path);
        string model = "unknown CPU";
        double mhz = 0;
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon < 0) continue;
                string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
                if (key == "model name") model = value;
                else if (key == "cpu MHz" && double.TryParse(value, CultureInfo.InvariantCulture, out double v)) mhz = Math.Max(mhz, v);
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        string source = clockGhz is not null ? "--clock-ghz" : mhz > 0 ? "/proc/cpuinfo" : "assumed";
        return new CpuPeak(model, cores, lanes, fmaUnits, clockGhz ?? (mhz > 0 ? mhz / 1000 : 2.0), source, peakOverride,
            Afm.Gpu.Accelerators.Cpu.CpuSimd.Name(path));
    }
}
