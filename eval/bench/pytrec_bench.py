#!/usr/bin/env python3
"""The pytrec_eval side of `cargo bench -p mlctl-eval --bench eval_vs_pytrec`.

Times what a pytrec_eval user does: parse the qrels and run with pytrec_eval's own
parse_qrel/parse_run, build the evaluator, evaluate the five measures. Prints one JSON
line with the timings and the mean of each measure (so the bench can check agreement).
"""

import json
import sys
import time

import pytrec_eval


def main():
    qrels_path, run_path = sys.argv[1], sys.argv[2]
    cpu_start = time.process_time()
    start = time.perf_counter()
    with open(qrels_path) as f:
        qrels = pytrec_eval.parse_qrel(f)
    with open(run_path) as f:
        run = pytrec_eval.parse_run(f)
    parsed = time.perf_counter()
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {"ndcg_cut.10", "map_cut.10", "recip_rank", "P.10", "recall.10"})
    results = evaluator.evaluate(run)
    done = time.perf_counter()
    cpu = time.process_time() - cpu_start
    n = len(results)
    means = {}
    for name, key in (("ndcg@10", "ndcg_cut_10"), ("ap@10", "map_cut_10"),
                      ("p@10", "P_10"), ("recall@10", "recall_10"), ("rr", "recip_rank")):
        means[name] = sum(r[key] for r in results.values()) / n if n else 0.0
    print(json.dumps({"parse_seconds": parsed - start, "eval_seconds": done - parsed,
                      "total_seconds": done - start, "cpu_seconds": cpu, "queries": n, "means": means}))


if __name__ == "__main__":
    main()
