"""Scoring speed: full `score` of a run folder vs the bare backbone forwards.

    python benchmarks/bench_scoring.py RUN_DIR [--json]

Times (1) a cold score (ground-truth feature cache empty), (2) a warm score
(cache filled), and (3) the bare forwards of the generated side on the same
clips, pre-decoded in memory, with the same batch size. Reports the ratio
warm / bare (issue target: <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--num-workers", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cache_home = Path(tempfile.mkdtemp(prefix="asva-bench-cache-"))
    from asva_bench.evaluators import load_suite
    from asva_bench.feature_cache import FeatureCache
    from asva_bench.metrics import METRIC_ORDER, METRICS
    from asva_bench.scoring import (ScoreOptions, coverage, decode_generated_clip, gen_features,
                                    run_protocol, score_run)
    from asva_bench.datasets import get_dataset
    from asva_bench.runs import clip_relpath, plan_clips, read_run

    record = read_run(args.run_dir).to_dict()
    cfg = run_protocol(record)
    suite = load_suite(record["profile"])
    suite.fingerprint()  # build the backbones outside the timings
    orig_default = FeatureCache.default
    FeatureCache.default = classmethod(lambda cls: cls(cache_home))
    opts = ScoreOptions(batch_size=args.batch_size, num_workers=args.num_workers, progress=False)
    try:
        t = time.perf_counter()
        score_run(args.run_dir, suite, opts)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        score_run(args.run_dir, suite, opts)
        warm = time.perf_counter() - t
    finally:
        FeatureCache.default = orig_default
        shutil.rmtree(cache_home, ignore_errors=True)

    ds = record["dataset"]
    manifest = get_dataset(ds["name"]).load(ds["root"])
    entries = sorted(manifest.split(ds["split"]), key=lambda e: e.rel_path)[:ds.get("limit") or None]
    jobs = coverage(args.run_dir, plan_clips(entries, cfg)).present
    t = time.perf_counter()
    decoded = [decode_generated_clip(args.run_dir / clip_relpath(j.clip_id), cfg) for j in jobs]
    decode_s = time.perf_counter() - t
    needs = {n for m in METRIC_ORDER for n in METRICS.get(m).needs}
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(decoded), args.batch_size):
            chunk = decoded[i:i + args.batch_size]
            gen_features(suite, torch.stack([c[0] for c in chunk]), torch.stack([c[1] for c in chunk]), cfg, needs)
    bare = time.perf_counter() - t
    out = {"clips": len(jobs), "cold_score_s": round(cold, 2), "warm_score_s": round(warm, 2),
           "bare_forwards_s": round(bare, 2), "sequential_decode_s": round(decode_s, 2),
           "warm_over_bare": round(warm / bare, 3), "batch_size": args.batch_size,
           "num_workers": args.num_workers, "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>22}: {v}")


if __name__ == "__main__":
    main()
