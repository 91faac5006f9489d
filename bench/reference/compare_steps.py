#!/usr/bin/python3
"""Step-by-step check of afm-gpu's training against PyTorch from the same starting model.

afm-gpu writes its starting model and its model after each of N steps (safetensors exports);
this script loads the starting model into the PyTorch AFM of afm_torch.py, takes the same N
Adagrad steps on the same batch (every row of --train, which the engine takes as one batch),
and prints per step the loss of both and the largest difference of every parameter tensor.

    /usr/bin/python3 bench/reference/compare_steps.py --train B.libfm --start s0.safetensors \
        --after s1.safetensors s2.safetensors ... --lr 0.05 [--loss squared] [--lambda 0]

With --engine-loss L1 L2 ... (the engine's per-epoch training losses) the losses are compared too.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import afm_torch as ref  # noqa: E402


def load_safetensors(path):
    """The tensors (float64) and the metadata of an afm-gpu safetensors export."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=torch.float32).reshape(info["shape"])
        tensors[name] = t.to(torch.float64)
    return tensors, meta


def build_model(tensors, meta):
    k = int(meta["k"])
    n = tensors["w"].shape[0]
    if meta["model"] == "fm":
        model = ref.FM(n, k)
    else:
        model = ref.AFM(n, k, int(meta["t"]))
    model = model.to(torch.float64)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(tensors[name])
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="the rows of the one batch (libFM)")
    ap.add_argument("--start", required=True, help="the engine's starting model (safetensors)")
    ap.add_argument("--after", nargs="*", default=[], help="the engine's model after step 1, 2, ...")
    ap.add_argument("--engine-loss", nargs="*", type=float, default=[], help="the engine's training loss of step 1, 2, ...")
    ap.add_argument("--steps", type=int, default=0, help="steps to take (default: as many as --after)")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--optimizer", choices=["adagrad", "adam", "sgd"], default="adagrad")
    ap.add_argument("--loss", choices=["squared", "logistic"], default="squared")
    ap.add_argument("--lambda", dest="lam", type=float, default=0.0)
    args = ap.parse_args()

    tensors, meta = load_safetensors(args.start)
    model = build_model(tensors, meta)
    labels, rows = ref.read_libfm(args.train)
    ids, vals, mask = ref.pad_rows(rows, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.float64)
    opt = ref.make_optimizer(args.optimizer, model.parameters(), args.lr)
    steps = args.steps or len(args.after)
    print(f"{len(y)} rows, model {meta['model']} k={meta['k']} t={meta.get('t')}, {steps} steps of {args.optimizer} lr {args.lr}")
    worst = 0.0
    for step in range(1, steps + 1):
        opt.zero_grad()
        yhat = model(ids, vals, mask)
        data_loss = ref.loss_terms(yhat, y, args.loss).mean()
        ref.objective(model, yhat, y, args.loss, args.lam).backward()
        grads = {name: p.grad.abs().max().item() for name, p in model.named_parameters()}
        opt.step()
        line = f"step {step}: torch loss {data_loss.item():.6f}"
        if step <= len(args.engine_loss):
            line += f"  engine {args.engine_loss[step - 1]:.6f}  rel diff {abs(args.engine_loss[step - 1] / data_loss.item() - 1):.1e}"
        print(line)
        print("   max |grad|:  " + "  ".join(f"{n} {g:.3e}" for n, g in grads.items()))
        if step <= len(args.after):
            theirs, _ = load_safetensors(args.after[step - 1])
            cells = []
            for name, p in model.named_parameters():
                mine = p.detach()
                diff = (mine - theirs[name]).abs().max().item()
                scale = max(mine.abs().max().item(), 1e-12)
                worst = max(worst, diff / scale)
                cells.append(f"{name} {diff:.1e} (of {scale:.2e})")
            print("   max |torch - engine|:  " + "  ".join(cells))
    if args.after:
        print(f"largest difference relative to the tensor's largest element: {worst:.1e}")


if __name__ == "__main__":
    main()
