#!/usr/bin/env python3
"""Regenerates eval/golden/golden.json: per-query reference values for mlctl eval.

Run from anywhere:  pip install pytrec-eval-terrier==0.5.11 && python3 eval/golden/generate.py

Where the values come from:
  ndcg@k, ndcg  pytrec_eval `ndcg_cut_k` / `ndcg` (linear gain, trec_eval's definition)
  ap@k, ap      pytrec_eval `map_cut_k` / `map`
  rr            pytrec_eval `recip_rank` (trec_eval has no cut for it)
  rr@k          derived from pytrec_eval `recip_rank`: the first relevant document is at rank
                1/rr, so rr@k = rr when 1/rr <= k, else 0. (Equivalent to evaluating the run
                cut at k, without this script having to re-implement trec_eval's ordering.)
  p@k           pytrec_eval `P_k`;   recall@k  pytrec_eval `recall_k`
  ndcg_exp@k    pytrec_eval has no exponential gain; computed by `ndcg_reference` below, a
                deliberately plain implementation. Its linear-gain output is asserted equal
                to pytrec_eval's ndcg_cut on every query first, which checks its ordering
                (score desc, then docid desc) and cutoffs against trec_eval.
Policies encoded here (mlctl's defaults): a judged query absent from the run scores 0 on
every metric (pytrec_eval omits it, so this script adds the zeros); queries without
relevant documents are kept (pytrec_eval scores them 0); unjudged run queries are ignored.
The random fixture is generated with a fixed seed, so rerunning rewrites identical files.
"""

import gzip
import json
import math
import os
import random

import pytrec_eval

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
CUTOFFS = [1, 3, 5, 10, 20, 100]


def write_random_fixture():
    rng = random.Random(20261125)
    qrels_lines, run_lines = [], []
    for q in range(1, 81):
        qid = str(q)
        n_judged = rng.randint(0, 30)
        judged = {}
        for d in range(n_judged):
            label = rng.choices([0, 1, 2, 3, 4, -1], weights=[50, 20, 12, 8, 5, 5])[0]
            if q % 13 == 0:
                label = min(label, 0)  # some queries without any relevant document
            judged[f"doc{d}"] = label
        if not judged:
            judged["doc0"] = 0
        for docid, label in judged.items():
            qrels_lines.append(f"{qid} 0 {docid} {label}")
        if q % 11 == 0:
            continue  # judged but missing from the run
        length = rng.choice([0, 2, 5, 9, 15, 40, 120])
        candidates = list(judged) + [f"doc{d}" for d in range(len(judged), len(judged) + length)]
        rng.shuffle(candidates)
        for rank, docid in enumerate(candidates[:length], start=1):
            # One decimal: many tied scores, broken by docid.
            score = round(rng.uniform(-2, 2), 1)
            run_lines.append(f"{qid} Q0 {docid} {rank} {score} rnd")
    run_lines.append("999 Q0 doc1 1 1.0 rnd")  # an unjudged query
    rng.shuffle(run_lines)  # line order must not matter
    with open(os.path.join(FIXTURES, "random.qrels"), "w") as f:
        f.write("\n".join(qrels_lines) + "\n")
    data = ("\n".join(run_lines) + "\n").encode()
    with open(os.path.join(FIXTURES, "random.run"), "wb") as f:
        f.write(data)
    # The same run gzipped (mtime 0 so the bytes are reproducible).
    with open(os.path.join(FIXTURES, "random.run.gz"), "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            gz.write(data)


def read_qrels(path):
    qrels = {}
    for line in open(path):
        if line.strip():
            qid, _, docid, rel = line.split()
            qrels.setdefault(qid, {})[docid] = int(rel)
    return qrels


def read_run(path):
    run = {}
    lines = gzip.open(path, "rt") if path.endswith(".gz") else open(path)
    for line in lines:
        if line.strip():
            qid, _, docid, _, score, _ = line.split()
            run.setdefault(qid, {})[docid] = float(score)
    return run


def trec_order(docs):
    """Score descending, then docid descending (byte order), as trec_eval."""
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], [-b for b in kv[0].encode()] + [1]))]


def ndcg_reference(ranking, judged, k, exp):
    def gain(label):
        if label <= 0:
            return 0.0
        return 2.0 ** label - 1.0 if exp else float(label)

    def dcg(labels):
        return sum(gain(l) / math.log2(i + 2) for i, l in enumerate(labels[:k]))

    ideal = dcg(sorted(judged.values(), reverse=True))
    return dcg([judged.get(d, 0) for d in ranking]) / ideal if ideal > 0 else 0.0


def golden_case(name, qrels_file, run_file, threshold):
    qrels = read_qrels(os.path.join(FIXTURES, qrels_file))
    run = read_run(os.path.join(FIXTURES, run_file))
    cuts = ",".join(map(str, CUTOFFS))
    measures = {f"ndcg_cut.{cuts}", f"map_cut.{cuts}", f"P.{cuts}", f"recall.{cuts}",
                "recip_rank", "ndcg", "map"}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=threshold)
    results = evaluator.evaluate(run)
    metrics = {}

    def put(metric, qid, value):
        metrics.setdefault(metric, {})[qid] = value

    for qid in qrels:
        r = results.get(qid)
        ranking = trec_order(run[qid]) if qid in run else []
        for k in CUTOFFS:
            if r is None:  # judged, missing from the run: mlctl's default scores it 0
                for m in ("ndcg", "ndcg_exp", "ap", "rr", "p", "recall"):
                    put(f"{m}@{k}", qid, 0.0)
                continue
            linear = ndcg_reference(ranking, qrels[qid], k, exp=False)
            assert abs(linear - r[f"ndcg_cut_{k}"]) < 1e-12, (name, qid, k, linear, r)
            put(f"ndcg@{k}", qid, r[f"ndcg_cut_{k}"])
            put(f"ndcg_exp@{k}", qid, ndcg_reference(ranking, qrels[qid], k, exp=True))
            put(f"ap@{k}", qid, r[f"map_cut_{k}"])
            rr = r["recip_rank"]
            put(f"rr@{k}", qid, rr if rr > 0 and 1.0 / rr <= k + 1e-9 else 0.0)
            put(f"p@{k}", qid, r[f"P_{k}"])
            put(f"recall@{k}", qid, r[f"recall_{k}"])
        for metric, key in (("ndcg", "ndcg"), ("ap", "map"), ("rr", "recip_rank")):
            put(metric, qid, r[key] if r is not None else 0.0)
    return {"name": name, "qrels": qrels_file, "run": run_file,
            "relevance_threshold": threshold, "metrics": metrics}


def main():
    write_random_fixture()
    cases = [
        golden_case("edge", "edge.qrels", "edge.run", 1),
        golden_case("edge-threshold-2", "edge.qrels", "edge.run", 2),
        golden_case("random", "random.qrels", "random.run", 1),
        golden_case("random-gzip", "random.qrels", "random.run.gz", 1),
        golden_case("random-threshold-3", "random.qrels", "random.run", 3),
    ]
    out = {"generator": "eval/golden/generate.py",
           "pytrec_eval": "pytrec-eval-terrier 0.5.11",
           "cases": cases}
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
