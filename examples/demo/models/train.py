#!/usr/bin/env python3
"""Trains the demo's product-search rankers on synthetic data and writes the query rows
the demo's load generator sends. Seeded and single-threaded: a rerun rewrites identical
files.

Run from the repository root:
    "$(ranker/tools/pyenv models)/bin/python" examples/demo/models/train.py

Writes, next to this script:
    search-ranker-v1.txt                  lambdarank, 50 trees of 15 leaves
    search-ranker-v2.txt                  lambdarank, 100 trees of 12 leaves: the better model
                                          (12 leaves keep the file under 150 KB)
    search-ranker-v3-missing-feature.txt  as v1 but trained without days_since_listed: it has
                                          7 features, so mlctl-ranker refuses every 8-feature
                                          request with a 400 (the demo's bad version)
and examples/demo/queries.json: {"feature_names": [...], "rows": [[8 numbers], ...]}, the
candidate products of held-out queries, which rank-traffic sends as documents.

The data: each query has 20-50 candidate products. A hidden match quality per product
drives the text-match scores and the click-through rates; the graded relevance (0-4) is
that quality plus what shoppers prefer (in stock, fairly priced, popular, fresh) plus
noise. The models only see the 8 features, so they learn the relationship imperfectly,
as a real ranker does. NDCG@10 on the held-out queries is LightGBM's own ndcg metric.
"""

import json
import os

import numpy as np

import lightgbm as lgb

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.dirname(HERE)
SEED = 20261125
QUERIES = 1500
HELD_OUT = 0.2  # share of queries kept out of training
QUERY_ROWS = 400  # candidate rows written to queries.json
FEATURES = [
    "bm25_title",
    "bm25_description",
    "ctr_7d",
    "ctr_30d",
    "price_ratio",
    "days_since_listed",
    "popularity",
    "in_stock",
]
DROPPED = "days_since_listed"  # the feature v3 is trained without


def products(rng, n):
    """The 8 features of n candidate products of one query, and their relevance signal."""
    quality = rng.beta(1.2, 3.0, size=n)  # how well the product matches the query
    bm25_title = np.maximum(0.0, 14.0 * quality + rng.normal(0.0, 2.5, size=n))
    bm25_description = np.maximum(0.0, 0.5 * bm25_title + 8.0 * quality + rng.normal(0.0, 3.0, size=n))
    popularity = np.log1p(rng.lognormal(3.0, 1.2, size=n))  # log(1 + sales in 30 days)
    appeal = 1.0 / (1.0 + np.exp(-(popularity - 3.0)))
    ctr_30d = np.clip(0.01 + 0.12 * quality * appeal + rng.normal(0.0, 0.01, size=n), 0.0, 1.0)
    ctr_7d = np.clip(ctr_30d + rng.normal(0.0, 0.015, size=n), 0.0, 1.0)  # fewer impressions: noisier
    price_ratio = rng.lognormal(0.0, 0.4, size=n)  # price / the query's median price
    days_since_listed = np.floor(rng.exponential(250.0, size=n))
    in_stock = (rng.random(size=n) < 0.85).astype(float)
    signal = (
        3.2 * quality
        + 8.0 * ctr_30d
        + 0.25 * (popularity - 3.0)
        - 0.6 * np.log(price_ratio)
        + 0.4 * np.exp(-days_since_listed / 60.0)
        - 1.5 * (1.0 - in_stock)
        + rng.normal(0.0, 0.35, size=n)
    )
    # Rounded as a feature store would serve them, so the served rows are the trained ones.
    x = np.column_stack(
        [
            np.round(bm25_title, 3),
            np.round(bm25_description, 3),
            np.round(ctr_7d, 4),
            np.round(ctr_30d, 4),
            np.round(price_ratio, 3),
            days_since_listed,
            np.round(popularity, 3),
            in_stock,
        ]
    )
    return x, signal


def dataset():
    rng = np.random.default_rng(SEED)
    xs, signals, sizes = [], [], []
    for _ in range(QUERIES):
        n = int(rng.integers(20, 51))
        x, signal = products(rng, n)
        xs.append(x)
        signals.append(signal)
        sizes.append(n)
    signal = np.concatenate(signals)
    # Grades 0-4: most candidates are irrelevant, few are perfect.
    labels = np.digitize(signal, np.quantile(signal, [0.5, 0.75, 0.9, 0.97])).astype(np.int32)
    return np.vstack(xs), labels, np.array(sizes)


def split(x, y, sizes):
    """The first queries train, the last HELD_OUT share are held out (whole queries)."""
    n_train = int(len(sizes) * (1.0 - HELD_OUT))
    rows = int(sizes[:n_train].sum())
    return (x[:rows], y[:rows], sizes[:n_train]), (x[rows:], y[rows:], sizes[n_train:])


def train(name, train_set, held_out, rounds, leaves, columns):
    x, y, sizes = train_set
    hx, hy, hsizes = held_out
    names = [FEATURES[c] for c in columns]
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "num_leaves": leaves,
        "learning_rate": 0.05,
        "min_data_in_leaf": 50,
        "verbose": -1,
        "num_threads": 1,
        "seed": SEED,
        "deterministic": True,
        "force_row_wise": True,
    }
    dtrain = lgb.Dataset(x[:, columns], y, group=sizes, feature_name=names, free_raw_data=False)
    dvalid = lgb.Dataset(hx[:, columns], hy, group=hsizes, reference=dtrain)
    evals = {}
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=rounds,
        valid_sets=[dvalid],
        valid_names=["held_out"],
        callbacks=[lgb.record_evaluation(evals)],
    )
    path = os.path.join(HERE, name)
    booster.save_model(path)
    ndcg = evals["held_out"]["ndcg@10"][-1]
    print(f"{name}: {rounds} trees of {leaves} leaves, {len(names)} features, held-out NDCG@10 {ndcg:.4f}, {os.path.getsize(path)} bytes")
    return ndcg


def write_queries(held_out):
    hx = held_out[0][:QUERY_ROWS]
    assert not np.isnan(hx).any(), "JSON has no NaN"
    rows = [[int(v) if c in (5, 7) else float(v) for c, v in enumerate(row)] for row in hx]
    path = os.path.join(DEMO, "queries.json")
    with open(path, "w") as f:
        f.write('{"feature_names": ' + json.dumps(FEATURES) + ',\n "rows": [\n')
        f.write(",\n".join("  " + json.dumps(row) for row in rows))
        f.write("\n]}\n")
    print(f"queries.json: {len(rows)} rows from held-out queries, {os.path.getsize(path)} bytes")


def main():
    x, y, sizes = dataset()
    train_set, held_out = split(x, y, sizes)
    print(f"{len(sizes)} queries, {len(y)} products; held out: {len(held_out[2])} queries, {len(held_out[1])} products")
    every = list(range(len(FEATURES)))
    v1 = train("search-ranker-v1.txt", train_set, held_out, 50, 15, every)
    v2 = train("search-ranker-v2.txt", train_set, held_out, 100, 12, every)
    assert v2 > v1, f"v2 must rank better than v1 on held-out queries: {v2} <= {v1}"
    without = [c for c in every if FEATURES[c] != DROPPED]
    train("search-ranker-v3-missing-feature.txt", train_set, held_out, 50, 15, without)
    write_queries(held_out)


if __name__ == "__main__":
    main()
