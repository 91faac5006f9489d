using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Diagnostics;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Training;

namespace Afm.Gpu.Tests;

/// <summary>The checks of a device accelerator against the CPU accelerator that every device family runs.</summary>
internal static class AgainstCpu
{
    /// <summary>The self-test of <paramref name="device"/> against the CPU accelerator passes on every shape and kernel.</summary>
    public static void SelfTestPasses(Accelerator device, Action<string> log)
    {
        using var cpu = new CpuAccelerator();
        var rows = SelfTest.Run(device, cpu, seed: 3);
        log($"{device.Descriptor.Selector} {device.Descriptor.Name} ({device.Descriptor.Details}) against the CPU accelerator:");
        log(SelfTest.Format(rows));
        Assert.All(rows, r => Assert.True(r.Pass, $"{r.Shape} / {r.Kernel}: max rel error {r.MaxRelError:G3}"));
    }

    /// <summary>
    /// Three epochs with dropout (keep0 0.7, keep1 0.8) on <paramref name="device"/> and the CPU from the same seed:
    /// same masks (shared counter RNG), same batches; only float rounding differs (summation order), so the final
    /// parameters agree to |a - b| &lt;= 1e-5 + 1e-4 |b| element-wise. Embeddings start at std 0.5, not the paper's
    /// 0.01: with tiny embeddings W q ≈ 0, every attention unit with b &gt; 0 is active on every pair, softmax then
    /// makes db exactly 0 in exact arithmetic, and Adagrad/Adam turn the rounding noise of that 0 into full
    /// learning-rate steps that differ between any two summation orders (b does not change a single prediction).
    /// </summary>
    public static void TrainingMatches(Accelerator device, string label, ModelKind kind, OptimizerKind optimizer, SparseDataset data, Action<string> log)
    {
        using var cpu = new CpuAccelerator();
        var options = new TrainerOptions
        {
            Model = kind, K = 8, T = 6, Epochs = 3, BatchSize = 64, LearningRate = 0.05f, Optimizer = optimizer,
            Lambda = 0.01f, Keep0 = 0.7f, Keep1 = 0.8f, Seed = 11, ValidationFraction = 0, Patience = 0, InitStd = 0.5f,
        };
        var onCpu = new Trainer(cpu, options).Train(data).Model;
        var onDevice = new Trainer(device, options).Train(data).Model;
        double worst = 0;
        foreach (var ((name, a, _), (_, b, _)) in onDevice.Tensors().Zip(onCpu.Tensors()))
        {
            Assert.Equal(b.Length, a.Length);
            for (int i = 0; i < a.Length; i++)
            {
                double err = Math.Abs(a[i] - b[i]);
                worst = Math.Max(worst, err);
                Assert.True(err <= 1e-5 + 1e-4 * Math.Abs(b[i]), $"{name}[{i}]: {label} {a[i]:G9}, CPU {b[i]:G9}");
            }
        }
        log($"{kind}/{optimizer}: largest parameter difference after 3 epochs {worst:G3}");
    }

    /// <summary>Ragged random rows: up to <paramref name="maxNnz"/> distinct features each, values 1 or in (-1, 1), labels in (1, 5).</summary>
    internal static SparseDataset RandomData(int rows, int features, int maxNnz, int seed)
    {
        var rng = new Random(seed);
        var offsets = new long[rows + 1];
        var ids = new List<int>();
        var vals = new List<float>();
        var labels = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            foreach (int id in Enumerable.Range(0, features).OrderBy(_ => rng.Next()).Take(rng.Next(maxNnz + 1)))
            {
                ids.Add(id);
                vals.Add(rng.Next(2) == 0 ? 1f : (float)(rng.NextDouble() * 2 - 1));
            }
            offsets[r + 1] = ids.Count;
            labels[r] = (float)(1 + 4 * rng.NextDouble());
        }
        return new SparseDataset(offsets, ids.ToArray(), vals.ToArray(), labels, features);
    }
}
