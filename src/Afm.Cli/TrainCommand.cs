using System.Diagnostics;
using Afm.Gpu.Accelerators;
using Afm.Gpu.Data;
using Afm.Gpu.Distributed;
using Afm.Gpu.IO;
using Afm.Gpu.Explain;
using Afm.Gpu.Kernels;
using Afm.Gpu.Model;
using Afm.Gpu.Synthetic;
using Afm.Gpu.Training;

namespace Afm.Cli;

internal sealed class TrainCommand(TrainOptions o, TextWriter stdout, TextWriter stderr)
{
    // The MPI job this process is a rank of when started by mpirun; null otherwise.
    private MpiCluster? _cluster;

    // Rank 0 alone prints, evaluates and writes files.
    private bool Root => _cluster?.IsRoot ?? true;

    /// <summary>Trains; under mpirun, as one rank of a data-parallel job, where a failure on any rank ends the whole job.</summary>
    public int Run()
    {
        using var cluster = MpiCluster.FromEnvironment();
        if (cluster is null) return Train();
        _cluster = cluster;
        var errors = stderr;
        if (!cluster.IsRoot) (stdout, stderr) = (TextWriter.Null, TextWriter.Null);
        try
        {
            return Train();
        }
        catch (Exception e)
        {
            // Before MPI_Finalize (cluster's Dispose): the other ranks may be waiting in a collective for this one.
            cluster.Abort(Printable.Escape(Cli.Describe(e)), errors);
            throw;
        }
    }

    private int Train()
    {
        if (_cluster is { Size: > 1 } && new[] { o.TrainFile, o.ValidationFile, o.TestFile }.Contains("-"))
            throw new ArgumentException("-: under mpirun every rank reads the data files, and standard input reaches one rank alone; give a file");
        var options = BuildOptions();
        bool demo = o.TrainFile is null;
        var input = InputEncodingOf(demo);
        options.Input = input;
        string output = o.Output ?? (demo ? "demo.afm" : "model.afm");
        if (Root && Cli.IsStandardOutput(output))
            throw new ArgumentException($"-o/--output {output}: is standard output, where train writes its log, so the model would be mixed into it; give a file");
        if (Root) Cli.CheckOutput("-o/--output", output, o.TrainFile, o.ValidationFile, o.TestFile, o.PretrainFm);
        if (ExplainCommand.FormatNamed(output) is { } named && named != "afm")
            throw new ArgumentException($"-o/--output {output}: train writes the native .afm format, but the name says {ExplainCommand.Name(named)}; "
                + $"name it .afm, then convert it with afm-gpu export -m {Path.ChangeExtension(output, ".afm")} -o {output}");
        if (o.SaveReplicas && _cluster is not null)
            Cli.CheckOutput("--save-replicas", Replica(output, _cluster.Rank), o.TrainFile, o.ValidationFile, o.TestFile, o.PretrainFm);
        if (Root && o.TrainFile is not null)
            foreach (var (flag, file) in new[] { ("--validation", o.ValidationFile), ("--test", o.TestFile) })
                if (file is not null && file != "-" && o.TrainFile != "-" && Cli.SamePath(o.TrainFile, file))
                    stdout.WriteLine($"note: {flag} {file} is the training file, so its scores measure rows the model is trained on, not new ones");
        var checkpoint = Checkpoint(output, demo);
        using var acc = _cluster is null ? Cli.OpenAccelerator(o, stderr) : _cluster.OpenAccelerator(o.Accelerator, s => Cli.OpenAccelerator(o, stderr, s));
        if (_cluster is not null)
            stdout.WriteLine($"data-parallel training on {_cluster.Size} ranks: each takes its shard of every global batch of {options.BatchSize} rows; rank 0 evaluates and writes");
        using var files = new DataFiles(o, stdout);
        RowSource train;
        RowSource? validation = null, test = null;
        PlantedData? planted = null;
        if (demo)
        {
            planted = PlantedData.Generate();
            train = RowSource.Of(planted.Train);
            test = RowSource.Of(planted.Test);
            stdout.WriteLine($"demo: synthetic data, {planted.Fields} fields x {planted.ValuesPerField} values, {train.Rows} training rows, {test.Rows} test rows;");
            stdout.WriteLine($"      planted interactions on field pairs {string.Join(", ", planted.PlantedPairs.Select(p => $"({p.F},{p.G})"))}");
        }
        else
        {
            var sw = Stopwatch.StartNew();
            // Limits the model puts on the data are checked as it is read, so that they name the line.
            var read = LibFmReadOptions.Reading(input) with
            {
                BinaryLabels = options.Loss == LossKind.Logistic,
                MaxRowNonZeros = Afm.Gpu.Limits.MaxRowNonZeros(options.K, options.Model == ModelKind.Afm ? options.T : 0),
                MaxFeatureCount = Afm.Gpu.Limits.MaxFeatureCount(options.K),
            };
            train = files.Open(o.TrainFile!, read, o.ShuffleBuffer);
            if (o.ValidationFile is not null) validation = files.Open(o.ValidationFile, read);
            if (o.TestFile is not null) test = files.Open(o.TestFile, read);
            string width = input.HashBits > 0 ? $"{train.FeatureCount} hashed feature rows (2^{input.HashBits})" : $"{train.FeatureCount} features";
            stdout.WriteLine($"read {train.Name}: {train.Rows} rows, {width}, up to {train.MaxNnz} non-zeros per row ({sw.Elapsed.TotalSeconds:F1} s)"
                + (train is CacheRows c ? $"; a cache read by chunks of {c.File.Header.ChunkRows} rows, {c.BufferChunks} chunks shuffled together" : ""));
        }
        if (Root && options.EvaluationsPerEpoch > 1 && validation is null && options.ValidationFraction == 0)
            stdout.WriteLine($"note: --evals-per-epoch {options.EvaluationsPerEpoch} has no validation rows to score (--validation-fraction 0 and no --validation), so each epoch trains whole");
        if (Root && !demo && o.Loss is null && options.Loss == LossKind.Squared && train.LabelRange() == (0f, 1f) && train.FirstNonBinaryLabel() is null)
            stdout.WriteLine("note: the labels are 0 and 1 only, which squared loss (the default) regresses as numbers; --loss logistic trains a classifier (probabilities, log loss)");
        int features = new[] { train.FeatureCount, validation?.FeatureCount ?? 0, test?.FeatureCount ?? 0 }.Max();
        if (features == 0) throw new DataFormatException(train.Name, 0, Trainer.NoFeatures);
        train = train.WithFeatureCount(features);

        AfmModel? pretrained = null;
        if (o.PretrainFm is not null)
        {
            if (options.Model != ModelKind.Afm) throw new ArgumentException("--pretrain-fm applies to --model afm");
            if (o.NoPretrain) throw new ArgumentException("give --pretrain-fm or --no-pretrain, not both");
            var fm = ModelFile.Load(o.PretrainFm);
            if (fm.Kind != ModelKind.Fm) throw new ArgumentException($"{o.PretrainFm}: not an FM model (it is {fm.Kind})");
            if (fm.FeatureCount < features) throw new ArgumentException($"{o.PretrainFm}: the FM has {fm.FeatureCount} features but the data uses ids up to {features - 1}");
            if (fm.Loss != options.Loss) throw new ArgumentException($"{o.PretrainFm}: the FM was trained with {fm.Loss} loss, this run uses {options.Loss}");
            if (fm.K != options.K) throw new ArgumentException($"{o.PretrainFm}: the FM has k = {fm.K}, this run uses -k {options.K}");
            if (fm.Input != input) throw new ArgumentException($"{o.PretrainFm}: the FM read its data as {fm.Input}, this run reads {input}");
            pretrained = fm;
            stdout.WriteLine($"initialised embeddings, linear terms and bias from FM {o.PretrainFm}");
        }

        if (demo)
        {
            // The demo also trains an FM on the same data so the two can be compared.
            var fmOptions = BuildOptions();
            fmOptions.Model = ModelKind.Fm;
            stdout.WriteLine("-- FM (for comparison)");
            var fmResult = RunTrainer(acc, fmOptions, train, validation, null, null);
            if (Root) stdout.WriteLine($"FM test {Score(acc, fmResult.Model, test!).Format(options.Loss)}");
            stdout.WriteLine($"-- {options.Model.ToString().ToUpperInvariant()}");
        }

        var result = RunTrainer(acc, options, train, validation, pretrained, checkpoint);
        result.Model.Input = input;
        var meta = new ModelMetadata();
        meta.Properties["train"] = o.TrainFile ?? "synthetic demo";
        meta.Properties["options"] = Describe(options);
        meta.Properties["accelerator"] = acc.Descriptor.Name;
        meta.Properties["best_epoch"] = EpochReport.EpochsText(result.Training.BestEpochs);
        meta.Properties["lambda"] = result.Lambda.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (result.LearningRate != options.LearningRate) meta.Properties["lr"] = result.LearningRate.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (result.Pretraining is not null) meta.Properties["pretrain_best_epoch"] = EpochReport.EpochsText(result.Pretraining.BestEpochs);
        if (result.Keep1 is { } keptKeep1) meta.Properties["keep1"] = keptKeep1.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (result.PretrainKeep1 is { } keep) meta.Properties["pretrain_keep1"] = keep.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (result.Refitted) meta.Properties["refit"] = "all rows";
        if (_cluster is not null)
        {
            ReportExchange(_cluster, options);
            if (o.SaveReplicas) ModelFile.Save(result.Model, Replica(output, _cluster.Rank), meta);
            if (!Root) return 0;
        }
        ModelFile.Save(result.Model, output, meta);
        stdout.WriteLine($"best epoch {EpochReport.EpochsText(result.Training.BestEpochs)}{(result.Refitted ? ", refit on all rows" : "")}; model written to {output}");
        // Early stopping chose that epoch unless it was the cap: then the run was still improving when it was cut.
        bool validated = result.Refitted || result.Training.History.Any(h => h.Validation is not null);
        if (validated && result.Training.BestEpochs == 0)
            stdout.WriteLine("note: no epoch scored better on the validation rows than the model it started from, so that starting model is what was written");
        if (validated && result.Training.BestEpochs >= options.Epochs)
            stdout.WriteLine($"note: the best epoch is the last one --epochs allows ({options.Epochs}), so the model was still improving; a larger --epochs may train a better one");
        if (test is not null)
        {
            var m = Score(acc, result.Model, test);
            stdout.WriteLine($"test ({test.Name}): {m.Rows} rows  {m.Format(options.Loss)}");
        }
        if (demo && options.Model == ModelKind.Afm) PrintAttention(acc, result.Model, planted!);
        return 0;
    }

    /// <summary>Where rank <paramref name="rank"/> writes its copy of the model with --save-replicas.</summary>
    private static string Replica(string output, int rank) => $"{output}.rank{rank}";

    private CheckpointOptions? Checkpoint(string output, bool demo)
    {
        if (o.Checkpoint is null && !o.Resume) return null;
        if (demo) throw new ArgumentException("--checkpoint and --resume need --train (the demo trains two models)");
        string dir = o.Checkpoint ?? output + ".checkpoint";
        if (File.Exists(dir)) throw new ArgumentException($"--checkpoint {dir}: is a file, not a directory");
        var checkpoint = new CheckpointOptions { Directory = dir, Resume = o.Resume };
        Directory.CreateDirectory(dir);
        if (Root) Cli.CheckOutput("--checkpoint", checkpoint.FilePath, o.TrainFile, o.ValidationFile, o.TestFile, o.PretrainFm, output);
        if (o.Resume)
        {
            // one checkpoint per stage of the recipe (FM pre-training, each λ, refit), each in its own folder
            var found = Directory.GetDirectories(dir)
                .Select(d => (Stage: Path.GetFileName(d), Epoch: CheckpointOptions.LastEpoch(d)))
                .Where(x => x.Epoch is not null).OrderBy(x => x.Stage, StringComparer.Ordinal).ToList();
            stdout.WriteLine(found.Count == 0
                ? $"no checkpoint in {dir} yet: starting from epoch 1"
                : $"resuming from {dir}: {string.Join(", ", found.Select(x => $"{x.Stage} after epoch {x.Epoch}"))}");
        }
        return checkpoint;
    }

    private RecipeResult RunTrainer(Accelerator acc, TrainerOptions options, RowSource train, RowSource? validation, AfmModel? pretrained, CheckpointOptions? checkpoint)
    {
        var recipe = new Recipe(acc, options) { Checkpoint = checkpoint, Cluster = _cluster };
        bool progress = !o.NoProgress && !Console.IsErrorRedirected;
        var lastDraw = Stopwatch.StartNew();
        var epochClock = Stopwatch.StartNew();
        var wall = Stopwatch.StartNew();
        int runs = 0;
        double epochs = 0, lastEpochs = 0; // epochs trained in all, parts of an epoch counted; and in the run so far
        bool told = true; // the recipe tells what it starts next before each of its runs
        recipe.Message += line =>
        {
            told = true;
            if (progress) stderr.Write("\r" + new string(' ', 78) + "\r");
            stdout.WriteLine(line);
        };
        recipe.Progress += (_, p) =>
        {
            if (p.RowsDone <= options.BatchSize) epochClock.Restart();
            if (!progress || lastDraw.ElapsedMilliseconds < 200) return;
            lastDraw.Restart();
            double frac = (double)p.RowsDone / p.RowsTotal;
            int bar = (int)(frac * 30);
            double rate = p.RowsDone / Math.Max(epochClock.Elapsed.TotalSeconds, 1e-9);
            stderr.Write($"\repoch {p.Epoch,3} [{new string('#', bar)}{new string('.', 30 - bar)}] {frac * 100,5:F1}%  {rate,12:N0} samples/s ");
        };
        recipe.EpochCompleted += (stage, r) =>
        {
            if (progress) stderr.Write("\r" + new string(' ', 78) + "\r");
            string valid = r.Validation is null ? "" : $"  valid {r.Validation.Format(options.Loss)}";
            string tag = stage is TrainStage.Pretraining or TrainStage.RefitPretraining ? "FM " : "";
            // a run's epochs count up; a resumed run's start at the epoch after its checkpoint's
            if (told || r.Epochs <= lastEpochs) { runs++; lastEpochs = r.Epoch - 1; }
            epochs += r.Epochs - lastEpochs;
            told = false;
            lastEpochs = r.Epochs;
            string epoch = options.EvaluationsPerEpoch > 1 || r.Fraction < 1 ? r.Epochs.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) : r.Epoch.ToString(System.Globalization.CultureInfo.InvariantCulture);
            stdout.WriteLine($"{tag}epoch {epoch,3}  train loss {r.TrainLoss:F4}{valid}  {r.Seconds,6:F2} s  {r.SamplesPerSecond,12:N0} samples/s{(r.IsBest && r.Validation is not null ? "  *" : "")}");
        };
        var result = recipe.Run(train, validation, pretrained);
        // what the recipe cost: its pre-trainings, its choices of λ and dropout and its refit together
        stdout.WriteLine($"trained {EpochReport.EpochsText(epochs)} epoch{(epochs == 1 ? "" : "s")} in {runs} run{(runs == 1 ? "" : "s")}, {wall.Elapsed.TotalSeconds:F1} s");
        return result;
    }

    /// <summary>The bytes this rank sent per step, dense and sparse, and what every rank received.</summary>
    private void ReportExchange(MpiCluster cluster, TrainerOptions options)
    {
        if (cluster.Steps == 0) return;
        double dense = (double)cluster.DenseBytesSent / cluster.Steps, sparse = (double)(cluster.BytesSent - cluster.DenseBytesSent) / cluster.Steps;
        double ids = sparse / (sizeof(int) + (options.K + 1) * sizeof(float));
        stdout.WriteLine($"exchanged per step and rank (mean of {cluster.Steps} steps): sent {(dense + sparse) / 1024:F1} KiB " +
            $"(dense {dense / 1024:F1} KiB, sparse {sparse / 1024:F1} KiB = {ids:F0} distinct ids x (id + k + 1)), received {cluster.Size * (dense + sparse) / 1024:F1} KiB; " +
            $"{(double)cluster.MergedIds / cluster.Steps:F0} ids merged; exchange {cluster.ExchangeTime.TotalMilliseconds / cluster.Steps:F2} ms per step");
    }

    private static Metrics Score(Accelerator acc, AfmModel model, RowSource data)
    {
        using var predictor = new Predictor(acc, model, data.MaxNnz);
        return DataFiles.Score(predictor, data, checkFinite: false);
    }

    private void PrintAttention(Accelerator acc, AfmModel model, PlantedData planted)
    {
        using var predictor = new Predictor(acc, model, planted.Test.MaxNnz);
        var summary = new Explainer(predictor).Summarize(planted.Test, FeatureMap.FromFields(planted.FieldOf));
        int pairs = planted.Fields * (planted.Fields - 1) / 2;
        stdout.WriteLine($"field pairs by mean attention on the test rows (uniform would be {1.0 / pairs:F4}, x pairs 1):");
        foreach (var s in summary.Pairs.Take(6))
        {
            bool isPlanted = planted.PlantedPairs.Contains((s.FieldA, s.FieldB));
            stdout.WriteLine($"  fields ({s.FieldA},{s.FieldB})  mean attention {s.MeanAttention:F4} (x pairs {s.MeanRelativeAttention:F2})  mean |contribution| {s.MeanAbsContribution:F4}{(isPlanted ? "   <- planted" : "")}");
        }
    }

    private bool IsCriteo => o.Format.Equals("criteo", StringComparison.OrdinalIgnoreCase);

    private InputEncoding InputEncodingOf(bool demo)
    {
        if (demo && (o.HashBits is not null || !o.Format.Equals("libfm", StringComparison.OrdinalIgnoreCase) || o.LabelColumn is not null || o.IgnoreColumns is not null || o.NumericColumns is not null || o.BucketColumns is not null))
            throw new ArgumentException("--format, --hash-bits and the CSV columns (--label-column, --ignore-columns, --numeric-columns, --bucket-columns) apply to data given with --train, not to the demo");
        var encoding = EncodingOf(o.Format, o.HashBits, o.LabelColumn, o.IgnoreColumns, o.NumericColumns, o.BucketColumns, stdout);
        if (encoding.Format == DataFormat.Criteo && o.Loss is null)
            stdout.WriteLine("criteo: logistic loss on the click labels (the default; --loss squared to change)");
        return encoding;
    }

    /// <summary>
    /// The data format, hashing and CSV columns from --format, --hash-bits, --label-column, --ignore-columns,
    /// --numeric-columns and --bucket-columns, saying when a format's default hash bits or label column are taken.
    /// </summary>
    internal static InputEncoding EncodingOf(string formatName, int? hashBits, string? labelColumn, string? ignoreColumns, string? numericColumns, string? bucketColumns, TextWriter stdout)
    {
        var format = formatName.ToLowerInvariant() switch
        {
            "libfm" or "libsvm" => DataFormat.LibFm,
            "criteo" => DataFormat.Criteo,
            "csv" => DataFormat.Csv,
            "tsv" => DataFormat.Tsv,
            _ => throw new ArgumentException($"--format {formatName}: use libfm, criteo, csv or tsv"),
        };
        string name = InputEncoding.FormatName(format);
        if (hashBits is < 0 or > FeatureHash.MaxBits)
            throw new ArgumentException($"--hash-bits {hashBits}: must be in 1..{FeatureHash.MaxBits} (0 = no hashing, libfm only)");
        if (format != DataFormat.LibFm && hashBits == 0)
            throw new ArgumentException($"--hash-bits 0: the {name} format is always hashed; give 1..{FeatureHash.MaxBits}");
        if (!CsvFormat.HasHeader(format) && (labelColumn is not null || ignoreColumns is not null || numericColumns is not null || bucketColumns is not null))
            throw new ArgumentException($"--label-column, --ignore-columns, --numeric-columns and --bucket-columns name columns of --format csv or tsv, not of {name}");
        int bits = hashBits ?? format switch { DataFormat.Criteo => CriteoFormat.DefaultHashBits, DataFormat.Csv or DataFormat.Tsv => CsvFormat.DefaultHashBits, _ => 0 };
        if (format != DataFormat.LibFm && hashBits is null)
            stdout.WriteLine($"{name}: hashing features into 2^{bits} embedding rows (the default; --hash-bits B to change)");
        if (!CsvFormat.HasHeader(format)) return new InputEncoding(format, bits);
        if (labelColumn is null)
            stdout.WriteLine($"{name}: the label is the column '{CsvFormat.DefaultLabelColumn}' (the default; --label-column NAME to change)");
        string label = labelColumn?.Trim() ?? CsvFormat.DefaultLabelColumn;
        if (CsvFormat.ColumnNameError(label) is { } bad) throw new ArgumentException($"--label-column {labelColumn}: {bad}");
        static string[] Names(string? list) => (list ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var encoding = InputEncoding.Csv(label, bits, Names(ignoreColumns), Names(numericColumns), format, Names(bucketColumns));
        try { encoding.Validate(); }
        catch (ArgumentException e)
        {
            string option = e.ParamName switch
            {
                nameof(InputEncoding.NumericColumns) => $"--numeric-columns {numericColumns}",
                nameof(InputEncoding.BucketColumns) => $"--bucket-columns {bucketColumns}",
                _ => $"--ignore-columns {ignoreColumns}",
            };
            throw new ArgumentException($"{option}: {e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal)}");
        }
        return encoding;
    }

    private TrainerOptions BuildOptions()
    {
        // The command line's defaults are the library's recommended recipe; the demo trains faster on its small data.
        var d = TrainerOptions.Recommended();
        bool demo = o.TrainFile is null;
        float[] lambdas = o.Lambda.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)
            ? d.LambdaCandidates!
            : [.. o.Lambda.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(ParseLambda)];
        if (lambdas.Length == 0) throw new ArgumentException("--lambda: give a number, a list or auto");
        // The library takes 0 (no epoch; for pre-training, "as many as Epochs"); on the command line it trains nothing.
        if (o.Epochs is < 1) throw new ArgumentException($"--epochs {o.Epochs}: must be at least 1 (an epoch is one pass over the training rows)");
        if (o.PretrainEpochs is < 1)
            throw new ArgumentException($"--pretrain-epochs {o.PretrainEpochs}: must be at least 1; --no-pretrain starts the AFM from scratch");
        var options = new TrainerOptions
        {
            Model = o.Model.ToLowerInvariant() switch
            {
                "afm" => ModelKind.Afm,
                "fm" => ModelKind.Fm,
                _ => throw new ArgumentException($"--model {o.Model}: use afm or fm"),
            },
            K = o.K,
            T = o.T,
            // A maximum: early stopping (patience 5) ends most runs well before it (docs/defaults.md).
            Epochs = o.Epochs ?? (demo ? 30 : d.Epochs),
            BatchSize = o.Batch ?? d.BatchSize,
            LearningRate = o.LearningRate ?? (demo ? 0.1f : d.LearningRate),
            // a rate the recipe chose is lowered when a run diverges; one named by --lr is kept, and a divergence is an error
            LearningRateBackoffs = o.LearningRate is null ? d.LearningRateBackoffs : 0,
            Optimizer = o.Optimizer.ToLowerInvariant() switch
            {
                "adagrad" => OptimizerKind.Adagrad,
                "adam" => OptimizerKind.Adam,
                "sgd" => OptimizerKind.Sgd,
                _ => throw new ArgumentException($"--optimizer {o.Optimizer}: use adagrad, adam or sgd"),
            },
            Lambda = lambdas.Length == 1 ? lambdas[0] : d.Lambda,
            LambdaCandidates = lambdas.Length > 1 ? lambdas : null,
            L2Embedding = o.L2Embedding,
            L2Linear = o.L2Linear,
            Keep0 = o.Keep0,
            Keep1 = o.Keep1 ?? d.Keep1,
            // by default an FM is trained with that dropout and without, and the one that validates better is kept
            Keep1Candidates = o.Keep1 is null ? d.Keep1Candidates : null,
            // and an AFM with that dropout and with keep1 0.5, from the start and λ chosen with the first
            AfmKeep1Candidates = o.Keep1 is null ? d.AfmKeep1Candidates : null,
            // Criteo's labels are clicks: log loss, as CTR models are trained; other data is regression, as in the paper.
            Loss = (o.Loss ?? (IsCriteo ? "logistic" : "squared")).ToLowerInvariant() switch
            {
                "squared" or "square" or "mse" => LossKind.Squared,
                "logistic" or "log" or "logloss" => LossKind.Logistic,
                _ => throw new ArgumentException($"--loss {o.Loss}: use squared or logistic"),
            },
            Seed = o.Seed,
            Patience = o.Patience,
            EvaluationsPerEpoch = o.EvaluationsPerEpoch,
            ValidationFraction = o.ValidationFraction,
            Pretrain = o.NoPretrain ? PretrainKind.None : PretrainKind.Fm,
            PretrainEpochs = o.PretrainEpochs ?? 0,
            PretrainKeep1 = o.PretrainKeep1,
            // by default the recipe pre-trains with the AFM's dropout and without, and keeps the better AFM
            PretrainKeep1Candidates = o.PretrainKeep1 is null ? [o.Keep1 ?? d.Keep1, 1f] : null,
            HandOff = o.HandOff.ToLowerInvariant() switch
            {
                "paper" => FmHandOff.Paper,
                "fm-scale" => FmHandOff.FmScale,
                _ => throw new ArgumentException($"--hand-off {o.HandOff}: use paper or fm-scale"),
            },
            // By default a model whose validation rows were held out of the training file is refit on all of them.
            Refit = o.Refit && o.NoRefit ? throw new ArgumentException("give --refit or --no-refit, not both")
                : o.Refit || (!o.NoRefit && o.ValidationFile is null && d.Refit),
        };
        try
        {
            options.Validate();
        }
        catch (InvalidOptionException e)
        {
            throw new ArgumentException($"{OptionFlag(e.Option)} {e.Value}: {e.Rule}", e);
        }
        return options;
    }

    private static float ParseLambda(string s) =>
        float.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out float v) && float.IsFinite(v) && v >= 0
            ? v : throw new ArgumentException($"--lambda {s}: must be a number >= 0, a comma-separated list of them, or auto");

    private static string OptionFlag(string? name) => name switch
    {
        nameof(TrainerOptions.K) => "-k/--dim",
        nameof(TrainerOptions.T) => "-t/--attention-factor",
        nameof(TrainerOptions.BatchSize) => "--batch",
        nameof(TrainerOptions.LearningRate) => "--lr",
        nameof(TrainerOptions.ValidationFraction) => "--validation-fraction",
        nameof(TrainerOptions.PretrainEpochs) => "--pretrain-epochs",
        nameof(TrainerOptions.PretrainKeep1) => "--pretrain-keep1",
        nameof(TrainerOptions.LambdaCandidates) => "--lambda",
        nameof(TrainerOptions.L2Embedding) => "--l2-embedding",
        nameof(TrainerOptions.L2Linear) => "--l2-linear",
        nameof(TrainerOptions.EvaluationsPerEpoch) => "--evals-per-epoch",
        null => "an option",
        _ => "--" + name.ToLowerInvariant(),
    };

    private static string Describe(TrainerOptions t) =>
        $"model={t.Model} k={t.K} t={t.T} epochs={t.Epochs} batch={t.BatchSize} lr={t.LearningRate} optimizer={t.Optimizer} lambda={(t.LambdaCandidates is { Length: > 0 } c ? string.Join(",", c) : t.Lambda)}{(t.L2Embedding != 0 || t.L2Linear != 0 ? $" l2_embedding={t.L2Embedding} l2_linear={t.L2Linear}" : "")} keep0={t.Keep0} keep1={(t.Model == ModelKind.Fm && t.Keep1Candidates is { Length: > 1 } kc ? string.Join(",", kc) : t.Model == ModelKind.Afm && Recipe.AfmKeeps(t) is { Length: > 1 } ak ? string.Join(",", ak) : t.Keep1)}{(t.PretrainKeep1 is { } pk ? $" pretrain_keep1={pk}" : t.PretrainKeep1Candidates is { Length: > 0 } pks ? $" pretrain_keep1={string.Join(",", pks)}" : "")} loss={t.Loss} seed={t.Seed} patience={t.Patience}{(t.EvaluationsPerEpoch > 1 ? $" evals_per_epoch={t.EvaluationsPerEpoch}" : "")} validation_fraction={t.ValidationFraction} pretrain={t.Pretrain} hand_off={t.HandOff} refit={t.Refit}";
}
