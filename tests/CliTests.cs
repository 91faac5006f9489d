using System.Globalization;
using CliApp = Afm.Cli.Cli;
using Afm.Gpu.Accelerators.Cpu;
using Afm.Gpu.Data;
using Afm.Gpu.Model;
using Afm.Gpu.Training;

namespace Afm.Gpu.Tests;

/// <summary>The afm-gpu command end to end, in process.</summary>
public sealed class CliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("afm-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private string WriteData(string name, int rows, int seed)
    {
        var rng = new Random(seed);
        var lines = new List<string>();
        for (int r = 0; r < rows; r++)
        {
            int user = rng.Next(30), item = 30 + rng.Next(40), extra = rng.Next(3);
            var parts = new List<string> { (1 + (user + item) % 5).ToString(CultureInfo.InvariantCulture), $"{user}:1", $"{item}:1" };
            for (int x = 0; x < extra; x++) parts.Add($"{70 + rng.Next(10)}:{0.5 + x * 0.25:0.00}");
            lines.Add(string.Join(' ', parts));
        }
        string path = Path.Combine(_dir, name);
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public void TrainEvaluatePredictRoundTrip()
    {
        string train = WriteData("train.libfm", 600, 1), test = WriteData("test.libfm", 150, 2);
        string model = Path.Combine(_dir, "m.afm");
        var (code, stdout, stderr) = Run("train", "--train", train, "--test", test, "-k", "8", "-t", "4", "--epochs", "3", "--batch", "128", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("epoch   1", stdout);
        Assert.Contains("samples/s", stdout);
        Assert.Matches(@"test \(.*\): 150 rows  rmse \d\.\d{4}", stdout);
        Assert.True(File.Exists(model));

        var (ecode, eout, _) = Run("evaluate", "-m", model, "-d", test, "--accelerator", "cpu");
        Assert.Equal(0, ecode);
        Assert.Matches(@"150 rows  rmse \d\.\d{4} mae \d\.\d{4}", eout);

        string predictions = Path.Combine(_dir, "pred.txt");
        var (pcode, _, perr) = Run("predict", "-m", model, "-d", test, "-o", predictions, "--accelerator", "cpu");
        Assert.True(pcode == 0, perr);
        var lines = File.ReadAllLines(predictions);
        Assert.Equal(150, lines.Length);
        // The printed predictions are the model's predictions, bit for bit (round-trip formatting).
        var loaded = ModelFile.Load(model);
        var data = LibFmReader.Read(test);
        using var acc = new CpuAccelerator();
        using var predictor = new Predictor(acc, loaded, data.MaxNnz);
        var expected = predictor.Predict(data);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], float.Parse(lines[i], CultureInfo.InvariantCulture));
    }

    [Fact]
    public void FmThenAfmPretrainedFromIt()
    {
        string train = WriteData("train.libfm", 400, 3);
        string fm = Path.Combine(_dir, "fm.afm"), afm = Path.Combine(_dir, "afm.afm");
        var r1 = Run("train", "--train", train, "--model", "fm", "-k", "8", "--epochs", "2", "--accelerator", "cpu", "-o", fm, "--no-progress");
        Assert.True(r1.Code == 0, r1.Err);
        var r2 = Run("train", "--train", train, "--model", "afm", "-k", "8", "-t", "8", "--epochs", "2", "--pretrain-fm", fm, "--accelerator", "cpu", "-o", afm, "--no-progress");
        Assert.True(r2.Code == 0, r2.Err);
        Assert.Contains("initialised embeddings", r2.Out);
        var fmModel = ModelFile.Load(fm);
        var r3 = Run("train", "--train", train, "--model", "afm", "-k", "4", "--epochs", "1", "--pretrain-fm", fm, "--accelerator", "cpu", "-o", afm, "--no-progress");
        Assert.Equal(CliApp.UserError, r3.Code);
        Assert.Contains("k = 8", r3.Err);
        Assert.Equal(8, fmModel.K);
    }

    [Fact]
    public void AfmPretrainsAnFmByDefaultAndSaysHowManyRowsAreHeldOut()
    {
        string train = WriteData("train.libfm", 500, 4);
        string model = Path.Combine(_dir, "afm.afm");
        var r = Run("train", "--train", train, "-k", "8", "-t", "4", "--epochs", "2", "--lambda", "0,1", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("validation: 50 of 500 training rows held out", r.Out);
        // with the AFM's dropout and without, keeping the FM whose AFM validates better
        Assert.Contains("pre-training an FM (k = 8, dropout keep1 0.8) on the same rows", r.Out);
        Assert.Contains("pre-training an FM (k = 8, no dropout) on the same rows", r.Out);
        Assert.Contains("FM epoch   2", r.Out);
        Assert.Contains("AFM with λ = 1", r.Out);
        Assert.Matches(@"λ = [01] chosen", r.Out);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(r.Out, @"pre-training kept: keep1 (0\.8|1), FM best epoch \d+, AFM best epoch \d+ \(AFM validation scores: keep1 0\.8: [0-9.]+, keep1 1: [0-9.]+\)"), r.Out);
        // then the AFM's own dropout: 0.8 and 0.5, the one that validates better kept and recorded in the model
        var afmKept = System.Text.RegularExpressions.Regex.Match(r.Out, @"AFM dropout kept: keep1 (0\.8|0\.5), best epoch \d+ \(validation scores: keep1 0\.8: [0-9.]+, keep1 0\.5: [0-9.]+\)");
        Assert.True(afmKept.Success, r.Out);
        Assert.Equal(afmKept.Groups[1].Value, ModelFile.LoadWithMetadata(model).Metadata.Properties["keep1"]);
        Assert.Contains("keep1=0.8,0.5 pretrain_keep1=0.8,1", ModelFile.LoadWithMetadata(model).Metadata.Properties["options"]);
        var given = Run("train", "--train", train, "-k", "8", "-t", "4", "--epochs", "1", "--pretrain-keep1", "1", "--keep1", "0.8", "--no-refit", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(given.Code == 0, given.Err);
        Assert.Contains("pre-training an FM (k = 8) on the same rows", given.Out);
        Assert.DoesNotContain("pre-training kept", given.Out);
        Assert.DoesNotContain("AFM dropout kept", given.Out); // a dropout given trains once
        Assert.False(ModelFile.LoadWithMetadata(model).Metadata.Properties.ContainsKey("keep1"));
        Assert.Contains("refit: the AFM on all 500 rows", r.Out);
        // the recipe's cost: every epoch line it printed, in its runs (each run that trained an epoch starts at epoch 1)
        var cost = System.Text.RegularExpressions.Regex.Match(r.Out, @"trained (\d+) epochs in (\d+) runs, [0-9.]+ s");
        Assert.True(cost.Success, r.Out);
        Assert.Equal(System.Text.RegularExpressions.Regex.Matches(r.Out, @"(?m)^(FM )?epoch +\d+ ").Count, int.Parse(cost.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.Equal(System.Text.RegularExpressions.Regex.Matches(r.Out, @"(?m)^(FM )?epoch +1 ").Count, int.Parse(cost.Groups[2].Value, CultureInfo.InvariantCulture));

        var scratch = Run("train", "--train", train, "-k", "8", "-t", "4", "--epochs", "1", "--no-pretrain", "--no-refit", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(scratch.Code == 0, scratch.Err);
        Assert.DoesNotContain("pre-training", scratch.Out);
        Assert.DoesNotContain("refit", scratch.Out);
        // With a validation file of its own the run keeps its best epoch's model, unless --refit asks for the refit.
        string valid = WriteData("valid.libfm", 60, 4);
        var kept = Run("train", "--train", train, "--validation", valid, "--model", "fm", "-k", "4", "--epochs", "1", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(kept.Code == 0, kept.Err);
        Assert.DoesNotContain("refit", kept.Out);
        // an FM is trained with the default dropout and without, and the one that validates better is kept
        Assert.Contains("FM with dropout keep1 0.8 (of keep1 0.8, 1 the best validation score is kept)", kept.Out);
        var fmKept = System.Text.RegularExpressions.Regex.Match(kept.Out, @"FM dropout kept: keep1 (0\.8|1), best epoch \d+ \(validation scores: keep1 0\.8: [0-9.]+, keep1 1: [0-9.]+\)");
        Assert.True(fmKept.Success, kept.Out);
        Assert.Equal(fmKept.Groups[1].Value, ModelFile.LoadWithMetadata(model).Metadata.Properties["keep1"]);
        var fixedKeep = Run("train", "--train", train, "--validation", valid, "--model", "fm", "--keep1", "0.8", "-k", "4", "--epochs", "1", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(fixedKeep.Code == 0, fixedKeep.Err);
        Assert.DoesNotContain("FM dropout kept", fixedKeep.Out);
        var refit = Run("train", "--train", train, "--validation", valid, "--refit", "--model", "fm", "-k", "4", "--epochs", "1", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(refit.Code == 0, refit.Err);
        Assert.Contains("refit: the FM on all 560 rows", refit.Out);
        Assert.Equal("afm-gpu: error: give --refit or --no-refit, not both",
            Run("train", "--train", train, "--refit", "--no-refit", "--accelerator", "cpu", "-o", model).Err.Trim());

        var both = Run("train", "--train", train, "--no-pretrain", "--pretrain-fm", model, "--accelerator", "cpu", "-o", model);
        Assert.Equal(CliApp.UserError, both.Code);
        var badLambda = Run("train", "--train", train, "--lambda", "0,-1", "--accelerator", "cpu", "-o", model);
        Assert.Equal(CliApp.UserError, badLambda.Code);
        Assert.Contains("--lambda -1", badLambda.Err);
    }

    [Theory]
    [InlineData("afm")]
    [InlineData("fm")]
    public void TheLibrarysRecommendedOptionsTrainTheCommandLinesModel(string kind)
    {
        // The same recipe (λ, the dropouts, the refit) from the command line's defaults and from TrainerOptions.Recommended,
        // compared bit for bit; only the shape and the epoch cap are set, on both sides alike.
        string train = WriteData("train.libfm", 1200, 5);
        string model = Path.Combine(_dir, kind + ".afm");
        var r = Run("train", "--train", train, "--model", kind, "-k", "8", "-t", "4", "--epochs", "4", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains(kind == "fm" ? "FM dropout kept" : "pre-training kept", r.Out);
        Assert.Contains("refit:", r.Out);

        var options = TrainerOptions.Recommended();
        options.Model = kind == "fm" ? ModelKind.Fm : ModelKind.Afm;
        options.K = 8;
        options.T = 4;
        options.Epochs = 4;
        var messages = new List<string>();
        using var trained = AfmEngine.Train(LibFmReader.Read(train), options, accelerator: "cpu", log: messages.Add);
        Assert.True(trained.Recipe!.Refitted);
        Assert.Contains(messages, m => m.StartsWith(kind == "fm" ? "FM dropout kept" : "pre-training kept", StringComparison.Ordinal));
        var cli = ModelFile.Load(model);
        foreach (var ((name, x, _), (_, y, _)) in cli.Tensors().Zip(trained.Model.Tensors()))
            Assert.True(x.Select(BitConverter.SingleToInt32Bits).SequenceEqual(y.Select(BitConverter.SingleToInt32Bits)), $"{name} differs");
        Assert.Equal(cli.Tensors().Count(), trained.Model.Tensors().Count());
    }

    [Fact]
    public void TheLibrarysEvaluateScoresAsTheEvaluateVerbDoes()
    {
        string train = WriteData("train.libfm", 600, 8), test = WriteData("test.libfm", 200, 9);
        string binary = Path.Combine(_dir, "binary.libfm");
        File.WriteAllLines(binary, File.ReadAllLines(train).Select(l => (l[0] is '1' or '2' ? "1" : "-1") + l[1..]));
        foreach (var (data, loss, name) in new[] { (train, "squared", "squared"), (binary, "logistic", "logistic"), (binary, "squared", "squared-binary") })
        {
            string model = Path.Combine(_dir, name + ".afm");
            var r = Run("train", "--train", data, "--loss", loss, "-k", "4", "-t", "4", "--epochs", "2", "--lambda", "0", "--pretrain-keep1", "1", "--accelerator", "cpu", "-o", model, "--no-progress");
            Assert.True(r.Code == 0, r.Err);
            string scored = name == "squared" ? test : binary;
            var e = Run("evaluate", "--model", model, "--data", scored, "--accelerator", "cpu");
            Assert.True(e.Code == 0, e.Err);
            using var trained = TrainedModel.Load(model, "cpu");
            var m = trained.Evaluate(trained.Read(scored, labelsMatter: true));
            Assert.Equal($"{scored}: {m.Rows} rows  {m.Format(trained.Model.Loss)}", e.Out.Trim());
            Assert.Equal(name == "squared" ? 200 : 600, m.Rows);
            if (name == "squared") Assert.True(double.IsNaN(m.LogLoss) && double.IsNaN(m.Auc) && m.Rmse > 0, "ratings: rmse and mae");
            else if (loss == "squared") Assert.True(double.IsNaN(m.LogLoss) && m.Auc is > 0.5 and <= 1 && e.Out.Contains(" auc "), "-1/1 labels: rmse, mae and auc");
            else Assert.True(m.Auc is > 0 and <= 1 && m.LogLoss > 0);
            if (name != "squared-binary") continue;
            // streamed from a cache, block by block: the same errors, the AUC binned
            var c = Run("evaluate", "--model", model, "--data", scored, "--cache", "always", "--accelerator", "cpu");
            Assert.True(c.Code == 0, c.Err);
            var streamed = System.Text.RegularExpressions.Regex.Match(c.Out, @"rmse (\d\.\d{4}) mae (\d\.\d{4}) auc (\d\.\d{4})");
            Assert.True(streamed.Success, c.Out);
            Assert.Equal($"{m.Rmse:F4} {m.Mae:F4}", $"{streamed.Groups[1].Value} {streamed.Groups[2].Value}");
            Assert.Equal(m.Auc, double.Parse(streamed.Groups[3].Value, CultureInfo.InvariantCulture), 2e-3);
        }
        using var logistic = TrainedModel.Load(Path.Combine(_dir, "logistic.afm"), "cpu");
        var rated = logistic.Read(test); // ratings 1..5: not labels a logistic model is scored on
        var error = Assert.Throws<ArgumentException>(() => logistic.Evaluate(rated));
        Assert.Matches(@"row \d+ has label [2-5]; a logistic model is scored on labels 0/1 or -1/1", error.Message);
    }

    [Fact]
    public void ARunCutByTheEpochCapSaysSo()
    {
        string train = WriteData("train.libfm", 3000, 10);
        string model = Path.Combine(_dir, "fm.afm");
        const string Note = "note: the best epoch is the last one --epochs allows (1), so the model was still improving";
        var cut = Run("train", "--train", train, "--model", "fm", "--keep1", "1", "-k", "4", "--epochs", "1", "--batch", "64", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(cut.Code == 0, cut.Err);
        Assert.Contains("best epoch 1, refit on all rows", cut.Out);
        Assert.Contains(Note, cut.Out);
        // without validation rows nothing chose the epoch: no note
        var all = Run("train", "--train", train, "--model", "fm", "--keep1", "1", "-k", "4", "--epochs", "1", "--batch", "64", "--validation-fraction", "0", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(all.Code == 0, all.Err);
        Assert.DoesNotContain("note: the best epoch", all.Out);
        // stopped early, before the cap: no note
        var early = Run("train", "--train", train, "--model", "fm", "--keep1", "1", "-k", "4", "--epochs", "60", "--patience", "1", "--batch", "64", "--lr", "0.5", "--accelerator", "cpu", "-o", model, "--no-progress");
        Assert.True(early.Code == 0, early.Err);
        var best = System.Text.RegularExpressions.Regex.Match(early.Out, @"best epoch (\d+), refit");
        Assert.True(best.Success && int.Parse(best.Groups[1].Value, CultureInfo.InvariantCulture) < 60, early.Out);
        Assert.DoesNotContain("note: the best epoch", early.Out);
    }

    [Fact]
    public void TheRecommendedOptionsAreValidAndTheirListsAreTheirOwn()
    {
        var a = TrainerOptions.Recommended();
        a.Validate();
        Assert.Equal([0f, 0.3f, 3f], a.LambdaCandidates!);
        Assert.Equal([TrainerOptions.RecommendedKeep1, 1f], a.Keep1Candidates!);
        Assert.Equal([TrainerOptions.RecommendedKeep1, 1f], a.PretrainKeep1Candidates!);
        Assert.Equal([TrainerOptions.RecommendedKeep1, 0.5f], a.AfmKeep1Candidates!);
        a.LambdaCandidates![0] = 9f;
        a.Keep1Candidates![0] = 0.5f;
        a.AfmKeep1Candidates![1] = 1f;
        var b = TrainerOptions.Recommended();
        Assert.Equal(0f, b.LambdaCandidates![0]);
        Assert.Equal(TrainerOptions.RecommendedKeep1, b.Keep1Candidates![0]);
        Assert.Equal(0.5f, b.AfmKeep1Candidates![1]);
        Assert.Equal(0f, TrainerOptions.DefaultLambdaCandidates[0]);
    }

    [Fact]
    public void DemoDataWritesThePlantedRowsAsLibFm()
    {
        string dir = Path.Combine(_dir, "new", "demo"); // created as mkdir -p creates it
        var r = Run("demo-data", "-o", dir, "--binary");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"created directory {dir}", r.Out);
        var train = LibFmReader.Read(Path.Combine(dir, "train.libfm"));
        var test = LibFmReader.Read(Path.Combine(dir, "test.libfm"));
        var planted = Afm.Gpu.Synthetic.PlantedData.Generate();
        Assert.Equal(planted.Train.Rows, train.Rows);
        Assert.Equal(planted.Test.Rows, test.Rows);
        Assert.True(planted.Train.FeatureIds.SequenceEqual(train.FeatureIds));
        Assert.All(train.Labels, y => Assert.True(y is 1f or -1f));
        // the median splits the training labels in half
        Assert.InRange(train.Labels.Count(y => y > 0), train.Rows / 2 - 1, train.Rows / 2);

        var again = Run("demo-data", "-o", dir); // into the existing directory, which is not announced
        Assert.True(again.Code == 0, again.Err);
        Assert.DoesNotContain("created", again.Out);
        Assert.Contains(LibFmReader.Read(Path.Combine(dir, "train.libfm")).Labels, y => y is not (1f or -1f));
        var file = Run("demo-data", "-o", Path.Combine(dir, "train.libfm"));
        Assert.Equal(CliApp.UserError, file.Code);
        Assert.Contains("train.libfm: is a file", file.Err);
    }

    [Theory]
    [InlineData("5 1:1 2:x\n", ":1: malformed token '2:x'")]
    [InlineData("3 1:1\n4 -2:1\n", ":2: negative feature id")]
    [InlineData("3 1:1\nnan 2:1\n", ":2: label")]
    [InlineData("", "no data rows")]
    [InlineData("1:1 2:1\n", ":1: missing label")]
    [InlineData("1\n0\n1\n", ": no features: every row is a label alone")]
    public void BadDataGivesOneLineErrorWithFileAndLine(string content, string expected)
    {
        string path = Path.Combine(_dir, "bad.libfm");
        File.WriteAllText(path, content);
        var (code, _, err) = Run("train", "--train", path, "--accelerator", "cpu", "-o", Path.Combine(_dir, "x.afm"));
        Assert.Equal(CliApp.UserError, code);
        Assert.Contains("bad.libfm", err);
        Assert.Contains(expected, err);
        Assert.DoesNotContain("   at ", err); // no stack trace
        Assert.False(File.Exists(Path.Combine(_dir, "x.afm")));
    }

    [Fact]
    public void UnknownIdsAreAnErrorOrWithIgnoreDroppedFromTheirRows()
    {
        string train = WriteData("t.libfm", 300, 4), model = Path.Combine(_dir, "m.afm");
        Assert.Equal(0, Run("train", "--train", train, "--epochs", "3", "--accelerator", "cpu", "--no-progress", "-o", model).Code);
        int features = Afm.Gpu.AfmEngine.LoadModel(model).FeatureCount;
        // Rows with ids beyond the model, and the same rows with those ids removed by hand.
        string[] rows = File.ReadAllLines(train).Take(20).ToArray();
        var withNew = rows.Select((l, i) => i % 3 == 0 ? $"{l} {features + i}:1" : i == 1 ? $"{l.Split(' ')[0]} {features}:2" : l).ToArray();
        var removed = rows.Select((l, i) => i == 1 ? l.Split(' ')[0] : l).ToArray();
        string data = Path.Combine(_dir, "new.libfm"), plain = Path.Combine(_dir, "plain.libfm");
        File.WriteAllLines(data, withNew);
        File.WriteAllLines(plain, removed);

        var e = Run("predict", "-m", model, "-d", data, "--accelerator", "cpu");
        Assert.Equal(CliApp.UserError, e.Code);
        Assert.Contains($"new.libfm:1: feature id {features} is not below the model's feature count {features} (a feature new since training; afm-gpu's --unknown-ids ignore", e.Err);

        var expected = Run("predict", "-m", model, "-d", plain, "--accelerator", "cpu");
        var got = Run("predict", "-m", model, "-d", data, "--accelerator", "cpu", "--unknown-ids", "ignore");
        Assert.True(got.Code == 0, got.Err);
        Assert.Equal(expected.Out, got.Out);
        Assert.Contains($"note: {data}: dropped 8 non-zeros in 8 rows whose feature ids the model has no row for (>= {features}); they count as absent", got.Err);
        Assert.DoesNotContain("dropped", expected.Err);

        // The same from a cache, which is read block by block.
        string cache = Path.Combine(_dir, "new.afmbin");
        Assert.Equal(0, Run("cache", data, "-o", cache).Code);
        var fromText = Run("evaluate", "-m", model, "-d", plain, "--accelerator", "cpu");
        var fromCache = Run("evaluate", "-m", model, "-d", cache, "--accelerator", "cpu", "--unknown-ids", "ignore");
        Assert.True(fromCache.Code == 0, fromCache.Err);
        Assert.Equal(fromText.Out.Split("rows")[1], fromCache.Out.Split("rows")[1]);
        Assert.Contains("dropped 8 non-zeros in 8 rows", fromCache.Err);
        Assert.Equal(CliApp.UserError, Run("evaluate", "-m", model, "-d", cache, "--accelerator", "cpu").Code);
        Assert.Contains("use error or ignore", Run("evaluate", "-m", model, "-d", data, "--unknown-ids", "skip").Err);
    }

    [Fact]
    public void TrainRefusesToWriteItsModelIntoItsLog()
    {
        if (OperatingSystem.IsWindows()) return;
        string train = WriteData("t.libfm", 50, 4);
        foreach (string output in new[] { "/dev/stdout", "/proc/self/fd/1" })
        {
            var r = Run("train", "--train", train, "--model", "fm", "--epochs", "1", "--accelerator", "cpu", "-o", output);
            Assert.Equal(CliApp.UserError, r.Code);
            Assert.Contains($"-o/--output {output}: is standard output, where train writes its log", r.Err);
        }
    }

    [Fact]
    public void PredictionsOnStandardOutputAreAllItHolds()
    {
        string train = WriteData("t.libfm", 100, 4), model = Path.Combine(_dir, "m.afm");
        Assert.Equal(0, Run("train", "--train", train, "--model", "fm", "--epochs", "1", "--accelerator", "cpu", "--no-progress", "-o", model).Code);
        // Converting into a cache says so; that message must not land among the predictions.
        var r = Run("predict", "-m", model, "-d", train, "--accelerator", "cpu", "--cache", "always", "--cache-dir", Path.Combine(_dir, "cache"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("converting", r.Err);
        string[] lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(100, lines.Length);
        Assert.All(lines, l => Assert.True(float.TryParse(l, System.Globalization.CultureInfo.InvariantCulture, out _), l));
    }

    [Fact]
    public void TestingOnTheTrainingFileIsNoted()
    {
        string train = WriteData("t.libfm", 200, 4), other = WriteData("v.libfm", 50, 4);
        var r = Run("train", "--train", train, "--test", train, "--validation", other, "--model", "fm", "--epochs", "1", "--accelerator", "cpu", "--no-progress", "-o", Path.Combine(_dir, "m.afm"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"note: --test {train} is the training file, so its scores measure rows the model is trained on, not new ones", r.Out);
        Assert.DoesNotContain("note: --validation", r.Out);
        r = Run("train", "--train", train, "--test", other, "--model", "fm", "--epochs", "1", "--accelerator", "cpu", "--no-progress", "-o", Path.Combine(_dir, "m.afm"));
        Assert.DoesNotContain("is the training file", r.Out);
    }

    [Fact]
    public void EvaluationsWithinEpochsPickAModelWithinAnEpochAndTheRefitTrainsToIt()
    {
        // 540 training rows after the 60 held out, in 12 batches of 45: validated after 3, 6, 9 and 12 of them
        string train = WriteData("t.libfm", 600, 6);
        var r = Run("train", "--train", train, "--model", "fm", "--keep1", "1", "--epochs", "3", "--patience", "0", "--evals-per-epoch", "4",
            "--batch", "45", "--lr", "0.2", "--accelerator", "cpu", "--no-progress", "-o", Path.Combine(_dir, "m.afm"));
        Assert.True(r.Code == 0, r.Err);
        var lines = r.Out.Split('\n');
        var validated = lines.Where(l => l.StartsWith("epoch", StringComparison.Ordinal) && l.Contains("valid rmse")).ToList();
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (i / 4.0).ToString("0.00", CultureInfo.InvariantCulture)), validated.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]));
        string best = validated.Last(l => l.EndsWith('*')).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        string bestText = double.Parse(best, CultureInfo.InvariantCulture).ToString("0.##", CultureInfo.InvariantCulture);
        Assert.Contains($"refit: the FM on all 600 rows for {bestText} epochs (its best epoch count)", r.Out);
        Assert.Contains($"best epoch {bestText}, refit on all rows", r.Out);
        double trained = 3 + double.Parse(best, CultureInfo.InvariantCulture);
        Assert.Contains($"trained {trained.ToString("0.##", CultureInfo.InvariantCulture)} epochs in 2 runs", r.Out);
        // the refit's epochs: whole ones, then the last one's share
        var refit = lines.SkipWhile(l => !l.StartsWith("refit:", StringComparison.Ordinal)).Where(l => l.StartsWith("epoch", StringComparison.Ordinal)).ToList();
        Assert.Equal((int)Math.Ceiling(trained - 3), refit.Count);
        Assert.Equal(best, refit[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);

        var none = Run("train", "--train", train, "--model", "fm", "--keep1", "1", "--epochs", "1", "--evals-per-epoch", "4", "--validation-fraction", "0",
            "--accelerator", "cpu", "--no-progress", "-o", Path.Combine(_dir, "n.afm"));
        Assert.True(none.Code == 0, none.Err);
        Assert.Contains("note: --evals-per-epoch 4 has no validation rows to score", none.Out);
        Assert.Single(none.Out.Split('\n'), l => l.StartsWith("epoch", StringComparison.Ordinal));
        var bad = Run("train", "--train", train, "--evals-per-epoch", "0", "--accelerator", "cpu");
        Assert.Equal(CliApp.UserError, bad.Code);
        Assert.Contains("--evals-per-epoch 0: must be in 1..1000", bad.Err);
    }

    [Fact]
    public void ZeroOneLabelsUnderTheDefaultSquaredLossAreNoted()
    {
        string ratings = WriteData("r.libfm", 200, 4);
        string clicks = Path.Combine(_dir, "clicks.libfm"), signs = Path.Combine(_dir, "signs.libfm");
        File.WriteAllLines(clicks, File.ReadAllLines(ratings).Select(l => (l[0] is '1' or '2' ? "1" : "0") + l[1..]));
        File.WriteAllLines(signs, File.ReadAllLines(ratings).Select(l => (l[0] is '1' or '2' ? "1" : "-1") + l[1..]));
        const string note = "note: the labels are 0 and 1 only, which squared loss (the default) regresses as numbers; --loss logistic trains a classifier";
        string Out(params string[] extra) => Run(["train", "--model", "fm", "--epochs", "1", "--keep1", "1", "--accelerator", "cpu", "--no-progress", "-o", Path.Combine(_dir, "m.afm"), .. extra]).Out;
        Assert.Contains(note, Out("--train", clicks));
        Assert.DoesNotContain("note: the labels", Out("--train", clicks, "--loss", "squared")); // asked for
        Assert.DoesNotContain("note: the labels", Out("--train", clicks, "--loss", "logistic"));
        Assert.DoesNotContain("note: the labels", Out("--train", signs)); // -1/1 with squared loss: the paper's Frappe set-up
        Assert.DoesNotContain("note: the labels", Out("--train", ratings));
    }

    [Fact]
    public void AModelInAMissingDirectoryIsAFileNotFound()
    {
        string train = WriteData("t.libfm", 50, 4);
        string model = Path.Combine(_dir, "nodir", "m.afm");
        var (code, _, err) = Run("evaluate", "-m", model, "-d", train, "--accelerator", "cpu");
        Assert.Equal(CliApp.UserError, code);
        Assert.Equal($"afm-gpu: error: {model}: file not found (directory {Path.Combine(_dir, "nodir")} does not exist)", err.Trim().Split('\n')[^1]);
    }

    [Fact]
    public void UserMistakesExitNonZeroWithoutStackTraces()
    {
        string train = WriteData("t.libfm", 50, 4);
        string corrupt = Path.Combine(_dir, "corrupt.afm");
        File.WriteAllBytes(corrupt, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        string[][] cases =
        [
            ["train", "--train", Path.Combine(_dir, "missing.libfm"), "--accelerator", "cpu"],
            ["train", "--train", train, "--accelerator", "tpu"],
            ["train", "--train", train, "--accelerator", "opencl:x"],
            ["train", "--train", train, "--lr", "-1", "--accelerator", "cpu"],
            ["train", "--train", train, "--keep0", "0", "--accelerator", "cpu"],
            ["train", "--train", train, "--optimizer", "rmsprop", "--accelerator", "cpu"],
            ["train", "--train", train, "--accelerator", "cpu", "-o", Path.Combine(_dir, "no", "such", "dir", "m.afm")],
            ["evaluate", "-m", corrupt, "-d", train, "--accelerator", "cpu"],
            ["predict", "-m", Path.Combine(_dir, "missing.afm"), "-d", train],
        ];
        foreach (var args in cases)
        {
            var (code, _, err) = Run(args);
            Assert.True(code == CliApp.UserError, $"{string.Join(' ', args)} -> {code}: {err}");
            Assert.StartsWith("afm-gpu: error: ", err.Split('\n').Last(l => l.Length > 0));
            Assert.DoesNotContain("   at ", err);
        }
        Assert.Equal(CliApp.UsageError, Run("train", "--no-such-option").Code);
        Assert.Equal(CliApp.UsageError, Run("frobnicate").Code);
    }

    [Fact]
    public void ExplainAndSafetensorsExport()
    {
        string train = WriteData("train.libfm", 300, 7);
        string model = Path.Combine(_dir, "m.afm");
        Assert.Equal(0, Run("train", "--train", train, "-k", "8", "-t", "4", "--epochs", "2", "--accelerator", "cpu", "-o", model, "--no-progress").Code);
        string svg = Path.Combine(_dir, "h.svg"), csv = Path.Combine(_dir, "h.csv"), json = Path.Combine(_dir, "h.json");
        var (code, stdout, stderr) = Run("explain", "-m", model, "-d", train, "--rows", "2", "--top", "3",
            "--fields", "user:0-29,item:30-69,extra:70-79", "--svg", svg, "--csv", csv, "--json", json, "--accelerator", "cpu");
        Assert.True(code == 0, stderr);
        Assert.Contains("row 1", stdout);
        Assert.Contains("user x item", stdout);
        Assert.StartsWith("<svg", File.ReadAllText(svg).TrimStart().Replace("<?xml", "<svg"));
        Assert.Contains("user", File.ReadAllText(csv));
        using (System.Text.Json.JsonDocument.Parse(File.ReadAllText(json))) { }

        string st = Path.Combine(_dir, "m.safetensors"), back = Path.Combine(_dir, "back.afm");
        Assert.Equal(0, Run("export", "-m", model, "-o", st).Code);
        Assert.Equal(0, Run("export", "--import", "-m", st, "-o", back).Code);
        var a = ModelFile.Load(model);
        var b = ModelFile.Load(back);
        foreach (var ((name, x, _), (_, y, _)) in a.Tensors().Zip(b.Tensors()))
            Assert.True(x.AsSpan().SequenceEqual(y), name);
        // predict and evaluate accept the safetensors file directly
        Assert.Equal(0, Run("evaluate", "-m", st, "-d", train, "--accelerator", "cpu").Code);
    }

    [Fact]
    public void PredictNamesTheTopPairsFromAFeatureMap()
    {
        string train = WriteData("train.libfm", 200, 8);
        string model = Path.Combine(_dir, "m.afm"), map = Path.Combine(_dir, "features.txt");
        Assert.Equal(0, Run("train", "--train", train, "-k", "8", "-t", "4", "--epochs", "1", "--accelerator", "cpu", "-o", model, "--no-progress").Code);
        File.WriteAllLines(map, Enumerable.Range(0, 80).Select(i => i < 30 ? $"{i}\tuser={i}" : i < 70 ? $"{i}\titem={i}" : $"{i}\textra={i}"));
        var (code, stdout, stderr) = Run("predict", "-m", model, "-d", train, "--top-pairs", "2", "--feature-map", map, "--accelerator", "cpu");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(200, lines.Length);
        Assert.All(lines, l => Assert.Matches(@"^[-0-9.E]+\t(\S+\*\S+=[-0-9.E]+:[-0-9.E]+ ?){1,2}$", l));
        Assert.Contains("user=", lines[0]);
        Assert.Contains("item=", lines[0]);
    }

    [Fact]
    public void SelftestOnTheCpuPassesEveryCheck()
    {
        var (code, stdout, stderr) = Run("selftest", "--accelerator", "cpu");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("fwd/bwd dE", stdout);
        Assert.Matches(@"all \d+ checks passed", stdout);
    }

    [Fact]
    public void DevicesListsTheCpu()
    {
        var (code, stdout, _) = Run("devices");
        Assert.Equal(0, code);
        Assert.Contains("cpu ", stdout);
        Assert.Contains("CPU (managed kernels)", stdout);
    }

    [Fact]
    public void SavedModelPredictsBitForBitAfterLoad()
    {
        string train = WriteData("train.libfm", 300, 5);
        var data = LibFmReader.Read(train);
        using var acc = new CpuAccelerator();
        var result = new Trainer(acc, new TrainerOptions { K = 8, T = 6, Epochs = 2, BatchSize = 64 }).Train(data);
        string path = Path.Combine(_dir, "rt.afm");
        ModelFile.Save(result.Model, path);
        using var p1 = new Predictor(acc, result.Model, data.MaxNnz);
        using var p2 = new Predictor(acc, ModelFile.Load(path), data.MaxNnz);
        var a = p1.Predict(data);
        var b = p2.Predict(data);
        Assert.Equal(a.Select(BitConverter.SingleToInt32Bits), b.Select(BitConverter.SingleToInt32Bits));
    }
}
