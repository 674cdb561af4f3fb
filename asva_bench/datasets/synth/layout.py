"""Where a synth build keeps its files, the split rule, and the records that mark a build complete.

Layout (AVSync15's, plus sidecars)::

    <root>/videos/<class_folder>/<class_folder>_NNNN.mp4   h264 + AAC 16 kHz, 256x256, 24 fps
    <root>/events/<class_folder>/<class_folder>_NNNN.json  event times and clip parameters
    <root>/train.txt, <root>/test.txt                       '<class_folder>/<file>.mp4' per line
    <root>/synth.json                                       build record, written last
    <root>/synth.building.json                              settings of a build in progress
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .constants import ENV_VAR, GENERATOR, MARKER, TEST_FRACTION


def stem(folder: str, index: int) -> str:
    """File name (without suffix) of a class's video ``index``: <class_folder>_NNNN."""
    return f"{folder}_{index:04d}"


def video_rel(folder: str, index: int) -> str:
    """A video's path under <root>/videos, as the split files list it."""
    return f"{folder}/{stem(folder, index)}.mp4"


def sidecar_path(root: Path, folder: str, index: int) -> Path:
    return Path(root) / "events" / folder / f"{stem(folder, index)}.json"


def split_sizes(videos_per_class: int) -> tuple[int, int]:
    """(train, test) per class: 10% test, rounded up, at least 1 of each.

    100 -> 90/10, 20 -> 18/2, 15 -> 13/2, 2 -> 1/1. The last indices of
    each class form the test split.
    """
    n = int(videos_per_class)
    if n < 2:
        raise ValueError(f"synth: --videos-per-class must be at least 2 (one train and one test "
                         f"video per class), got {n}")
    test = min(n - 1, max(1, math.ceil(round(n * TEST_FRACTION, 9))))
    return n - test, test


def read_record(path, generator: str = GENERATOR) -> dict | None:
    """A JSON record written by ``generator`` (its "generator" field), or None when missing or foreign."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("generator") == generator else None


def read_marker(root) -> dict | None:
    """The build record of a complete build, or None."""
    return read_record(Path(root) / MARKER)


def default_root() -> Path:
    """$ASVA_SYNTH_ROOT, else ``datasets/synth`` under $ASVA_BENCH_HOME (default ~/.cache/asva-bench)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    from ...fsutil import home
    return home() / "datasets" / "synth"
