"""Building a synth root: render, encode and record every clip, then the split files and the build record.

Atomicity: videos and sidecars are written to temporary names and renamed; a
video counts as done only when its sidecar (written after it) names the
video's byte size. ``synth.json`` is written last and its presence marks a
complete build; the dataset reader refuses a root without it. A re-run skips
videos that are already complete and valid, deletes leftover temporary files,
and (for a changed size or class list) the clips the new build no longer lists.
Clips are rendered and encoded in parallel worker processes; each clip's own
random stream makes the result independent of the number of workers.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..base import DatasetError
from .classes import CLASSES, parse_class_list
from .constants import (DEFAULT_VIDEOS_PER_CLASS, ENCODER_PRESET, FPS, GENERATOR, MARKER, PLAN, SAMPLE_RATE,
                        SIZE, VERSION)
from .layout import default_root, read_marker, read_record, sidecar_path, split_sizes, video_rel
from .pool import run_jobs
from .render import render_clip


def _done(root: Path, folder: str, index: int, seed: int) -> bool:
    """A video is complete when its sidecar (written after it) matches it."""
    video = root / "videos" / video_rel(folder, index)
    try:
        rec = json.loads(sidecar_path(root, folder, index).read_text())
        return (rec.get("version") == VERSION and rec.get("seed") == seed and rec.get("class") == folder
                and rec.get("index") == index and rec.get("video_bytes") == video.stat().st_size)
    except (OSError, ValueError):
        return False


def build_video(job) -> str:
    """Render, encode and record one clip (runs in a worker process)."""
    from ...avio import write_clip
    from ...fsutil import atomic_write_text
    root, folder, index, seed, split = job
    root = Path(root)
    frames, audio, record = render_clip(folder, seed, index)
    rel = video_rel(folder, index)
    video = write_clip(root / "videos" / rel, frames, FPS, audio=audio, sample_rate=SAMPLE_RATE,
                       preset=ENCODER_PRESET)
    record.update(split=split, video=f"videos/{rel}", video_bytes=video.stat().st_size)
    atomic_write_text(sidecar_path(root, folder, index), json.dumps(record, indent=1))
    return rel


def _remove_leftovers(root: Path, plan: set[tuple[str, int]]) -> int:
    """Delete temp files of interrupted writes, and generated clips the plan no longer lists."""
    from ...fsutil import is_temp_file
    removed = 0
    for sub, ext in (("videos", ".mp4"), ("events", ".json")):
        for folder in CLASSES:
            d = root / sub / folder
            if not d.is_dir():
                continue
            for f in d.iterdir():
                stale = False
                if is_temp_file(f):
                    stale = True
                elif f.suffix == ext and f.stem.startswith(folder + "_") and f.stem[len(folder) + 1:].isdigit():
                    stale = (folder, int(f.stem[len(folder) + 1:])) not in plan
                if stale and f.is_file():
                    f.unlink()
                    removed += 1
    for f in root.glob(".*.tmp-*"):
        f.unlink()
        removed += 1
    return removed


@contextmanager
def _build_lock(root: Path):
    """An exclusive advisory lock on <root>/.synth.lock (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(root / ".synth.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_synth(root, seed: int = 0, videos_per_class: int = DEFAULT_VIDEOS_PER_CLASS, classes=None,
               workers: int | None = None, progress: bool = True) -> Path:
    """Build (or finish) the synthetic dataset under ``root``; returns the root.

    Videos already complete for this seed and generator version are kept;
    ``synth.json`` is removed first and written last, so only a finished
    build is accepted by the reader.
    """
    root = Path(root).expanduser()
    classes = list(CLASSES) if classes is None else list(classes)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or not classes:
        raise DatasetError(f"synth: unknown class(es) {unknown or '(none given)'}; "
                           f"choose from: {', '.join(CLASSES)}")
    split_sizes(videos_per_class)  # validates the count before anything is written
    seed = int(seed)
    config = {"generator": GENERATOR, "version": VERSION, "seed": seed,
              "videos_per_class": int(videos_per_class), "classes": classes}
    root.mkdir(parents=True, exist_ok=True)
    with _build_lock(root):  # several processes (e.g. torchrun ranks) may ask for the same root
        marker = read_marker(root)
        if marker and all(marker.get(k) == v for k, v in config.items()) and \
                all(_done(root, f, i, seed) for f in classes for i in range(videos_per_class)):
            return root
        return _build(root, config, classes, videos_per_class, seed, workers, progress)


def _build(root: Path, config: dict, classes, videos_per_class: int, seed: int, workers, progress) -> Path:
    from ...fsutil import atomic_write_text
    n_train, n_test = split_sizes(videos_per_class)
    (root / MARKER).unlink(missing_ok=True)  # from now on the root reads as incomplete
    atomic_write_text(root / PLAN, json.dumps(config, indent=1))

    plan = {(f, i) for f in classes for i in range(videos_per_class)}
    _remove_leftovers(root, plan)
    jobs = [(str(root), f, i, seed, "train" if i < n_train else "test")
            for i in range(videos_per_class) for f in classes]  # interleaved: even progress
    todo = [j for j in jobs if not _done(root, j[1], j[2], seed)]
    t0 = time.perf_counter()
    run_jobs(build_video, todo, desc="synth videos", total=len(jobs), workers=workers, progress=progress)

    for split, rng_ in (("train", range(n_train)), ("test", range(n_train, videos_per_class))):
        lines = [video_rel(f, i) for f in classes for i in rng_]
        atomic_write_text(root / f"{split}.txt", "\n".join(lines) + "\n")
    record = dict(config, class_texts={f: CLASSES[f].text for f in classes},
                  counts={"train": n_train * len(classes), "test": n_test * len(classes)},
                  per_class={"train": n_train, "test": n_test},
                  fps=FPS, size=[SIZE, SIZE], sample_rate=SAMPLE_RATE, encoder_preset=ENCODER_PRESET,
                  built_now=len(todo), build_seconds=round(time.perf_counter() - t0, 2))
    atomic_write_text(root / MARKER, json.dumps(record, indent=1))
    (root / PLAN).unlink(missing_ok=True)
    return root


def ensure_synth(root=None, seed: int = 0, videos_per_class: int = DEFAULT_VIDEOS_PER_CLASS, classes=None,
                 workers: int | None = None, progress: bool = True) -> Path:
    """The root of a complete synth build, building it first when it is missing.

    Used by the runner for ``--dataset synth``. A complete build of the
    current generator version is accepted as it is, whatever its seed and
    size. An interrupted build is resumed with the settings it was started
    with (``synth.building.json``); an outdated one is rebuilt with its
    recorded settings; an empty root gets the given (default) settings.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    marker = read_marker(root)
    if marker and marker.get("version") == VERSION:
        return root
    recorded = marker or read_record(root / PLAN)
    if recorded:
        seed = int(recorded.get("seed", seed))
        videos_per_class = int(recorded.get("videos_per_class", videos_per_class))
        classes = recorded.get("classes", classes)
    if progress:
        print(f"synth: building the synthetic dataset in {root} (seed {seed}, "
              f"{videos_per_class} videos per class)", file=sys.stderr)
    return make_synth(root, seed=seed, videos_per_class=videos_per_class, classes=classes,
                      workers=workers, progress=progress)


def make_from_args(args, progress: bool) -> dict:
    """`asva-bench datasets make synth`: build what the parsed options ask for; returns the build
    record with the root and the seconds it took."""
    root = Path(args.root).expanduser() if args.root else default_root()
    vpc = DEFAULT_VIDEOS_PER_CLASS if args.videos_per_class is None else args.videos_per_class
    t0 = time.perf_counter()
    make_synth(root, seed=args.seed, videos_per_class=vpc, classes=parse_class_list(args.classes),
               workers=args.workers, progress=progress)
    return dict(read_marker(root) or {}, dataset="synth", root=str(root), seconds=round(time.perf_counter() - t0, 2))
