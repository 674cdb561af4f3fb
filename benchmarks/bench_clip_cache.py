"""Cost of the decoded-clip cache on part of synth's training split: decode, reuse, pack, draws.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_clip_cache.py --limit 60 --json

Decodes the first ``--limit`` training videos (round robin over the classes)
into a fresh cache folder, builds it a second time (every file reused), packs
it on the 12 fps grid (what AVSyncD and the mini base train on) and times a
batch of draws through both views.  Prints one JSON object with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="synth root (default: built / found by ensure_synth)")
    p.add_argument("--limit", type=int, default=60, help="training videos to decode")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from asva_bench.profiles import protocol_for
    from asva_bench.training.clip_cache import build_clip_cache, load_manifest, quantise_start

    spec, manifest = load_manifest("synth", args.root, progress=False)
    by_class: dict[str, list] = {}
    for e in manifest.split("train"):
        by_class.setdefault(e.class_name, []).append(e)
    entries = [e for k in range(args.limit) for vs in by_class.values() if k < len(vs) for e in [vs[k]]][:args.limit]
    cfg = protocol_for(spec.protocol, "mini")
    out = {"videos": len(entries), "protocol": cfg.name, "workers": args.workers,
           "load_average": os.getloadavg()[0], "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "clips"
        t0 = time.perf_counter()
        cache = build_clip_cache(entries, cfg, d, workers=args.workers, progress=not args.json)
        out["decode_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        build_clip_cache(entries, cfg, d, workers=args.workers, progress=False)
        out["reuse_s"] = round(time.perf_counter() - t0, 3)
        out["disk_bytes"] = sum(f.stat().st_size for f in d.rglob("*.safetensors"))
        t0 = time.perf_counter()
        packed = cache.pack(12.0)
        out["pack_s"] = round(time.perf_counter() - t0, 2)
        out["packed_bytes"] = packed.nbytes()
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for _ in range(10):
            packed.sample_clips(16, g)
        out["packed_draw_16_clips_ms"] = round((time.perf_counter() - t0) * 100, 2)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for i in rng.integers(0, len(cache), 16):
            v = cache.load(int(i))
            s = quantise_start(rng.uniform(0, v.max_start()), cfg)
            v.clip_frames(s), v.clip_mel(s)
        out["load_16_clips_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
