"""Rescoring a finished run reproduces its results: which fields changed, and by how much.

    python benchmarks/rescore_identity.py RUN_DIR [RUN_DIR ...] [--keep DIR] [--json]

For every run folder: keeps a copy of its results.json and scores.jsonl (under ``--keep``, default
a temporary folder), rescores it with `asva-bench score` on the run's own track (the code of this
checkout; the generated mp4s are not touched), and compares the two files field by field.
Provenance fields that say when and with which code the scoring ran (``scored``,
``git_revision_scored``, ``versions``, ``timing_s.score``) are listed apart; every other field that
differs is printed with both values (numbers with their absolute and relative difference). Use it
to show that a refactoring kept the numbers and fingerprints (issue 16).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Fields that record when / with what the scoring ran, not what it measured.
PROVENANCE = ("scored", "git_revision_scored", "versions", "timing_s.score")


def flatten(d, prefix: str = "") -> dict:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and d and all(isinstance(x, (dict, list)) for x in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d
    return out


def differences(old: dict, new: dict) -> tuple[list[dict], list[str]]:
    """(changed measured fields with both values, changed provenance fields)."""
    a, b = flatten(old), flatten(new)
    changed, provenance = [], []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if any(key == p or key.startswith(p + ".") for p in PROVENANCE):
            provenance.append(key)
            continue
        row = {"field": key, "before": a.get(key, "<absent>"), "after": b.get(key, "<absent>")}
        x, y = a.get(key), b.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            row["abs_diff"] = abs(y - x)
            row["rel_diff"] = abs(y - x) / abs(x) if x else None
        changed.append(row)
    return changed, provenance


def scores_differences(old_lines: list[str], new_lines: list[str]) -> dict:
    old = {r["clip_id"]: r for r in map(json.loads, old_lines)}
    new = {r["clip_id"]: r for r in map(json.loads, new_lines)}
    worst, fields = 0.0, set()
    for cid in set(old) | set(new):
        ch, _ = differences(old.get(cid, {}), new.get(cid, {}))
        for row in ch:
            fields.add(row["field"])
            worst = max(worst, row.get("rel_diff") or (0.0 if "abs_diff" in row else float("inf")))
    return {"clips_before": len(old), "clips_after": len(new), "identical": old == new,
            "fields_changed": sorted(fields), "max_rel_diff": worst}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--keep", type=Path, help="where the results before rescoring are copied (default: a temp folder)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    from asva_bench.cli import main as cli

    keep = args.keep or Path(tempfile.mkdtemp(prefix="rescore-identity-"))
    report = {"kept_in": str(keep), "runs": {}}
    for run in args.runs:
        before = keep / run.name
        before.mkdir(parents=True, exist_ok=True)
        for f in ("results.json", "scores.jsonl"):
            if not (before / f).exists():          # a rerun compares against the first copy
                shutil.copy2(run / f, before / f)
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli(["score", str(run), "--json"])
        if rc != 0:
            raise SystemExit(f"`asva-bench score {run}` failed (exit {rc})")
        old, new = (json.loads((d / "results.json").read_text()) for d in (before, run))
        changed, provenance = differences(old, new)
        report["runs"][str(run)] = {
            "fingerprint_before": old.get("fingerprint"), "fingerprint_after": new.get("fingerprint"),
            "changed": changed, "provenance_changed": provenance,
            "scores": scores_differences((before / "scores.jsonl").read_text().splitlines(),
                                         (run / "scores.jsonl").read_text().splitlines())}
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    for run, r in report["runs"].items():
        same = "same" if r["fingerprint_before"] == r["fingerprint_after"] else "CHANGED"
        print(f"{run}: fingerprint {r['fingerprint_after']} ({same}); provenance fields: "
              f"{', '.join(r['provenance_changed']) or 'none'}")
        for row in r["changed"]:
            extra = f" (rel {row['rel_diff']:.1e})" if row.get("rel_diff") is not None else ""
            print(f"  {row['field']}: {row['before']} -> {row['after']}{extra}")
        s = r["scores"]
        print(f"  scores.jsonl: {'identical' if s['identical'] else 'fields ' + ', '.join(s['fields_changed'])}"
              f" (max rel diff {s['max_rel_diff']:.1e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
