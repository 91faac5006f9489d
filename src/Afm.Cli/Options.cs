using CommandLine;

namespace Afm.Cli;

internal interface IAcceleratorOptions
{
    string Accelerator { get; }
    int Threads { get; }
}

[Verb("train", HelpText = "Train an AFM or FM model. With no --train file, trains on a built-in synthetic dataset with planted interactions (the demo).")]
internal sealed class TrainOptions : DataCommandOptions
{
    [Option("train", HelpText = "Training data (libFM format, or see --format; - reads standard input). Omit to run the synthetic demo.")]
    public string? TrainFile { get; set; }

    [Option("format", Default = "libfm", HelpText = "Data format: libfm (label id:value ..., or named features with --hash-bits), criteo (Criteo's TSV: label, I1..I13, C1..C26; hashed), csv (a header line, a label column, categorical columns; hashed) or tsv (the same, tab-separated).")]
    public string Format { get; set; } = "libfm";

    [Option("hash-bits", HelpText = "Hash every feature (numeric id or name) into 2^B embedding rows, B in 1..30 (default: none for libfm, 20 for criteo, csv and tsv). Stored in the model, so predict, evaluate and explain hash the same way.")]
    public int? HashBits { get; set; }

    [Option("label-column", HelpText = "--format csv or tsv: the header name of the label column (default label). Stored in the model; data to predict or explain may lack it.")]
    public string? LabelColumn { get; set; }

    [Option("ignore-columns", HelpText = "--format csv or tsv: comma-separated header names of columns that are not features (an id, a timestamp). Stored in the model.")]
    public string? IgnoreColumns { get; set; }

    [Option("numeric-columns", HelpText = "--format csv or tsv: comma-separated header names of columns of numbers, each one feature valued by its field (others are categorical). Stored in the model.")]
    public string? NumericColumns { get; set; }

    [Option("bucket-columns", HelpText = "--format csv or tsv: comma-separated header names of columns of numbers (counts, prices, durations) bucketed on a log scale, each bucket a categorical feature of its column. Stored in the model.")]
    public string? BucketColumns { get; set; }

    [Option("validation", HelpText = "Validation data for early stopping. Default: hold out --validation-fraction of the training rows.")]
    public string? ValidationFile { get; set; }

    [Option("validation-fraction", Default = 0.1f, HelpText = "Fraction of training rows held out when no --validation file is given (0 = none).")]
    public float ValidationFraction { get; set; }

    [Option("test", HelpText = "Test data, scored with the final (best) model after training.")]
    public string? TestFile { get; set; }

    [Option("model", Default = "afm", HelpText = "Model: afm or fm.")]
    public string Model { get; set; } = "afm";

    [Option('k', "dim", Default = 16, HelpText = "Embedding size k.")]
    public int K { get; set; }

    [Option('t', "attention-factor", Default = 16, HelpText = "Attention factor t (hidden size of the attention MLP).")]
    public int T { get; set; }

    [Option("epochs", HelpText = "Maximum number of epochs; early stopping ends a run sooner (default 100; demo 30).")]
    public int? Epochs { get; set; }

    [Option("batch", HelpText = "Mini-batch size (default 512).")]
    public int? Batch { get; set; }

    [Option("lr", HelpText = "Learning rate (default 0.05; demo 0.1).")]
    public float? LearningRate { get; set; }

    [Option("optimizer", Default = "adagrad", HelpText = "Optimizer: adagrad, adam or sgd.")]
    public string Optimizer { get; set; } = "adagrad";

    [Option("lambda", Default = "auto", HelpText = "L2 penalty λ on the attention weights W, or a comma-separated list to choose from on the validation rows (auto = 0,0.3,3).")]
    public string Lambda { get; set; } = "auto";

    [Option("l2-embedding", Default = 0f, HelpText = "L2 penalty on the embedding rows each batch uses (lazy L2: the gradient of a used row gains 2 λ v).")]
    public float L2Embedding { get; set; }

    [Option("l2-linear", Default = 0f, HelpText = "L2 penalty on the linear weights each batch uses (lazy L2, as --l2-embedding).")]
    public float L2Linear { get; set; }

    [Option("keep0", Default = 1f, HelpText = "Keep probability of dropout on the attention weights (1 = off).")]
    public float Keep0 { get; set; }

    [Option("keep1", HelpText = "Keep probability of dropout on the pooled vector (1 = off; default 0.8, and the one that validates better is kept of 0.8 and 1 for an FM, of 0.8 and 0.5 for an AFM; a value given trains once).")]
    public float? Keep1 { get; set; }

    [Option("loss", HelpText = "Loss: squared (regression; the default) or logistic (binary labels 0/1 or -1/1; the default with --format criteo).")]
    public string? Loss { get; set; }

    [Option("seed", Default = 1, HelpText = "Seed of initialisation, shuffling, validation split and dropout.")]
    public int Seed { get; set; }

    [Option("patience", Default = 5, HelpText = "Early stopping: epochs (with --evals-per-epoch, validations) without improvement before stopping (0 = off).")]
    public int Patience { get; set; }

    [Option("evals-per-epoch", Default = 1, HelpText = "Validate N times per epoch, after each N-th of its rows, so that early stopping and the refit can keep a model from within an epoch (large data that overfits in an epoch or two); --patience then counts validations.")]
    public int EvaluationsPerEpoch { get; set; }

    [Option("pretrain-fm", HelpText = "Initialise the AFM's embeddings, linear terms and bias from this trained FM model file (default: pre-train an FM here first).")]
    public string? PretrainFm { get; set; }

    [Option("no-pretrain", HelpText = "Train the AFM from a random start instead of pre-training an FM first.")]
    public bool NoPretrain { get; set; }

    [Option("pretrain-epochs", HelpText = "Maximum epochs of the FM pre-training (default: --epochs); it stops early like any run.")]
    public int? PretrainEpochs { get; set; }

    [Option("pretrain-keep1", HelpText = "Keep probability of dropout on the pooled vector in the FM pre-training (default: pre-train with --keep1 and with 1, and keep the FM whose AFM validates better).")]
    public float? PretrainKeep1 { get; set; }

    [Option("hand-off", Default = "paper", HelpText = "How the AFM starts from the FM: paper (p = 1, h ~ N(0,1), as in the paper's code) or fm-scale (p = mean pair count, h = 0).")]
    public string HandOff { get; set; } = "paper";

    [Option("refit", HelpText = "After early stopping, train again on all rows for the best epoch count(s) and keep that model; the default when the validation rows were held out of --train, and with this flag also for a --validation file (whose rows then join the refit).")]
    public bool Refit { get; set; }

    [Option("no-refit", HelpText = "Keep the best epoch's model of the run with early stopping; do not train again on all rows.")]
    public bool NoRefit { get; set; }


    [Option('o', "output", HelpText = "Where to write the model (default: model.afm, or demo.afm for the demo).")]
    public string? Output { get; set; }

    [Option("no-progress", HelpText = "Do not draw the progress line during an epoch.")]
    public bool NoProgress { get; set; }

    [Option("checkpoint", HelpText = "Keep a checkpoint in this directory at each epoch end (model, optimizer state, epoch, best so far), written atomically.")]
    public string? Checkpoint { get; set; }

    [Option("shuffle-buffer", Default = 1L << 20, HelpText = "Training from a cache: rows shuffled together (whole chunks; the chunks' order is shuffled too). Memory holds about three such buffers.")]
    public long ShuffleBuffer { get; set; }

    [Option("resume", HelpText = "Continue from the checkpoint (in --checkpoint DIR, default <output>.checkpoint) if there is one; the result is the same, bit for bit, as an uninterrupted run.")]
    public bool Resume { get; set; }

    [Option("save-replicas", HelpText = "Under mpirun: every rank also writes its own copy of the model as <output>.rank<R> (to check that the replicas agree bit for bit).")]
    public bool SaveReplicas { get; set; }
}

[Verb("evaluate", HelpText = "Score a model on labelled data and print its metrics.")]
internal sealed class EvaluateOptions : ScoringOptions
{
    [Option('m', "model", Required = true, HelpText = "Model file.")]
    public string Model { get; set; } = "";

    [Option('d', "data", Required = true, HelpText = "Data, read in the format and hashing the model was trained with (libFM by default); - reads standard input.")]
    public string Data { get; set; } = "";

}

[Verb("predict", HelpText = "Write one prediction per input line.")]
internal sealed class PredictOptions : ScoringOptions
{
    [Option('m', "model", Required = true, HelpText = "Model file.")]
    public string Model { get; set; } = "";

    [Option('d', "data", Required = true, HelpText = "Data, read in the format and hashing the model was trained with (libFM by default, whose label is required but ignored; CSV data may lack the label column); - reads standard input.")]
    public string Data { get; set; } = "";

    [Option('o', "output", HelpText = "Output file (default: standard output). Written atomically.")]
    public string? Output { get; set; }

    [Option("top-pairs", Default = 0, HelpText = "Also write, after a tab, each row's N most attended feature pairs as 'a*b=attention:contribution'.")]
    public int TopPairs { get; set; }

    [Option("feature-map", HelpText = "Feature map file (lines 'id name [field]') naming the features in --top-pairs output.")]
    public string? FeatureMap { get; set; }

}

[Verb("demo-data", HelpText = "Write the demo's synthetic data (planted interactions) as libFM files train.libfm and test.libfm.")]
internal sealed class DemoDataOptions
{
    [Option('o', "output", Required = true, HelpText = "Directory to write train.libfm and test.libfm into (created if missing).")]
    public string Output { get; set; } = "";

    [Option("binary", HelpText = "Labels 1 / -1: above / at or below the training labels' median (for --loss logistic).")]
    public bool Binary { get; set; }
}

[Verb("cache", HelpText = "Convert a libFM (or Criteo, CSV) text file into a binary cache (.afmbin) that train, evaluate, predict and explain read wherever a data file goes.")]
internal sealed class CacheOptions
{
    [Value(0, MetaName = "input", Required = true, HelpText = "The text data file (libFM, or see --format; - reads standard input).")]
    public string Input { get; set; } = "";

    [Option('o', "output", Required = true, HelpText = "The cache file to write (e.g. data.afmbin), written atomically.")]
    public string Output { get; set; } = "";

    [Option("chunk-rows", Default = 65536, HelpText = "Rows per chunk (the unit of reading, checksums and shuffling).")]
    public int ChunkRows { get; set; }

    [Option("format", Default = "libfm", HelpText = "Data format: libfm, criteo, csv or tsv, as for train.")]
    public string Format { get; set; } = "libfm";

    [Option("hash-bits", HelpText = "Hash every feature into 2^B rows, as train --hash-bits does (default: none for libfm, 20 for criteo, csv and tsv); the model trained on the cache must use the same.")]
    public int? HashBits { get; set; }

    [Option("label-column", HelpText = "--format csv or tsv: the label column, as for train (default label).")]
    public string? LabelColumn { get; set; }

    [Option("ignore-columns", HelpText = "--format csv or tsv: the columns that are not features, as for train.")]
    public string? IgnoreColumns { get; set; }

    [Option("numeric-columns", HelpText = "--format csv or tsv: the columns of numbers, as for train.")]
    public string? NumericColumns { get; set; }

    [Option("bucket-columns", HelpText = "--format csv or tsv: the bucketed columns of numbers, as for train.")]
    public string? BucketColumns { get; set; }
}

[Verb("devices", HelpText = "List the accelerators on this machine.")]
internal sealed class DevicesOptions
{
}

[Verb("explain", HelpText = "Explain predictions: top pairs per row by attention, and attention per field pair (table, CSV, JSON, SVG heat map).")]
internal sealed class ExplainOptions : ScoringOptions
{
    [Option('m', "model", Required = true, HelpText = "Model file (.afm or safetensors).")]
    public string Model { get; set; } = "";

    [Option('d', "data", Required = true, HelpText = "Data, read in the format and hashing the model was trained with (libFM by default); - reads standard input.")]
    public string Data { get; set; } = "";

    [Option("rows", Default = 5, HelpText = "Explain the first N rows one by one (0 = none).")]
    public int Rows { get; set; }

    [Option("top", Default = 5, HelpText = "Pairs shown per row.")]
    public int Top { get; set; }

    [Option("feature-map", HelpText = "Feature map file: lines 'id name [field]'; names and fields in the output come from it.")]
    public string? FeatureMap { get; set; }

    [Option("fields", HelpText = "Fields from id ranges, e.g. 'user:0-942,item:943-2624' (ids outside go to 'other').")]
    public string? Fields { get; set; }

    [Option("csv", HelpText = "Write the field-pair summary as CSV to this file.")]
    public string? Csv { get; set; }

    [Option("json", HelpText = "Write the row explanations and the field-pair summary as JSON to this file.")]
    public string? Json { get; set; }

    [Option("svg", HelpText = "Write a field x field heat map (SVG) to this file.")]
    public string? Svg { get; set; }

    [Option("heat", Default = "attention", HelpText = "Heat map value: attention (mean attention x pair count, on a scale centred on uniform = 1) or contribution (mean |contribution|).")]
    public string Heat { get; set; } = "attention";

}

[Verb("export", HelpText = "Export a model as safetensors (tensor names in docs/safetensors.md) or ONNX (--format onnx, docs/onnx.md), or import safetensors back with --import.")]
internal sealed class ExportOptions
{
    [Option('m', "model", Required = true, HelpText = "Model file to read (.afm, or safetensors with --import).")]
    public string Model { get; set; } = "";

    [Option('o', "output", Required = true, HelpText = "File to write: safetensors or ONNX (or .afm with --import). Written atomically.")]
    public string Output { get; set; } = "";

    [Option("import", HelpText = "Convert a safetensors export back to the native .afm format.")]
    public bool Import { get; set; }

    [Option("format", HelpText = "Export format: safetensors or onnx (default: onnx for an output named .onnx, else safetensors).")]
    public string? Format { get; set; }

    [Option("no-attention", HelpText = "ONNX: leave out the attention output.")]
    public bool NoAttention { get; set; }
}

[Verb("selftest", HelpText = "Run every kernel of an accelerator and of the CPU accelerator on the same random inputs and compare element-wise.")]
internal sealed class SelfTestOptions : IAcceleratorOptions
{
    [Option('a', "accelerator", Default = "auto", HelpText = "The accelerator to check: auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu.")]
    public string Accelerator { get; set; } = "auto";

    [Option("seed", Default = 1, HelpText = "Seed of the random inputs.")]
    public int Seed { get; set; }

    [Option("threads", Default = 0, HelpText = "CPU accelerator worker threads (0 = all cores).")]
    public int Threads { get; set; }
}

/// <summary>The options of a command that reads data files and runs on an accelerator.</summary>
internal abstract class DataCommandOptions : IAcceleratorOptions, IDataOptions
{
    [Option("cache", Default = "auto", HelpText = "Binary cache of text data: auto (files of 1 GiB or more are converted once into the cache directory and read from there), always, or off.")]
    public string Cache { get; set; } = "auto";

    [Option("cache-dir", HelpText = "Directory of implicit caches (default $XDG_CACHE_HOME/afm-gpu, else ~/.cache/afm-gpu).")]
    public string? CacheDirectory { get; set; }

    [Option('a', "accelerator", Default = "auto", HelpText = "auto, cpu, cuda[:N], opencl[:N] or ilgpu-cpu.")]
    public string Accelerator { get; set; } = "auto";

    [Option("threads", Default = 0, HelpText = "CPU accelerator worker threads (0 = all cores).")]
    public int Threads { get; set; }
}

/// <summary>The options of a command that reads data files for a trained model: evaluate, predict, explain.</summary>
/// <remarks>It names <see cref="IDataOptions"/> again, so that its <see cref="UnknownIds"/> is the interface's, not the default.</remarks>
internal abstract class ScoringOptions : DataCommandOptions, IDataOptions
{
    [Option("unknown-ids", Default = "error", HelpText = "A feature id the model has no row for (a user or item new since training): error (the default), or ignore: drop it from its row, which counts it as absent, and say how many were dropped.")]
    public string UnknownIds { get; set; } = "error";
}
