"""Per-metric difference between the protocol tracks, on existing run folders.

    python benchmarks/track_differences.py RUN_DIR [RUN_DIR ...] [--out PREFIX] [--attribute] [--json]

Rescores every run folder under both tracks (`asva-bench score RUN --track ...`: the run's own
track writes results.json, the other results.<track>.json; the generated mp4s are not touched)
and prints, per run and metric, the asva-reference value, the corrected value and their
difference. ``--attribute`` also scores the corrected track with one asva-reference behaviour
switched on at a time (diagnostic tracks, asva_bench.tracks.register_ablation; their results go
to results.<name>.json), so each difference can be traced to its behaviours; the one-at-a-time
effects need not add up to the total. ``--out PREFIX`` writes PREFIX.md and PREFIX.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from asva_bench.metrics import METRIC_ORDER as METRICS, metric_label
#: TrackRules fields and the asva-reference value each takes in an attribution run.
BEHAVIOURS = {"media": "reference", "fid_batchnorm": "batch", "it_text": "folder",
              "alignsync_first_frame_audio": "ground-truth"}


def score(run_dir: Path, suite, track: str, device: str, workers: int) -> tuple[dict, float]:
    from asva_bench.scoring import ScoreOptions, score_run
    t = time.perf_counter()
    res = score_run(run_dir, suite, ScoreOptions(track=track, device=device, decode_threads=workers, progress=True))
    return {m: res["metrics"][m]["mean"] for m in METRICS if m in res["metrics"]}, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", help="path prefix for .md and .json")
    ap.add_argument("--attribute", action="store_true", help="also one asva-reference behaviour at a time")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--decode-threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from asva_bench.evaluators import load_suite
    from asva_bench.results import model_label
    from asva_bench.runs import read_run
    from asva_bench.tracks import CORRECTED, REFERENCE, register_ablation

    report = {"runs": []}
    suites = {}
    for run in args.runs:
        record = read_run(run).to_dict()
        profile = record["profile"]
        suite = suites.setdefault(profile, load_suite(profile, device=args.device))
        entry = {"run": str(run), "model": model_label(record), "dataset": record["dataset"]["name"],
                 "profile": profile, "limit": record["dataset"].get("limit"), "tracks": {}, "seconds": {}}
        for track in (REFERENCE, CORRECTED):
            entry["tracks"][track], entry["seconds"][track] = score(run, suite, track, args.device,
                                                                    args.decode_threads)
        if args.attribute:
            for field, value in BEHAVIOURS.items():
                name = register_ablation(CORRECTED, **{field: value})
                entry["tracks"][name], entry["seconds"][name] = score(run, suite, name, args.device, 0)
        ref, cor = entry["tracks"][REFERENCE], entry["tracks"][CORRECTED]
        entry["difference"] = {m: ref[m] - cor[m] for m in ref if m in cor}
        if args.attribute:
            entry["attribution"] = {f: {m: entry["tracks"][f"{CORRECTED}+{f}={v}"][m] - cor[m] for m in cor}
                                    for f, v in BEHAVIOURS.items()}
        report["runs"].append(entry)

    text = format_report(report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.md").write_text(text + "\n")
        Path(f"{args.out}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps(report, sort_keys=True) if args.json else text)


def format_report(report: dict) -> str:
    lines = []
    for e in report["runs"]:
        metrics = [m for m in METRICS if m in e["difference"]]
        reduced = f", {e['limit']} test videos" if e.get("limit") else ""
        lines.append(f"### {e['model']} on {e['dataset']} ({e['profile']} profile{reduced})\n")
        lines.append("| | " + " | ".join(metric_label(m) for m in metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for name, row in (("asva-reference", e["tracks"]["asva-reference"]), ("corrected", e["tracks"]["corrected"]),
                          ("reference - corrected", e["difference"])):
            lines.append(f"| {name} | " + " | ".join(f"{row[m]:+.3f}" if name.startswith("reference -")
                                                     else f"{row[m]:.3f}" for m in metrics) + " |")
        for field, diff in (e.get("attribution") or {}).items():
            lines.append(f"| corrected + reference {field} only | "
                         + " | ".join(f"{diff[m]:+.3f}" for m in metrics) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
