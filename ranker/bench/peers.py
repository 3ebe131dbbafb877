"""make bench-ranker: mlctl-ranker against LightGBM, XGBoost, lleaves, treelite
(tl2cgen) and onnxruntime, single-threaded, on MSLR-WEB30K-like data.

Generates a seeded 136-feature matrix, trains (or reuses from the cache) LightGBM
lambdarank models of 100x31, 500x63 and 1000x255 (trees x leaves) and XGBoost models
of the same shape (trained on the same data: lossguide growth, max_leaves; XGBoost
cannot read LightGBM models), then times every library on batches of 1, 100, 1,000
and 100,000 documents with one protocol: per repetition at least 2,000 documents in
calls of `batch` rows (different rows each call), best of 3 repetitions (1 for
100,000), per-document time excluding model loading and input generation.

Usage: peers.py CACHE_DIR --prepare | PEER_BINARY_CMD... (called by ranker/bench/run).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np

FEATURES = 136
TRAIN_ROWS = 30_000
TEST_ROWS = 100_000
SHAPES = [(100, 31), (500, 63), (1000, 255)]
# MLCTL_BENCH_SHAPES=100x31,500x63 times a subset (the table says which were run).
if os.environ.get("MLCTL_BENCH_SHAPES"):
    SHAPES = [tuple(int(v) for v in s.split("x")) for s in os.environ["MLCTL_BENCH_SHAPES"].split(",")]
BATCHES = [1, 100, 1000, 100_000]
DOCS_PER_REPETITION = 2000
SEED = 20260101


def mslr_like(rows, seed):
    """Feature columns shaped like MSLR-WEB30K's five streams (body, anchor, title,
    url, whole document): term counts, lengths, IDF, tf statistics, BM25 and LMIR
    scores, then link/quality features; about 3% of some columns missing."""
    rng = np.random.default_rng(seed)
    cols = []
    for _stream in range(5):
        cols.append(rng.poisson(1.2, rows).astype(np.float64))  # covered query terms
    for _stream in range(5):
        cols.append(np.clip(rng.beta(2, 3, rows), 0, 1))  # covered term ratio
    for _stream in range(5):
        cols.append(np.round(rng.lognormal(5.5, 1.3, rows)))  # stream length
    for _stream in range(5):
        cols.append(rng.gamma(2.0, 2.5, rows))  # IDF
    for _stat in range(4 * 5):  # tf sum/min/max/mean
        cols.append(rng.poisson(rng.gamma(1.0, 3.0, rows)).astype(np.float64))
    for _stat in range(5 * 5):  # normalised tf and tf-idf statistics
        cols.append(rng.exponential(0.05, rows))
    for _stream in range(5):
        cols.append(np.maximum(0, rng.normal(12, 6, rows)))  # BM25
    for _stream in range(15):
        cols.append(-np.abs(rng.normal(400, 150, rows)))  # LMIR.ABS/DIR/JM
    while len(cols) < FEATURES - 6:
        cols.append(rng.exponential(1.0, rows) * rng.integers(0, 2, rows))  # sparse
    cols.append(rng.integers(0, 6, rows).astype(np.float64))  # slash count
    cols.append(rng.integers(10, 120, rows).astype(np.float64))  # url length
    cols.append(np.round(rng.lognormal(2, 2, rows)))  # inlinks
    cols.append(np.round(rng.lognormal(3, 1.5, rows)))  # outlinks
    cols.append(rng.lognormal(0, 1, rows))  # PageRank
    cols.append(rng.integers(0, 50_000, rows).astype(np.float64))  # QualityScore
    x = np.stack(cols, axis=1)
    for c in rng.choice(FEATURES, 20, replace=False):
        x[rng.random(rows) < 0.03, c] = np.nan
    # Relevance 0..4 driven by BM25, coverage and quality plus noise.
    signal = (
        np.nan_to_num(x[:, 95]) / 6
        + np.nan_to_num(x[:, 5]) * 2
        + np.log1p(np.nan_to_num(x[:, 132]))
        + rng.normal(0, 1, rows)
    )
    labels = np.digitize(signal, np.quantile(signal, [0.5, 0.75, 0.9, 0.97]))
    return x.astype(np.float32), labels


def train(cache, trees, leaves, x, y, groups):
    import lightgbm as lgb
    import xgboost as xgb

    lgb_path = f"{cache}/lgb_{trees}x{leaves}.txt"
    xgb_path = f"{cache}/xgb_{trees}x{leaves}.ubj"
    if not os.path.exists(lgb_path):
        params = dict(objective="lambdarank", num_leaves=leaves, learning_rate=0.05,
                      min_data_in_leaf=5, verbose=-1, seed=SEED, num_threads=2,
                      deterministic=True)
        ds = lgb.Dataset(x, y, group=groups)
        lgb.train(params, ds, num_boost_round=trees).save_model(lgb_path + ".tmp")
        os.replace(lgb_path + ".tmp", lgb_path)
    if not os.path.exists(xgb_path):
        d = xgb.DMatrix(x, y, qid=np.repeat(np.arange(len(groups)), groups))
        params = dict(objective="rank:ndcg", tree_method="hist", grow_policy="lossguide",
                      max_leaves=leaves, max_depth=0, eta=0.05, nthread=2, seed=SEED)
        xgb.train(params, d, num_boost_round=trees).save_model(xgb_path + ".tmp.ubj")
        os.replace(xgb_path + ".tmp.ubj", xgb_path)
    return lgb_path, xgb_path


def timed(predict, x, batch):
    """Best-of-repetitions ns per document of `predict(rows)` on `batch` rows."""
    n = len(x)
    calls = -(-DOCS_PER_REPETITION // batch)
    chunks = [x[(c * batch) % (n - batch + 1):][:batch] for c in range(calls)]
    best = float("inf")
    for _ in range(1 if batch >= 100_000 else 3):
        started = time.perf_counter_ns()
        for rows in chunks:
            predict(rows)
        best = min(best, (time.perf_counter_ns() - started) / (calls * batch))
    return best


def peers(cache, lgb_path, xgb_path, trees, leaves):
    """name -> (predict function, note). Compiled artifacts are cached."""
    import lightgbm as lgb
    import lleaves
    import onnxruntime as ort
    import tl2cgen
    import treelite
    import xgboost as xgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    out = {}
    booster = lgb.Booster(model_file=lgb_path)
    out["lightgbm"] = lambda r: booster.predict(r, raw_score=True, num_threads=1)

    xb = xgb.Booster(model_file=xgb_path)
    xb.set_param({"nthread": 1})
    out["xgboost*"] = lambda r: xb.inplace_predict(r, predict_type="margin")

    ll = lleaves.Model(model_file=lgb_path)
    ll_so = f"{cache}/lleaves_{trees}x{leaves}.so"
    if os.path.exists(ll_so):
        ll.compile(cache=ll_so)
    else:
        # lleaves writes its cache file in place: compile beside it and rename, so an
        # interrupted compile never leaves a half-written library that a rerun loads.
        if os.path.exists(ll_so + ".tmp.so"):
            os.remove(ll_so + ".tmp.so")
        ll.compile(cache=ll_so + ".tmp.so")
        os.replace(ll_so + ".tmp.so", ll_so)
    out["lleaves"] = lambda r: ll.predict(r, n_jobs=1)

    so = f"{cache}/tl2cgen_{trees}x{leaves}.so"
    if not os.path.exists(so):
        model = treelite.frontend.load_lightgbm_model(lgb_path)
        tl2cgen.export_lib(model, toolchain="gcc", libpath=so + ".tmp.so",
                           params={"parallel_comp": 16}, nthread=2)
        os.replace(so + ".tmp.so", so)
    tl = tl2cgen.Predictor(so, nthread=1)
    out["treelite"] = lambda r: tl.predict(tl2cgen.DMatrix(r, dtype="float32"))

    onnx_path = f"{cache}/onnx_{trees}x{leaves}.onnx"
    if not os.path.exists(onnx_path):
        onx = convert_lightgbm(booster, initial_types=[("input", FloatTensorType([None, FEATURES]))],
                               target_opset=15)
        with open(onnx_path + ".tmp", "wb") as f:
            f.write(onx.SerializeToString())
        os.replace(onnx_path + ".tmp", onnx_path)
    so_opts = ort.SessionOptions()
    so_opts.intra_op_num_threads = 1
    so_opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so_opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out["onnxruntime"] = lambda r: sess.run(None, {name: r})
    return out


def main():
    cache, peer_cmd = sys.argv[1], sys.argv[2:]
    os.makedirs(cache, exist_ok=True)
    x_train, y = mslr_like(TRAIN_ROWS, SEED)
    groups = np.full(TRAIN_ROWS // 100, 100)
    rows_path = f"{cache}/rows_{TEST_ROWS}.npy"
    x_test, _ = mslr_like(TEST_ROWS, SEED + 1)
    if not os.path.exists(rows_path):
        np.save(rows_path, x_test)

    if peer_cmd == ["--prepare"]:
        # Train and compile everything first, so no timing shares the CPU with it.
        for trees, leaves in SHAPES:
            t0 = time.time()
            lgb_path, xgb_path = train(cache, trees, leaves, x_train, y, groups)
            peers(cache, lgb_path, xgb_path, trees, leaves)
            print(f"# {trees}x{leaves}: models and compiled peers ready in {time.time() - t0:.0f} s",
                  file=sys.stderr, flush=True)
        return

    results = []  # (shape, batch, peer, ns)
    exactness = []
    for trees, leaves in SHAPES:
        shape = f"{trees}x{leaves}"
        t0 = time.time()
        lgb_path, xgb_path = train(cache, trees, leaves, x_train, y, groups)
        print(f"# {shape}: models ready in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        scores_path = f"{cache}/mlctl_scores_{shape}.txt"
        run = subprocess.run(peer_cmd + [lgb_path, rows_path, scores_path] + [str(b) for b in BATCHES],
                             check=True, capture_output=True, text=True)
        ours = {int(b): float(ns) for b, ns in (line.split() for line in run.stdout.split("\n") if line.strip())}
        lib = peers(cache, lgb_path, xgb_path, trees, leaves)
        mlctl_scores = np.loadtxt(scores_path)
        want = lib["lightgbm"](x_test[: len(mlctl_scores)])
        exactness.append((shape, int(np.sum(mlctl_scores == want)), len(mlctl_scores),
                          float(np.max(np.abs(mlctl_scores - want)))))
        for batch in BATCHES:
            results.append((shape, batch, "mlctl-ranker", ours[batch]))
            for name, predict in lib.items():
                results.append((shape, batch, name, timed(predict, x_test, batch)))
            print(f"# {shape} batch {batch} done", file=sys.stderr, flush=True)

    lines = ["| model | batch | library | ns/doc | × mlctl-ranker |", "|---|---:|---|---:|---:|"]
    ours = {(s, b): ns for s, b, p, ns in results if p == "mlctl-ranker"}
    for s, b, p, ns in results:
        lines.append(f"| {s} | {b} | {p} | {ns:,.0f} | {ns / ours[(s, b)]:.2f} |")
    lines.append("")
    for shape, same, total, worst in exactness:
        lines.append(f"- {shape}: mlctl-ranker equals LightGBM `raw_score` on {same}/{total} rows "
                     f"(max abs diff {worst:.3g})")
    table = "\n".join(lines)
    print(table)
    with open(f"{cache}/results.md", "w") as f:
        f.write(table + "\n")
    json.dump(results, open(f"{cache}/results.json", "w"))


if __name__ == "__main__":
    main()
