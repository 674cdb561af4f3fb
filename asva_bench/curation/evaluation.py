"""Scoring a curation against known truth: synth-wild's labelled defects (asva_bench.datasets.synth_wild).

The unit is the time a kept example covers (what a dataset is made of):

* **Recall of a defect type**: the share of its defect instances that were
  caught. A span defect (static, shake; the whole video for quiet, foreign
  or shifted audio, a too-small class) is *caught* when the kept examples
  overlap it by at most ``tolerance`` seconds (default 1.5 s, half a clip:
  a kept clip may start in a frozen stretch and end in a good one). A scene
  cut is caught when no kept example straddles it by more than
  ``cut_margin`` (0.25 s) on both sides. A bad input is caught when the
  manifest lists the video as bad with the expected kind.
* **Precision of the kept set**: the share of kept seconds that lie outside
  every defect span (an example straddling a scene cut counts as defective
  in full). Strict: a kept example that runs 0.5 s into a frozen stretch
  loses those 0.5 s.
* **Yield** (for information): kept clean seconds over the clean seconds
  the pool holds in usable 3 s windows.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .decisions import EPS

SPAN_TYPES = ("static", "shake", "quiet", "other_class_audio", "shifted_audio", "class_too_small")


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def evaluate(labels: dict[str, dict], out, tolerance: float = 1.5, cut_margin: float = 0.25) -> dict:
    """``labels``: synth_wild.read_labels(root); ``out``: the curation folder (its manifest is read)."""
    out = Path(out)
    return evaluate_rows(labels, _read_csv(out / "manifest" / "examples.csv"),
                         _read_csv(out / "manifest" / "videos.csv"), tolerance, cut_margin)


def evaluate_rows(labels: dict[str, dict], example_rows: list[dict], video_rows: list[dict],
                  tolerance: float = 1.5, cut_margin: float = 0.25) -> dict:
    """The same from manifest rows (examples.csv / videos.csv as dicts; values may be str or numbers)."""
    examples = [r for r in example_rows if r["status"] == "kept"]
    videos = {r["video"]: r for r in video_rows}
    kept: dict[str, list[tuple[float, float]]] = {}
    for r in examples:
        kept.setdefault(r["video"], []).append((float(r["start"]), float(r["end"])))

    per_type: dict[str, dict] = {}

    def count(kind: str, caught: bool, detail: dict):
        row = per_type.setdefault(kind, {"instances": 0, "caught": 0, "missed": []})
        row["instances"] += 1
        row["caught"] += int(caught)
        if not caught:
            row["missed"].append(detail)

    kept_s = clean_s = 0.0
    for rel, lab in sorted(labels.items()):
        spans = kept.get(rel, [])
        bad = [d for d in lab["defects"] if d["type"] == "bad_input"]
        for d in bad:
            v = videos.get(rel, {})
            count("bad_input", v.get("status") == "bad" and v.get("bad_kind") == d["expected_reason"],
                  {"video": rel, "expected": d["expected_reason"], "got": v.get("bad_kind") or v.get("status")})
        for d in lab["defects"]:
            if d["type"] in SPAN_TYPES:
                ov = sum(_overlap(a, b, d["start"], d["end"]) for a, b in spans)
                count(d["type"], ov <= tolerance + EPS, {"video": rel, "span": [d["start"], d["end"]],
                                                         "kept_overlap_s": round(ov, 3)})
            elif d["type"] == "scene_cut":
                t = d["cut"]
                straddle = [(a, b) for a, b in spans if a < t - cut_margin and b > t + cut_margin]
                count("scene_cut", not straddle, {"video": rel, "cut": t, "examples": straddle})
        # precision: kept seconds outside every defect
        for a, b in spans:
            length = b - a
            kept_s += length
            bad_s = 0.0
            for d in lab["defects"]:
                if d["type"] == "scene_cut":
                    if a < d["cut"] - cut_margin and b > d["cut"] + cut_margin:
                        bad_s = length
                elif d["type"] != "bad_input":
                    bad_s += _overlap(a, b, d["start"], d["end"])
            clean_s += max(0.0, length - min(bad_s, length))
    recall = {k: {"instances": v["instances"], "caught": v["caught"],
                  "recall": round(v["caught"] / v["instances"], 4) if v["instances"] else None,
                  "missed": v["missed"]} for k, v in sorted(per_type.items())}
    n_kept = len(examples)
    return {"recall": recall, "precision": round(clean_s / kept_s, 4) if kept_s else None,
            "kept_seconds": round(kept_s, 3), "kept_clean_seconds": round(clean_s, 3), "kept_examples": n_kept,
            "clean_examples": sum(1 for r in examples if _clean_example(labels.get(r["video"]), float(r["start"]),
                                                                         float(r["end"]), cut_margin)),
            "rules": {"tolerance_s": tolerance, "cut_margin_s": cut_margin}}


def _clean_example(lab, a: float, b: float, margin: float) -> bool:
    if lab is None:
        return False
    for d in lab["defects"]:
        if d["type"] == "scene_cut":
            if a < d["cut"] - margin and b > d["cut"] + margin:
                return False
        elif d["type"] != "bad_input" and _overlap(a, b, d["start"], d["end"]) > 0:
            return False
    return True


def clean_seconds_available(labels: dict[str, dict], out, clip_seconds: float = 3.0) -> float:
    """Clean seconds of the pool that some candidate clip covers (the yield's denominator)."""
    clips = _read_csv(Path(out) / "manifest" / "clips.csv")
    by_video: dict[str, list[tuple[float, float]]] = {}
    for c in clips:
        by_video.setdefault(c["video"], []).append((float(c["start"]), float(c["end"])))
    total = 0.0
    for rel, spans in by_video.items():
        lab = labels.get(rel)
        if lab is None or any(d["type"] in ("quiet", "other_class_audio", "shifted_audio", "class_too_small")
                              for d in lab["defects"]):
            continue
        # union of candidate clips, minus span defects
        spans.sort()
        merged = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + EPS:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        for a, b in merged:
            bad = sum(_overlap(a, b, d["start"], d["end"]) for d in lab["defects"] if d["type"] in SPAN_TYPES)
            total += max(0.0, (b - a) - bad)
    return round(total, 3)
