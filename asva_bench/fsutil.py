"""Small filesystem and environment utilities shared by every part of the harness.

* the home folder ($ASVA_BENCH_HOME, default ~/.cache/asva-bench) that holds
  weights, caches and the default synthetic dataset;
* environment flags (offline mode, progress bars);
* atomic writes: a file or folder is written under a temporary sibling name
  and renamed into place on success, so a killed writer never leaves
  something a reader would accept;
* stable hashes of JSON-able objects (sorted keys), used for cache keys and
  fingerprints.

Nothing here imports torch at module level: the CLI's start-up reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

#: Names the root of everything asva-bench keeps (weights, caches, the default synth dataset).
HOME_ENV = "ASVA_BENCH_HOME"
DEFAULT_HOME = "~/.cache/asva-bench"
#: Forbids downloads when set to 1 / true / yes / on.
OFFLINE_ENV = "ASVA_BENCH_OFFLINE"
#: Either turns the progress bars off (tqdm's own switch, or ours).
NO_PROGRESS_ENVS = ("ASVA_BENCH_NO_PROGRESS", "TQDM_DISABLE")


# --------------------------------------------------------------------------
# Home folder and environment flags
# --------------------------------------------------------------------------
def home(override=None) -> Path:
    """The home folder: ``override``, else $ASVA_BENCH_HOME, else ~/.cache/asva-bench."""
    root = override if override is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(root).expanduser()


def env_flag(name: str) -> bool:
    """An on/off environment variable: 1, true, yes or on (any case) is on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    return env_flag(OFFLINE_ENV)


def show_progress() -> bool:
    """Progress bars (tqdm, on stderr, so they stay on with --json) unless turned off."""
    return not any(env_flag(v) for v in NO_PROGRESS_ENVS)


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------
def temp_path_for(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")


def is_temp_file(path) -> bool:
    """A name :func:`temp_path_for` makes (readers skip such files)."""
    return Path(path).name.startswith(".") and ".tmp-" in Path(path).name


@contextmanager
def atomic_path(path):
    """Yield a temporary sibling path; rename it onto ``path`` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_folder(folder):
    """Yield a temporary sibling folder to fill; on success it replaces ``folder`` (the old one is
    moved aside first and removed after), so readers see the old or the new folder, never a mix."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_write_json(path, obj, indent: int | None = 2) -> None:
    """JSON with sorted keys (the same object writes the same bytes)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=str))


def atomic_torch_save(obj, path) -> None:
    """torch.save to a temporary sibling, renamed on success."""
    import torch
    with atomic_path(Path(path)) as tmp:
        torch.save(obj, tmp)


# --------------------------------------------------------------------------
# Stable hashes
# --------------------------------------------------------------------------
def stable_hash(obj, n: int | None = 16) -> str:
    """sha256 of the object's JSON with sorted keys (``default=str`` for paths and the like), its
    first ``n`` hex digits (None: all 64)."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    return digest if n is None else digest[:n]
