#!/usr/bin/env python
"""Quality bars of the shipped mini evaluators on held-out synth videos (issue 3, item 4).

    python benchmarks/eval_mini_evaluators.py [--json] [--split test] [--max-videos N]
                                              [--weights DIR] [--root SYNTH_ROOT]

Measures, on synth's test split (never seen in training):
  sync:       coarse shift protocol (9 clips 0.2 s apart) accuracy within +-1 step >= 0.80,
              mean sigmoid(phi(shifted 0.5 s) - phi(true)) <= 0.2, same for a static clip <= 0.2,
              plus the paper protocol (31 x 0.04 s, +-5) and P_Sync for reference;
  embedding:  top-1 class accuracy audio->image, audio->text, image->text >= 0.90,
              IA matched > IA wrong class;
  features:   Frechet distance of mini FID / FVD grows strictly with noise and blur levels.
Exit code 1 if a bar fails. --json prints exactly one JSON object.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="eval_mini_evaluators.py", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synth")
    p.add_argument("--root", help="synth folder (default $ASVA_SYNTH_ROOT or the cache; built if missing)")
    p.add_argument("--split", default="test")
    p.add_argument("--weights", help="folder with mini-sync.* and mini-embedding.* (default: the shipped ones)")
    p.add_argument("--cache-dir", help="clip cache folder")
    p.add_argument("--max-videos", type=int)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from asva_bench.backbones.mini_embedding import load_checkpoint as load_embedding
    from asva_bench.backbones.sync_classifier import MINI_WEIGHTS_DIR, load_checkpoint as load_sync
    from asva_bench.training.mini_eval import evaluate_mini_evaluators
    from asva_bench.training.mini_evaluators import build_caches

    t0 = time.perf_counter()
    weights = Path(args.weights) if args.weights else MINI_WEIGHTS_DIR
    sync = load_sync(weights / "mini-sync.safetensors")
    emb = load_embedding(weights / "mini-embedding.safetensors")
    cache = build_caches(args.dataset, args.root, "mini", splits=(args.split,), workers=args.workers,
                         cache_dir=args.cache_dir, progress=not args.json)[args.split]
    res = evaluate_mini_evaluators(sync, emb, cache, max_videos=args.max_videos, progress=not args.json)
    res.update(weights=str(weights), dataset=args.dataset, split=args.split,
               seconds=round(time.perf_counter() - t0, 1))
    if args.json:
        print(json.dumps(res, sort_keys=True, default=str))
    else:
        s = res["sync"]
        print(f"held-out {args.dataset}/{args.split}: {s['videos']} videos ({res['seconds']} s)")
        for name in ("coarse", "paper"):
            r = s[name]
            print(f"  sync {name}: exact {r.get('exact', float('nan')):.3f}, within tol {r.get('within_tol', float('nan')):.3f}, "
                  f"within 1 {r.get('within_1', float('nan')):.3f}, P_Sync {r.get('p_sync', float('nan')):.3f} "
                  f"({r['a2v'].get('n', 0)} videos, {r['skipped_short']} too short)")
        for k, b in res["bars"].items():
            print(f"  {'PASS' if b['pass'] else ('FAIL' if b['required'] else 'fail (informative)')} {k}: {b['value']} ({b['bar']})")
    return 0 if res["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
