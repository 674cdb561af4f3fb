"""Scoring speed: full `score` of a run folder vs the bare backbone forwards.

    python benchmarks/bench_scoring.py RUN_DIR [--rounds 3] [--json]

Times (1) a cold score (ground-truth feature cache empty), then, ``--rounds``
times in turn, (2) a warm score (cache filled) and (3) the bare forwards of the
generated side on the same clips, pre-decoded in memory, with the same batch
size. Reports the medians and the ratio warm / bare (issue target: <= 1.2), and
the CPU seconds of each (both cores busy: CPU ~ 2 x wall). The process is set up
as the `asva-bench` command sets itself up (heap.keep_freed_memory; set
ASVA_BENCH_NO_HEAP_TUNING=1 to measure without it). Also reported, for the bound
in docs/protocol.md ("Scoring speed"): the CPU seconds of decoding the clips one
after the other (as a decoding thread does, on its own clock), of the metrics and their intervals inside the warm scores, and
the page faults of the bare forwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def timed(fn) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the whole process: every thread, minor page faults)"""
    w, c, f = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return (time.perf_counter() - w, time.process_time() - c,
            resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)


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
    from asva_bench import scoring
    from asva_bench.scoring import (ScoreOptions, coverage, frames_to_float, gen_features, read_generated_clip,
                                    run_protocol, score_run)

    record = read_run(args.run_dir).to_dict()
    cfg = run_protocol(record)
    suite = load_suite(record["profile"])
    suite.fingerprint()  # build the backbones outside the timings
    ds = record["dataset"]
    manifest = get_dataset(ds["name"]).load(ds["root"])
    entries = sorted(manifest.split(ds["split"]), key=lambda e: e.rel_path)[:ds.get("limit") or None]
    jobs = coverage(args.run_dir, plan_clips(entries, cfg)).present
    # decoding as a decoding thread does it (read_generated_clip), on this thread's own CPU clock
    t, c = time.perf_counter(), time.thread_time()
    read = [read_generated_clip(args.run_dir / clip_relpath(j.clip_id), cfg) for j in jobs]
    decode = (time.perf_counter() - t, time.thread_time() - c)
    decoded = [(frames_to_float(f), a, n) for f, a, n in read]
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
    warm, bare_runs, intervals = [], [], []
    compute_metrics = scoring.compute_metrics

    def timed_metrics(*a, **k):   # the metrics phase of a score: after the last forward
        out = []
        intervals.append(timed(lambda: out.append(compute_metrics(*a, **k))))
        return out[0]
    try:
        cold = timed(lambda: score_run(args.run_dir, suite, opts))
        scoring.compute_metrics = timed_metrics
        for _ in range(args.rounds):
            warm.append(timed(lambda: score_run(args.run_dir, suite, opts)))
            bare_runs.append(timed(bare))
    finally:
        scoring.compute_metrics = compute_metrics
        FeatureCache.default = orig_default
        shutil.rmtree(cache_home, ignore_errors=True)

    def med(xs, k):
        return round(statistics.median(x[k] for x in xs), 2)
    out = {"clips": len(jobs), "cold_score_s": round(cold[0], 2),
           "warm_score_s": med(warm, 0), "bare_forwards_s": med(bare_runs, 0),
           "warm_over_bare": round(statistics.median(x[0] for x in warm) / statistics.median(x[0] for x in bare_runs), 3),
           "warm_cpu_s": med(warm, 1), "bare_cpu_s": med(bare_runs, 1),
           "warm_rounds_s": [round(x[0], 2) for x in warm], "bare_rounds_s": [round(x[0], 2) for x in bare_runs],
           "sequential_decode_s": round(decode[0], 2), "decode_cpu_s": round(decode[1], 2),
           "metrics_phase_s": med(intervals, 0), "metrics_phase_cpu_s": med(intervals, 1),
           "bare_page_faults": int(statistics.median(x[2] for x in bare_runs)),
           "batch_size": args.batch_size,
           "decode_threads": args.decode_threads, "heap_tuned": heap_tuned,
           "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>22}: {v}")


if __name__ == "__main__":
    main()
