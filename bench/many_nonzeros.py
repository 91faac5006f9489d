#!/usr/bin/python3
"""Rows with many non-zeros, labelled by a planted FM, for the learning-rate back-off measurements (docs/defaults.md).

Each row holds NNZ distinct binary features out of 2,000; its label is a planted FM of k = 4 (linear terms and pair
sum each scaled to unit variance over the pairs), standardised, plus N(0, 0.3^2) noise: 40,000 rows, the first 32,000
for training and the other 8,000 for test. Multi-hot rows such as these (bags of words, tags, a user's history) have
an FM pair sum that moves with the square of NNZ, which is what makes a learning rate that suits one-hot fields
overshoot here.

    /usr/bin/python3 bench/many_nonzeros.py OUT_DIR [--nnz 100] [--seed 1]   # writes OUT_DIR/train.libfm and test.libfm
"""
import argparse
import os

import numpy as np

FEATURES, RANK, ROWS, TRAIN_ROWS, NOISE = 2000, 4, 40000, 32000, 0.3


def generate(out_dir, nnz=100, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, FEATURES)
    v = rng.normal(0, 1, (FEATURES, RANK))
    rows, raw = [], []
    for _ in range(ROWS):
        ids = rng.choice(FEATURES, nnz, replace=False)
        s = v[ids].sum(0)
        pairs = 0.5 * ((s * s).sum() - (v[ids] ** 2).sum())
        rows.append(ids)
        raw.append(w[ids].sum() / np.sqrt(nnz) + pairs / np.sqrt(nnz * (nnz - 1) / 2 * RANK))
    raw = np.array(raw)
    labels = (raw - raw.mean()) / raw.std() + rng.normal(0, NOISE, ROWS)
    os.makedirs(out_dir, exist_ok=True)
    for name, part in (("train", slice(0, TRAIN_ROWS)), ("test", slice(TRAIN_ROWS, ROWS))):
        with open(os.path.join(out_dir, name + ".libfm"), "w") as f:
            for ids, y in zip(rows[part], labels[part]):
                f.write(f"{y:.4f} " + " ".join(f"{i}:1" for i in ids) + "\n")
    print(f"{out_dir}: {TRAIN_ROWS} training and {ROWS - TRAIN_ROWS} test rows of {nnz} non-zeros; label std {labels.std():.4f}, "
          f"noise floor (test RMSE of the planted model) {NOISE}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--nnz", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    generate(a.out_dir, a.nnz, a.seed)
