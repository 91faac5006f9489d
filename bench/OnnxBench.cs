using System.Diagnostics;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Model.Onnx;
using Afm.Gpu.Training;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Afm.Bench;

/// <summary>
/// <c>--onnx</c>: inference rows/s of the ONNX export under ONNX Runtime (CPU) next to the native CPU predictor's, on
/// the same rows, model (random weights of the shape) and thread count, in batches of the shape's batch size.
/// </summary>
internal static class OnnxBench
{
    public static int Run(BenchOptions o, List<BenchShape> shapes)
    {
        int threads = o.Threads > 0 ? o.Threads : Environment.ProcessorCount;
        double minSeconds = o.Quick ? 0.25 : o.MinSeconds;
        string version;
        try
        {
            version = OrtEnv.Instance().GetVersionString();
        }
        catch (TypeInitializationException e) when (e.InnerException is DllNotFoundException)
        {
            Console.Error.WriteLine("afm-bench: --onnx: ONNX Runtime's native library (libonnxruntime.so) is not beside afm-bench; a build of scripts/publish-gpu.sh leaves it out unless WITH_ONNX=1");
            return 2;
        }
        string dir = Directory.CreateTempSubdirectory("afm-bench-onnx-").FullName;
        try
        {
            Console.WriteLine($"inference rows/s, {threads} threads, ONNX opset {OnnxExport.Opset}, ONNX Runtime {version}");
            Console.WriteLine($"{"shape",-20} {"native cpu",12} {"onnxruntime",12} {"ratio",7}  max |diff|");
            foreach (var shape in shapes)
            {
                var data = shape.Load(batches: 2);
                var model = RandomModel(shape, data.FeatureCount);
                string path = Path.Combine(dir, shape.Name + ".onnx");
                OnnxExport.Export(model, path);

                using var acc = new CpuAccelerator(threads);
                using var predictor = new Predictor(acc, model, data.MaxNnz, shape.Batch);
                float[] native = predictor.Predict(data);
                double nativeRate = Rate(data.Rows, minSeconds, () => predictor.Predict(data));

                using var options = new SessionOptions { IntraOpNumThreads = threads, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
                using var session = new InferenceSession(path, options);
                var batches = Batches(data, shape.Batch);
                float[] onnx = new float[data.Rows];
                int at = 0;
                foreach (var b in batches) foreach (float p in Score(session, b)) onnx[at++] = p;
                double diff = native.Zip(onnx, (a, c) => Math.Abs(a - c)).Max();
                double onnxRate = Rate(data.Rows, minSeconds, () => { foreach (var b in batches) Score(session, b); });
                Console.WriteLine($"{shape.Name,-20} {nativeRate,12:N0} {onnxRate,12:N0} {onnxRate / nativeRate,7:F2}  {diff:G3}");
            }
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static AfmModel RandomModel(BenchShape shape, int features)
    {
        var m = new AfmModel(shape.Kind, features, shape.K, Math.Max(shape.T, 1), LossKind.Squared);
        var rng = new Random(2017);
        float Next(float scale) => (float)(rng.NextDouble() * 2 - 1) * scale;
        for (int i = 0; i < m.V.Length; i++) m.V[i] = Next(0.1f);
        for (int i = 0; i < m.Linear.Length; i++) m.Linear[i] = Next(0.1f);
        for (int i = 0; i < m.AttnW.Length; i++) m.AttnW[i] = Next(0.3f);
        for (int i = 0; i < m.AttnB.Length; i++) m.AttnB[i] = Next(0.1f);
        for (int i = 0; i < m.AttnH.Length; i++) m.AttnH[i] = Next(1f);
        if (shape.Kind == ModelKind.Afm) for (int i = 0; i < m.Proj.Length; i++) m.Proj[i] = Next(1f);
        m.W0[0] = 3f;
        return m;
    }

    private static List<NamedOnnxValue[]> Batches(SparseDataset data, int batch)
    {
        int width = Math.Max(2, data.MaxNnz);
        var list = new List<NamedOnnxValue[]>();
        for (int start = 0; start < data.Rows; start += batch)
        {
            int n = Math.Min(batch, data.Rows - start);
            var ids = new DenseTensor<long>([n, width]);
            var values = new DenseTensor<float>([n, width]);
            for (int r = 0; r < n; r++)
            {
                var ri = data.RowIds(start + r);
                var rv = data.RowValues(start + r);
                for (int s = 0; s < ri.Length; s++) (ids[r, s], values[r, s]) = (ri[s], rv[s]);
            }
            list.Add([NamedOnnxValue.CreateFromTensor("ids", ids), NamedOnnxValue.CreateFromTensor("values", values)]);
        }
        return list;
    }

    private static float[] Score(InferenceSession session, NamedOnnxValue[] inputs)
    {
        using var results = session.Run(inputs, ["prediction"]);
        return results[0].AsEnumerable<float>().ToArray();
    }

    private static double Rate(int rows, double minSeconds, Action run)
    {
        run();
        long done = 0;
        var sw = Stopwatch.StartNew();
        do
        {
            run();
            done += rows;
        } while (sw.Elapsed.TotalSeconds < minSeconds);
        return done / sw.Elapsed.TotalSeconds;
    }
}
