using System.Diagnostics;
using System.Globalization;
using System.Text;
using Afm.Gpu.Model;
using Xunit.Abstractions;

namespace Afm.Gpu.Tests;

/// <summary>
/// Data-parallel training under Open MPI's mpirun, on one machine: two ranks train what one process trains with the
/// same global batch (within float tolerance, element-wise), the ranks end with identical parameters bit for bit, one
/// rank under mpirun is one process bit for bit, a job resumed from its checkpoint ends as one never stopped, a
/// failing rank ends the job with a message naming it, and so does a rank killed from outside. Skipped
/// when mpirun is absent, unless AFM_REQUIRE_MPI=1 (as in CI), which makes that a failure.
/// </summary>
public sealed class DistributedTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-mpi-").FullName;
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "afm-gpu.dll");

    public DistributedTests(ITestOutputHelper output) => _output = output;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>mpirun on the PATH, or null (and the test skips, or fails under AFM_REQUIRE_MPI=1).</summary>
    private string? MpiRun()
    {
        string? found = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);
        if (found is null)
        {
            Assert.False(Environment.GetEnvironmentVariable("AFM_REQUIRE_MPI") == "1", "AFM_REQUIRE_MPI=1 but mpirun is not on the PATH (apt-get install openmpi-bin libopenmpi-dev)");
            _output.WriteLine("SKIP: mpirun is not on the PATH (apt-get install openmpi-bin libopenmpi-dev)");
        }
        return found;
    }

    /// <summary>
    /// Rows of the demo's planted data (12007 by default, so that the last batch is ragged), with the one-hot values scaled to 3 so
    /// that the attention network's gradients are well above rounding from the first epochs.
    /// </summary>
    private string Data(int rows = 12007)
    {
        var train = Afm.Gpu.Synthetic.PlantedData.Generate().Train;
        var sb = new StringBuilder();
        for (int r = 0; r < rows; r++)
        {
            sb.Append(train.Labels[r].ToString("R", CultureInfo.InvariantCulture));
            foreach (int id in train.RowIds(r)) sb.Append(CultureInfo.InvariantCulture, $" {id}:3");
            sb.Append('\n');
        }
        string path = Path.Combine(_dir, "train.libfm");
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    /// <summary>Runs afm-gpu, under mpirun with <paramref name="ranks"/> ranks, or as a plain process when null.</summary>
    private (int Code, string Output) Run(string? mpirun, int? ranks, params string[] args)
    {
        var psi = new ProcessStartInfo(ranks is null ? "dotnet" : mpirun!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // As root (CI) and with more ranks than cores; shared-memory transfers without cross-process memory access
        // (CMA), which containers often forbid.
        if (ranks is not null)
            foreach (string a in new[] { "--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none",
                         "-np", ranks.Value.ToString(CultureInfo.InvariantCulture), "dotnet" })
                psi.ArgumentList.Add(a);
        psi.ArgumentList.Add(Cli);
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var text = new StringBuilder();
        p.OutputDataReceived += (_, e) => { lock (text) text.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { lock (text) text.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        bool done = p.WaitForExit(TimeSpan.FromSeconds(240));
        if (!done) p.Kill(entireProcessTree: true);
        p.WaitForExit();
        string output;
        lock (text) output = text.ToString();
        _output.WriteLine($"{(ranks is null ? "1 process" : $"mpirun -np {ranks}")}: exit {(done ? p.ExitCode : "(killed after 240 s)")}\n{output}");
        Assert.True(done, "the job did not end within 240 s");
        return (p.ExitCode, output);
    }

    /// <summary>
    /// Training options with dropout on; an AFM is pre-trained from an FM (so that its attention has embeddings to
    /// work on); early stopping evaluates the held-out rows, on rank 0 alone.
    /// </summary>
    private static string[] TrainArgs(string data, string model, string optimizer, string output) =>
        ["train", "--train", data, "--model", model, "--pretrain-epochs", "3", "--lambda", "0.1", "-k", "8", "-t", "6", "--epochs", "3", "--batch", "500",
         "--optimizer", optimizer, "--lr", "0.1", "--keep0", "0.8", "--keep1", "0.8", "--patience", "0", "-a", "cpu", "--threads", "1", "--no-progress", "-o", output];

    private static int EpochLines(string text) => text.Split('\n').Count(l => l.StartsWith("epoch ", StringComparison.Ordinal) || l.StartsWith("FM epoch ", StringComparison.Ordinal));

    [Theory]
    [InlineData("afm", "sgd")]
    [InlineData("fm", "adagrad")]
    [InlineData("fm", "adagrad", 3)] // validations within epochs, and a refit that ends within one
    public void TwoRanksTrainWhatOneProcessTrains(string model, string optimizer, int evaluationsPerEpoch = 1)
    {
        if (MpiRun() is not { } mpirun) return;
        string data = Data(), one = Path.Combine(_dir, "one.afm"), two = Path.Combine(_dir, "two.afm");
        string[] evals = evaluationsPerEpoch > 1 ? ["--evals-per-epoch", evaluationsPerEpoch.ToString(System.Globalization.CultureInfo.InvariantCulture)] : [];
        var (code1, text1) = Run(null, null, [.. TrainArgs(data, model, optimizer, one), .. evals]);
        Assert.Equal(0, code1);
        if (evaluationsPerEpoch > 1) Assert.Matches(@"\nepoch 0\.\d\d  train loss", text1); // validated within the first epoch
        var (code2, text) = Run(mpirun, 2, [.. TrainArgs(data, model, optimizer, two), .. evals, "--save-replicas"]);
        Assert.Equal(0, code2);
        Assert.Contains("data-parallel training on 2 ranks", text);
        Assert.Contains("exchanged per step and rank", text);
        // Rank 0 alone prints: one line per epoch, as one process does.
        Assert.Equal(EpochLines(text1), EpochLines(text));
        // A rank's output is a pseudo-terminal: nothing but text may come out of it (no terminal escape codes).
        Assert.DoesNotContain('\u001b', text);

        var a = ModelFile.Load(one);
        var b = ModelFile.Load(two);
        AssertClose(a, b);
        Assert.False(Tensors(a, b).All(t => t.A.SequenceEqual(t.B)), "two ranks gave exactly one process's model: were the shards used?");

        // Every rank ends with the same parameters, bit for bit (each wrote its copy).
        Assert.Equal(File.ReadAllBytes(two + ".rank0"), File.ReadAllBytes(two + ".rank1"));
        Assert.Equal(File.ReadAllBytes(two), File.ReadAllBytes(two + ".rank0"));
    }

    [Fact]
    public void RanksOnTheGpuKernelsTrainWhatTheCpuTrains()
    {
        if (MpiRun() is not { } mpirun) return;
        // The GPU kernels on ILGPU's CPU accelerator (slow when two ranks share two cores: a small run), against one
        // process on the CPU accelerator: the same training up to float rounding.
        string data = Data(403), one = Path.Combine(_dir, "cpu.afm"), two = Path.Combine(_dir, "ilgpu.afm");
        string[] Args(string accelerator, string output) => ["train", "--train", data, "--model", "afm", "--no-pretrain", "--lambda", "0.1", "-k", "8", "-t", "6",
            "--batch", "100", "--optimizer", "sgd", "--lr", "0.1", "--epochs", "2", "--keep0", "0.8", "--keep1", "0.8", "--validation-fraction", "0",
            "-a", accelerator, "--threads", "1", "--no-progress", "-o", output];
        Assert.Equal(0, Run(null, null, Args("cpu", one)).Code);
        Assert.Equal(0, Run(mpirun, 2, [.. Args("ilgpu-cpu", two), "--save-replicas"]).Code);
        AssertClose(ModelFile.Load(one), ModelFile.Load(two));
        Assert.Equal(File.ReadAllBytes(two + ".rank0"), File.ReadAllBytes(two + ".rank1"));
    }

    [Fact]
    public void OneRankUnderMpirunIsOneProcessBitForBit()
    {
        if (MpiRun() is not { } mpirun) return;
        string data = Data(), one = Path.Combine(_dir, "one.afm"), mpi = Path.Combine(_dir, "mpi.afm");
        Assert.Equal(0, Run(null, null, TrainArgs(data, "afm", "adagrad", one)).Code);
        Assert.Equal(0, Run(mpirun, 1, TrainArgs(data, "afm", "adagrad", mpi)).Code);
        Assert.Equal(File.ReadAllBytes(one), File.ReadAllBytes(mpi));
    }

    [Fact]
    public void AResumedJobEndsWithTheSameModelFile()
    {
        if (MpiRun() is not { } mpirun) return;
        // Adam, whose state is in the checkpoint, and 2 epochs then 2 more on resumption, against 4 at once.
        string data = Data(), full = Path.Combine(_dir, "full.afm"), resumed = Path.Combine(_dir, "resumed.afm"), ck = Path.Combine(_dir, "ck");
        string[] Args(string epochs, string output) => ["train", "--train", data, "--model", "afm", "--no-pretrain", "--lambda", "0.1", "-k", "8", "-t", "6",
            "--batch", "500", "--optimizer", "adam", "--epochs", epochs, "--patience", "0", "-a", "cpu", "--threads", "1", "--no-progress", "-o", output];
        Assert.Equal(0, Run(mpirun, 2, Args("4", full)).Code);
        Assert.Equal(0, Run(mpirun, 2, [.. Args("2", resumed), "--checkpoint", ck]).Code);
        var (code, text) = Run(mpirun, 2, [.. Args("4", resumed), "--checkpoint", ck, "--resume"]);
        Assert.Equal(0, code);
        Assert.Contains("after epoch 2", text);
        Assert.Equal(File.ReadAllBytes(full), File.ReadAllBytes(resumed));
    }

    [Fact]
    public void AFailingRankEndsTheJobWithOneLineNamingIt()
    {
        if (MpiRun() is not { } mpirun) return;
        // Rank 0 alone writes, so it alone finds the output's folder missing, while rank 1 goes on to wait for it.
        string data = Data(), output = Path.Combine(_dir, "missing", "model.afm");
        var (code, text) = Run(mpirun, 2, TrainArgs(data, "afm", "sgd", output));
        Assert.NotEqual(0, code);
        Assert.Contains("afm-gpu: error: rank 0 of 2: -o/--output", text);
        Assert.Contains("does not exist", text);
        Assert.DoesNotContain("   at ", text);
    }

    [Fact]
    public void StandardInputAsDataIsRefusedUnderMpirun()
    {
        if (MpiRun() is not { } mpirun) return;
        var (code, text) = Run(mpirun, 2, ["train", "--train", "-", "-a", "cpu", "-o", Path.Combine(_dir, "m.afm")]);
        Assert.NotEqual(0, code);
        Assert.Contains("-: under mpirun every rank reads the data files, and standard input reaches one rank alone; give a file", text);
        Assert.DoesNotContain("   at ", text);
    }

    [Fact]
    public void CommandsOtherThanTrainRefuseToRunUnderMpirun()
    {
        if (MpiRun() is not { } mpirun) return;
        string data = Data(200), model = Path.Combine(_dir, "fm.afm");
        var (trained, _) = Run(null, null, "train", "--train", data, "--model", "fm", "-k", "4", "--epochs", "1", "-a", "cpu", "--no-progress", "-o", model);
        Assert.Equal(0, trained);
        string predictions = Path.Combine(_dir, "p.txt");
        var (code, text) = Run(mpirun, 2, "predict", "-m", model, "-d", data, "-a", "cpu", "-o", predictions);
        Assert.NotEqual(0, code);
        Assert.Contains("afm-gpu: error: 'predict' does not run under mpirun (only train is data-parallel); run it as one process", text);
        Assert.False(File.Exists(predictions));
    }

    /// <summary>
    /// The sums of the gradients are taken in another order (per rank, then across ranks), so two runs agree to float
    /// rounding, amplified a little by the steps: every element within 2e-5 of its tensor's largest magnitude.
    /// </summary>
    private void AssertClose(AfmModel a, AfmModel b)
    {
        foreach (var (name, x, y) in Tensors(a, b).Where(t => t.A.Length > 0))
        {
            float scale = Math.Max(x.Max(MathF.Abs), 1e-3f), worst = 0;
            for (int i = 0; i < x.Length; i++) worst = Math.Max(worst, MathF.Abs(x[i] - y[i]));
            _output.WriteLine($"{name}: max |difference| {worst:G3}, largest |element| {scale:G3}");
            Assert.True(worst <= 2e-5f * scale, $"{name}: the runs differ by {worst:G3} (largest |element| {scale:G3})");
        }
    }

    [Fact]
    public void AKilledRankEndsTheJob()
    {
        if (MpiRun() is not { } mpirun) return;
        // A long job; once both ranks are training, one is killed with SIGKILL: mpirun must end the other and say so.
        string data = Data(), output = Path.Combine(_dir, "killed.afm");
        var psi = new ProcessStartInfo(mpirun) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { "--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none", "-np", "2", "dotnet", Cli,
                     "train", "--train", data, "--model", "fm", "--epochs", "1000", "--patience", "0", "-a", "cpu", "--threads", "1", "--no-progress", "-o", output })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var text = new StringBuilder();
        var trained = new ManualResetEventSlim();
        p.OutputDataReceived += (_, e) => { lock (text) text.AppendLine(e.Data); if (e.Data?.StartsWith("epoch ", StringComparison.Ordinal) == true) trained.Set(); };
        p.ErrorDataReceived += (_, e) => { lock (text) text.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        try
        {
            Assert.True(trained.Wait(TimeSpan.FromSeconds(120)), "no epoch finished within 120 s");
            var ranks = File.ReadAllText($"/proc/{p.Id}/task/{p.Id}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToList();
            Assert.Equal(2, ranks.Count);
            Process.GetProcessById(ranks[1]).Kill();
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), "the job went on for 60 s after a rank was killed");
            p.WaitForExit();
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
        string log;
        lock (text) log = text.ToString();
        _output.WriteLine(log);
        Assert.NotEqual(0, p.ExitCode);
        Assert.Contains("exited on signal 9", log);
        Assert.False(File.Exists(output), "a model was written by a job that lost a rank");
    }

    private static IEnumerable<(string Name, float[] A, float[] B)> Tensors(AfmModel a, AfmModel b) =>
    [
        ("V", a.V, b.V), ("w", a.Linear, b.Linear), ("w0", a.W0, b.W0), ("W", a.AttnW, b.AttnW), ("b", a.AttnB, b.AttnB), ("h", a.AttnH, b.AttnH), ("p", a.Proj, b.Proj),
    ];
}
