#!/usr/bin/python3
"""Quality benchmark: test metrics of FM and AFM trained by afm-gpu's command-line defaults, next to
the PyTorch reference (bench/reference/afm_torch.py) on the same files.

Datasets: ml-100k-libfm (train.libfm / test.libfm, found by walking up to shared/data; skipped with a
message when absent), the demo's planted data, written by `afm-gpu demo-data` (regression, and a
binary variant trained with --loss logistic), and context-logs: app-usage logs shaped like the paper's
Frappe data, labels 1 / -1 with squared loss as in the paper (bench/context_logs.py; needs numpy), and ctr-logs:
click logs in Criteo's TSV layout, trained with --format criteo (logistic loss; bench/ctr_logs.py). Not in the default
list: frappe-like, the same generator at Frappe's difficulty and size (--habit 0.1 --logs 96203: the FM near 0.50, as
a 57,722-row sample of Frappe gives), trained at the paper's k = t = 64 by both systems; and tag-logs, tagging logs
shaped like the paper's ml-tag data (3 fields, 1,404,801 training rows; bench/tag_logs.py), at the defaults' k = t = 16.
Build first: dotnet build -c Release.

    /usr/bin/python3 bench/quality.py                 # everything: on 2 cores about 5 minutes per seed for afm-gpu and 50 for the reference
    /usr/bin/python3 bench/quality.py --no-torch      # afm-gpu only
    /usr/bin/python3 bench/quality.py --datasets planted --seeds 1,2,3

afm-gpu runs `afm-gpu train --train A --test B --model fm|afm --accelerator cpu` with nothing else
(plus --loss logistic on the binary data and --seed). The PyTorch reference gets the same
hyper-parameters as those defaults (k = t = 16, batch 512, Adagrad lr 0.05, and the AFM's λ and keep1 as afm-gpu chose
them on its validation rows) but has no validation split or early stopping: it trains on every training row for the epoch counts
afm-gpu's early stopping chose (the FM's, and for the AFM its FM pre-training's and its own, as afm-gpu's refit does)
and reports its last epoch; its FM has no dropout.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def find_movielens():
    d = ROOT
    for _ in range(6):
        cand = os.path.join(d, "shared", "data", "ml-100k-libfm")
        if os.path.isfile(os.path.join(cand, "train.libfm")):
            return cand
        d = os.path.dirname(d)
    return None


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(f"quality: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}")
    return p.stdout


def engine(cli, data, model, logistic, seed, extra, criteo=False, shape=None):
    out_model = os.path.join(tempfile.gettempdir(), f"afm-quality-{os.getpid()}.afm")
    ext = "tsv" if criteo else "libfm"
    cmd = cli + ["train", "--train", os.path.join(data, f"train.{ext}"), "--test", os.path.join(data, f"test.{ext}"),
                 "--model", model, "--accelerator", "cpu", "--no-progress", "--seed", str(seed), "-o", out_model] + extra
    if shape:
        cmd += ["-k", str(shape[0]), "-t", str(shape[1])]
    if criteo:
        cmd += ["--format", "criteo"]  # logistic loss by default
    elif logistic:
        cmd += ["--loss", "logistic"]
    out = run(cmd)
    os.remove(out_model)
    m = re.search(r"^test \(.*\): \d+ rows\s+(.*)$", out, re.M)
    if not m:
        sys.exit(f"quality: no test line in the output of {' '.join(cmd)}")
    metrics = dict(re.findall(r"(rmse|logloss|auc|mae) ([0-9.]+)", m.group(1)))
    # (epochs within an epoch, with --evals-per-epoch in --engine-args, read as 1.5)
    best = re.search(r"^best epoch ([0-9]+(?:\.[0-9]+)?)", out, re.M).group(1)
    pre = re.search(r"^pre-training kept: keep1 [0-9.]+, FM best epoch ([0-9]+(?:\.[0-9]+)?)", out, re.M) or re.search(r"^FM pre-training: best epoch ([0-9]+(?:\.[0-9]+)?)", out, re.M)
    keep = re.search(r"^pre-training kept: keep1 ([0-9.]+)", out, re.M)
    lam = re.search(r"^λ = ([0-9.]+) chosen", out, re.M)
    # the model's own dropout, when the recipe chose it (an FM's or an AFM's)
    own_keep = re.search(r"^(?:FM|AFM) dropout kept: keep1 ([0-9.]+)", out, re.M)
    metrics = {k: float(v) for k, v in metrics.items()}
    metrics["best_epoch"] = float(best)
    if pre:
        metrics["pretrain_epoch"] = float(pre.group(1))
    if lam:
        metrics["lambda"] = float(lam.group(1))
    if keep:
        metrics["pretrain_keep1"] = float(keep.group(1))
    if own_keep:
        metrics["keep1"] = float(own_keep.group(1))
    return metrics, (f"best epoch {best}" + (f" (keep1 {own_keep.group(1)})" if own_keep else "") + (f", FM pre-training {pre.group(1)}" if pre else "")
                     + (f" (keep1 {keep.group(1)})" if keep else "") + (f", λ = {lam.group(1)}" if lam else ""))


def torch_ref(python, data, model, logistic, seed, lam, epochs=20, pretrain_epochs=20, shape=None, keep1=0.8):
    k, t = shape or (16, 16)
    # the reference trains whole epochs: a best model within an epoch (1.5) is rounded to the nearest count
    epochs, pretrain_epochs = max(1, round(epochs)), max(1, round(pretrain_epochs))
    cmd = [python, os.path.join(HERE, "reference", "afm_torch.py"), "train",
           "--train", os.path.join(data, "train.libfm"), "--test", os.path.join(data, "test.libfm"),
           "--model", model, "--k", str(k), "--t", str(t), "--batch", "512", "--lr", "0.05", "--optimizer", "adagrad",
           "--keep1", str(keep1), "--epochs", str(epochs), "--seed", str(seed)]
    if model == "afm":
        cmd += ["--pretrain-fm", "--pretrain-epochs", str(pretrain_epochs), "--lambda", str(lam)]
    if logistic:
        cmd += ["--loss", "logistic"]
    out = run(cmd)
    metrics = {}
    for name, key in (("rmse", "rmse"), ("logloss", "logloss"), ("auc", "auc")):
        m = re.search(rf"^{model} final test {name} ([0-9.]+)", out, re.M)
        if m:
            metrics[key] = float(m.group(1))
    note = f"last of {epochs} epochs" + (f" (FM pre-training {pretrain_epochs})" if model == "afm" else "")
    return metrics, note + (f", λ = {lam:g}, keep1 {keep1:g}" if model == "afm" else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=None, help="afm-gpu command (default: dotnet src/Afm.Cli/bin/Release/net10.0/afm-gpu.dll)")
    ap.add_argument("--python", default="/usr/bin/python3", help="Python with torch for the reference")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--datasets", default="ml100k,planted,planted-binary,context-logs,ctr-logs")
    ap.add_argument("--seeds", default="1", help="comma-separated seeds; each system runs once per seed")
    ap.add_argument("--movielens", default=None, help="folder with ml-100k-libfm train.libfm and test.libfm")
    ap.add_argument("--engine-args", default="", help="extra afm-gpu train arguments (to measure non-defaults); write --engine-args=--no-refit")
    args = ap.parse_args()
    cli = args.cli.split() if args.cli else ["dotnet", os.path.join(ROOT, "src", "Afm.Cli", "bin", "Release", "net10.0", "afm-gpu.dll")]
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = args.engine_args.split()

    work = tempfile.mkdtemp(prefix="afm-quality-")
    sets = []
    for name in args.datasets.split(","):
        if name == "ml100k":
            d = args.movielens or find_movielens()
            if d is None:
                print("ml100k: skipped (no shared/data/ml-100k-libfm found; --movielens DIR)")
                continue
            sets.append(("ml-100k-libfm", d, False, None))
        elif name in ("planted", "planted-binary"):
            d = os.path.join(work, name)
            os.makedirs(d)
            run(cli + ["demo-data", "-o", d] + (["--binary"] if name == "planted-binary" else []))
            sets.append((name, d, name == "planted-binary", None))
        elif name == "context-logs":
            import context_logs
            d = os.path.join(work, name)
            context_logs.generate(d)
            sets.append((name, d, False, None))
        elif name == "frappe-like":
            import context_logs
            d = os.path.join(work, name)
            context_logs.generate(d, habit=0.1, logs=96203)
            sets.append((name, d, False, (64, 64)))
        elif name == "tag-logs":
            import tag_logs
            d = os.path.join(work, name)
            tag_logs.generate(d)
            sets.append((name, d, False, None))
        elif name == "ctr-logs":
            import ctr_logs
            d = os.path.join(work, name)
            ctr_logs.generate(d)
            sets.append((name, d, True, None))
        else:
            sys.exit(f"quality: unknown dataset {name}")

    rows = []
    for label, d, logistic, shape in sets:
        for seed in seeds:
            for system in ("afm-gpu", "pytorch"):
                if system == "pytorch" and args.no_torch:
                    continue
                for model in ("fm", "afm"):
                    if system == "afm-gpu":
                        metrics, note = engine(cli, d, model, logistic, seed, extra, criteo=label == "ctr-logs", shape=shape)
                    else:
                        # the reference AFM gets the λ and the dropout that afm-gpu chose on its validation rows
                        mine = {r[3]: r[4] for r in rows if r[0] == label and r[1] == seed and r[2] == "afm-gpu"}
                        lam = mine.get("afm", {}).get("lambda", 0.0)
                        keep1 = mine.get("afm", {}).get("keep1", 0.8) if model == "afm" else 0.8
                        # The reference has no early stopping: it trains on every row for the epoch counts afm-gpu's
                        # early stopping chose (as afm-gpu's refit does), so that neither is cut short or overfit by a
                        # fixed count (click logs overfit after an epoch or two; ml-100k's FM improves for 40).
                        epochs = mine[model]["best_epoch"]
                        metrics, note = torch_ref(args.python, d, model, logistic, seed, lam, epochs, mine["afm"].get("pretrain_epoch", epochs), shape, keep1)
                    rows.append((label, seed, system, model, metrics, note))
                    print(f"  {label} seed {seed} {system} {model}: {metrics} ({note})", file=sys.stderr, flush=True)

    print()
    print("| data | seed | system | FM | AFM | AFM vs FM | FM notes | AFM notes |")
    print("|------|-----:|--------|---:|----:|----------:|----------|-----------|")
    for label, d, logistic, _ in sets:
        key = "logloss" if logistic else "rmse"
        for seed in seeds:
            for system in ("afm-gpu", "pytorch"):
                got = {r[3]: r for r in rows if r[0] == label and r[1] == seed and r[2] == system}
                if len(got) < 2:
                    continue
                fm, afm = got["fm"][4], got["afm"][4]

                def cell(m):
                    s = f"{key} {m[key]:.4f}"
                    return s + (f", auc {m['auc']:.4f}" if "auc" in m else "")
                gain = (afm[key] / fm[key] - 1) * 100
                print(f"| {label} | {seed} | {system} | {cell(fm)} | {cell(afm)} | {gain:+.2f}% | {got['fm'][5]} | {got['afm'][5]} |")


if __name__ == "__main__":
    main()
