#!/usr/bin/python3
"""Tagging logs shaped like the MovieLens tag data of the AFM paper (ml-tag), for the quality benchmark.

Three one-hot fields (user 17,045, movie 23,743, tag 49,657 values) and 668,953 tag assignments, each written as a row
with label 1 and followed by two negatives with label -1 that pair the same user and movie with a tag drawn uniformly,
as ml-tag's negatives do: 2,006,859 rows in all, of which random samples of 1,404,801 (training) and 200,686 (test)
rows are written, the paper's split sizes. An assignment's tag is one of the movie's few tags (55%), one of the
user's habitual tags (30%) or any tag by popularity (15%); users and movies are drawn with long-tailed activity and
popularity. Only the pairs with the tag tell an assignment from its negatives; the user-movie pair is shared by both,
so it is noise, which an AFM can learn to weigh down and an FM cannot.

    /usr/bin/python3 bench/tag_logs.py OUT_DIR [--seed N]   # writes OUT_DIR/train.libfm and test.libfm (about 40 MB)
"""
import argparse
import os

import numpy as np

USERS, MOVIES, TAGS = 17045, 23743, 49657
ASSIGNMENTS, TRAIN_ROWS, TEST_ROWS = 668953, 1404801, 200686
MOVIE_TAGS, USER_TAGS = 8, 6


def generate(out_dir, seed=3):
    rng = np.random.default_rng(seed)
    popularity = np.exp(rng.normal(0, 1.5, TAGS))
    popularity /= popularity.sum()
    movie_tags = rng.choice(TAGS, size=(MOVIES, MOVIE_TAGS), p=popularity)
    user_tags = rng.choice(TAGS, size=(USERS, USER_TAGS), p=popularity)
    activity = np.minimum(rng.zipf(1.5, USERS), 2000).astype(float)
    activity /= activity.sum()
    movie_popularity = np.exp(rng.normal(0, 1.2, MOVIES))
    movie_popularity /= movie_popularity.sum()

    n = ASSIGNMENTS
    user = rng.choice(USERS, n, p=activity)
    movie = rng.choice(MOVIES, n, p=movie_popularity)
    source = rng.random(n)
    tag = np.where(source < 0.55, movie_tags[movie, rng.integers(0, MOVIE_TAGS, n)],
                   np.where(source < 0.85, user_tags[user, rng.integers(0, USER_TAGS, n)], rng.choice(TAGS, n, p=popularity)))
    rows = np.empty((3 * n, 4), dtype=np.int64)
    rows[0::3] = np.stack([np.ones(n, dtype=np.int64), user, movie, tag], 1)
    for j in (1, 2):
        rows[j::3] = np.stack([-np.ones(n, dtype=np.int64), user, movie, rng.integers(0, TAGS, n)], 1)
    rows = rows[rng.permutation(3 * n)]

    os.makedirs(out_dir, exist_ok=True)
    for name, part in (("train.libfm", rows[:TRAIN_ROWS]), ("test.libfm", rows[TRAIN_ROWS:TRAIN_ROWS + TEST_ROWS])):
        with open(os.path.join(out_dir, name), "w") as f:
            f.write("".join(f"{r[0]} {r[1]}:1 {USERS + r[2]}:1 {USERS + MOVIES + r[3]}:1\n" for r in part))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    generate(a.out_dir, a.seed)
