#!/usr/bin/python3
"""Writes tests/fixtures/golden_afm.json: a small fixed-seed AFM/FM case in float64.

Forward pass written per row with explicit loops (no padding), gradients by torch
autograd; the batched, padded models of afm_torch.py must agree with it, which is
checked here before anything is written. No dropout. Run from anywhere:

    /usr/bin/python3 bench/reference/make_golden.py [--out tests/fixtures/golden_afm.json]
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import afm_torch  # noqa: E402

FEATURES, K, T, LAM = 12, 4, 3, 0.01
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Ragged rows (n = 5, 3, 2, 4); feature 3 and 7 recur across rows so V gradients scatter-add.
ROWS = [
    ([0, 3, 5, 7, 10], [1.0, 0.5, 1.7, -0.3, 1.0]),
    ([1, 3, 8], [1.0, 2.0, -1.2]),
    ([7, 11], [0.8, 1.0]),
    ([2, 4, 7, 9], [1.0, -0.3, 1.0, 0.5]),
]
LABELS = [1.0, -1.0, 2.0, 0.0]   # logistic reads y > 0 as 1: 1, 0, 1, 0


def make_params(seed=7):
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    std = math.sqrt(2.0 / (T + K))
    return {
        "w0": torch.tensor([0.2], dtype=torch.float64),
        "w": normal(FEATURES, std=0.1),
        "V": normal(FEATURES, K, std=0.5),
        "W": normal(T, K, std=std),
        "b": normal(T, std=std),
        "h": normal(T, std=1.0),
        "p": normal(K, std=1.0),
    }


def row_forward(model, P, ids, vals):
    """yhat and attention weights of one row, pairs in order j = 1..n-1, i = 0..j-1."""
    e = [P["V"][i] * x for i, x in zip(ids, vals)]
    yhat = P["w0"][0] + sum(P["w"][i] * x for i, x in zip(ids, vals))
    pairs = [(i, j) for j in range(1, len(ids)) for i in range(j)]
    if model == "fm":
        return yhat + sum((e[i] * e[j]).sum() for i, j in pairs), None
    if not pairs:
        return yhat, []
    q = [e[i] * e[j] for i, j in pairs]
    s = torch.stack([P["h"] @ torch.relu(P["W"] @ qi + P["b"]) for qi in q])
    a = torch.softmax(s, dim=0)
    u = sum(ai * qi for ai, qi in zip(a, q))
    return yhat + P["p"] @ u, a


def make_case(model, loss):
    names = ["w0", "w", "V"] + (["W", "b", "h", "p"] if model == "afm" else [])
    P = {n: t.requires_grad_() for n, t in make_params().items() if n in names}
    outs = [row_forward(model, P, ids, vals) for ids, vals in ROWS]
    yhat = torch.stack([y for y, _ in outs])
    y = torch.tensor(LABELS, dtype=torch.float64)
    total = afm_torch.loss_terms(yhat, y, loss).mean()
    if model == "afm":
        total = total + LAM * P["W"].pow(2).sum()
    total.backward()

    check_batched(model, loss, P, yhat, outs, total)
    flat = lambda t: [float(v) for v in t.detach().reshape(-1)]  # noqa: E731
    case = {
        "model": model, "loss": loss, "lambda": LAM if model == "afm" else 0.0,
        "featureCount": FEATURES, "k": K, "t": T if model == "afm" else 0,
        "rows": [{"ids": ids, "values": vals, "label": lab} for (ids, vals), lab in zip(ROWS, LABELS)],
        "params": {n: flat(P[n]) for n in names},
        "yhat": flat(yhat),
    }
    if model == "afm":
        case["attention"] = [flat(a) for _, a in outs]
    case["lossValue"] = float(total)   # "loss" names the loss kind; this is the objective
    case["grads"] = {n: flat(P[n].grad) for n in names}
    return case


def check_batched(model, loss, P, yhat, outs, total):
    """The padded, batched models of afm_torch.py must reproduce the per-row loops."""
    torch.set_default_dtype(torch.float64)
    m = afm_torch.build(model, FEATURES, K, T)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for n, t in P.items():
            getattr(m, n).copy_(t)
    ids, vals, mask = afm_torch.pad_rows(ROWS, dtype=torch.float64)
    yb = m(ids, vals, mask)
    tb = afm_torch.objective(m, yb, torch.tensor(LABELS, dtype=torch.float64), loss, LAM)
    tb.backward()
    assert torch.allclose(yb, yhat, rtol=1e-12, atol=1e-12), (yb, yhat)
    assert abs(tb.item() - total.item()) < 1e-12
    for n, t in P.items():
        assert torch.allclose(getattr(m, n).grad, t.grad, rtol=1e-10, atol=1e-12), n
    if model == "afm":
        for r, (_, a) in enumerate(outs):
            # a row's real pairs are a prefix of the pair order; padded pairs get exactly 0
            assert torch.allclose(m.last_attention[r, :len(a)], a, rtol=1e-12, atol=1e-14)
            assert (m.last_attention[r, len(a):] == 0).all()
            assert abs(a.sum().item() - 1.0) < 1e-12


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "golden_afm.json"))
    args = ap.parse_args()
    cases = [make_case(model, loss) for model in ("afm", "fm") for loss in ("squared", "logistic")]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"generator": "bench/reference/make_golden.py", "torch_version": torch.__version__,
                   "dtype": "float64", "cases": cases}, f, indent=1)
        f.write("\n")
    for c in cases:
        print(f"{c['model']:3s} {c['loss']:8s} lossValue {c['lossValue']:.6f}  "
              f"yhat {' '.join('%.4f' % v for v in c['yhat'])}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
