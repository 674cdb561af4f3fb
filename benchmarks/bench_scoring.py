"""Scoring speed: full `score` of a run folder vs the bare backbone forwards.

    python benchmarks/bench_scoring.py RUN_DIR [--rounds 3] [--json]

Times (1) a cold score (ground-truth feature cache empty), then, ``--rounds``
times in turn, (2) a warm score (cache filled) and (3) the bare forwards of the
generated side on the same clips, pre-decoded in memory, with the same batch
size. Reports the medians and the ratio warm / bare (issue target: <= 1.2), and
the CPU seconds of each (both cores busy: CPU ~ 2 x wall). The process is set up
as the `asva-bench` command sets itself up (heap.keep_freed_memory; set
ASVA_BENCH_NO_HEAP_TUNING=1 to measure without it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process: every thread)"""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--decode-threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from asva_bench.heap import keep_freed_memory
    heap_tuned = keep_freed_memory()
    cache_home = Path(tempfile.mkdtemp(prefix="asva-bench-cache-"))
    from asva_bench.datasets import get_dataset
    from asva_bench.evaluators import load_suite
    from asva_bench.feature_cache import FeatureCache
    from asva_bench.metrics import METRIC_ORDER, METRICS
    from asva_bench.runs import clip_relpath, plan_clips, read_run
    from asva_bench.scoring import (ScoreOptions, coverage, decode_generated_clip, gen_features,
                                    run_protocol, score_run)

    record = read_run(args.run_dir).to_dict()
    cfg = run_protocol(record)
    suite = load_suite(record["profile"])
    suite.fingerprint()  # build the backbones outside the timings
    ds = record["dataset"]
    manifest = get_dataset(ds["name"]).load(ds["root"])
    entries = sorted(manifest.split(ds["split"]), key=lambda e: e.rel_path)[:ds.get("limit") or None]
    jobs = coverage(args.run_dir, plan_clips(entries, cfg)).present
    t = time.perf_counter()
    decoded = [decode_generated_clip(args.run_dir / clip_relpath(j.clip_id), cfg) for j in jobs]
    decode_s = time.perf_counter() - t
    needs = {n for m in METRIC_ORDER for n in METRICS.get(m).needs}

    def bare():
        with torch.no_grad():
            for i in range(0, len(decoded), args.batch_size):
                chunk = decoded[i:i + args.batch_size]
                gen_features(suite, torch.stack([c[0] for c in chunk]), torch.stack([c[1] for c in chunk]),
                             cfg, needs)

    orig_default = FeatureCache.default
    FeatureCache.default = classmethod(lambda cls: cls(cache_home))
    opts = ScoreOptions(batch_size=args.batch_size, decode_threads=args.decode_threads, progress=False)
    warm, bare_runs = [], []
    try:
        cold = timed(lambda: score_run(args.run_dir, suite, opts))
        for _ in range(args.rounds):
            warm.append(timed(lambda: score_run(args.run_dir, suite, opts)))
            bare_runs.append(timed(bare))
    finally:
        FeatureCache.default = orig_default
        shutil.rmtree(cache_home, ignore_errors=True)

    def med(xs, k):
        return round(statistics.median(x[k] for x in xs), 2)
    out = {"clips": len(jobs), "cold_score_s": round(cold[0], 2),
           "warm_score_s": med(warm, 0), "bare_forwards_s": med(bare_runs, 0),
           "warm_over_bare": round(statistics.median(x[0] for x in warm) / statistics.median(x[0] for x in bare_runs), 3),
           "warm_cpu_s": med(warm, 1), "bare_cpu_s": med(bare_runs, 1),
           "warm_rounds_s": [round(x[0], 2) for x in warm], "bare_rounds_s": [round(x[0], 2) for x in bare_runs],
           "sequential_decode_s": round(decode_s, 2), "batch_size": args.batch_size,
           "decode_threads": args.decode_threads, "heap_tuned": heap_tuned,
           "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>22}: {v}")


if __name__ == "__main__":
    main()
