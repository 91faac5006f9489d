#!/usr/bin/python3
"""Click logs shaped like Criteo's display-advertising data, for the quality benchmark.

Criteo's TSV layout (label, 13 integer columns I1..I13, 26 categorical columns C1..C26 as 8-digit hex, an empty column
being missing), read with `--format criteo`: integer columns log-normal with up to 40% missing, categorical columns
of 3 to 50,000 values drawn with a Zipf-like skew, some with up to half missing. A click (label 1, about a third of
the rows) is drawn from a logistic model: a bias per feature (the integer columns' features being the bucketing the
engine applies, so their features are the model's own) plus rank-4 interactions on 12 of the 741 column pairs, the
others none. Only those 12 pairs carry interactions, which an AFM can learn to weigh and an FM cannot; the long tails
of rare values make the data overfit after an epoch or two, as click logs do.

Written twice: train.tsv / test.tsv for `--format criteo`, and train.libfm / test.libfm with one id per (column,
value) for the PyTorch reference (same rows; the TSV is hashed into 2^20 rows by the engine, so a few collide).

    /usr/bin/python3 bench/ctr_logs.py OUT_DIR [--seed N] [--rows 100000] [--test-rows 25000]
"""
import argparse
import os

import numpy as np

INTS, CATS, RANK, ACTIVE_PAIRS = 13, 26, 4, 12


def bucket(v):
    """The engine's integer feature (CriteoFormat): SPv for v <= 2, else floor(ln(v)^2), as an index: 0..3 for v = -1..2."""
    big = np.maximum(v, 3).astype(float)
    return np.where(v <= 2, v + 1, 4 + np.floor(np.log(big) ** 2)).astype(int)


def generate(out_dir, seed=5, rows=100_000, test_rows=25_000):
    rng = np.random.default_rng(seed)
    n = rows + test_rows
    card = np.exp(rng.uniform(np.log(3), np.log(50_000), CATS)).astype(int)
    mu, sigma = rng.uniform(0, 4, INTS), rng.uniform(0.5, 2, INTS)
    miss_int = rng.uniform(0, 0.4, INTS)
    miss_cat = np.where(rng.random(CATS) < 0.3, rng.uniform(0, 0.5, CATS), 0)
    fields = INTS + CATS
    pairs = [(f, g) for f in range(fields) for g in range(f + 1, fields)]
    active = [pairs[i] for i in rng.choice(len(pairs), ACTIVE_PAIRS, replace=False)]
    strength = rng.choice([-1, 1], ACTIVE_PAIRS) * rng.uniform(0.6, 1.2, ACTIVE_PAIRS)

    # per field: the row's value index (-1: missing), the text of its column, and the values' latent vectors and biases
    index, text, latent, bias = [], [], [], []
    for j in range(INTS):
        v = np.floor(rng.lognormal(mu[j], sigma[j], n)).astype(np.int64) - 1
        missing = rng.random(n) < miss_int[j]
        b = bucket(v)
        index.append(np.where(missing, -1, b))
        text.append(np.where(missing, "", v.astype(str)))
        latent.append(rng.normal(0, 1, (b.max() + 1, RANK)))
        bias.append(rng.normal(0, 0.25, b.max() + 1))
    for j in range(CATS):
        p = 1.0 / np.arange(1, card[j] + 1) ** 1.1
        v = rng.choice(card[j], n, p=p / p.sum())
        missing = rng.random(n) < miss_cat[j]
        index.append(np.where(missing, -1, v))
        hexes = np.array([f"{(x * 2654435761 + j * 97) & 0xffffffff:08x}" for x in range(card[j])])
        text.append(np.where(missing, "", hexes[v]))
        latent.append(rng.normal(0, 1, (card[j], RANK)))
        bias.append(rng.normal(0, 0.25, card[j]))

    logit = np.full(n, -1.2)
    for f in range(fields):
        present = index[f] >= 0
        logit += np.where(present, bias[f][np.maximum(index[f], 0)], 0)
    for (f, g), s in zip(active, strength):
        both = (index[f] >= 0) & (index[g] >= 0)
        dot = np.einsum("ij,ij->i", latent[f][np.maximum(index[f], 0)], latent[g][np.maximum(index[g], 0)])
        logit += np.where(both, s * dot / np.sqrt(RANK) * 1.5, 0)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    offsets = np.cumsum([0] + [len(b) for b in bias])[:-1]
    os.makedirs(out_dir, exist_ok=True)
    for name, part in (("train", range(0, rows)), ("test", range(rows, n))):
        with open(os.path.join(out_dir, f"{name}.tsv"), "w") as tsv, open(os.path.join(out_dir, f"{name}.libfm"), "w") as libfm:
            for i in part:
                tsv.write(f"{label[i]}\t" + "\t".join(text[f][i] for f in range(fields)) + "\n")
                libfm.write(f"{label[i]} " + " ".join(f"{offsets[f] + index[f][i]}:1" for f in range(fields) if index[f][i] >= 0) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--test-rows", type=int, default=25_000)
    a = ap.parse_args()
    generate(a.out_dir, a.seed, a.rows, a.test_rows)
