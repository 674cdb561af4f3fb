"""Resumable-training plumbing shared by the trainers: atomic state files and the loss log."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def atomic_torch_save(obj, path) -> None:
    """torch.save to a temporary sibling, renamed on success (a killed run never leaves half a file)."""
    from ..avio import atomic_path
    with atomic_path(Path(path)) as tmp:
        torch.save(obj, tmp)


def truncate_log(log: Path, step: int) -> None:
    """Drop loss-log records written after ``step`` (they belong to work the resumed run redoes)."""
    log = Path(log)
    if not log.is_file():
        return
    from ..avio import atomic_write_text
    keep = []
    for ln in log.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except ValueError:
            continue  # a line cut by a kill
        if rec.get("step", 0) <= step:
            keep.append(ln)
    atomic_write_text(log, "".join(ln + "\n" for ln in keep))


def read_log(log) -> list[dict]:
    out = []
    for ln in Path(log).read_text().splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass
    return out


def warmup_cosine(step: int, warmup: int, total: int, schedule: str = "cosine", floor: float = 0.05) -> float:
    """Learning-rate factor: linear warm-up, then constant or cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


#: Training-config fields that do not change the result; a resumed run may change them.
RUNTIME_FIELDS = ("threads", "log_every", "checkpoint_every")


def same_recipe(saved: dict | None, now: dict) -> bool:
    """Whether a saved training config and the current one train the same model."""
    def norm(d):  # tuples come back as lists
        return {k: v for k, v in json.loads(json.dumps(d or {})).items() if k not in RUNTIME_FIELDS}
    return norm(saved) == norm(now)
