#!/usr/bin/env python3
"""Regenerates ranker/golden/: small models trained by the real libraries and the scores
those libraries give on chosen rows, the reference for ranker/tests/golden.rs.

Run from the repository root:
    "$(ranker/tools/pyenv models)/bin/python" ranker/golden/generate.py

Per case it writes the model artifact and <case>.case.json:
    {"model": "<file>", "format": "lightgbm|xgboost|onnx", "precision": "f64|f32",
     "rows": [[...]], "expected": [...], "expected_f32": [...] (LightGBM only)}
NaN is written as null; floats with repr, so they round-trip exactly.

Where the expected scores come from:
  LightGBM  Booster(model_file=...).predict(rows, raw_score=True), asserted equal to the
            training booster's; expected_f32 scores the rows cast to float32 (LightGBM
            widens them to double, so a float32 request must give these).
  XGBoost   Booster.inplace_predict(rows, predict_type="margin") of the reloaded artifact,
            asserted equal to predict(DMatrix, output_margin=True) with default arguments.
  ONNX      onnxruntime InferenceSession (one thread, so trees are summed in order) on the
            float32 rows; classifiers: the positive-class probability column.
Rows mix random draws with NaNs, exact zeros, values equal to the model's own thresholds
(and their float32 casts), negative, fractional and out-of-range categories.
Refusal cases (<case>.case.json with "refuse": "<word the error must contain>") have no scores.
Everything is seeded: rerunning rewrites identical files (the libraries run single-threaded).
"""

import json
import math
import os

import numpy as np

import lightgbm as lgb
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
N_FEATURES = 6
N_ROWS = 24  # random rows per case; special rows (about 75) are added on top


def data(seed, n=600, categorical=(), n_cats=40, nan_frac=0.05, zero_frac=0.05):
    """Features with NaNs and exact zeros; categorical columns hold small integers."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    for c in categorical:
        x[:, c] = rng.integers(0, n_cats, size=n)
    mask = rng.random(size=x.shape)
    x[mask < nan_frac] = np.nan
    x[(mask >= nan_frac) & (mask < nan_frac + zero_frac)] = 0.0
    signal = np.nan_to_num(x[:, 0]) * 1.5 - np.nan_to_num(x[:, 1]) + np.sin(np.nan_to_num(x[:, 2]) * 2)
    for c in categorical:
        signal += np.where(np.nan_to_num(x[:, c]) % 3 == 0, 1.0, -0.5)
    signal += rng.normal(scale=0.3, size=n)
    return x, signal


def relevance(signal):
    """Graded labels 0..3 from quantiles of the signal."""
    q = np.quantile(signal, [0.5, 0.75, 0.9])
    return np.digitize(signal, q).astype(np.int32)


def groups(n, size=20):
    return [size] * (n // size) + ([n % size] if n % size else [])


def probe_rows(seed, thresholds, categorical=(), n_cats=40):
    """Random rows plus the rows where a wrong comparison or cast shows."""
    rng = np.random.default_rng(seed + 1000)
    x = rng.normal(size=(N_ROWS, N_FEATURES))
    for c in categorical:
        x[:, c] = rng.integers(0, n_cats, size=N_ROWS)
    x[rng.random(size=x.shape) < 0.1] = np.nan
    special = []
    special.append([np.nan] * N_FEATURES)
    special.append([0.0] * N_FEATURES)
    special.append([-0.0] * N_FEATURES)
    special.append([1e-36] * N_FEATURES)
    # LightGBM's kZeroThreshold is 1e-35f (1.0000000180025095e-35): its band edges.
    kzt = float(np.float32(1e-35))
    for v in (1e-35, kzt, -kzt, np.nextafter(kzt, np.inf), np.nextafter(-kzt, -np.inf)):
        special.append([v] * N_FEATURES)
    # Thresholds the model uses: exactly, one double ulp above, and the float32 cast with
    # one float32 ulp either side (an f32 model sees every double between as the cast).
    picked = []
    for f, ts in sorted(thresholds.items()):
        for t in sorted(set(ts))[:3]:
            picked.append((f, t))
    for i, (f, t) in enumerate(picked[:13]):
        base = x[i % N_ROWS].copy()
        t32 = np.float32(t)
        for v in (t, np.nextafter(t, np.inf), float(t32), float(np.nextafter(t32, np.float32(-np.inf))),
                  float(np.nextafter(t32, np.float32(np.inf)))):
            row = base.copy()
            row[f] = v
            special.append(list(row))
    for c in categorical:
        for v in (-1.0, -0.5, 0.5, 2.7, float(n_cats + 5), 1000.0, 1e9, np.nan):
            row = x[len(special) % N_ROWS].copy()
            row[c] = v
            special.append(list(row))
    return np.vstack([x, np.array(special, dtype=np.float64)])


def jfloat(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def write_case(name, model_file, fmt, precision, rows, expected, expected_f32=None, extra=None):
    case = {"model": model_file, "format": fmt, "precision": precision}
    case["rows"] = [[jfloat(float(v)) for v in r] for r in rows]
    case["expected"] = [float(v) for v in expected]
    if expected_f32 is not None:
        case["expected_f32"] = [float(v) for v in expected_f32]
    if extra:
        case.update(extra)
    with open(os.path.join(HERE, name + ".case.json"), "w") as fh:
        # repr() of a Python float round-trips; json.dumps uses it.
        json.dump(case, fh, indent=None, separators=(",", ":"), allow_nan=False)
        fh.write("\n")


def write_refusal(name, model_file, fmt, word):
    with open(os.path.join(HERE, name + ".case.json"), "w") as fh:
        json.dump({"model": model_file, "format": fmt, "refuse": word}, fh)
        fh.write("\n")


# ---------------------------------------------------------------- LightGBM


def lgb_thresholds(booster):
    out = {}

    def walk(node):
        if "split_feature" in node:
            if node.get("decision_type") == "<=":
                out.setdefault(node["split_feature"], []).append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for t in booster.dump_model()["tree_info"]:
        walk(t["tree_structure"])
    return out


def lgb_case(name, params, rounds=20, categorical=(), seed=1, early_stopping=False, keep_all=False):
    x, signal = data(seed, categorical=categorical)
    obj = params["objective"]
    if obj in ("lambdarank", "rank_xendcg"):
        y, grp = relevance(signal), groups(len(signal))
    elif obj == "binary":
        y, grp = (signal > np.median(signal)).astype(np.int32), None
    elif obj == "multiclass":
        y, grp = relevance(signal), None
    elif obj == "poisson":
        y, grp = np.floor(np.exp(signal / 2)), None  # counts
    else:
        y, grp = signal, None
    base = {"verbose": -1, "num_threads": 1, "seed": seed, "deterministic": True, "num_leaves": 10,
            "min_data_in_leaf": 5, "max_cat_to_onehot": 4, "min_data_per_group": 5, "cat_smooth": 1}
    base.update(params)
    names = [f"f{i}_{'cat' if i in categorical else 'num'}" for i in range(N_FEATURES)]
    cat = list(categorical) if categorical else "auto"
    train = lgb.Dataset(x[:450], y[:450], group=groups(450) if grp else None, feature_name=names,
                        categorical_feature=cat, free_raw_data=False)
    callbacks, valid = [], []
    if early_stopping:
        valid = [lgb.Dataset(x[450:], y[450:], group=groups(150) if grp else None, reference=train)]
        callbacks = [lgb.early_stopping(5, verbose=False)]
    # keep_training_booster keeps the trees past best_iteration in memory (otherwise train()
    # reloads the model cut at best_iteration), so keep_all can write them.
    booster = lgb.train(base, train, num_boost_round=rounds, valid_sets=valid, callbacks=callbacks,
                        keep_training_booster=keep_all)
    model_file = name + ".txt"
    path = os.path.join(HERE, model_file)
    # save_model's default (num_iteration=None) writes trees up to best_iteration; keep_all
    # writes every tree, to test that the file's content (not the training run) decides.
    booster.save_model(path, num_iteration=-1 if keep_all else None)
    return booster, path, model_file


def lgb_scored(name, params, **kw):
    categorical = kw.get("categorical", ())
    booster, path, model_file = lgb_case(name, params, **kw)
    loaded = lgb.Booster(model_file=path)
    rows = probe_rows(kw.get("seed", 1), lgb_thresholds(loaded), categorical)
    expected = loaded.predict(rows, raw_score=True)
    if not kw.get("keep_all"):
        assert np.array_equal(expected, booster.predict(rows, raw_score=True)), name
    expected_f32 = loaded.predict(rows.astype(np.float32), raw_score=True)
    write_case(name, model_file, "lightgbm", "f64", rows, expected, expected_f32,
               {"trees": loaded.num_trees(), "best_iteration": booster.best_iteration})


def lightgbm_cases():
    lgb_scored("lgb_lambdarank", {"objective": "lambdarank"})
    lgb_scored("lgb_rank_xendcg", {"objective": "rank_xendcg"}, seed=2)
    lgb_scored("lgb_regression", {"objective": "regression"}, seed=3)
    lgb_scored("lgb_binary", {"objective": "binary"}, seed=4)
    lgb_scored("lgb_poisson", {"objective": "poisson"}, seed=16)  # raw score is the log-rate
    lgb_scored("lgb_zero_as_missing", {"objective": "regression", "zero_as_missing": True}, seed=5)
    lgb_scored("lgb_no_missing", {"objective": "regression", "use_missing": False}, seed=6)
    lgb_scored("lgb_categorical", {"objective": "lambdarank"}, categorical=(0, 3), seed=7)
    lgb_scored("lgb_categorical_binary", {"objective": "binary"}, categorical=(1,), seed=8)
    lgb_scored("lgb_one_tree", {"objective": "regression"}, rounds=1, seed=9)
    # No split is possible: LightGBM writes one tree with num_leaves=1 (the average).
    lgb_scored("lgb_single_leaf", {"objective": "regression", "min_data_in_leaf": 300}, rounds=5,
               seed=33)
    lgb_scored("lgb_many_trees", {"objective": "regression", "num_leaves": 3, "learning_rate": 0.02},
               rounds=1000, seed=10)
    lgb_scored("lgb_early_stopping", {"objective": "regression", "learning_rate": 0.3}, rounds=300,
               seed=11, early_stopping=True)
    lgb_scored("lgb_early_stopping_all_trees", {"objective": "regression", "learning_rate": 0.3},
               rounds=300, seed=11, early_stopping=True, keep_all=True)
    _, _, f = lgb_case("lgb_linear_tree", {"objective": "regression", "linear_tree": True}, rounds=2,
                       seed=12)
    write_refusal("lgb_linear_tree", f, "lightgbm", "linear")
    _, _, f = lgb_case("lgb_multiclass", {"objective": "multiclass", "num_class": 4}, rounds=3, seed=13)
    write_refusal("lgb_multiclass", f, "lightgbm", "num_class")
    _, _, f = lgb_case("lgb_rf", {"objective": "regression", "boosting": "rf", "bagging_fraction": 0.5,
                                  "bagging_freq": 1}, rounds=3, seed=14)
    write_refusal("lgb_rf", f, "lightgbm", "average_output")


# ---------------------------------------------------------------- XGBoost


def xgb_thresholds(booster):
    model = json.loads(booster.save_raw("json"))
    out = {}
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        for i, left in enumerate(tree["left_children"]):
            if left != -1 and tree["split_type"][i] == 0:
                out.setdefault(tree["split_indices"][i], []).append(float(tree["split_conditions"][i]))
    return out


def xgb_train(params, rounds, categorical=(), seed=1, early_stopping=False):
    x, signal = data(seed, categorical=categorical)
    obj = params.get("objective", "")
    if obj == "rank:map":
        y = (relevance(signal) > 1).astype(np.int32)  # MAP needs binary relevance
    elif obj.startswith("rank:"):
        y = relevance(signal)
    elif obj.startswith("binary:"):
        y = (signal > np.median(signal)).astype(np.int32)
    elif obj == "reg:logistic":
        y = 1.0 / (1.0 + np.exp(-signal))  # a target in [0, 1]
    elif obj.startswith("multi:"):
        y = relevance(signal)
    else:
        y = signal
    types = ["c" if i in categorical else "q" for i in range(N_FEATURES)]
    names = [f"f{i}" for i in range(N_FEATURES)]

    def dmatrix(lo, hi):
        d = xgb.DMatrix(x[lo:hi], y[lo:hi], feature_names=names, feature_types=types,
                        enable_categorical=bool(categorical))
        if obj.startswith("rank:"):
            d.set_group(groups(hi - lo))
        return d

    base = {"nthread": 1, "seed": seed, "max_depth": 4, "eta": 0.3, "tree_method": "hist"}
    base.update(params)
    train = dmatrix(0, 450)
    kwargs = {}
    if early_stopping:
        kwargs = {"evals": [(dmatrix(450, 600), "valid")], "early_stopping_rounds": 5,
                  "verbose_eval": False}
    return xgb.train(base, train, num_boost_round=rounds, **kwargs), types


def xgb_scored(name, params, rounds=20, ext="json", categorical=(), seed=1, early_stopping=False):
    booster, types = xgb_train(params, rounds, categorical, seed, early_stopping)
    model_file = f"{name}.{ext}"
    path = os.path.join(HERE, model_file)
    booster.save_model(path)
    loaded = xgb.Booster({"nthread": 1}, model_file=path)
    rows = probe_rows(seed, xgb_thresholds(loaded), categorical)
    expected = loaded.inplace_predict(rows, predict_type="margin")
    dm = xgb.DMatrix(rows, feature_names=loaded.feature_names, feature_types=types,
                     enable_categorical=bool(categorical))
    via_dmatrix = loaded.predict(dm, output_margin=True)
    assert np.array_equal(expected, via_dmatrix), name
    assert np.array_equal(expected, booster.inplace_predict(rows, predict_type="margin")), name
    # Trees in the artifact (num_parallel_tree > 1 grows several per round).
    extra = {"trees": len(json.loads(loaded.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"])}
    if early_stopping:
        extra["best_iteration"] = booster.best_iteration
    write_case(name, model_file, "xgboost", "f32", rows, expected, None, extra)


def xgboost_cases():
    xgb_scored("xgb_rank_ndcg", {"objective": "rank:ndcg"})
    xgb_scored("xgb_rank_pairwise", {"objective": "rank:pairwise"}, ext="ubj", seed=2)
    xgb_scored("xgb_rank_map", {"objective": "rank:map"}, seed=3)
    xgb_scored("xgb_regression", {"objective": "reg:squarederror"}, seed=4)
    xgb_scored("xgb_regression_ubj", {"objective": "reg:squarederror"}, ext="ubj", seed=4)
    xgb_scored("xgb_binary", {"objective": "binary:logistic"}, seed=5)
    xgb_scored("xgb_binary_ubj", {"objective": "binary:logistic", "base_score": 0.3}, ext="ubj", seed=6)
    xgb_scored("xgb_categorical", {"objective": "reg:squarederror", "max_cat_to_onehot": 1},
               categorical=(0, 3), seed=7)
    xgb_scored("xgb_categorical_ubj", {"objective": "rank:ndcg", "max_cat_to_onehot": 1},
               ext="ubj", categorical=(1,), seed=8)
    xgb_scored("xgb_one_tree", {"objective": "reg:squarederror"}, rounds=1, seed=9)
    # A large gamma prunes later trees down to a lone root leaf.
    xgb_scored("xgb_single_leaf_trees", {"objective": "reg:squarederror", "gamma": 20.0}, rounds=10,
               seed=32)
    xgb_scored("xgb_many_trees", {"objective": "reg:squarederror", "max_depth": 1, "eta": 0.02},
               rounds=1000, ext="ubj", seed=10)
    xgb_scored("xgb_random_forest", {"objective": "reg:squarederror", "num_parallel_tree": 4,
                                     "subsample": 0.7, "colsample_bynode": 0.7}, rounds=3, seed=13)
    xgb_scored("xgb_reg_logistic", {"objective": "reg:logistic"}, seed=14)
    xgb_scored("xgb_absoluteerror", {"objective": "reg:absoluteerror"}, seed=17)
    xgb_scored("xgb_pseudohuber", {"objective": "reg:pseudohubererror"}, ext="ubj", seed=18)
    xgb_scored("xgb_quantile", {"objective": "reg:quantileerror", "quantile_alpha": 0.8}, seed=19)
    xgb_scored("xgb_logitraw", {"objective": "binary:logitraw"}, ext="ubj", seed=15)
    xgb_scored("xgb_early_stopping", {"objective": "reg:squarederror", "eta": 0.5}, rounds=300,
               seed=11, early_stopping=True)
    for name, params, word in (
        ("xgb_gblinear", {"booster": "gblinear", "objective": "reg:squarederror"}, "gblinear"),
        ("xgb_dart", {"booster": "dart", "objective": "reg:squarederror"}, "dart"),
        ("xgb_multiclass", {"objective": "multi:softprob", "num_class": 4}, "num_class"),
    ):
        booster, _ = xgb_train(params, 3, seed=12)
        booster.save_model(os.path.join(HERE, name + ".json"))
        write_refusal(name, name + ".json", "xgboost", word)


# ---------------------------------------------------------------- ONNX


def onnx_scored(name, onx, rows, classifier):
    import onnxruntime as ort

    model_file = name + ".onnx"
    onx.graph.name = name  # onnxmltools names the graph with a random uuid
    with open(os.path.join(HERE, model_file), "wb") as fh:
        fh.write(onx.SerializeToString())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(HERE, model_file), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    outs = sess.run(None, {inp: rows.astype(np.float32)})
    if classifier:
        probs = outs[1]
        expected = probs[:, 1] if isinstance(probs, np.ndarray) else [p[1] for p in probs]
    else:
        expected = outs[0][:, 0]
    write_case(name, model_file, "onnx", "f32", rows, np.asarray(expected, dtype=np.float64))


def tree_ensemble_v5(onx, name):
    """Rewrites a base-free TreeEnsembleRegressor (ai.onnx.ml 1-3) as the opset-5
    TreeEnsemble: interior nodes and leaves in separate lists, tensors for modes,
    thresholds and weights. onnxmltools cannot export it yet."""
    import onnx
    from onnx import TensorProto, helper

    (reg,) = [n for n in onx.graph.node if n.op_type == "TreeEnsembleRegressor"]
    a = {x.name: helper.get_attribute_value(x) for x in reg.attribute}
    assert not a.get("base_values"), "a base would need a tree of its own in opset 5"
    key = list(zip(a["nodes_treeids"], a["nodes_nodeids"]))
    is_leaf = {k: m == b"LEAF" for k, m in zip(key, a["nodes_modes"])}
    weight = {(t, n): w for t, n, w in zip(a["target_treeids"], a["target_nodeids"], a["target_weights"])}
    interior = [i for i, k in enumerate(key) if not is_leaf[k]]
    pos = {key[i]: j for j, i in enumerate(interior)}
    leaves, leaf_pos = [], {}
    for k in key:
        if is_leaf[k]:
            leaf_pos[k] = len(leaves)
            leaves.append(weight[k])
    attrs = {n: [] for n in ("featureids", "splits", "modes", "true", "trueleaf", "false", "falseleaf", "tracks")}
    modes = {b"BRANCH_LEQ": 0, b"BRANCH_LT": 1, b"BRANCH_GTE": 2, b"BRANCH_GT": 3}
    tracks = a.get("nodes_missing_value_tracks_true") or [0] * len(key)
    for i in interior:
        t = key[i][0]
        attrs["featureids"].append(a["nodes_featureids"][i])
        attrs["splits"].append(a["nodes_values"][i])
        attrs["modes"].append(modes[a["nodes_modes"][i]])
        attrs["tracks"].append(tracks[i])
        for side, ids in (("true", a["nodes_truenodeids"]), ("false", a["nodes_falsenodeids"])):
            child = (t, ids[i])
            attrs[side + "leaf"].append(int(is_leaf[child]))
            attrs[side].append(leaf_pos[child] if is_leaf[child] else pos[child])
    roots = [pos[(t, 0)] for t in sorted(set(a["nodes_treeids"]), key=a["nodes_treeids"].index)]
    node = helper.make_node(
        "TreeEnsemble", ["input"], ["variable"], domain="ai.onnx.ml", n_targets=1, aggregate_function=1,
        post_transform=0, tree_roots=roots, nodes_featureids=attrs["featureids"],
        nodes_splits=helper.make_tensor("splits", TensorProto.FLOAT, [len(interior)], attrs["splits"]),
        nodes_modes=helper.make_tensor("modes", TensorProto.UINT8, [len(interior)], attrs["modes"]),
        nodes_truenodeids=attrs["true"], nodes_trueleafs=attrs["trueleaf"],
        nodes_falsenodeids=attrs["false"], nodes_falseleafs=attrs["falseleaf"],
        nodes_missing_value_tracks_true=attrs["tracks"], leaf_targetids=[0] * len(leaves),
        leaf_weights=helper.make_tensor("weights", TensorProto.FLOAT, [len(leaves)], leaves))
    graph = helper.make_graph([node], name, list(onx.graph.input), list(onx.graph.output))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("ai.onnx.ml", 5)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def onnx_cases():
    import onnx
    from onnx import TensorProto, helper
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial = [("input", FloatTensorType([None, N_FEATURES]))]
    x, signal = data(21)

    reg = lgb.LGBMRegressor(n_estimators=30, num_leaves=15, random_state=21, n_jobs=1, verbose=-1)
    reg.fit(x, signal)
    rows = probe_rows(21, lgb_thresholds(reg.booster_))
    onnx_scored("onnx_lgb_regressor", convert_lightgbm(reg, initial_types=initial, target_opset=15),
                rows, False)

    onnx_scored("onnx_v5_lgb_regressor",
                tree_ensemble_v5(convert_lightgbm(reg, initial_types=initial, target_opset=15),
                                 "onnx_v5_lgb_regressor"), rows, False)

    clf = lgb.LGBMClassifier(n_estimators=30, num_leaves=15, random_state=22, n_jobs=1, verbose=-1)
    clf.fit(x, (signal > np.median(signal)).astype(np.int32))
    rows = probe_rows(22, lgb_thresholds(clf.booster_))
    onx = convert_lightgbm(clf, initial_types=initial, target_opset=15, zipmap=False)
    onnx_scored("onnx_lgb_classifier", onx, rows, True)

    xreg = xgb.XGBRegressor(n_estimators=30, max_depth=4, random_state=23, n_jobs=1)
    xreg.fit(x, signal)
    rows = probe_rows(23, xgb_thresholds(xreg.get_booster()))
    onnx_scored("onnx_xgb_regressor", convert_xgboost(xreg, initial_types=initial, target_opset=15),
                rows, False)

    xclf = xgb.XGBClassifier(n_estimators=30, max_depth=4, random_state=24, n_jobs=1)
    xclf.fit(x, (signal > np.median(signal)).astype(np.int32))
    rows = probe_rows(24, xgb_thresholds(xclf.get_booster()))
    onx = convert_xgboost(xclf, initial_types=initial, target_opset=15)
    onnx_scored("onnx_xgb_classifier", onx, rows, True)

    # onnxmltools writes LightGBM categorical splits as BRANCH_EQ chains: refused.
    xc, sc = data(31, categorical=(0,))
    cat = lgb.LGBMRegressor(n_estimators=5, num_leaves=7, random_state=31, n_jobs=1, verbose=-1,
                            max_cat_to_onehot=4)
    cat.fit(xc, sc, categorical_feature=[0])
    onx = convert_lightgbm(cat, initial_types=initial, target_opset=15)
    onx.graph.name = "onnx_lgb_categorical"
    with open(os.path.join(HERE, "onnx_lgb_categorical.onnx"), "wb") as fh:
        fh.write(onx.SerializeToString())
    write_refusal("onnx_lgb_categorical", "onnx_lgb_categorical.onnx", "onnx", "BRANCH_EQ")

    # A neural ranker: MatMul -> Relu -> MatMul. Must be refused, naming the operators.
    rng = np.random.default_rng(25)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [N_FEATURES, 8], rng.normal(size=48).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [8, 1], rng.normal(size=8).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["score"])],
        "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])], [w1, w2])
    mlp = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(mlp)
    with open(os.path.join(HERE, "onnx_mlp.onnx"), "wb") as fh:
        fh.write(mlp.SerializeToString())
    write_refusal("onnx_mlp", "onnx_mlp.onnx", "onnx", "MatMul, Relu")


if __name__ == "__main__":
    lightgbm_cases()
    xgboost_cases()
    onnx_cases()
