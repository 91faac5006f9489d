#!/usr/bin/python3
"""Independent PyTorch reference for AFM (Xiao et al., IJCAI 2017) and FM.

Written the way peers write it: rows are padded to the longest row, the B x P x k
pair tensor and the B x P x t hidden tensor are materialised, and a mask keeps padding
out of the softmax. Run with Debian's interpreter (/usr/bin/python3, PyTorch 1.13).

    /usr/bin/python3 bench/reference/afm_torch.py throughput --model afm --fields 10 --k 64 --t 64
    /usr/bin/python3 bench/reference/afm_torch.py train --train A.libfm --test B.libfm --model fm --k 64
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- data

def read_libfm(path):
    """Reads 'label id:value ...' lines into (labels, rows); rows[i] = (ids, values)."""
    labels, rows = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            labels.append(float(parts[0]))
            ids, vals = [], []
            for tok in parts[1:]:
                i, v = tok.split(":")
                ids.append(int(i))
                vals.append(float(v))
            rows.append((ids, vals))
    return labels, rows


def pad_rows(rows, width=None, dtype=torch.float32):
    """Ragged rows -> (ids B x n, vals B x n, mask B x n); padding has id 0 and value 0."""
    width = width or max(1, max(len(r[0]) for r in rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    vals = torch.zeros(len(rows), width, dtype=dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, (i, v) in enumerate(rows):
        ids[r, :len(i)] = torch.tensor(i, dtype=torch.long)
        vals[r, :len(v)] = torch.tensor(v, dtype=dtype)
        mask[r, :len(i)] = True
    return ids, vals, mask


def pair_index(n):
    """Pairs i < j in the engine's order: for j in 1..n-1, for i in 0..j-1 (index j(j-1)/2 + i)."""
    first = [i for j in range(1, n) for i in range(j)]
    second = [j for j in range(1, n) for i in range(j)]
    return torch.tensor(first, dtype=torch.long), torch.tensor(second, dtype=torch.long)


# ---------------------------------------------------------------- models

def embed(ids, vals, V, w):
    """e = V[id] * x (B x n x k) and the linear term sum w[id] x (B); padding has x = 0."""
    e = F.embedding(ids, V) * vals.unsqueeze(-1)
    linear = (F.embedding(ids, w.unsqueeze(1)).squeeze(-1) * vals).sum(1)
    return e, linear


class FM(nn.Module):
    """y = w0 + sum w x + sum_{i<j} <e_i, e_j>, with the O(nk) sum-square identity."""

    def __init__(self, feature_count, k):
        super().__init__()
        self.w0 = nn.Parameter(torch.zeros(1))
        self.w = nn.Parameter(torch.zeros(feature_count))
        self.V = nn.Parameter(torch.randn(feature_count, k) * 0.01)

    def forward(self, ids, vals, mask):
        e, linear = embed(ids, vals, self.V, self.w)              # B x n x k, B
        inter = 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)
        return self.w0 + linear + inter


class AFM(nn.Module):
    """Attention-pooled pairwise interactions; attention is a masked softmax over real pairs."""

    def __init__(self, feature_count, k, t, keep0=1.0, keep1=1.0):
        super().__init__()
        std = math.sqrt(2.0 / (t + k))
        self.w0 = nn.Parameter(torch.zeros(1))
        self.w = nn.Parameter(torch.zeros(feature_count))
        self.V = nn.Parameter(torch.randn(feature_count, k) * 0.01)
        self.W = nn.Parameter(torch.randn(t, k) * std)
        self.b = nn.Parameter(torch.randn(t) * std)
        self.h = nn.Parameter(torch.randn(t))
        self.p = nn.Parameter(torch.ones(k))
        self.drop_a = nn.Dropout(1.0 - keep0)
        self.drop_u = nn.Dropout(1.0 - keep1)
        self._pairs = {}
        self.last_attention = None

    def pairs(self, n, device):
        if (n, device) not in self._pairs:
            self._pairs[(n, device)] = tuple(x.to(device) for x in pair_index(n))
        return self._pairs[(n, device)]

    def forward(self, ids, vals, mask):
        I, J = self.pairs(ids.shape[1], ids.device)
        e, linear = embed(ids, vals, self.V, self.w)              # B x n x k, B
        q = e[:, I] * e[:, J]                                     # B x P x k
        z = q @ self.W.t() + self.b                               # B x P x t
        s = F.relu(z) @ self.h                                    # B x P
        real = mask[:, I] & mask[:, J]                            # B x P
        s = s.masked_fill(~real, torch.finfo(s.dtype).min)
        a = torch.softmax(s, dim=1) * real                        # rows without pairs: a = 0
        self.last_attention = a.detach()
        a = self.drop_a(a)
        u = self.drop_u((a.unsqueeze(-1) * q).sum(1))             # B x k
        return self.w0 + linear + u @ self.p


def loss_terms(yhat, y, loss):
    """Per-sample loss: squared (yhat - y)^2, logistic softplus(yhat) - y01 yhat."""
    if loss == "squared":
        return (yhat - y).pow(2)
    return F.softplus(yhat) - (y > 0).to(yhat.dtype) * yhat


def objective(model, yhat, y, loss, lam):
    """Batch mean of the per-sample loss plus lambda ||W||^2 (AFM only)."""
    total = loss_terms(yhat, y, loss).mean()
    if lam and isinstance(model, AFM):
        total = total + lam * model.W.pow(2).sum()
    return total


def make_optimizer(name, params, lr):
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def build(model, feature_count, k, t, keep0=1.0, keep1=1.0):
    return FM(feature_count, k) if model == "fm" else AFM(feature_count, k, t, keep0, keep1)


def blas_library():
    """The BLAS shared library this process loaded (Debian's torch uses whatever libblas.so.3 resolves to)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in os.path.basename(line.split()[-1])}
        return ", ".join(sorted(os.path.realpath(p) for p in paths)) or "none loaded"
    except OSError:
        return "unknown"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- throughput

def synthetic_batch(batch, fields, gen):
    """Exactly `fields` non-zeros per row: one id from each field of 100 features, value 1."""
    ids = torch.randint(0, 100, (batch, fields), generator=gen) + 100 * torch.arange(fields)
    vals = torch.ones(batch, fields)
    mask = torch.ones(batch, fields, dtype=torch.bool)
    y = torch.randint(1, 6, (batch,), generator=gen).float()
    return ids, vals, mask, y


def cmd_throughput(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    batches = [tuple(x.to(device) for x in synthetic_batch(args.batch, args.fields, gen))
               for _ in range(4)]
    model = build(args.model, 100 * args.fields, args.k, args.t).to(device)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)

    def train_step(i):
        ids, vals, mask, y = batches[i % len(batches)]
        opt.zero_grad()
        objective(model, model(ids, vals, mask), y, "squared", args.lam).backward()
        opt.step()

    def infer_step(i):
        model(*batches[i % len(batches)][:3])

    def rate(step):
        """Samples/s of the fastest of `repeats` timed runs of `steps` steps, after 3 warm-up steps."""
        for i in range(3):
            step(i)
        best = math.inf
        for _ in range(args.repeats):
            sync(device)
            start = time.perf_counter()
            for i in range(args.steps):
                step(i)
            sync(device)
            best = min(best, time.perf_counter() - start)
        return args.batch * args.steps / best

    model.train()
    train_rate = rate(train_step)
    model.eval()
    with torch.no_grad():
        infer_rate = rate(infer_step)

    result = {
        "model": args.model, "m": args.fields, "k": args.k,
        "t": args.t if args.model == "afm" else 0, "batch": args.batch,
        "steps": args.steps, "repeats": args.repeats,
        "train_samples_per_s": train_rate, "infer_samples_per_s": infer_rate,
        "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "blas": blas_library(),
        "load_avg_1m": os.getloadavg()[0],   # other work on the machine skews CPU timings
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


# ---------------------------------------------------------------- training

def load(path, width, device):
    labels, rows = read_libfm(path)
    ids, vals, mask = pad_rows(rows, width)
    return ids.to(device), vals.to(device), mask.to(device), torch.tensor(labels, device=device)


def evaluate(model, data, loss, lo, hi, batch):
    """Squared loss: RMSE of predictions clipped to [lo, hi]; logistic: mean log loss."""
    ids, vals, mask, y = data
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(y), batch):
            yhat = model(ids[s:s + batch], vals[s:s + batch], mask[s:s + batch])
            if loss == "squared":
                total += (yhat.clamp(lo, hi) - y[s:s + batch]).pow(2).sum().item()
            else:
                total += loss_terms(yhat, y[s:s + batch], loss).sum().item()
    return math.sqrt(total / len(y)) if loss == "squared" else total / len(y)


def fit(model, train, test, args, epochs, tag):
    ids, vals, mask, y = train
    lo, hi = y.min().item(), y.max().item()
    metric = "test rmse" if args.loss == "squared" else "test logloss"
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr)
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(y), device=y.device)
        total = 0.0
        for s in range(0, len(y), args.batch):
            b = order[s:s + args.batch]
            opt.zero_grad()
            obj = objective(model, model(ids[b], vals[b], mask[b]), y[b], args.loss, args.lam)
            obj.backward()
            opt.step()
            total += obj.item() * len(b)
        seconds = time.perf_counter() - start
        print(f"{tag} epoch {epoch:3d}  train loss {total / len(y):.5f}  "
              f"{metric} {evaluate(model, test, args.loss, lo, hi, args.batch):.5f}  ({seconds:.2f}s)", flush=True)
    return evaluate(model, test, args.loss, lo, hi, args.batch)


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    _, train_rows = read_libfm(args.train)
    _, test_rows = read_libfm(args.test)
    width = max(len(r[0]) for r in train_rows + test_rows)
    features = 1 + max(max(r[0], default=0) for r in train_rows + test_rows)
    train = load(args.train, width, device)
    test = load(args.test, width, device)
    print(f"train {len(train[3])} rows, test {len(test[3])} rows, {features} features, "
          f"at most {width} non-zeros per row")

    model = build(args.model, features, args.k, args.t, args.keep0, args.keep1).to(device)
    if args.model == "afm" and args.pretrain_fm:
        fm = FM(features, args.k).to(device)
        r = fit(fm, train, test, args, args.pretrain_epochs or args.epochs, "fm-pretrain")
        print(f"fm-pretrain final {r:.5f}")
        with torch.no_grad():
            model.V.copy_(fm.V)
            model.w.copy_(fm.w)
            model.w0.copy_(fm.w0)
    r = fit(model, train, test, args, args.epochs, args.model)
    print(f"{args.model} final test {'rmse' if args.loss == 'squared' else 'logloss'} {r:.5f}")
    if args.loss == "logistic" or len(torch.unique(test[3])) == 2:  # squared loss on -1/1 labels too, as afm-gpu
        print(f"{args.model} final test auc {auc(model, test, args.batch):.5f}")


def auc(model, data, batch):
    """ROC AUC of the raw scores (ties count one half): labels > 0 positive for logistic loss, and for squared loss
    on two-valued labels the larger one."""
    ids, vals, mask, y = data
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(ids[s:s + batch], vals[s:s + batch], mask[s:s + batch]) for s in range(0, len(y), batch)])
    pos = y > (y.min() if len(torch.unique(y)) == 2 else 0)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    s_sorted = scores[order].double()
    ranks = torch.empty(len(y), dtype=torch.float64)
    i = 0
    while i < len(y):
        j = i
        while j + 1 < len(y) and s_sorted[j + 1] == s_sorted[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return (ranks[pos].sum().item() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# ---------------------------------------------------------------- CLI

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", choices=["afm", "fm"], default="afm")
    common.add_argument("--k", type=int, default=64)
    common.add_argument("--t", type=int, default=64)
    common.add_argument("--batch", type=int, default=4096)
    common.add_argument("--lr", type=float, default=0.05)
    common.add_argument("--optimizer", choices=["adagrad", "adam", "sgd"], default="adagrad")
    common.add_argument("--lambda", dest="lam", type=float, default=0.0)
    common.add_argument("--threads", type=int, default=2)
    common.add_argument("--seed", type=int, default=2017)
    common.add_argument("--device", default="cpu", help="cpu or cuda[:N]")

    tp = sub.add_parser("throughput", parents=[common], help="training and inference samples/s on synthetic data")
    tp.add_argument("--fields", type=int, default=10, help="non-zeros per row (m)")
    tp.add_argument("--steps", type=int, default=10)
    tp.add_argument("--repeats", type=int, default=3, help="timed runs of --steps; the fastest counts")
    tp.add_argument("--json")
    tp.set_defaults(func=cmd_throughput)

    tr = sub.add_parser("train", parents=[common], help="train on libFM files, report test RMSE")
    tr.add_argument("--train", required=True)
    tr.add_argument("--test", required=True)
    tr.add_argument("--epochs", type=int, default=20)
    tr.add_argument("--loss", choices=["squared", "logistic"], default="squared")
    tr.add_argument("--keep0", type=float, default=1.0, help="keep probability on attention weights")
    tr.add_argument("--keep1", type=float, default=1.0, help="keep probability on the pooled vector")
    tr.add_argument("--pretrain-fm", action="store_true", help="initialise AFM's V, w, w0 from an FM")
    tr.add_argument("--pretrain-epochs", type=int, default=0, help="FM epochs (default: --epochs)")
    tr.set_defaults(func=cmd_train)

    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    args.func(args)


if __name__ == "__main__":
    main()
