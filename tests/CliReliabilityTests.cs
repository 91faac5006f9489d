using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Xunit.Abstractions;
using CliApp = Afm.Cli.Cli;

using Afm.Gpu.Tests.Reference;

namespace Afm.Gpu.Tests;

/// <summary>The command as a hostile user drives it: every mistake is one line and exit 1 (2 for syntax), nothing is clobbered.</summary>
public sealed class CliReliabilityTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-cli-rel-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private string Write(string name, string content)
    {
        string path = PathOf(name);
        File.WriteAllText(path, content);
        return path;
    }

    private string Ratings(string name, int rows, int seed = 1)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder();
        for (int r = 0; r < rows; r++)
        {
            int u = rng.Next(30), i = 30 + rng.Next(40);
            sb.Append(CultureInfo.InvariantCulture, $"{1 + (u + i) % 5} {u}:1 {i}:1\n");
        }
        return Write(name, sb.ToString());
    }

    /// <summary>The last line of standard error, after checking it is the only error line and there is no stack trace.</summary>
    private static string ErrorLine((int Code, string Out, string Err) r, int code = CliApp.UserError)
    {
        Assert.True(r.Code == code, $"exit {r.Code}, expected {code}: {r.Err}");
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("(Parameter '", r.Err);
        Assert.DoesNotContain("internal error", r.Err);
        var errors = r.Err.Split('\n').Where(l => l.StartsWith("afm-gpu: error: ", StringComparison.Ordinal)).ToList();
        Assert.Single(errors);
        return errors[0];
    }

    private string Train(string data, string model)
    {
        var r = Run("train", "--train", data, "-k", "4", "-t", "4", "--epochs", "2", "--batch", "32", "-a", "cpu", "--no-progress", "-o", model);
        Assert.True(r.Code == 0, r.Err);
        return model;
    }

    [Fact]
    public void DataGivenAsADashIsReadFromStandardInputOnce()
    {
        if (OperatingSystem.IsWindows()) return;
        var sb = new StringBuilder();
        for (int r = 0; r < 300; r++) sb.Append(CultureInfo.InvariantCulture, $"{1 + r % 5} {r % 17}:1 {17 + r % 23}:1\n");
        string data = Write("d.libfm", sb.ToString()), model = PathOf("m.afm");
        Assert.Equal(0, Run("train", "--train", data, "--model", "fm", "--epochs", "20", "--batch", "32", "-a", "cpu", "--no-progress", "-o", model).Code);
        var (code, expected, err) = Run("predict", "-m", model, "-d", data, "-a", "cpu");
        Assert.True(code == 0, err);

        string cli = Path.Combine(AppContext.BaseDirectory, "afm-gpu.dll");
        var (rc, output) = PythonProcess.Run("dotnet", $"\"{cli}\" predict -m \"{model}\" -d - -a cpu", stdin: sb.ToString());
        Assert.True(rc == 0, output);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] predictions = expected.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(300, predictions.Length);
        Assert.True(predictions.Distinct().Count() > 10, "the predictions do not tell the rows apart");
        Assert.Equal(predictions, lines.Where(l => float.TryParse(l, CultureInfo.InvariantCulture, out _)));

        // cache - converts standard input into the same rows as the file.
        string piped = PathOf("piped.afmbin"), direct = PathOf("direct.afmbin");
        (rc, output) = PythonProcess.Run("dotnet", $"\"{cli}\" cache - -o \"{piped}\"", stdin: sb.ToString());
        Assert.True(rc == 0, output);
        Assert.Equal(0, Run("cache", data, "-o", direct).Code);
        using (var a = CacheFile.Open(piped))
        using (var b = CacheFile.Open(direct))
        {
            SparseDataset x = a.ReadAll(), y = b.ReadAll();
            Assert.Equal(300, x.Rows);
            Assert.Equal(y.Labels, x.Labels);
            Assert.Equal(y.FeatureIds, x.FeatureIds);
            Assert.Equal(y.Values, x.Values);
        }

        (rc, output) = PythonProcess.Run("dotnet", $"\"{cli}\" train --train - --test - -a cpu -o \"{PathOf("x.afm")}\"", stdin: sb.ToString());
        Assert.Equal(CliApp.UserError, rc);
        Assert.Contains("afm-gpu: error: -: standard input is read once, so only one data file can be '-'", output);

        // a problem in the piped text names standard input and its line, not the device file it is read through
        (rc, output) = PythonProcess.Run("dotnet", $"\"{cli}\" predict -m \"{model}\" -d - -a cpu", stdin: "1 3:1\n1 3:x\n");
        Assert.Equal(CliApp.UserError, rc);
        Assert.Contains("afm-gpu: error: standard input:2: malformed token '3:x'", output);
        Assert.DoesNotContain("/dev/stdin", output);
    }

    [Fact]
    public void ExplainsCsvOnStandardOutputIsAllItHolds()
    {
        if (OperatingSystem.IsWindows()) return;
        string data = Ratings("d.libfm", 300), model = PathOf("m.afm");
        Assert.Equal(0, Run("train", "--train", data, "-k", "4", "-t", "4", "--epochs", "2", "--pretrain-epochs", "2", "--lambda", "0", "--pretrain-keep1", "1", "-a", "cpu", "--no-progress", "-o", model).Code);
        string file = PathOf("summary.csv"), piped = PathOf("piped.csv"), log = PathOf("log.txt");
        Assert.Equal(0, Run("explain", "-m", model, "-d", data, "-a", "cpu", "--rows", "2", "--csv", file).Code);
        string cli = Path.Combine(AppContext.BaseDirectory, "afm-gpu.dll");
        var psi = new ProcessStartInfo("sh") { RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("dotnet \"$0\" explain -m \"$1\" -d \"$2\" -a cpu --rows 2 --csv /dev/stdout > \"$3\" 2> \"$4\"");
        foreach (string a in new[] { cli, model, data, piped, log }) psi.ArgumentList.Add(a);
        using (var p = Process.Start(psi)!)
        {
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, err + File.ReadAllText(log));
        }
        Assert.Equal(File.ReadAllText(file), File.ReadAllText(piped)); // the CSV alone
        string tables = File.ReadAllText(log);
        Assert.Contains("row 1 (line 1 of", tables); // the tables went to standard error
        Assert.Contains("field pairs over 300 rows:", tables);
    }

    [Fact]
    public void TheIssuesCrashesAreOneLineErrors()
    {
        string small = Ratings("small.libfm", 200);
        string model = PathOf("m.afm");
        string Err(params string[] args) => ErrorLine(Run([.. args, "-a", "cpu", "--no-progress", "-o", model]));

        Assert.StartsWith("afm-gpu: error: training diverged in epoch ", Err("train", "--train", small, "--lr", "1e6", "--epochs", "3"));
        Assert.EndsWith("lower the learning rate (now 1000000)", Err("train", "--train", small, "--lr", "1e6", "--epochs", "3"));
        string huge = Write("huge.libfm", "3 1:1\n3 1:3.4e38 2:1\n");
        Assert.Equal($"afm-gpu: error: {huge}:2: value in '1:3.4e38' is too large (the limit is 1E+18 in magnitude, so that products of two values stay finite); scale the feature",
            Err("train", "--train", huge));
        string id = Write("id.libfm", "3 2147483647:1\n");
        Assert.Equal($"afm-gpu: error: {id}:1: feature id in '2147483647:1' is too large (the limit is 2147483646)", Err("train", "--train", id));
        string wide = Write("wide.libfm", "3 2147483000:1\n");
        Assert.StartsWith($"afm-gpu: error: {wide}:1: feature id 2147483000 is too large: an embedding table this wide holds ids up to {Limits.MaxFeatureCount(16) - 1}", Err("train", "--train", wide));
        string longRow = Write("long.libfm", "3 " + string.Join(' ', Enumerable.Range(0, 17000).Select(i => $"{i}:1")) + "\n");
        Assert.StartsWith($"afm-gpu: error: {longRow}:1: the row has 17000 non-zeros (144491500 feature pairs); at most 4096 are allowed", Err("train", "--train", longRow));
        Assert.False(File.Exists(model));

        // The GPU kernels' refusal of a row too long for local memory is a user error too.
        Assert.Equal("AFM with 9000 non-zeros per row needs more local memory", CliApp.Describe(new NotSupportedException("AFM with 9000 non-zeros per row needs more local memory")));
        Assert.StartsWith("out of memory: ", CliApp.Describe(new OutOfMemoryException()));
        Assert.StartsWith("internal error: NullReferenceException: ", CliApp.Describe(new NullReferenceException()));
        Assert.Equal("x: file not found", CliApp.Describe(new AggregateException(new FileNotFoundException("gone", "x"))));
        Assert.Equal("k must be positive; Actual value was 0.", CliApp.Describe(new ArgumentOutOfRangeException("k", 0, "k must be positive")));
    }

    [Fact]
    public void NoUselessModelIsWritten()
    {
        string small = Ratings("small.libfm", 200), tiny = Ratings("tiny.libfm", 20);
        string model = PathOf("m.afm");
        string Err(params string[] args) => ErrorLine(Run([.. args, "-a", "cpu", "--no-progress", "-o", model]));

        Assert.StartsWith("afm-gpu: error: training diverged in epoch 1 by step 1: ", Err("train", "--train", small, "--lr", "1e30", "--epochs", "1", "--validation-fraction", "0"));
        Assert.StartsWith("afm-gpu: error: training diverged in epoch ", Err("train", "--train", small, "--optimizer", "sgd", "--lr", "100"));
        Assert.Equal($"afm-gpu: error: {tiny}: a validation fraction of 0.01 of 20 rows holds out no row; raise it (to at least 0.025) or set it to 0 for no validation",
            Err("train", "--train", tiny, "--validation-fraction", "0.01"));
        Assert.False(File.Exists(model));
        string labels = Write("labels.libfm", "1 1:1\n0 2:1\n7 3:1\n");
        Assert.Equal($"afm-gpu: error: {labels}:3: label '7' is not binary: logistic loss takes labels 0/1 or -1/1", Err("train", "--train", labels, "--loss", "logistic"));
        Assert.False(File.Exists(model));
    }

    [Fact]
    public void NoInputIsClobberedAndOutputsAreCheckedFirst()
    {
        string data = Ratings("data.libfm", 100);
        string model = Train(data, PathOf("m.afm"));
        string st = PathOf("m.safetensors");
        Assert.Equal(0, Run("export", "-m", model, "-o", st).Code);
        byte[] dataBytes = File.ReadAllBytes(data), modelBytes = File.ReadAllBytes(model);
        string[][] clobbers =
        [
            ["train", "--train", data, "-a", "cpu", "-o", data],
            ["train", "--train", data, "-a", "cpu", "-o", Path.Combine(_dir, ".", "data.libfm")],
            ["train", "--train", data, "--test", model, "-a", "cpu", "-o", model],
            ["predict", "-m", model, "-d", data, "-a", "cpu", "-o", data],
            ["predict", "-m", model, "-d", data, "-a", "cpu", "-o", model],
            ["export", "-m", model, "-o", model],
            ["export", "--import", "-m", st, "-o", st],
            ["explain", "-m", model, "-d", data, "-a", "cpu", "--csv", data],
            ["explain", "-m", model, "-d", data, "-a", "cpu", "--json", model],
            ["explain", "-m", model, "-d", data, "-a", "cpu", "--svg", data],
            ["explain", "-m", model, "-d", data, "-a", "cpu", "--svg", PathOf("h.svg"), "--csv", PathOf("h.svg")],
        ];
        foreach (var args in clobbers)
        {
            string line = ErrorLine(Run(args));
            Assert.True(line.Contains("is also an input of this command", StringComparison.Ordinal) || line.Contains("is also the", StringComparison.Ordinal), line);
        }
        if (!OperatingSystem.IsWindows())
        {
            string link = PathOf("link.libfm");
            File.CreateSymbolicLink(link, data);
            Assert.Contains("is also an input", ErrorLine(Run("train", "--train", data, "-a", "cpu", "-o", link)));
        }
        Assert.Equal(dataBytes, File.ReadAllBytes(data));
        Assert.Equal(modelBytes, File.ReadAllBytes(model));

        // Unwritable outputs are found before any training, and the message names the output.
        var dirOut = Run("train", "--train", data, "-a", "cpu", "--no-progress", "-o", _dir + "/");
        Assert.Equal($"afm-gpu: error: -o/--output {_dir}/: it is a directory", ErrorLine(dirOut));
        Assert.DoesNotContain("epoch", dirOut.Out);
        if (OperatingSystem.IsLinux())
        {
            var proc = Run("train", "--train", data, "-a", "cpu", "--no-progress", "-o", "/proc/x.afm");
            Assert.Equal("afm-gpu: error: -o/--output /proc/x.afm: no file can be created in '/proc'", ErrorLine(proc));
            Assert.DoesNotContain("epoch", proc.Out);
        }

        // A temporary file left by a killed save of the same output is removed by the next save.
        string stale = model + ".tmp-00112233aabb";
        File.WriteAllBytes(stale, new byte[1000]);
        Train(data, model);
        Assert.False(File.Exists(stale));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void OptionAndSyntaxErrorsAreShortAndNameTheOption()
    {
        string data = Ratings("data.libfm", 60);
        Assert.Equal("afm-gpu: error: -k/--dim 0: must be in 1..4096", ErrorLine(Run("train", "--train", data, "-k", "0")));
        Assert.Equal("afm-gpu: error: -t/--attention-factor 5000: must be in 1..4096", ErrorLine(Run("train", "--train", data, "-t", "5000")));
        Assert.Equal("afm-gpu: error: --lr -1: must be a positive number", ErrorLine(Run("train", "--train", data, "--lr", "-1")));
        Assert.Equal("afm-gpu: error: --epochs 0: must be at least 1 (an epoch is one pass over the training rows)", ErrorLine(Run("train", "--train", data, "--epochs", "0")));
        Assert.Equal("afm-gpu: error: --pretrain-epochs 0: must be at least 1; --no-pretrain starts the AFM from scratch", ErrorLine(Run("train", "--train", data, "--pretrain-epochs", "0")));
        foreach (string threads in new[] { "-1", "1000" })
            Assert.StartsWith($"afm-gpu: error: --threads {threads}: must be in 0..{CliApp.MaxThreads}", ErrorLine(Run("train", "--train", data, "--threads", threads, "-a", "cpu")));
        ulong asLength = BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(data));
        Assert.Equal($"afm-gpu: error: {data}: not an afm-gpu model file: neither the native format nor safetensors (as safetensors, its header length {asLength} exceeds the limit of 100000000 bytes)",
            ErrorLine(Run("evaluate", "-m", data, "-d", data, "-a", "cpu")));

        (string[] Args, string Error)[] syntax =
        [
            (["train", "--no-such-option"], "unknown option 'no-such-option'"),
            (["frobnicate"], "unknown command 'frobnicate' (commands: train, evaluate, predict, explain, export, selftest, devices, demo-data, cache)"),
            ([], "no command given (commands: train, evaluate, predict, explain, export, selftest, devices, demo-data, cache)"),
            (["train", "-k"], "-k/--dim needs a value"),
            (["train", "--lr"], "--lr needs a value"),
            (["predict", "-d", data], "-m/--model is required"),
            (["train", "-k", "x"], "-k/--dim: invalid value 'x'"),
            (["train", "--epochs=two"], "--epochs: invalid value 'two'"),
            (["train", "--seed", "1", "--seed", "2"], "--seed is given more than once"),
        ];
        foreach (var (args, error) in syntax)
        {
            var r = Run(args);
            string line = ErrorLine(r, CliApp.UsageError);
            Assert.Equal("afm-gpu: error: " + error, line);
            var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(2, lines.Length);
            Assert.Equal(line, lines[0]);
            Assert.Matches(@"^Try 'afm-gpu( \w+)? --help'\.$", lines[1]);
        }
        var help = Run("train", "--help");
        Assert.Equal(0, help.Code);
        Assert.Contains("--validation-fraction", help.Out);
        // Help without a command lists every command.
        var commands = Run("--help");
        Assert.Equal(0, commands.Code);
        foreach (string verb in new[] { "train", "evaluate", "predict", "explain", "export", "selftest", "devices", "demo-data", "cache" })
            Assert.Matches($@"(?m)^\s+{verb}\s", commands.Out);
        // --version prints the program's version (with its commit), and nothing else.
        Assert.Equal(Run("--version").Out, Run("train", "--version").Out); // every command's help lists --version
        var version = Run("--version");
        Assert.Equal(0, version.Code);
        Assert.Equal("", version.Err);
        Assert.Matches(@"^afm-gpu \d+\.\d+\.\d+\S*\n$", version.Out.Replace("\r\n", "\n"));
        Assert.Equal("afm-gpu " + typeof(CliApp).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().Single().InformationalVersion, version.Out.Trim());
    }

    [Fact]
    public void DirectoriesAndMissingFilesAreNamed()
    {
        string data = Ratings("data.libfm", 60);
        Assert.Equal($"afm-gpu: error: {_dir}: is a directory, not a data file", ErrorLine(Run("train", "--train", _dir, "-a", "cpu")));
        Assert.Equal($"afm-gpu: error: {_dir}: is a directory, not a model file", ErrorLine(Run("evaluate", "-m", _dir, "-d", data, "-a", "cpu")));
        Assert.Equal($"afm-gpu: error: {_dir}: is a directory, not a model file", ErrorLine(Run("export", "-m", _dir, "-o", PathOf("x.safetensors"))));
        string missing = PathOf("missing.afm");
        Assert.Equal($"afm-gpu: error: {missing}: file not found", ErrorLine(Run("predict", "-m", missing, "-d", data, "-a", "cpu")));
    }

    [Fact]
    public void TrainLowersItsOwnLearningRateWhenARunDivergesButNotOneItWasGiven()
    {
        var data = Fixtures.ManyNonZeros(2000, 400, 60, seed: 1);
        var sb = new StringBuilder();
        for (int r = 0; r < data.Rows; r++)
        {
            sb.Append(data.Labels[r].ToString("R", CultureInfo.InvariantCulture));
            foreach (int id in data.RowIds(r)) sb.Append(CultureInfo.InvariantCulture, $" {id}:1");
            sb.Append('\n');
        }
        string train = Write("dense.libfm", sb.ToString()), model = PathOf("dense.afm");
        string[] args = ["train", "--train", train, "--model", "fm", "-k", "8", "--epochs", "2", "--keep1", "1", "--accelerator", "cpu", "--no-progress"];

        var ok = Run([.. args, "-o", model]);
        output.WriteLine(ok.Out);
        Assert.True(ok.Code == 0, ok.Err);
        Assert.Contains("the FM diverged with learning rate 0.05, in epoch 1: the mean training loss of the first epoch, ", ok.Out);
        Assert.Contains("; the recipe starts again with learning rate 0.01\n", ok.Out.ReplaceLineEndings("\n"));
        Assert.Equal("0.01", ModelFile.LoadWithMetadata(model).Metadata.Properties["lr"]);

        // --lr names the rate: the divergence is an error, and nothing is written
        string given = PathOf("given.afm");
        string line = ErrorLine(Run([.. args, "--lr", "0.05", "-o", given]));
        Assert.StartsWith("afm-gpu: error: training diverged in epoch 1 by step ", line);
        Assert.EndsWith("lower the learning rate (now 0.05)", line);
        Assert.False(File.Exists(given));
    }

    [Theory]
    [InlineData("m.onnx", "ONNX")]
    [InlineData("m.SafeTensors", "safetensors")]
    public void TrainRefusesAnOutputNamedForAnExportFormat(string name, string says)
    {
        // train writes the native format; under an export's name the next program would read it as that export.
        string data = Ratings("data.libfm", 60), output = PathOf(name);
        Assert.Equal($"afm-gpu: error: -o/--output {output}: train writes the native .afm format, but the name says {says}; name it .afm, then convert it with afm-gpu export -m {Path.ChangeExtension(output, ".afm")} -o {output}",
            ErrorLine(Run("train", "--train", data, "-a", "cpu", "--epochs", "1", "--no-progress", "-o", output)));
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void AModelGivenAsDataIsNamedAsSuch()
    {
        // --train model.afm where --pretrain-fm model.afm was meant: one line that says what the file is, not a label
        // made of the model's header bytes.
        string model = PathOf("fm.afm");
        ModelFile.Save(new AfmModel(ModelKind.Fm, 4, 2, 0, LossKind.Squared), model);
        string expected = $"afm-gpu: error: {model}: is an afm-gpu model file, not data (a model is read by --pretrain-fm, and by --model of evaluate, predict and explain)";
        Assert.Equal(expected, ErrorLine(Run("train", "--train", model, "-a", "cpu", "--no-progress", "-o", PathOf("m.afm"))));
        Assert.Equal(expected, ErrorLine(Run("evaluate", "-m", model, "-d", model, "-a", "cpu")));
        Assert.False(File.Exists(PathOf("m.afm")));
    }

    [Fact]
    public void PredictionsThatOverflowAreAnError()
    {
        // A model whose products overflow single precision: its scores are not finite, which predict and evaluate refuse to print
        // (clipped to the label range, they would pass for ordinary predictions).
        var fm = new AfmModel(ModelKind.Fm, 4, 2, 0, LossKind.Squared) { LabelMin = 1, LabelMax = 5 };
        for (int i = 0; i < fm.V.Length; i++) fm.V[i] = i % 3 == 0 ? -1e30f : 1e30f;
        string model = PathOf("overflow.afm");
        ModelFile.Save(fm, model);
        string data = Write("data.libfm", "3\n3 0:1 1:1 2:1 3:1\n");
        string line = ErrorLine(Run("predict", "-m", model, "-d", data, "-a", "cpu"));
        output.WriteLine(line);
        Assert.Matches($"^afm-gpu: error: {System.Text.RegularExpressions.Regex.Escape(data)}: data row 2: the prediction is (NaN|-?∞|-?Infinity): the model's single-precision arithmetic overflows", line);
        Assert.Equal(line, ErrorLine(Run("evaluate", "-m", model, "-d", data, "-a", "cpu")));
    }

    [Fact]
    public void GpuKernelsRefusingALongRowIsOneLine()
    {
        // The GPU kernels hold a row's pair tile in shared memory; a row too long for it is refused with the figures
        // (on ILGPU's CPU accelerator, which runs those kernels and has their 48 KiB limit).
        string data = Write("long.libfm", "3 " + string.Join(' ', Enumerable.Range(0, 4000).Select(i => $"{i}:1")) + "\n" + string.Concat(Enumerable.Range(0, 30).Select(i => $"{i % 5} {i}:1 {i + 1}:1\n")));
        var r = Run("train", "--train", data, "-a", "ilgpu-cpu", "--no-pretrain", "--epochs", "1", "--no-progress", "-o", PathOf("m.afm"));
        string line = ErrorLine(r);
        Assert.Matches(@"^afm-gpu: error: AFM with 4000 non-zeros per row, k = 16, t = 16 needs \d+ bytes of shared memory per work-group; the device offers \d+$", line);
    }

    [Fact]
    public void ControlBytesFromFilesAreNotEchoed()
    {
        string data = Write("ansi.libfm", "3 1:1\n4 2:\u001b[2J\u001b]0;title\u0007 3:1\n");
        var r = Run("train", "--train", data, "-a", "cpu");
        Assert.Contains(":2: malformed token '2:\\x1B[2J\\x1B]0;title\\x07'", ErrorLine(r));
        Assert.DoesNotContain(r.Err, c => c == '\u001b' || c == '\u0007');
    }

    [Fact]
    public void SafetensorsDamageIsCaughtByTheChecksum()
    {
        string data = Ratings("data.libfm", 100);
        string model = Train(data, PathOf("m.afm")), st = PathOf("m.safetensors");
        Assert.Equal(0, Run("export", "-m", model, "-o", st).Code);
        byte[] file = File.ReadAllBytes(st);
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var rng = new Random(5);
        for (int i = 0; i < 20; i++)
        {
            byte[] bad = (byte[])file.Clone();
            bad[8 + n + rng.Next(file.Length - 8 - n)] ^= (byte)(1 << rng.Next(8));
            File.WriteAllBytes(st, bad);
            Assert.Equal($"afm-gpu: error: {st}: checksum mismatch: file is corrupt", ErrorLine(Run("evaluate", "-m", st, "-d", data, "-a", "cpu")).Split(" (")[0]);
        }
    }

    // ---- fuzz ---------------------------------------------------------------------------------

    private static readonly string[] Tokens =
    [
        "1:1", "2:0.5", "3:-2", "0:1", "69:1", "nan", "inf", "-inf", "1:nan", "1:inf", "-1:1", "1:", ":1", "1", "x", "1:1:1", "1:x",
        "2147483647:1", "2147483646:1", "99999999999:1", "1:1e39", "1:3.4e38", "1:1e17", "1:1e19", "1e30", "\u001b[2J", "\0", "\r", "#", "\t",
        "\u0661:1", "\uFEFF", "1:0x10", "1:1,5", "+1:1", "1:+1", "1:.5", "1:5.", "5:1e-45",
    ];

    private string FuzzData(Random rng, int index)
    {
        string path = PathOf($"fuzz{index % 4}.libfm");
        if (rng.Next(20) == 0)
        {
            var bytes = new byte[rng.Next(200)];
            rng.NextBytes(bytes);
            File.WriteAllBytes(path, bytes);
            return path;
        }
        var sb = new StringBuilder();
        int rows = rng.Next(25);
        for (int r = 0; r < rows; r++)
        {
            bool damaged = rng.Next(rows + 1) == 0;
            if (!damaged)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{rng.Next(2)} {rng.Next(30)}:1 {30 + rng.Next(40)}:1\n");
                continue;
            }
            // long rows: some within the limit for k = t = 4 (8192 non-zeros), some just over it
            int tokens = rng.Next(8) != 0 ? rng.Next(6) : rng.Next(2) == 0 ? 50 + rng.Next(250) : Limits.MaxRowNonZeros(4, 4) + 1 + rng.Next(500);
            var parts = new List<string> { rng.Next(3) == 0 ? Tokens[rng.Next(Tokens.Length)] : rng.Next(-2, 7).ToString(CultureInfo.InvariantCulture) };
            for (int t = 0; t < tokens; t++) parts.Add(tokens > 100 ? $"{t}:1" : Tokens[rng.Next(Tokens.Length)]);
            sb.Append(string.Join(rng.Next(5) == 0 ? "\t" : " ", parts)).Append(rng.Next(6) == 0 ? "\r\n" : "\n");
        }
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    private static void AssertClean((int Code, string Out, string Err) r, string[] args, string? file = null, long line = 0)
    {
        string what = string.Join(' ', args.Select(a => a.Length > 60 ? a[..60] + "..." : a));
        Assert.True(r.Code is 0 or 1 or 2, $"{what} -> exit {r.Code}: {r.Err}");
        Assert.False(r.Err.Contains("   at ", StringComparison.Ordinal), $"{what}: stack trace: {r.Err}");
        Assert.False(r.Err.Contains("internal error", StringComparison.Ordinal), $"{what}: {r.Err}");
        Assert.False(r.Err.Any(c => char.IsControl(c) && c != '\n'), $"{what}: raw control character in: {Printable(r.Err)}");
        if (r.Code == 0) return;
        var errors = r.Err.Split('\n').Where(l => l.StartsWith("afm-gpu: error: ", StringComparison.Ordinal)).ToList();
        Assert.True(errors.Count == 1, $"{what}: {errors.Count} error lines: {r.Err}");
        if (file is not null && line > 0)
            Assert.True(errors[0].Contains($"{file}:{line}: ", StringComparison.Ordinal), $"{what}: expected {file}:{line} in: {errors[0]}");
    }

    private static string Printable(string s) => Afm.Gpu.IO.Printable.Escape(s);

    private static TimeSpan Budget => TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("AFM_FUZZ_SECONDS"), CultureInfo.InvariantCulture, out double s) ? s : 2);

    private static readonly Dictionary<string, string[]> Accepts = new()
    {
        ["train"] = ["-k", "--dim", "-t", "--epochs", "--batch", "--lr", "--optimizer", "--loss", "--model", "--lambda", "--keep0", "--keep1", "--seed", "--patience",
            "--l2-embedding", "--l2-linear", "--pretrain-keep1", "--validation-fraction", "--threads", "-a", "--train", "--validation", "--test", "--pretrain-fm", "-o", "--no-progress"],
        ["evaluate"] = ["-m", "-d", "-a", "--threads"],
        ["predict"] = ["-m", "-d", "-o", "--top-pairs", "--feature-map", "-a", "--threads"],
        ["explain"] = ["-m", "-d", "--rows", "--top", "--feature-map", "--fields", "--csv", "--json", "--svg", "--heat", "-a", "--threads"],
        ["export"] = ["-m", "-o", "--import", "--format", "--no-attention"],
    };

    [Fact]
    public void Fuzz_DataFilesModelFilesAndOptions()
    {
        var rng = new Random(20261201);
        string good = Ratings("good.libfm", 120);
        string model = Train(good, PathOf("good.afm"));
        string st = PathOf("good.safetensors");
        Assert.Equal(0, Run("export", "-m", model, "-o", st).Code);
        var loaded = ModelFile.Load(model);
        var counts = new Dictionary<string, int[]>(); // part -> runs by exit code 0, 1, 2
        var slowest = new Dictionary<string, (double Seconds, string Args)>();
        var run = Stopwatch.StartNew();
        void Count(string part, int code, string[] args)
        {
            (counts.TryGetValue(part, out var c) ? c : counts[part] = new int[3])[code]++;
            double seconds = run.Elapsed.TotalSeconds;
            if (!slowest.TryGetValue(part, out var s) || seconds > s.Seconds) slowest[part] = (seconds, string.Join(' ', args.Select(a => a.Length > 40 ? a[..40] : a)));
        }

        // 1. data files through the reader, train, evaluate and predict: errors name the file and the line the reader names
        var clock = Stopwatch.StartNew();
        for (int i = 0; clock.Elapsed < Budget || i < 30; i++)
        {
            string data = FuzzData(rng, i);
            string outModel = PathOf("fuzz-out.afm");
            File.Delete(outModel);
            string[] args = (i % 3) switch
            {
                0 => ["train", "--train", data, "-k", "4", "-t", "4", "--epochs", "1", "--batch", "16", "-a", "cpu", "--no-progress", "-o", outModel, (i % 2 == 0 ? "--loss=logistic" : "--loss=squared")],
                1 => ["evaluate", "-m", i % 2 == 0 ? model : st, "-d", data, "-a", "cpu"],
                _ => ["predict", "-m", model, "-d", data, "-a", "cpu"],
            };
            var options = i % 3 == 0
                ? new LibFmReadOptions { BinaryLabels = i % 2 == 0, MaxRowNonZeros = Limits.MaxRowNonZeros(4, 4), MaxFeatureCount = Limits.MaxFeatureCount(4) }
                : CliApp.ReadOptionsFor(loaded, labelsMatter: i % 3 == 1);
            long line = 0;
            try { LibFmReader.Read(data, options); }
            catch (DataFormatException e) { line = e.Line; }
            run.Restart();
            var r = Run(args);
            AssertClean(r, args, data, line);
            if (line > 0) Assert.Equal(1, r.Code);
            if (r.Code == 0 && i % 3 == 0)
                foreach (var (name, values, _) in ModelFile.Load(outModel).Tensors())
                    Assert.True(values.All(float.IsFinite), $"{name} of a model written from {data} is not finite");
            Count("data", r.Code, args);
        }

        // 2. damaged model files (native and safetensors) through evaluate and the library loader
        byte[][] originals = [File.ReadAllBytes(model), File.ReadAllBytes(st)];
        clock.Restart();
        for (int i = 0; clock.Elapsed < Budget || i < 30; i++)
        {
            byte[] bad = [.. originals[i % 2]];
            int n = i % 2 == 1 ? (int)BinaryPrimitives.ReadUInt64LittleEndian(bad) : 64;
            switch (rng.Next(5))
            {
                case 0: bad = bad[..rng.Next(bad.Length)]; break;
                case 1: bad[rng.Next(bad.Length)] ^= (byte)(1 << rng.Next(8)); break;
                case 2: for (int j = rng.Next(1, 5); j > 0; j--) bad[8 + rng.Next(n)] = (byte)rng.Next(256); break;
                case 3: for (int j = rng.Next(1, 5); j > 0; j--) bad[8 + rng.Next(n)] = "{}[]\",:0123456789-e \\"u8[rng.Next(21)]; break;
                default: bad = [.. bad, .. new byte[rng.Next(1, 9)]]; break;
            }
            string path = PathOf(i % 2 == 0 ? "bad.afm" : "bad.safetensors");
            File.WriteAllBytes(path, bad);
            bool libraryFailed = false;
            try { AfmEngine.LoadModel(path); }
            catch (ModelFormatException e) { libraryFailed = true; Assert.StartsWith(path + ": ", e.Message); }
            string[] args = ["evaluate", "-m", path, "-d", good, "-a", "cpu"];
            run.Restart();
            var r = Run(args);
            AssertClean(r, args);
            if (libraryFailed) Assert.StartsWith($"afm-gpu: error: {path}: ", r.Err.Split('\n').Single(l => l.StartsWith("afm-gpu: error: ", StringComparison.Ordinal)));
            if (i % 2 == 0 && !bad.AsSpan().SequenceEqual(originals[0])) Assert.True(libraryFailed, "a damaged native model file loaded");
            Count("model", r.Code, args);
        }

        // 3. random command lines
        string[] verbs = ["train", "train", "train", "evaluate", "predict", "explain", "export", "devices", "nonsense", "--help", ""];
        (string Option, string[] Values)[] vocab =
        [
            ("-k", ["0", "-3", "1", "4", "5000", "x", "1e3", ""]), ("--dim", ["4", "2147483647"]), ("-t", ["0", "2", "4097", "-1"]),
            ("--epochs", ["-1", "0", "1", "2", "x"]), ("--batch", ["0", "-5", "1", "7", "2000000", "x"]), ("--lr", ["0", "-1", "nan", "inf", "1e-3", "0.1", "1e30", "x"]),
            ("--optimizer", ["adam", "sgd", "adagrad", "rmsprop", ""]), ("--loss", ["squared", "logistic", "hinge"]), ("--model", ["afm", "fm", "ffm"]),
            ("--lambda", ["-1", "0", "0.1", "nan"]), ("--l2-embedding", ["-1", "0", "1e-4", "inf"]), ("--l2-linear", ["-0.5", "0.01"]), ("--pretrain-keep1", ["0", "1", "1.5"]), ("--keep0", ["0", "0.5", "1", "2"]), ("--keep1", ["-0.5", "1"]), ("--seed", ["-1", "7", "x"]),
            ("--patience", ["-1", "0", "2"]), ("--validation-fraction", ["-0.1", "0", "0.01", "0.5", "1", "nan"]), ("--threads", ["-1", "0", "1", "1000", "x"]),
            ("-a", ["cpu", "tpu", "opencl:x", "cuda:99", "cpu:1"]), ("--train", ["good", "missing", "model"]), ("--validation", ["good", "missing"]),
            ("--test", ["good", "model"]), ("--pretrain-fm", ["model", "good", "missing"]), ("-o", ["out", "good", "model", "dir", "missing-dir"]),
            ("-m", ["model", "st", "good", "missing"]), ("-d", ["good", "model", "missing"]), ("--rows", ["-1", "0", "2"]), ("--top", ["0", "3"]),
            ("--top-pairs", ["-1", "2"]), ("--fields", ["a:0-10,b:11-99", "a:5-1", "x", "a:0-10,a:5-20"]), ("--feature-map", ["good", "missing"]),
            ("--csv", ["out", "good"]), ("--json", ["out", "model"]), ("--svg", ["out"]), ("--heat", ["attention", "x"]), ("--import", [""]),
            ("--no-progress", [""]), ("--bogus", ["1"]),
        ];
        string Resolve(string v) => v switch
        {
            "good" => good, "model" => model, "st" => st, "missing" => PathOf("missing.file"), "out" => PathOf("out.file"),
            "dir" => _dir + "/", "missing-dir" => PathOf("no/such/out.file"), _ => v,
        };
        clock.Restart();
        for (int i = 0; clock.Elapsed < Budget || i < 30; i++)
        {
            var args = new List<string>();
            string verb = verbs[rng.Next(verbs.Length)];
            if (verb.Length > 0) args.Add(verb);
            // keep training runs short (little data, one epoch, small k and t) and off the synthetic demo
            if (verb == "train") args.AddRange(["--train", good, "--epochs", "1", "-k", "4", "-t", "4"]);
            var used = new HashSet<string>(args);
            for (int j = rng.Next(7); j > 0; j--)
            {
                // mostly options the command has, sometimes any
                var (option, values) = vocab[rng.Next(vocab.Length)];
                if (Accepts.TryGetValue(verb, out var accepted) && !accepted.Contains(option) && rng.Next(6) != 0) continue;
                if (!used.Add(option) && rng.Next(4) != 0) continue;
                args.Add(option);
                string value = values[rng.Next(values.Length)];
                // a value is left out only at the end, so that a file option never takes the next option as its path
                if (value.Length > 0 && (j > 1 || rng.Next(12) != 0)) args.Add(Resolve(value));
            }
            if (verb == "train" && !used.Contains("-o")) args.Insert(1, PathOf("out.file"));
            if (verb == "train" && !used.Contains("-o")) args.Insert(1, "-o");
            if (verb is "train" or "evaluate" or "predict" or "explain" && !used.Contains("-a")) args.InsertRange(1, ["-a", "cpu"]);
            if (rng.Next(15) == 0) args.Insert(Math.Min(1, args.Count), Tokens[rng.Next(Tokens.Length)]);
            string[] argv = [.. args];
            run.Restart();
            var r = Run(argv);
            AssertClean(r, argv);
            Count("options", r.Code, argv);
        }

        foreach (var (part, c) in counts)
            output.WriteLine($"{part}: {c.Sum()} runs, exit 0: {c[0]}, exit 1: {c[1]}, exit 2: {c[2]}; slowest {slowest[part].Seconds:F2} s: {slowest[part].Args}");
        Assert.True(counts["data"][1] > 0 && counts["model"][1] > 0 && counts["options"][1] > 0 && counts["options"][2] > 0);
    }
}
