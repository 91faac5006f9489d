using System.Diagnostics;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Training;

namespace Afm.Bench;

/// <summary>One timed loop.</summary>
/// <param name="Steps">Timed steps (warm-up excluded).</param>
/// <param name="Seconds">Wall time of the timed steps, up to and including the final synchronize.</param>
/// <param name="SamplesPerSecond">Rows processed per second.</param>
/// <param name="AllocBytesPerStep">Managed bytes allocated per step, by every thread (GC.GetTotalAllocatedBytes delta).</param>
internal sealed record Timing(int Steps, double Seconds, double SamplesPerSecond, double AllocBytesPerStep);

/// <summary>Everything measured for one shape on one accelerator.</summary>
internal sealed record Measurement(
    string Shape, string Description, string Accelerator, string DeviceName,
    Timing Train, Timing KernelOnly, Timing Infer,
    double TrainFlopPerSample, double AttentionFlopPerSample, double InferFlopPerSample,
    double KernelGflops, double TrainStepGflops, double InferGflops, double? PeakGflops,
    long DeviceModelBytes, long DeviceBatchBytes, long DeviceWorkspaceBytes, long HostBatchBytes,
    long ProcessPeakWorkingSetBytes, double MeanTrainLoss, double LoadAverage, string LaunchPlan = "",
    double HostFillRowsPerSecond = double.NaN, double? ProductGflops = null)
{
    public long DeviceBytes => DeviceModelBytes + DeviceBatchBytes + DeviceWorkspaceBytes;
    public double? PercentOfPeak => PeakGflops is > 0 ? 100 * KernelGflops / PeakGflops : null;
    /// <summary>The whole training step (batch building and upload included) as a share of the peak.</summary>
    public double? StepPercentOfPeak => PeakGflops is > 0 ? 100 * TrainStepGflops / PeakGflops : null;
    /// <summary>The attention products alone (timed inside the CPU kernels) as a share of the peak.</summary>
    public double? ProductPercentOfPeak => PeakGflops is > 0 && ProductGflops is double g ? 100 * g / PeakGflops : null;
}

/// <summary>Times the training step, the kernels alone and inference for one shape on one accelerator.</summary>
internal static class Runner
{
    private const float LearningRate = 0.05f;

    public static Measurement Run(Accelerator acc, BenchShape bs, SparseDataset data, BenchOptions o, double? peakGflops)
    {
        int maxNnz = Math.Max(2, data.MaxNnz);
        int rows = Math.Min(bs.Batch, data.Rows);
        int batches = data.Rows / rows; // full batches only: every step has the same size
        var model = Trainer.Initialize(new TrainerOptions { Model = bs.Kind, K = bs.K, T = bs.T, BatchSize = rows }, data.FeatureCount);
        var shape = ModelShape.Of(model, maxNnz, rows);

        using var kernels = acc.CreateKernels(shape);
        using var dm = kernels.CreateModel(OptimizerKind.Adagrad);
        using var db = kernels.CreateBatch();
        using var work = kernels.CreateWorkspace();
        dm.Upload(model);
        var host = new HostBatch(rows, maxNnz, data.FeatureCount);
        var order = Enumerable.Range(0, data.Rows).ToArray();
        new Random(7).Shuffle(order);

        long step = 0;
        Span<int> BatchRows(long s) => order.AsSpan((int)(s % batches) * rows, rows);
        void TrainStep(bool fillAndUpload)
        {
            if (fillAndUpload)
            {
                host.Fill(data, BatchRows(step), forTraining: true);
                db.Upload(host);
            }
            step++;
            var sp = new StepParams(model.Loss, 1f, 1f, DropoutRng.StepSeed(1, step), 1f / rows);
            var op = new OptimizerParams(OptimizerKind.Adagrad, LearningRate, 0f, (int)step, Epsilon: 1e-10f);
            kernels.ForwardBackward(dm, db, work, sp);
            kernels.ReduceDense(work);
            kernels.UpdateSparse(dm, db, work, op);
            kernels.UpdateDense(dm, work, op);
        }

        work.LossSum.Clear();
        var train = Time(acc, rows, o, () => TrainStep(true));
        long trainedSteps = step;
        float lossSum = work.LossSum.ToArray()[0];
        // the last uploaded batch, again and again; on the CPU the products are timed too (summed over the workers)
        bool profile = acc is CpuAccelerator && bs.Kind == ModelKind.Afm;
        CpuProfile.Enabled = profile;
        var kernelOnly = Time(acc, rows, o, () => TrainStep(false), CpuProfile.Reset);
        CpuProfile.Enabled = false;
        double productSeconds = CpuProfile.ProductTime.TotalSeconds;
        var infer = Time(acc, rows, o, () => kernels.Forward(dm, db, work.Yhat, null));
        // the host's share of a training step alone (one thread): the rate a device can be fed at, since the
        // trainer builds the next batch while the device runs the current one
        var fill = Time(acc, rows, o, () => host.Fill(data, BatchRows(step++), forTraining: true));

        double trainFlop = Flops.Mean(data, n => Flops.Train(bs.Kind, n, bs.K, bs.T));
        double attnFlop = Flops.Mean(data, n => Flops.Attention(bs.Kind, n, bs.K, bs.T));
        double inferFlop = Flops.Mean(data, n => Flops.Infer(bs.Kind, n, bs.K, bs.T));
        return new Measurement(bs.Name, bs.Describe(), acc.Descriptor.Selector, acc.Descriptor.Name,
            train, kernelOnly, infer, trainFlop, attnFlop, inferFlop,
            trainFlop * kernelOnly.SamplesPerSecond / 1e9, trainFlop * train.SamplesPerSecond / 1e9, inferFlop * infer.SamplesPerSecond / 1e9, peakGflops,
            DeviceMemory.Bytes(dm), DeviceMemory.Bytes(db), DeviceMemory.Bytes(work), DeviceMemory.Bytes(host),
            Process.GetCurrentProcess().PeakWorkingSet64, lossSum / ((double)trainedSteps * rows), LoadAverage(), kernels.LaunchPlan,
            fill.SamplesPerSecond,
            profile && productSeconds > 0 ? attnFlop * kernelOnly.Steps * rows / (productSeconds / Workers(acc, rows)) / 1e9 : null);
    }

    /// <summary>Worker threads the CPU kernels run on for a batch (chunks of 32 rows, at most one per thread).</summary>
    private static int Workers(Accelerator acc, int rows) =>
        Math.Max(1, Math.Min(((CpuAccelerator)acc).MaxThreads, (rows + 31) / 32));

    /// <summary>Steps queued between synchronizations: the clock is read only once they have finished.</summary>
    private const int InFlight = 4;

    /// <summary>
    /// Warm-up (at least Warmup steps and MinSeconds / 2, capped at 1 s, so that tiered JIT has promoted the
    /// hot loops), then at least MinSteps steps and MinSeconds seconds, closed by a synchronize. The timed steps
    /// run in rounds of <see cref="InFlight"/>, each closed by a synchronize before the clock is read: on an
    /// accelerator whose launches return at once, reading the clock after queuing alone would keep queuing
    /// for MinSeconds, thousands of steps on a slow device, and only then wait for them.
    /// </summary>
    private static Timing Time(Accelerator acc, int rows, BenchOptions o, Action step, Action? timedFromHere = null)
    {
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < o.Warmup || (o.Warmup > 0 && warm.Elapsed.TotalSeconds < Math.Min(1, o.MinSeconds / 2)); i++)
        {
            step();
            if (i % 4 == 3) acc.Synchronize();
        }
        acc.Synchronize();
        timedFromHere?.Invoke();
        long alloc0 = GC.GetTotalAllocatedBytes(precise: true);
        var sw = Stopwatch.StartNew();
        int steps = 0;
        do
        {
            for (int i = 0; i < InFlight; i++) step();
            steps += InFlight;
            acc.Synchronize();
        } while (steps < o.MinSteps || sw.Elapsed.TotalSeconds < o.MinSeconds);
        double seconds = sw.Elapsed.TotalSeconds;
        long alloc = GC.GetTotalAllocatedBytes(precise: true) - alloc0;
        return new Timing(steps, seconds, (double)steps * rows / seconds, (double)alloc / steps);
    }

    /// <summary>The 1-minute load average (other work on the machine skews CPU timings), or NaN where unknown.</summary>
    public static double LoadAverage()
    {
        try
        {
            string first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.TryParse(first, System.Globalization.CultureInfo.InvariantCulture, out double v) ? v : double.NaN;
        }
        catch (IOException)
        {
            return double.NaN;
        }
        catch (UnauthorizedAccessException)
        {
            return double.NaN;
        }
    }
}
