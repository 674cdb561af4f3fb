"""What produced a result: package versions, git revision, time."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


_PACKAGES = ("asva-bench", "torch", "torchvision", "torchaudio", "numpy", "av", "decord",
             "diffusers", "torchmetrics")


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    """The checkout's commit (with '-dirty' when modified), None outside git."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clip_seed(run_seed: int, clip_id: str) -> int:
    """Per-clip seed: independent of sharding and of the order clips run in."""
    h = hashlib.sha256(f"{int(run_seed)}:{clip_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)
