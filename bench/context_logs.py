#!/usr/bin/python3
"""Context-aware app-usage logs shaped like the Frappe dataset of the AFM paper, for the quality benchmark.

Ten categorical fields, one-hot (user 957, item 4082, daytime 7, weekday 7, isweekend 2, homework 3, cost 2,
weather 9, country 80, city 233 values), labels 1 for a logged use and -1 for each of two negatives that pair the
same user and context with a random item, as Frappe's negatives do: 28,861 logs, 86,583 rows, the first 57,722 for
training and the other 28,861 for test. A log's item is one of the user's few apps, drawn by a latent model of the
item against the daytime, the weather and the user. Country, city and cost are attributes of the user and of the
item, and isweekend follows from weekday. Only pairs with the item tell a log from its negatives; the others are
noise, which an AFM can learn to ignore and an FM cannot.

    /usr/bin/python3 bench/context_logs.py OUT_DIR [--seed N] [--signal 1.5] [--habit 0] [--logs 28861]   # writes OUT_DIR/train.libfm and test.libfm

--signal scales how strongly the context and the user pull a log towards one of the user's apps; --habit is the share
of logs whose item is any app drawn by popularity alone, which only the linear terms can tell from a negative. The
defaults are the quality benchmark's data. It prints the test RMSE of the best possible predictor, the expected label under the
generator's own model, as the floor no model trained on the rows can beat.
"""
import argparse
import os

import numpy as np

FIELDS = dict(user=957, item=4082, daytime=7, weekday=7, isweekend=2, homework=3, cost=2, weather=9, country=80, city=233)
LOGS, TRAIN_ROWS, TEST_ROWS, RANK = 28861, 57722, 28861, 8


def generate(out_dir, seed=11, signal=1.5, habit=0.0, logs=LOGS):
    rng = np.random.default_rng(seed)
    names = list(FIELDS)
    offset = dict(zip(names, np.cumsum([0] + [FIELDS[n] for n in names])[:-1]))
    users, items = FIELDS["user"], FIELDS["item"]
    item_f = rng.normal(0, 1, (items, RANK))
    user_f = rng.normal(0, 1, (users, RANK))
    daytime_f = rng.normal(0, 1, (FIELDS["daytime"], RANK))
    weather_f = rng.normal(0, 1, (FIELDS["weather"], RANK))
    popularity = np.exp(rng.normal(0, 1.5, items))
    popularity /= popularity.sum()
    item_cost = (rng.random(items) < 0.2).astype(int)
    user_country = rng.integers(0, FIELDS["country"], users)
    user_city = rng.integers(0, FIELDS["city"], users)
    activity = np.minimum(rng.zipf(1.6, users), 200).astype(float)
    activity /= activity.sum()
    apps = [rng.choice(items, size=min(items, 3 + rng.geometric(0.08)), replace=False, p=popularity) for _ in range(users)]

    rows = []
    for _ in range(logs):
        u = rng.choice(users, p=activity)
        daytime, weekday, homework, weather = rng.integers(7), rng.integers(7), rng.integers(3), rng.integers(9)
        logits = item_f[apps[u]] @ (daytime_f[daytime] + 0.6 * weather_f[weather] + 0.8 * user_f[u]) / np.sqrt(RANK) * signal
        p = np.exp(logits - logits.max())
        p /= p.sum()
        if habit > 0 and rng.random() < habit:
            item = rng.choice(items, p=popularity)
        else:
            item = apps[u][rng.choice(len(apps[u]), p=p)]
        # The chance that a log with this user and context has the item: what the best predictor knows of a row.
        use = dict(zip(apps[u], (1 - habit) * p))
        context = dict(user=u, daytime=daytime, weekday=weekday, isweekend=int(weekday >= 5), homework=homework,
                       weather=weather, country=user_country[u], city=user_city[u])
        for label, it in [(1, item)] + [(-1, rng.integers(items)) for _ in range(2)]:
            chance = use.get(it, 0.0) + habit * popularity[it]
            positive = chance / (chance + 2 / items)  # a row is the log itself or one of its two uniform negatives
            rows.append((label, dict(context, item=it, cost=item_cost[it]), 2 * positive - 1))
    rows = [rows[i] for i in rng.permutation(len(rows))]

    os.makedirs(out_dir, exist_ok=True)
    for name, part in (("train.libfm", rows[:TRAIN_ROWS]), ("test.libfm", rows[TRAIN_ROWS:TRAIN_ROWS + TEST_ROWS])):
        with open(os.path.join(out_dir, name), "w") as f:
            for label, row, _ in part:
                f.write(f"{label} " + " ".join(f"{offset[n] + row[n]}:1" for n in names) + "\n")
    test = rows[TRAIN_ROWS:TRAIN_ROWS + TEST_ROWS]
    best = np.sqrt(np.mean([(label - expected) ** 2 for label, _, expected in test]))
    print(f"test rmse of the best possible predictor (the generator's own label expectation): {best:.4f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--signal", type=float, default=1.5, help="scale of the context's pull on a log's item")
    ap.add_argument("--habit", type=float, default=0.0, help="share of logs whose item is any popular app, not one of the user's")
    ap.add_argument("--logs", type=int, default=LOGS,
                    help="logs drawn; with more than 28,861 the files are random samples of all their rows")
    a = ap.parse_args()
    generate(a.out_dir, a.seed, a.signal, a.habit, a.logs)
