"""Set the mini profile's curation thresholds from the signal distributions of a synth-wild *tuning* pool.

Rule (docs/curation.md, "Mini thresholds"): every bound sits at one
quantile ``q`` of its signal over the pool's **clean** clips (clips that
overlap no labelled defect): ``q`` for a low bound, ``1 - q`` for a high
bound, so each bound drops about a share ``q`` of clean clips. ``q`` is the
smallest of 1%, 1.5%, 2%, ... 5% at which every defect type of the
*tuning* pool reaches the recall target (default 0.95, above the
benchmark's 0.9 to leave a margin for a new pool). Values are rounded to 3
significant digits. The labels are used only here, on the tuning pool.

The tuning pool must not be the pool the benchmark reports on: tune on
seed 1, report on seed 2 (benchmarks/bench_curation.py)::

    asva-bench datasets make synth-wild --root /tmp/wild-s1 --seed 1
    asva-bench curate --input /tmp/wild-s1/videos --out /tmp/cur-s1 --profile mini --no-review
    python benchmarks/tune_curation_mini.py --pool /tmp/wild-s1 --curation /tmp/cur-s1 --write

``--write`` rewrites the [thresholds] table of asva_bench/curation/configs/mini.toml
(the rest of the file is kept) and records the tuning pool in its header.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asva_bench.curation.config import SIGNALS, default_config_path  # noqa: E402
from asva_bench.datasets.synth.wild import read_labels, read_marker  # noqa: E402

QUANTILES = [round(0.01 + 0.005 * k, 4) for k in range(9)]   # 1% .. 5%
OVERLAP_FOR_DEFECT = 1.5   # a clip "is" a defect of a type when half of it lies in the defect's span


def clip_truth(clip: dict, label: dict) -> str:
    """'clean', a defect type, or 'partial' (touches a defect by less than half a clip)."""
    s, e = float(clip["start"]), float(clip["end"])
    truth = "clean"
    for d in label["defects"]:
        if d["type"] == "scene_cut":
            continue   # clips never straddle a detected cut; scene cuts are scored per cut
        ov = max(0.0, min(e, d["end"]) - max(s, d["start"]))
        if ov >= OVERLAP_FOR_DEFECT:
            return d["type"]
        if ov > 0:
            truth = "partial"
    return truth


def sig3(x: float) -> float:
    return float(f"{x:.3g}")


def thresholds_at(clean: list[dict], q: float) -> dict:
    out = {}
    for s, (tails, _) in SIGNALS.items():
        v = np.array([float(c[s]) for c in clean])
        out[s] = {**({"low": sig3(np.quantile(v, q))} if "low" in tails else {}),
                  **({"high": sig3(np.quantile(v, 1 - q))} if "high" in tails else {})}
    return out


def recall_at(thresholds: dict, records, labels, base_cfg) -> dict:
    from asva_bench.curation.config import Threshold
    from asva_bench.curation.decisions import decide
    from asva_bench.curation.evaluation import evaluate_rows
    from asva_bench.curation.manifest import example_rows, video_rows
    cfg = base_cfg.replace(thresholds={s: Threshold(**b) for s, b in thresholds.items()})
    dec = decide(records, cfg)
    return evaluate_rows(labels, example_rows(dec), video_rows(dec))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", required=True, help="synth-wild tuning pool root")
    ap.add_argument("--curation", required=True, help="curate --out folder of that pool (any thresholds)")
    ap.add_argument("--target", type=float, default=0.95, help="recall every defect type must reach (tuning pool)")
    ap.add_argument("--write", action="store_true", help="write the thresholds into configs/mini.toml")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from asva_bench.curation.clips import list_inputs
    from asva_bench.curation.config import load_config
    from asva_bench.curation.manifest import find_partition, read_partition, read_plan
    labels = read_labels(args.pool)
    marker = read_marker(args.pool)
    plan = read_plan(Path(args.curation))
    videos, _ = list_inputs(plan["input"])
    _, paths = find_partition(Path(args.curation), plan["signal_fingerprint"], videos)
    records, _ = read_partition(paths)
    clips = [{"video": r["video"], **c} for r in records for c in r.get("clips", [])]
    truth = [clip_truth(c, labels[c["video"]]) for c in clips]
    clean = [c for c, t in zip(clips, truth) if t == "clean"]
    base = load_config("mini")
    trials = []
    for q in QUANTILES:
        th = thresholds_at(clean, q)
        ev = recall_at(th, records, labels, base)
        worst = min(v["recall"] for v in ev["recall"].values())
        trials.append({"q": q, "worst_recall": worst, "precision": ev["precision"], "kept_seconds": ev["kept_seconds"],
                       "recall": {k: v["recall"] for k, v in ev["recall"].items()}})
        if worst >= args.target:
            break
    chosen = trials[-1]
    thresholds = thresholds_at(clean, chosen["q"])
    # how each group of clips falls against the bounds (information only)
    table = {}
    for g in sorted(set(truth)):
        rows = [c for c, t in zip(clips, truth) if t == g]
        table[g] = {"clips": len(rows)}
        for s, b in thresholds.items():
            v = np.array([float(c[s]) for c in rows])
            out = np.zeros(len(v), bool)
            if "low" in b:
                out |= v < b["low"]
            if "high" in b:
                out |= v > b["high"]
            table[g][s] = round(float(out.mean()), 3) if len(v) else None
    rule = (f"clean-clip quantile q = {chosen['q']:g} (low bounds) / {1 - chosen['q']:g} (high bounds): the smallest "
            f"q in 1%..5% with every defect type's recall >= {args.target:g} on the tuning pool")
    result = {"pool": str(args.pool), "pool_seed": marker.get("seed"), "clean_clips": len(clean), "rule": rule,
              "trials": trials, "thresholds": thresholds, "share_outside_bounds": table}
    if args.write:
        path = default_config_path("mini")
        text = path.read_text()
        lines = ["[thresholds]"] + [f"{s} = {{ " + ", ".join(f"{k} = {v!r}" for k, v in b.items()) + " }"
                                    for s, b in thresholds.items()]
        text = re.sub(r"\[thresholds\]\n(?:.*\n)*?\n", "\n".join(lines) + "\n\n", text, count=1)
        text = re.sub(r"^# \[thresholds\] set by .*\n(?:# .*\n)*", "", text, flags=re.M)
        note = (f"# [thresholds] set by benchmarks/tune_curation_mini.py on a synth-wild tuning pool (seed "
                f"{marker.get('seed')}, {len(clean)} clean clips):\n# {rule}.\n")
        text = text.replace("profile = \"mini\"", note + "profile = \"mini\"", 1)
        path.write_text(text)
        result["written"] = str(path)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"tuning pool {args.pool} (seed {marker.get('seed')}): {len(clean)} clean clips")
        for t in trials:
            print(f"  q={t['q']:<6g} worst recall {t['worst_recall']:.3f}  precision {t['precision']:.4f}  "
                  f"kept {t['kept_seconds']:.0f} s  {t['recall']}")
        print(rule)
        for s, b in thresholds.items():
            print(f"  {s:14s} {b}")
        print("share of each group's clips outside each bound:")
        print("  " + " " * 18 + " ".join(f"{s[:12]:>12s}" for s in SIGNALS))
        for g, row in table.items():
            print(f"  {g:18s}" + " ".join(f"{row[s]:12.3f}" for s in SIGNALS) + f"   ({row['clips']} clips)")
        if args.write:
            print(f"written: {result['written']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
