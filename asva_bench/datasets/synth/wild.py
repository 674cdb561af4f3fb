"""``synth-wild``: a raw pool made from synth's generator, with labelled defects mixed into good videos.

It is the known truth `asva-bench curate` is checked against
(docs/curation.md, benchmarks/bench_curation.py). Every video is a synth
clip (:func:`asva_bench.datasets.synth.render_clip`: synchronized by
construction, 3-8 s, 256 x 256, 24 fps, 16 kHz), and some get one defect:

=================  ===========================================================
static             the picture freezes for 3-4 s (audio goes on)
shake              3-4 s of camera shake: every frame shifted 8-20 px at random
scene_cut          two different videos of the class joined (picture and sound
                   cut together)
quiet              the whole audio silent (zeros) or very quiet (-50 dB)
other_class_audio  the audio comes from a video of another class
shifted_audio      the whole audio 0.4-0.8 s late or early against the picture
class_too_small    the last few classes have only a handful of (clean) videos
bad_input          a truncated file, a file without audio, a 2 s file
=================  ===========================================================

Each regular class gets ``defects_per_class`` videos of each of the first
six types (placed by a seeded shuffle) and the rest clean. Layout::

    <root>/videos/<class>/<class>_NNNN.mp4     the pool (curate --input <root>/videos)
    <root>/labels/<class>/<class>_NNNN.json    its defects: type, time span (s), parameters
    <root>/labels.json                         every label, written last with the build record
    <root>/synth-wild.json                     build record (present = complete)

Seeds: the pool's ``seed`` decides defect placement and parameters; the
synth clips are rendered with synth seed ``seed`` (indices 0.. for pool
videos, 10000.. for the donors of scene cuts and foreign audio), so two
seeds give disjoint pools: tune on one, report on another.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np

from ..base import DatasetError
from .classes import CLASSES, parse_class_list
from .constants import FPS, SAMPLE_RATE
from .layout import read_record, stem
from .pool import run_jobs
from .render import render_clip

GENERATOR = "asva-bench synth-wild"
VERSION = 1
MARKER = "synth-wild.json"
DEFECTS = ("static", "shake", "scene_cut", "quiet", "other_class_audio", "shifted_audio")
CLASS_DEFECTS = ("class_too_small",)
BAD_INPUTS = ("truncated", "no_audio", "too_short")
DONOR_BASE = 10000
DEFAULT_VIDEOS_PER_CLASS = 30
DEFAULT_DEFECTS_PER_CLASS = 2
DEFAULT_SMALL_CLASSES = 3
DEFAULT_SMALL_CLASS_VIDEOS = 3
ENCODER_PRESET = "ultrafast"


def _rng(seed: int, *keys) -> np.random.Generator:
    parts = [int(seed), zlib.crc32(b"synth-wild")] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(parts))


# --------------------------------------------------------------------------
# Defects: (frames uint8 [T,H,W,3], audio float32 [n]) -> (frames, audio, label fields)
# --------------------------------------------------------------------------
def _span(rng, duration: float, lo: float = 3.0, hi: float = 4.0) -> tuple[int, int]:
    """A random stretch of lo-hi seconds (whole frames), clipped to the video."""
    n = int(round(min(duration, rng.uniform(lo, hi)) * FPS))
    total = int(round(duration * FPS))
    a = int(rng.integers(0, total - n + 1))
    return a, a + n


def defect_static(rng, frames, audio, **_):
    a, b = _span(rng, len(frames) / FPS)
    frames = frames.copy()
    frames[a:b] = frames[a]
    return frames, audio, {"start": a / FPS, "end": b / FPS}


def _shifted(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image moved by (dx, dy) px, edges repeated (a camera that jumped)."""
    h, w = img.shape[:2]
    p = max(abs(dx), abs(dy))
    pad = np.pad(img, ((p, p), (p, p), (0, 0)), mode="edge")
    return pad[p - dy:p - dy + h, p - dx:p - dx + w]


def defect_shake(rng, frames, audio, **_):
    a, b = _span(rng, len(frames) / FPS)
    frames = frames.copy()
    amp = []
    for i in range(a, b):
        dx, dy = (int(rng.integers(8, 21)) * int(rng.choice([-1, 1])) for _ in range(2))
        frames[i] = _shifted(frames[i], dx, dy)
        amp.append(max(abs(dx), abs(dy)))
    return frames, audio, {"start": a / FPS, "end": b / FPS, "max_offset_px": int(max(amp))}


def defect_scene_cut(rng, frames, audio, *, folder, seed, index, **_):
    f2, a2, rec = render_clip(folder, seed, DONOR_BASE + index)
    cut = len(frames) / FPS
    n1 = int(round(cut * SAMPLE_RATE))
    return (np.concatenate([frames, f2]), np.concatenate([audio[:n1], np.zeros(max(0, n1 - len(audio)), np.float32), a2]),
            {"start": cut, "end": cut, "cut": cut, "donor": f"{folder}#{DONOR_BASE + index}"})


def defect_quiet(rng, frames, audio, **_):
    silent = bool(rng.random() < 0.5)
    gain_db = None if silent else -50.0
    out = np.zeros_like(audio) if silent else (audio * 10 ** (gain_db / 20)).astype(np.float32)
    return frames, out, {"start": 0.0, "end": len(frames) / FPS, "mode": "silent" if silent else "quiet",
                         "gain_db": gain_db}


def defect_other_class_audio(rng, frames, audio, *, folder, seed, index, **_):
    others = [c for c in CLASSES if c != folder]
    donor = others[int(rng.integers(len(others)))]
    _, a2, _ = render_clip(donor, seed, DONOR_BASE + index)
    reps = int(math.ceil(len(audio) / len(a2)))
    return frames, np.tile(a2, reps)[:len(audio)].astype(np.float32), \
        {"start": 0.0, "end": len(frames) / FPS, "donor_class": donor}


def defect_shifted_audio(rng, frames, audio, **_):
    shift = float(rng.uniform(0.4, 0.8)) * float(rng.choice([-1.0, 1.0]))
    k = int(round(abs(shift) * SAMPLE_RATE))
    # the gap is filled with the recording's own quietest stretch, so no silence gives the shift away
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    a = int(np.argmin(energy[k:] - energy[:-k])) if 0 < k < len(audio) else 0
    quiet = audio[a:a + k]
    if shift > 0:   # audio late: the sound of an event comes after its picture
        out = np.concatenate([quiet, audio[:len(audio) - k]])
    else:
        out = np.concatenate([audio[k:], quiet])
    return frames, out.astype(np.float32), {"start": 0.0, "end": len(frames) / FPS, "shift_s": round(shift, 4)}


DEFECT_FUNCS = {"static": defect_static, "shake": defect_shake, "scene_cut": defect_scene_cut,
                "quiet": defect_quiet, "other_class_audio": defect_other_class_audio,
                "shifted_audio": defect_shifted_audio}


# --------------------------------------------------------------------------
# The plan: which video gets what
# --------------------------------------------------------------------------
def plan(seed: int, videos_per_class: int, defects_per_class: int, small_classes: int,
         small_class_videos: int, classes=None) -> list[dict]:
    classes = list(CLASSES) if classes is None else list(classes)
    if small_classes >= len(classes):
        raise ValueError(f"synth-wild: --small-classes {small_classes} leaves no regular class of {len(classes)}")
    if defects_per_class * len(DEFECTS) > videos_per_class:
        raise ValueError(f"synth-wild: {defects_per_class} x {len(DEFECTS)} defect videos do not fit in "
                         f"{videos_per_class} videos per class")
    regular, small = classes[:len(classes) - small_classes], classes[len(classes) - small_classes:]
    jobs = []
    for c in regular:
        kinds = [d for d in DEFECTS for _ in range(defects_per_class)]
        kinds += ["clean"] * (videos_per_class - len(kinds))
        order = _rng(seed, "plan", c).permutation(len(kinds))
        for i, k in enumerate(order):
            jobs.append({"class": c, "index": i, "kind": kinds[k]})
    for c in small:
        jobs += [{"class": c, "index": i, "kind": "class_too_small"} for i in range(small_class_videos)]
    # bad inputs: one of each kind, in the first regular classes (after their regular videos)
    for j, kind in enumerate(BAD_INPUTS):
        c = regular[j % len(regular)]
        jobs.append({"class": c, "index": videos_per_class + j, "kind": kind})
    return jobs


# --------------------------------------------------------------------------
# Building one video (worker)
# --------------------------------------------------------------------------
def build_one(job) -> dict:
    from ...avio import write_clip
    from ...fsutil import atomic_write_text
    root, seed, item = job
    root = Path(root)
    folder, index, kind = item["class"], item["index"], item["kind"]
    rel = f"{folder}/{stem(folder, index)}.mp4"
    frames, audio, rec = render_clip(folder, seed, index)
    defects, expect = [], None
    if kind in DEFECT_FUNCS:
        frames, audio, fields = DEFECT_FUNCS[kind](_rng(seed, "defect", folder, index), frames, audio,
                                                   folder=folder, seed=seed, index=index)
        defects.append({"type": kind, **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in fields.items()}})
    elif kind == "class_too_small":
        defects.append({"type": "class_too_small", "start": 0.0, "end": round(len(frames) / FPS, 6)})
    path = root / "videos" / rel
    if kind == "too_short":
        n = 2 * FPS
        frames, audio = frames[:n], audio[:2 * SAMPLE_RATE]
        expect = "too_short"
    write_clip(path, frames, FPS, audio=None if kind == "no_audio" else audio, sample_rate=SAMPLE_RATE,
               preset=ENCODER_PRESET)
    if kind == "no_audio":
        expect = "no_audio"
    if kind == "truncated":
        data = path.read_bytes()
        tmp = path.with_name(f".{path.stem}.tmp-trunc{path.suffix}")
        tmp.write_bytes(data[:len(data) // 3])
        os.replace(tmp, path)
        expect = "unreadable"
    if expect:
        defects.append({"type": "bad_input", "start": 0.0, "end": round(len(frames) / FPS, 6), "bad": kind,
                        "expected_reason": expect})
    label = {"generator": GENERATOR, "version": VERSION, "seed": int(seed), "video": rel, "class": folder,
             "index": index, "kind": kind, "duration": round(len(frames) / FPS, 6), "defects": defects,
             "synth_events": [[e["onset"], e["offset"]] for e in rec["events"]], "video_bytes": path.stat().st_size}
    atomic_write_text(root / "labels" / folder / f"{stem(folder, index)}.json", json.dumps(label, indent=1))
    return label


def _done(root: Path, seed: int, item: dict) -> dict | None:
    folder, index = item["class"], item["index"]
    try:
        rec = json.loads((root / "labels" / folder / f"{stem(folder, index)}.json").read_text())
        ok = (rec.get("version") == VERSION and rec.get("seed") == seed and rec.get("kind") == item["kind"]
              and rec.get("video_bytes") == (root / "videos" / rec["video"]).stat().st_size)
        return rec if ok else None
    except (OSError, ValueError, KeyError):
        return None


def read_marker(root) -> dict | None:
    """The build record of a complete pool, or None."""
    return read_record(Path(root) / MARKER, GENERATOR)


def make_synth_wild(root, seed: int = 0, videos_per_class: int = DEFAULT_VIDEOS_PER_CLASS,
                    defects_per_class: int = DEFAULT_DEFECTS_PER_CLASS, small_classes: int = DEFAULT_SMALL_CLASSES,
                    small_class_videos: int = DEFAULT_SMALL_CLASS_VIDEOS, classes=None, workers: int | None = None,
                    progress: bool = True) -> Path:
    """Build (or finish) a synth-wild pool under ``root``; returns the root. Finished videos are kept."""
    from ...fsutil import atomic_write_text
    root = Path(root).expanduser()
    if classes is not None:
        unknown = [c for c in classes if c not in CLASSES]
        if unknown:
            raise DatasetError(f"synth-wild: unknown class(es) {unknown}; choose from {', '.join(CLASSES)}")
    items = plan(int(seed), videos_per_class, defects_per_class, small_classes, small_class_videos, classes)
    config = {"generator": GENERATOR, "version": VERSION, "seed": int(seed), "videos_per_class": videos_per_class,
              "defects_per_class": defects_per_class, "small_classes": small_classes,
              "small_class_videos": small_class_videos, "classes": list(classes or CLASSES)}
    root.mkdir(parents=True, exist_ok=True)
    marker = read_marker(root)
    if marker and all(marker.get(k) == v for k, v in config.items()) and all(_done(root, seed, it) for it in items):
        return root
    (root / MARKER).unlink(missing_ok=True)
    wanted = {f"{it['class']}/{stem(it['class'], it['index'])}" for it in items}
    for sub in ("videos", "labels"):   # videos of another plan (other size or seed) would pollute the pool
        for f in (root / sub).rglob("*") if (root / sub).is_dir() else []:
            if f.is_file() and f"{f.parent.name}/{f.stem}" not in wanted:
                f.unlink()
    todo = [it for it in items if not _done(root, seed, it)]
    jobs = [(str(root), int(seed), it) for it in todo]
    t0 = time.perf_counter()
    run_jobs(build_one, jobs, desc="synth-wild videos", total=len(items), workers=workers, progress=progress)
    labels = [_done(root, seed, it) for it in items]
    missing = [it for it, lab in zip(items, labels) if lab is None]
    if missing:
        raise DatasetError(f"synth-wild: {len(missing)} video(s) failed to build, e.g. {missing[0]}; rerun to retry")
    counts: dict[str, int] = {}
    for it in items:
        counts[it["kind"]] = counts.get(it["kind"], 0) + 1
    atomic_write_text(root / "labels.json", json.dumps({"videos": sorted(labels, key=lambda r: r["video"])}, indent=1))
    record = dict(config, counts=counts, videos=len(items), fps=FPS, sample_rate=SAMPLE_RATE,
                  built_now=len(todo), build_seconds=round(time.perf_counter() - t0, 2))
    atomic_write_text(root / MARKER, json.dumps(record, indent=1))
    return root


def read_labels(root) -> dict[str, dict]:
    """video rel path -> label, from a complete build."""
    root = Path(root)
    if read_marker(root) is None:
        raise DatasetError(f"{root}: no complete synth-wild build ({MARKER} missing); run "
                           f"`asva-bench datasets make synth-wild --root {root}`")
    return {r["video"]: r for r in json.loads((root / "labels.json").read_text())["videos"]}


def make_from_args(args, progress: bool) -> dict:
    from ...fsutil import home
    root = Path(args.root).expanduser() if args.root else home() / "datasets" / "synth-wild"
    vpc = args.videos_per_class if args.videos_per_class is not None else DEFAULT_VIDEOS_PER_CLASS
    def given(name, default):
        value = getattr(args, name, None)
        return default if value is None else value
    make_synth_wild(root, seed=args.seed, videos_per_class=vpc,
                    defects_per_class=given("defects_per_class", DEFAULT_DEFECTS_PER_CLASS),
                    small_classes=given("small_classes", DEFAULT_SMALL_CLASSES),
                    small_class_videos=given("small_class_videos", DEFAULT_SMALL_CLASS_VIDEOS),
                    classes=parse_class_list(getattr(args, "classes", None)), workers=given("workers", None),
                    progress=progress)
    return dict(read_marker(root) or {}, root=str(root), input=str(root / "videos"))
