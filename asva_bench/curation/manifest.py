"""What `asva-bench curate` writes: shard files, the manifest of every decision, the dataset folder.

Layout of ``--out OUT`` (docs/curation.md)::

    OUT/curation.plan.json          input folder and signal settings of this curation (written first)
    OUT/shards/shard-IIIII-of-NNNNN.jsonl   per-clip signals of one shard's videos (atomic; reused on rerun)
    OUT/manifest/clips.csv          every clip: signals, pass/fail per filter, status, reason, example
    OUT/manifest/videos.csv         every input video: ok or bad (with the reason), scenes, clips, examples
    OUT/manifest/examples.csv       every merged example: span, clips, split, status, reason
    OUT/manifest/classes.csv        examples per class, kept or dropped (and why)
    OUT/curation.toml               the effective config (thresholds included)
    OUT/curation.json               summary: counts, drops per filter, bad inputs, provenance
    OUT/videos/<class>/<stem>_<start ms>_<end ms>.mp4   the kept examples (AVSync15's layout)
    OUT/train.txt, OUT/test.txt     '<class>/<file>.mp4' per line
    OUT/review/                     review pages (see review.py) and the folded-in marks

Every file is written to a temporary name and renamed; ``curation.json`` is
written last, after the dataset. The manifest and the dataset are
functions of the shard records, the config and the review marks only: no
timestamps, no timings (those are in the shard headers and
``OUT/timing.json``), so the same inputs give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_text, is_temp_file
from ..provenance import git_revision, package_versions
from ..fsutil import stable_hash
from .config import SIGNALS, CurationConfig, CurationError, config_to_toml
from .decisions import Decisions, Example

SHARD_SCHEMA = "asva-bench/curation-shard/v1"
SUMMARY_SCHEMA = "asva-bench/curation/v1"
GENERATOR = "asva-bench curate"
PLAN = "curation.plan.json"
SUMMARY = "curation.json"
SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})\.jsonl$")


# --------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------
def write_plan(out: Path, input_root: Path, cfg: CurationConfig) -> dict:
    """Record (or check) which input and signal settings ``out`` belongs to."""
    out = Path(out)
    plan = {"generator": GENERATOR, "input": str(Path(input_root).resolve()), "profile": cfg.profile,
            "signal_fingerprint": cfg.signal_fingerprint(), "signal_settings": cfg.signal_settings()}
    old = read_plan(out, required=False)
    if old is not None:
        diff = [k for k in ("input", "profile", "signal_fingerprint") if old.get(k) != plan[k]]
        if diff:
            raise CurationError(f"{out} holds another curation (differs in {', '.join(diff)}: was "
                                f"{', '.join(str(old.get(k)) for k in diff)}); use another --out, or delete "
                                f"{out / 'shards'} to recompute the signals")
        return old
    if out.exists() and any(out.iterdir()) and not (out / SUMMARY).exists():
        raise CurationError(f"{out}: folder exists, is not empty and is not a curation folder; choose an empty "
                            "or new --out")
    atomic_write_text(out / PLAN, json.dumps(plan, indent=1, sort_keys=True) + "\n")
    return plan


def read_plan(out: Path, required: bool = True) -> dict | None:
    path = Path(out) / PLAN
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise CurationError(f"{path} is missing: {out} is not a curation folder; run `asva-bench curate "
                                f"--input DIR --out {out}` first") from None
        return None
    except json.JSONDecodeError as e:
        raise CurationError(f"{path} is not valid JSON ({e}); delete {out} and curate again") from e
    if plan.get("generator") != GENERATOR:
        raise CurationError(f"{path} was not written by asva-bench curate")
    return plan


# --------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------
def shard_path(out: Path, index: int, count: int) -> Path:
    return Path(out) / "shards" / f"shard-{index:05d}-of-{count:05d}.jsonl"


def inputs_hash(videos) -> str:
    """What identifies a shard's inputs: their paths and byte sizes."""
    return stable_hash([[v.rel, v.size] for v in videos])


def write_shard(path: Path, header: dict, records: list[dict]) -> None:
    lines = [json.dumps({"schema": SHARD_SCHEMA, **header}, sort_keys=True)]
    lines += [json.dumps(r, sort_keys=True) for r in sorted(records, key=lambda r: r["video"])]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_shard(path: Path) -> tuple[dict, list[dict]] | None:
    """(header, records), or None when the file is missing, truncated or not a shard."""
    try:
        lines = Path(path).read_text().splitlines()
        header = json.loads(lines[0])
        records = [json.loads(x) for x in lines[1:] if x.strip()]
    except (OSError, IndexError, json.JSONDecodeError):
        return None
    if header.get("schema") != SHARD_SCHEMA or len(records) != header.get("videos"):
        return None
    return header, records


def shard_done(path: Path, signal_fp: str, in_hash: str) -> bool:
    got = read_shard(path)
    return got is not None and got[0].get("signal_fingerprint") == signal_fp and got[0].get("inputs_hash") == in_hash


def find_partition(out: Path, signal_fp: str, all_videos) -> tuple[int, list[Path]]:
    """The complete set of shard files of one partition that together cover ``all_videos``."""
    from ..distributed import shard
    folder = Path(out) / "shards"
    counts = sorted({int(m.group(2)) for p in folder.glob("shard-*.jsonl") if (m := SHARD_RE.match(p.name))}) \
        if folder.is_dir() else []
    notes = []
    for n in counts:
        paths = [shard_path(out, i, n) for i in range(n)]
        bad = [p.name for i, p in enumerate(paths)
               if not shard_done(p, signal_fp, inputs_hash(shard(all_videos, i, n)))]
        if not bad:
            return n, paths
        notes.append(f"{n} shard(s): {len(bad)} missing or stale ({', '.join(bad[:4])}"
                     + (" ..." if len(bad) > 4 else "") + ")")
    raise CurationError(f"{out}: no complete set of shard files for the current input and signal settings"
                        + (" (" + "; ".join(notes) + ")" if notes else "") +
                        "; run the missing `asva-bench curate --shard I/N` jobs (or curate without --shard), "
                        "then --merge")


def read_partition(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """(records sorted by video, shard headers)."""
    records, headers = [], []
    for p in paths:
        header, recs = read_shard(p)
        headers.append(header)
        records += recs
    return sorted(records, key=lambda r: r["video"]), headers


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return " ".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c)) for c in columns])
    return buf.getvalue()


CLIP_COLUMNS = (["video", "class", "scene", "start", "end", *SIGNALS, *[f"pass_{s}" for s in SIGNALS],
                 "passed_filters", "review", "status", "reason", "example"])
VIDEO_COLUMNS = ["video", "class", "status", "bad_kind", "reason", "duration", "video_duration", "audio_duration",
                 "fps", "scenes", "cuts", "clips", "kept_clips", "examples"]
EXAMPLE_COLUMNS = ["example", "class", "video", "scene", "start", "end", "seconds", "clips", "split", "status",
                   "reason"]
CLASS_COLUMNS = ["class", "input_videos", "videos", "examples", "train", "test", "kept", "reason"]


def clip_rows(dec: Decisions, cfg: CurationConfig) -> list[dict]:
    rows = []
    for c in dec.clips:
        failed = {f.split("<")[0].split(">")[0].split("=")[0] for f in c.failed}
        row = {"video": c.video, "class": c.cls, "scene": c.scene, "start": c.start, "end": c.end,
               **c.signals, "passed_filters": c.passed_filters, "review": c.review, "status": c.status,
               "reason": c.reason, "example": c.example}
        row.update({f"pass_{s}": (s not in failed) if s in cfg.thresholds else None for s in SIGNALS})
        rows.append(row)
    return rows


def video_rows(dec: Decisions) -> list[dict]:
    kept = {}
    for c in dec.clips:
        kept[c.video] = kept.get(c.video, 0) + (c.status == "kept")
    ex = {}
    for e in dec.kept_examples():
        ex[e.video] = ex.get(e.video, 0) + 1
    rows = []
    for v in dec.videos:
        ok = v["status"] == "ok"
        rows.append({"video": v["video"], "class": v["class"], "status": v["status"], "bad_kind": v.get("bad_kind"),
                     "reason": v.get("reason", ""), "duration": v.get("duration"),
                     "video_duration": v.get("video_duration"), "audio_duration": v.get("audio_duration"),
                     "fps": v.get("fps"), "scenes": len(v.get("cuts", [])) + 1 if ok else None,
                     "cuts": v.get("cuts", []), "clips": len(v.get("clips", [])), "kept_clips": kept.get(v["video"], 0),
                     "examples": ex.get(v["video"], 0)})
    return rows


def example_rows(dec: Decisions) -> list[dict]:
    return [{"example": e.id, "class": e.cls, "video": e.video, "scene": e.scene, "start": e.start, "end": e.end,
             "seconds": round(e.seconds, 3), "clips": e.clips, "split": e.split, "status": e.status,
             "reason": e.reason} for e in dec.examples]


def class_rows(dec: Decisions) -> list[dict]:
    return [{"class": c, **row} for c, row in sorted(dec.classes.items())]


def write_tables(out: Path, dec: Decisions, cfg: CurationConfig) -> dict[str, str]:
    folder = Path(out) / "manifest"
    files = {"clips": (clip_rows(dec, cfg), CLIP_COLUMNS), "videos": (video_rows(dec), VIDEO_COLUMNS),
             "examples": (example_rows(dec), EXAMPLE_COLUMNS), "classes": (class_rows(dec), CLASS_COLUMNS)}
    paths = {}
    for name, (rows, cols) in files.items():
        atomic_write_text(folder / f"{name}.csv", _csv(rows, cols))
        paths[name] = str(folder / f"{name}.csv")
    atomic_write_text(Path(out) / "curation.toml", config_to_toml(cfg))
    return paths


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------
def summary(dec: Decisions, cfg: CurationConfig, plan: dict, headers: list[dict], ignored: list[dict],
            marks: list[dict]) -> dict:
    bad = [{"video": v["video"], "class": v["class"], "kind": v["bad_kind"], "reason": v["reason"]}
           for v in dec.videos if v["status"] != "ok"]
    by_kind: dict[str, int] = {}
    for b in bad:
        by_kind[b["kind"]] = by_kind.get(b["kind"], 0) + 1
    per_filter = {s: 0 for s in SIGNALS if s in cfg.thresholds}
    only_filter = dict(per_filter)
    for c in dec.clips:
        names = {f.split("<")[0].split(">")[0].split("=")[0] for f in c.failed}
        for n in names:
            per_filter[n] += 1
        if len(names) == 1:
            only_filter[next(iter(names))] += 1
    kept = dec.kept_examples()
    backbones = sorted({json.dumps(h.get("backbones", {}), sort_keys=True) for h in headers})
    return {
        "schema": SUMMARY_SCHEMA, "generator": GENERATOR, "input": plan["input"], "profile": cfg.profile,
        "config": cfg.to_dict(), "config_fingerprint": cfg.fingerprint(),
        "signal_fingerprint": cfg.signal_fingerprint(),
        "backbones": json.loads(backbones[0]) if len(backbones) == 1 else [json.loads(b) for b in backbones],
        "protocol": headers[0].get("protocol") if headers else None,
        "counts": {
            "videos": {"input": len(dec.videos), "ok": len(dec.videos) - len(bad), "bad": len(bad),
                       "bad_by_kind": dict(sorted(by_kind.items()))},
            "ignored_files": len(ignored),
            "clips": {"total": len(dec.clips), "passed_filters": sum(c.passed_filters for c in dec.clips),
                      "kept": sum(c.status == "kept" for c in dec.clips),
                      "failed_by_filter": per_filter, "failed_only_this_filter": only_filter,
                      "review_rejected": sum(c.review == "rejected" for c in dec.clips),
                      "review_accepted": sum(c.review == "accepted" for c in dec.clips)},
            "examples": {"merged": len(dec.examples), "kept": len(kept),
                         "dropped_class_too_small": sum(e.status == "dropped" for e in dec.examples),
                         "train": sum(e.split == "train" for e in kept), "test": sum(e.split == "test" for e in kept),
                         "seconds_kept": round(sum(e.seconds for e in kept), 3)},
            "classes": {"input": len(dec.classes), "kept": sum(r["kept"] for r in dec.classes.values()),
                        "dropped": sorted(c for c, r in dec.classes.items() if not r["kept"])},
        },
        # what `asva-bench datasets check` holds the folder to
        "dataset": {"layout": "avsync15", "counts": {"train": sum(e.split == "train" for e in kept),
                                                     "test": sum(e.split == "test" for e in kept)},
                    "classes": sorted(c for c, r in dec.classes.items() if r["kept"])},
        "classes": {c: dec.classes[c] for c in sorted(dec.classes)},
        "bad_inputs": bad,
        "ignored_files": ignored,
        "review": {"marks": len(marks), "accepted_spans": sum(m["mark"] == "accept" for m in marks),
                   "rejected_spans": sum(m["mark"] == "reject" for m in marks)},
        "versions": package_versions(),
        "git_revision": git_revision(),
    }


def write_summary(out: Path, data: dict) -> Path:
    path = Path(out) / SUMMARY
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


# --------------------------------------------------------------------------
# The dataset folder
# --------------------------------------------------------------------------
def _segment(source: Path, start: float, end: float):
    """(frames uint8 [T,H,W,3], fps, audio, sample rate) of ``source`` between ``start`` and ``end``."""
    from ..avio import VideoFrames, read_audio
    vf = VideoFrames(source)
    ts = vf.timestamps
    idx = np.nonzero((ts >= start - 1e-4) & (ts < end - 1e-4))[0]
    fps = float(1.0 / np.median(np.diff(ts))) if len(ts) > 1 else 24.0
    wav, sr = read_audio(source)
    a, b = int(round(start * sr)), int(round(end * sr))
    return vf.get(idx), fps, wav[a:b].numpy(), sr


def write_example(input_root: Path, out: Path, e: Example) -> Path:
    from ..avio import write_clip
    frames, fps, audio, sr = _segment(Path(input_root) / e.video, e.start, e.end)
    if frames.shape[1] % 2 or frames.shape[2] % 2:  # yuv420p needs even sizes: drop the odd row / column
        frames = frames[:, :frames.shape[1] // 2 * 2, :frames.shape[2] // 2 * 2]
    return write_clip(Path(out) / "videos" / e.rel, frames, round(fps, 3), audio=audio, sample_rate=sr)


def _written_index(out: Path) -> dict:
    try:
        return json.loads((Path(out) / "manifest" / "written.json").read_text())
    except (OSError, ValueError):
        return {}


def write_examples(input_root: Path, out: Path, dec: Decisions, rank: int = 0, world: int = 1,
                   progress: bool = True, source_sizes: dict | None = None) -> int:
    """Write this rank's share of the kept examples that are not there yet; returns how many it wrote."""
    from tqdm import tqdm

    from ..distributed import shard
    index = _written_index(out)
    sizes = source_sizes or {}
    todo = [e for e in dec.kept_examples()
            if not ((Path(out) / "videos" / e.rel).is_file()
                    and index.get(e.id) == {"video": e.video, "source_bytes": sizes.get(e.video)})]
    mine = shard(todo, rank, world)
    for e in tqdm(mine, desc="write examples", unit="example", disable=not progress or rank != 0):
        write_example(input_root, out, e)
    return len(mine)


def finish_dataset(out: Path, dec: Decisions, source_sizes: dict) -> dict:
    """Remove examples no longer kept, write the split files and the index (rank 0, after every writer)."""
    out = Path(out)
    kept = {e.rel for e in dec.kept_examples()}
    removed = 0
    vdir = out / "videos"
    if vdir.is_dir():
        for f in sorted(vdir.rglob("*")):
            if f.is_file() and (is_temp_file(f) or f.relative_to(vdir).as_posix() not in kept):
                f.unlink()
                removed += 1
        for d in sorted((p for p in vdir.rglob("*") if p.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
    for split in ("train", "test"):
        lines = sorted(e.rel for e in dec.kept_examples() if e.split == split)
        atomic_write_text(out / f"{split}.txt", "".join(x + "\n" for x in lines))
    index = {e.id: {"video": e.video, "source_bytes": source_sizes.get(e.video)} for e in dec.kept_examples()}
    atomic_write_text(out / "manifest" / "written.json", json.dumps(index, indent=1, sort_keys=True) + "\n")
    return {"removed": removed}
